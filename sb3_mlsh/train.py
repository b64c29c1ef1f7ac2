"""``python -m sb3_mlsh.train``: the command line of :mod:`sb3_mlsh.cli.train`."""

from sb3_mlsh.cli.train import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    run()
