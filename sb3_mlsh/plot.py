"""``python -m sb3_mlsh.plot``: the command line of :mod:`sb3_mlsh.cli.plot`."""

from sb3_mlsh.cli.plot import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
