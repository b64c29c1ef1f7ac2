"""Types shared across sb3-mlsh's modules."""

import numpy as np

__all__ = ["NonFiniteError", "Obs"]

#: A batch of observations: an array, or a mapping of arrays for Dict observation spaces.
Obs = np.ndarray | dict[str, np.ndarray]


class NonFiniteError(ValueError):
    """Raised when an env returns NaN or inf, or an update would make a learner's parameters non-finite."""
