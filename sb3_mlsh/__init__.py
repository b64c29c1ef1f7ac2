"""sb3-mlsh: Meta Learning Shared Hierarchies for Stable-Baselines3."""

import os

from sb3_mlsh.common.checks import NonFiniteError
from sb3_mlsh.common.serialization import ModelFileError
from sb3_mlsh.common.tasks import TaskProtocolError, TaskSampler, check_task_protocol, make_task_sampler
from sb3_mlsh.common.wrappers import MacroActionWrapper
from sb3_mlsh.mlsh import MLSH
from sb3_mlsh.mlsh.bank import SubPolicyBankPolicy
from sb3_mlsh.mlsh.schedule import MLSHMetaTrainer, TaskSchedule

with open(os.path.join(os.path.dirname(__file__), "version.txt")) as _version_file:
    __version__ = _version_file.read().strip()

__all__ = [
    "MLSH",
    "MLSHMetaTrainer",
    "MacroActionWrapper",
    "ModelFileError",
    "NonFiniteError",
    "SubPolicyBankPolicy",
    "TaskProtocolError",
    "TaskSampler",
    "TaskSchedule",
    "__version__",
    "check_task_protocol",
    "make_task_sampler",
]
