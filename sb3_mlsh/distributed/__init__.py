"""
One process or many: :class:`LocalContext` and ``TorchContext`` give MLSH one interface for both, so that one update
path serves a single process and a ``torchrun`` launch. A single process never imports
:mod:`sb3_mlsh.distributed.torch_context`.
"""

import os

import torch as th

from sb3_mlsh.distributed.context import LocalContext, RandomStreams

__all__ = ["LocalContext", "RandomStreams", "distributed_requested", "make_context", "world_size"]


def world_size() -> int:
    """:return: The number of processes of the run: the process group's, else torchrun's ``WORLD_SIZE``, else 1."""
    if th.distributed.is_available() and th.distributed.is_initialized():
        return th.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def distributed_requested(distributed: bool | None) -> bool:
    """
    :param distributed: The user's choice (None: automatic).
    :return: Whether to train across processes: when asked, or automatically when more than one process runs.
    """
    return world_size() > 1 if distributed is None else bool(distributed)


def make_context(distributed: bool | None, n_groups: int, device: th.device | str) -> LocalContext:
    """
    :param distributed: Train across the processes of a process group; None: when more than one process runs.
    :param n_groups: Task groups G of the whole run.
    :param device: The requested torch device.
    :return: This process's context: a :class:`TorchContext` (a collective call) or a :class:`LocalContext`.
    """
    if distributed_requested(distributed):
        from sb3_mlsh.distributed.torch_context import TorchContext

        return TorchContext(n_groups, device)
    return LocalContext(n_groups, device)
