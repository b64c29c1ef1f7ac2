"""The command line: ``python -m sb3_mlsh.train``, ``.enjoy``, ``.plot`` and ``.zoo``."""
