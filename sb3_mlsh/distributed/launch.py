"""Joining and leaving the ``torch.distributed`` process group that ``torchrun`` sets up, and stopping cleanly."""

import atexit
import contextlib
import datetime
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import torch.distributed as dist

__all__ = [
    "DEFAULT_TIMEOUT",
    "broadcast_from_main",
    "check_layout",
    "collective_timeout",
    "destroy_process_group",
    "init_process_group",
    "install_stop_handler",
    "mark_stopping",
]

#: Seconds a collective waits for the other processes before it fails (``--dist-timeout``).
DEFAULT_TIMEOUT = 600.0
#: The timeout of this run's collectives: set by :func:`init_process_group`, given to every process group created here
#: (``new_group`` does not inherit it from the default group).
_timeout_seconds = DEFAULT_TIMEOUT


def collective_timeout() -> datetime.timedelta:
    """:return: How long a collective of this run waits for the other processes."""
    return datetime.timedelta(seconds=_timeout_seconds)


def init_process_group(timeout: float | None = None) -> None:
    """
    Join the process group that ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``); nothing to do when it is already initialised.

    The default group is gloo (it carries the small CPU messages and, for models on the CPU, the gradients); models on
    GPUs exchange their gradients in an NCCL group created by :class:`DistributedContext`.

    :param timeout: Seconds a collective may wait for the others before it raises (None: :data:`DEFAULT_TIMEOUT`).
    """
    global _timeout_seconds
    if dist.is_initialized():
        return
    _timeout_seconds = timeout or DEFAULT_TIMEOUT
    missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"Distributed MLSH needs a process group, but {missing} are not set: launch with "
            "`torchrun --nproc_per_node=P -m sb3_mlsh.train ...` or call torch.distributed.init_process_group() first."
        )
    dist.init_process_group(backend="gloo", timeout=datetime.timedelta(seconds=_timeout_seconds))
    # A gloo group still alive when the interpreter exits can abort it ("terminate called without an active
    # exception"), turning a finished run into a failed one for torchrun.
    atexit.register(destroy_process_group)


#: Seconds the processes wait for each other at exit before each tears its connections down anyway.
EXIT_BARRIER_TIMEOUT = 30.0


def destroy_process_group() -> None:
    """
    Leave the process group once every process has arrived here (or :data:`EXIT_BARRIER_TIMEOUT` has passed, or a
    peer is found dead); nothing to do when there is none. Call it instead of ``torch.distributed.destroy_process_group``.
    """
    if not dist.is_initialized():
        return
    # A process that tears its gloo connections down while a peer still uses them (rank 0 still writing the save a
    # collective call just gathered, say) can make that peer abort; meet first. A dead peer fails this at once.
    with contextlib.suppress(RuntimeError):
        dist.monitored_barrier(timeout=datetime.timedelta(seconds=EXIT_BARRIER_TIMEOUT))
    dist.destroy_process_group()


def broadcast_from_main(value: Any) -> Any:
    """
    :param value: Rank 0's value (ignored elsewhere), picklable.
    :return: Rank 0's value, on every process of the default group.
    """
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_layout(n_groups: int, world_size: int) -> None:
    """
    :param n_groups: Task groups G.
    :param world_size: Processes P.
    :raises ValueError: unless P % G == 0 (a group spans P / G processes) or G % P == 0 (a process hosts G / P groups).
    """
    if world_size % n_groups == 0 or n_groups % world_size == 0:
        return
    divisors = [g for g in range(1, world_size + 1) if world_size % g == 0]
    raise ValueError(
        f"task_groups ({n_groups}) and the number of processes ({world_size}) must divide one another: either every "
        f"group spans P / G processes or every process hosts G / P groups. Use task_groups in {divisors} or a multiple "
        f"of {world_size} (e.g. {world_size * max(1, round(n_groups / world_size))}), or launch a number of processes "
        f"that divides or is a multiple of {n_groups}."
    )


_stopping = False


def mark_stopping() -> None:
    """This process has reported its failure: a later stop signal ends it without a second report."""
    global _stopping
    _stopping = True


def install_stop_handler(message: Callable[[], str]) -> None:
    """
    Exit with a clear message when the launcher stops this process (``torchrun`` sends SIGTERM to the surviving
    workers when one of them dies).

    :param message: Builds the message (e.g. naming the last checkpoint and the ``--resume`` command).
    """

    def handler(signum: int, frame: Any) -> None:
        if _stopping:
            os._exit(1)  # already reported and on its way out (e.g. in atexit handlers)
        mark_stopping()
        rank = os.environ.get("RANK", "?")
        print(f"error: rank {rank} stopped by signal {signum}: {message()}", file=sys.stderr, flush=True)
        sys.exit(1)

    signal.signal(signal.SIGTERM, handler)
