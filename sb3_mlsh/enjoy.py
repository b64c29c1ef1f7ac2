"""``python -m sb3_mlsh.enjoy``: the command line of :mod:`sb3_mlsh.cli.enjoy`."""

from sb3_mlsh.cli.enjoy import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
