"""Types shared across sb3-mlsh's modules."""

import numpy as np

__all__ = ["Obs"]

#: A batch of observations: an array, or a mapping of arrays for Dict observation spaces.
Obs = np.ndarray | dict[str, np.ndarray]
