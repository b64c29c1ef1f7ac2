"""``python -m sb3_mlsh.zoo``: the command line of :mod:`sb3_mlsh.cli.zoo`."""

from sb3_mlsh.cli.zoo import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
