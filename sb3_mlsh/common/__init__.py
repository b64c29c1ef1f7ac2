"""Pieces of MLSH that the algorithm, the distributed path and the command line share."""
