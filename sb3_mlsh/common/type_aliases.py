"""Types shared across sb3-mlsh's modules."""

from enum import Enum

import numpy as np

__all__ = ["NonFiniteError", "Obs", "Phase"]

#: A batch of observations: an array, or a mapping of arrays for Dict observation spaces.
Obs = np.ndarray | dict[str, np.ndarray]


class NonFiniteError(ValueError):
    """Raised when an env returns NaN or inf, or an update would make a learner's parameters non-finite."""


class Phase(str, Enum):
    """A task group's phase in an iteration of the meta-loop."""

    #: Only the group's master learns (the paper's W warmup iterations of a fresh master on a new task).
    WARMUP = "warmup"
    #: The group's data also trains the shared sub-policies (the paper's U joint iterations).
    JOINT = "joint"
