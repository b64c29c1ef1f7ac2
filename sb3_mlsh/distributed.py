"""
Multi-process MLSH with ``torch.distributed``: the task groups spread over processes launched by ``torchrun``.

Imported only in distributed mode (a process group of more than one process, or ``WORLD_SIZE`` > 1 in the
environment); a single-process run never loads this module.

Layout, for P processes and G task groups:

- P % G == 0: each group spans P / G consecutive ranks, which share its task and its master; the master's gradients
  are averaged within the group (weighted by each rank's minibatch size) and clipped after averaging.
- G % P == 0: each rank hosts G / P whole groups, as a single process does.

The sub-policies are shared by all ranks: per sub-policy k, gradients are averaged over all ranks weighted by the
number of joint-phase samples of k in each rank's minibatch (a rank in warmup, or without a sample of k, weighs 0),
in one all-reduce per minibatch. Every collective runs the same number of times on every rank: the number of
minibatches per epoch is agreed on before each update.
"""

import atexit
import contextlib
import datetime
import math
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
import torch.distributed as dist
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import ProgressBarCallback
from stable_baselines3.common.logger import Logger

from sb3_mlsh.policies import SubPolicyOptimizer
from sb3_mlsh.rollout import select_envs
from sb3_mlsh.trainer import MLSHMetaTrainer, TaskGroup

if TYPE_CHECKING:
    from sb3_mlsh.mlsh import MLSH

__all__ = [
    "DEFAULT_TIMEOUT",
    "DistributedContext",
    "DistributedMetaTrainer",
    "DistributedSubPolicyOptimizer",
    "MasterGradientAverager",
    "SyncedMinibatches",
    "broadcast_from_main",
    "check_layout",
    "destroy_process_group",
    "gather_checkpoint",
    "init_process_group",
    "pack_weighted_gradients",
    "unpack_weighted_gradients",
]

#: Seconds a collective waits for the other processes before it fails (``--dist-timeout``).
DEFAULT_TIMEOUT = 600.0
#: The timeout of this run's collectives: set by :func:`init_process_group`, given to every process group created here
#: (``new_group`` does not inherit it from the default group).
_timeout_seconds = DEFAULT_TIMEOUT


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


def pack_weighted_gradients(gradients: th.Tensor, counts: th.Tensor) -> th.Tensor:
    """
    One process's share of the weighted average of the sub-policy gradients, as one flat message to all-reduce.

    :param gradients: Per-sub-policy gradients, shape (K, n).
    :param counts: Samples of each sub-policy behind them (0: the row does not count), shape (K,).
    :return: ``[counts[k] * gradients[k] for every k, then counts]``, flat; a row with count 0 is zeros (even if its
        gradient holds NaN), so that summing the messages of all processes sums only what counts.
    """
    weights = counts.to(gradients.dtype)
    weighted = th.where(weights[:, None] > 0, gradients * weights[:, None], gradients.new_zeros(()))
    return th.cat([weighted.reshape(-1), weights])


def unpack_weighted_gradients(message: th.Tensor, n_subpolicies: int) -> tuple[th.Tensor, th.Tensor]:
    """
    :param message: The sum over processes of :func:`pack_weighted_gradients`.
    :param n_subpolicies: K.
    :return: The weighted mean gradient of each sub-policy, shape (K, n) (zeros where nobody had samples), and the total
        count of each sub-policy, shape (K,).
    """
    totals = message[-n_subpolicies:]
    sums = message[:-n_subpolicies].view(n_subpolicies, -1)
    return sums / totals.clamp(min=1)[:, None], totals


class SyncedMinibatches:
    """
    A filled rollout buffer whose :meth:`get` yields exactly ``n_minibatches`` minibatches per epoch, the same number
    on every process, so that the collective in each optimizer step has its partner on every other process.
    This process's samples are shuffled and split into ``n_minibatches`` near-equal parts; where there are fewer samples
    than parts (or ``use_samples`` is False), a part is one sample that weighs 0.

    Every other attribute is the wrapped buffer's (PPO's ``train()`` reads ``values`` and ``returns``).

    :param buffer: The filled buffer, with advantages computed.
    :param n_minibatches: Minibatches per epoch.
    :param set_weight: Called before each minibatch is yielded with the number of samples that count in it (0 or its
        size).
    :param use_samples: False: this process has no data for this update and only keeps the collectives company.
    """

    def __init__(
        self, buffer: RolloutBuffer, n_minibatches: int, set_weight: Callable[[int], None], use_samples: bool = True
    ) -> None:
        self.buffer = buffer
        self.n_minibatches = n_minibatches
        self.set_weight = set_weight
        self.use_samples = use_samples

    def __getattr__(self, name: str) -> Any:
        return getattr(self.buffer, name)

    def get(self, batch_size: int | None = None) -> Iterator[Any]:
        """
        :param batch_size: Ignored: the minibatch size follows from the agreed number of minibatches.
        :return: ``n_minibatches`` minibatches.
        """
        buffer = self.buffer
        if not buffer.generator_ready:
            next(buffer.get(1))  # SB3 flattens the buffer on its first get()
        n_samples = buffer.buffer_size * buffer.n_envs
        parts = np.array_split(np.random.permutation(n_samples), self.n_minibatches) if self.use_samples else []
        for index in range(self.n_minibatches):
            part = parts[index] if index < len(parts) else np.zeros(0, dtype=np.int64)
            if len(part):
                self.set_weight(len(part))
                yield buffer._get_samples(part)
            else:
                self.set_weight(0)
                yield buffer._get_samples(np.random.randint(n_samples, size=1))


class DistributedContext:
    """
    Where this process stands in the run: its rank, its task groups, and the process groups it talks through.

    All processes must build it at the same point (it creates process groups, a collective call).

    :param n_groups: Task groups G over the whole run.
    :param device: The requested torch device: ``"auto"`` or ``"cuda"`` become ``cuda:LOCAL_RANK`` when every process
        has a GPU, the CPU otherwise.
    """

    def __init__(self, n_groups: int, device: th.device | str = "auto") -> None:
        if not dist.is_initialized():
            init_process_group()
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        self.n_groups = n_groups
        check_layout(n_groups, self.world_size)
        # Small CPU messages (sizes, statistics, checkpoints) go through gloo even when the default group is NCCL.
        timeout = datetime.timedelta(seconds=_timeout_seconds)
        self.cpu_group = None if "gloo" in str(dist.get_backend()) else dist.new_group(backend="gloo", timeout=timeout)
        has_cuda = th.tensor([int(th.cuda.is_available() and th.cuda.device_count() > self.local_rank)])
        dist.all_reduce(has_cuda, op=dist.ReduceOp.MIN, group=self.cpu_group)
        self.all_have_cuda = bool(has_cuda.item())
        requested = str(device)
        if requested in ("auto", "cuda"):
            requested = f"cuda:{self.local_rank}" if self.all_have_cuda else "cpu"
        self.device = th.device(requested)
        device_types = [None] * self.world_size
        dist.all_gather_object(device_types, self.device.type, group=self.cpu_group)
        if len(set(device_types)) > 1:
            raise ValueError(
                f"The processes train on different kinds of device ({device_types}): give every process the same "
                "device (e.g. --device cpu, or --device auto on machines that all have GPUs)."
            )
        if self.device.type == "cuda":
            th.cuda.set_device(self.device)
            self.backend = "nccl"
            self.tensor_group = dist.new_group(backend="nccl", timeout=timeout)
        else:
            self.backend = "gloo"
            self.tensor_group = self.cpu_group
        if self.world_size % n_groups == 0:
            self.ranks_per_group = self.world_size // n_groups
            self.local_groups = [self.rank // self.ranks_per_group]
        else:
            self.ranks_per_group = 1
            per_rank = n_groups // self.world_size
            self.local_groups = list(range(self.rank * per_rank, (self.rank + 1) * per_rank))
        # new_group is collective over all processes, even those outside the new group: create every group everywhere.
        self.group_process_groups: dict[int, Any] = {}
        if self.ranks_per_group > 1:
            for g in range(n_groups):
                ranks = self.ranks_of_group(g)
                process_group = dist.new_group(ranks=ranks, backend=self.backend, timeout=timeout)
                if g in self.local_groups:
                    self.group_process_groups[g] = process_group
        #: Seconds in, calls of and bytes of the all-reduces: sub-policy and master gradients, per-iteration sync.
        self.comm_stats = {name: {"seconds": 0.0, "calls": 0, "bytes": 0} for name in ("sub", "master", "sync")}

    # --------------------------------------------------------------------------------------------------------- layout
    @property
    def is_main(self) -> bool:
        """Rank 0 logs and saves."""
        return self.rank == 0

    def ranks_of_group(self, group_index: int) -> list[int]:
        """
        :param group_index: A global task group index.
        :return: The ranks that run it.
        """
        if self.ranks_per_group > 1:
            return list(range(group_index * self.ranks_per_group, (group_index + 1) * self.ranks_per_group))
        return [group_index * self.world_size // self.n_groups]

    def leads(self, group_index: int) -> bool:
        """
        :param group_index: A global task group index.
        :return: Whether this rank is the first of that group's ranks (the one whose master state is saved).
        """
        return self.ranks_of_group(group_index)[0] == self.rank

    def local_seed(self, seed: int, n_envs: int) -> int:
        """
        :param seed: The run's seed.
        :param n_envs: Envs per process.
        :return: This process's seed: envs are seeded as the envs of one process with ``n_envs * P`` envs would be,
            and each process samples actions from its own stream.
        """
        return seed + self.rank * n_envs

    def shared_seed(self, seed: int | None) -> int:
        """
        :param seed: The seed given to this process (None: draw one).
        :return: Rank 0's seed, the same on every process.
        """
        value = [seed if seed is not None else secrets.randbits(31)]
        dist.broadcast_object_list(value, src=0, group=self.cpu_group)
        return int(value[0])

    def check_same_settings(self, settings: dict[str, Any]) -> None:
        """
        :param settings: Settings that must be equal on every process (e.g. ``n_envs`` and ``n_steps``).
        :raises ValueError: when a process disagrees.
        """
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, settings, group=self.cpu_group)
        differing = sorted(key for key in settings if any(other[key] != settings[key] for other in gathered))
        if differing:
            values = {key: [other[key] for other in gathered] for key in differing}
            raise ValueError(
                f"The processes of a distributed run must agree on {differing} (per rank: {values}): every process "
                "collects the same number of steps per iteration. Give all processes the same arguments."
            )

    # ------------------------------------------------------------------------------------------------- parameter sync
    def broadcast_parameters(self, parameters: list[th.Tensor], src: int, group: Any = None) -> None:
        """
        Overwrite ``parameters`` with those of rank ``src``, in one collective.

        :param parameters: Tensors, in the same order on every process.
        :param src: Global rank of the source.
        :param group: Process group (None: all processes).
        """
        with th.no_grad():
            flat = th.cat([param.reshape(-1) for param in parameters])
            dist.broadcast(flat, src=src, group=self.tensor_group if group is None else group)
            offset = 0
            for param in parameters:
                # In place: optimizers hold aliases of this memory.
                param.copy_(flat[offset : offset + param.numel()].view_as(param))
                offset += param.numel()

    def _all_reduce(self, tensor: th.Tensor, learner: str, group: Any, op: Any = None) -> None:
        start = time.perf_counter()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op is None else op, group=group)
        stats = self.comm_stats[learner]
        stats["seconds"] += time.perf_counter() - start
        stats["calls"] += 1
        stats["bytes"] += tensor.numel() * tensor.element_size()

    def all_reduce_subpolicies(self, message: th.Tensor) -> None:
        """:param message: Summed in place over all processes."""
        self._all_reduce(message, "sub", self.tensor_group)

    def all_reduce_master(self, message: th.Tensor, group_index: int) -> None:
        """:param message: Summed in place over the ranks of task group ``group_index``."""
        self._all_reduce(message, "master", self.group_process_groups[group_index])

    def sync_master(self, group: TaskGroup) -> None:
        """
        Give every rank of ``group`` the master of its first rank (after a reset: the same fresh master everywhere), and
        route its optimizer steps through the within-group gradient average.

        :param group: A local task group (``group.index`` is global).
        """
        if self.ranks_per_group == 1:
            return
        master = group.master
        leader = self.ranks_of_group(group.index)[0]
        self.broadcast_parameters(list(master.policy.parameters()), src=leader, group=self.group_process_groups[group.index])
        averager = getattr(master, "_mlsh_averager", None)
        if averager is None:
            raise RuntimeError("A master of a multi-rank task group lacks its gradient averager; build it with MLSH().")
        averager.attach(master.policy.optimizer)

    # ------------------------------------------------------------------------------------------------------ iteration
    def agree_on_sizes(self, subpolicy_minibatches: int, master_sizes: dict[int, int]) -> tuple[int, dict[int, int]]:
        """
        One collective per iteration: the largest number of sub-policy minibatches any process needs, and the largest
        master buffer of each task group.

        :param subpolicy_minibatches: What this process needs (0: no joint-phase data).
        :param master_sizes: Macro-steps in this process's master buffer of each local group.
        :return: The maxima over all processes.
        """
        sizes = th.zeros(1 + self.n_groups, dtype=th.int64)
        sizes[0] = subpolicy_minibatches
        for index, size in master_sizes.items():
            sizes[1 + index] = size
        self._all_reduce(sizes, "sync", self.cpu_group, op=dist.ReduceOp.MAX)
        return int(sizes[0]), {index: int(sizes[1 + index]) for index in master_sizes}

    def sum_statistics(self, values: np.ndarray) -> np.ndarray:
        """
        :param values: Numbers to add up over all processes (e.g. episode returns and counts).
        :return: Their sums.
        """
        tensor = th.as_tensor(np.asarray(values, dtype=np.float64))
        self._all_reduce(tensor, "sync", self.cpu_group)
        return tensor.numpy()

    # ---------------------------------------------------------------------------------------------------- checkpoints
    def gather_objects(self, payload: Any) -> list[Any] | None:
        """
        :param payload: This process's picklable contribution.
        :return: Every process's contribution, on rank 0; None elsewhere.
        """
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(payload, gathered, dst=0, group=self.cpu_group)
        return gathered


class DistributedSubPolicyOptimizer(SubPolicyOptimizer):
    """
    The per-sub-policy optimizers of :class:`~sb3_mlsh.policies.SubPolicyOptimizer`, with the gradients averaged over
    all processes before each step: per sub-policy k, ``sum_r c_rk g_rk / sum_r c_rk``, where ``c_rk`` is the number of
    samples of k in rank r's minibatch (0 for a rank without joint-phase data). Then each sub-policy's gradient is
    clipped and the sub-policies that any rank used are stepped, identically on every rank (with share-scaled steps,
    from the counts of all ranks).

    :param base: The single-process optimizer whose Adam states and parameter aliases it takes over.
    :param counts: Samples of each sub-policy in the last minibatch (the bank's ``_sample_counts``).
    :param context: The distributed context.
    """

    def __init__(self, base: SubPolicyOptimizer, counts: Callable[[], np.ndarray], context: DistributedContext) -> None:
        self.__dict__.update(base.__dict__)
        self.sample_counts = counts
        self.context = context
        self.sample_weight = 1

    def set_sample_weight(self, weight: int) -> None:
        """:param weight: 0 when the coming minibatch must not count (a process without data keeping pace)."""
        self.sample_weight = weight

    def step(self) -> None:
        """All-reduce the weighted gradients, then clip and step each sub-policy that some process used."""
        n_subpolicies = self.stacked_parameters[0].shape[0]
        device = self.stacked_parameters[0].device
        counts = th.as_tensor(self.sample_counts(), dtype=th.float32, device=device) * float(self.sample_weight > 0)
        gradients = th.cat(
            [
                (param.grad if param.grad is not None else th.zeros_like(param)).reshape(n_subpolicies, -1)
                for param in self.stacked_parameters
            ],
            dim=1,
        )
        message = pack_weighted_gradients(gradients, counts)
        self.context.all_reduce_subpolicies(message)
        mean, totals = unpack_weighted_gradients(message, n_subpolicies)
        offset = 0
        for param in self.stacked_parameters:
            size = param[0].numel()
            param.grad = mean[:, offset : offset + size].reshape(param.shape)
            offset += size
        if self.before_step is not None:  # on the averaged gradients: every process decides alike
            self.before_step(self.stacked_parameters)
        # The global counts: share-scaled steps then see the pooled minibatch of all processes.
        self._step_subpolicies(totals.cpu().numpy())


class MasterGradientAverager:
    """
    Averages a master's gradients over the ranks of its task group before each optimizer step (an optimizer step
    pre-hook), weighted by each rank's minibatch size, then clips the averaged gradient (the master PPO itself is given
    ``max_grad_norm=inf``, so that clipping happens after averaging, as for a single process's whole minibatch).

    :param context: The distributed context.
    :param group_index: Global index of the task group.
    :param max_grad_norm: The master's gradient-norm clip.
    """

    def __init__(self, context: DistributedContext, group_index: int, max_grad_norm: float) -> None:
        self.context = context
        self.group_index = group_index
        self.max_grad_norm = max_grad_norm
        self.weight = 1
        self._handle: Any = None

    def set_weight(self, weight: int) -> None:
        """:param weight: Samples in the coming minibatch that count (0 for a stand-in sample)."""
        self.weight = weight

    def attach(self, optimizer: th.optim.Optimizer) -> None:
        """:param optimizer: The master's optimizer (a new one after every master reset)."""
        if self._handle is not None:
            self._handle.remove()
        self._handle = optimizer.register_step_pre_hook(self._before_step)

    def _before_step(self, optimizer: th.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [param for group in optimizer.param_groups for param in group["params"]]
        gradients = th.cat([(p.grad if p.grad is not None else th.zeros_like(p)).reshape(-1) for p in params])
        weight = th.tensor([float(self.weight)], device=gradients.device)
        message = pack_weighted_gradients(gradients[None], weight)
        self.context.all_reduce_master(message, self.group_index)
        mean, _ = unpack_weighted_gradients(message, 1)
        offset = 0
        for param in params:
            param.grad = mean[0, offset : offset + param.numel()].view_as(param).clone()
            offset += param.numel()
        if math.isfinite(self.max_grad_norm):
            th.nn.utils.clip_grad_norm_(params, self.max_grad_norm)


class DistributedMetaTrainer(MLSHMetaTrainer):
    """
    The meta-loop of this process's task groups within a distributed run. ``group.index`` is the global index:
    phases are staggered with it (the single-process formula over all G groups), each group draws its tasks from its
    own generator seeded from (seed, group index), so that the ranks of a group draw the same tasks, and a new task's
    fresh master is broadcast within the group.

    :param task_sampler: Draws the tasks.
    :param env: This process's VecEnv.
    :param masters: One master per local task group.
    :param reset_master: Re-initialises a master.
    :param warmup_iterations: W.
    :param joint_iterations: U.
    :param context: The distributed context (its ``local_groups`` name the groups).
    :param stagger: Stagger the groups' phases.
    :param seed: The run's seed (the same on every process).
    """

    def __init__(
        self,
        task_sampler: Any,
        env: Any,
        masters: list[PPO],
        reset_master: Callable[[PPO], None],
        warmup_iterations: int,
        joint_iterations: int,
        context: DistributedContext,
        stagger: bool = True,
        seed: int | None = 0,
    ) -> None:
        if seed is None:
            raise ValueError("A distributed run needs a seed shared by its processes (DistributedContext.shared_seed).")
        super().__init__(task_sampler, env, masters, reset_master, warmup_iterations, joint_iterations, stagger, seed)
        self.context = context
        self.seed = seed
        period = warmup_iterations + joint_iterations
        for group, index in zip(self.groups, context.local_groups):
            group.index = index
            group.warmup_length = warmup_iterations + (round(index * period / context.n_groups) if stagger else 0)
        self.group_rngs = {group.index: np.random.default_rng([seed, group.index]) for group in self.groups}

    def _draw_task(self, group: TaskGroup) -> Any:
        if self.fixed_task is not None:
            return self.fixed_task
        return self.task_sampler.sample(1, rng=self.group_rngs[group.index])[0]

    def start_task(self, group: TaskGroup, reset_envs: bool) -> list[Any] | None:
        """As in a single process; a reset master is then made identical on the ranks of the group."""
        reset = group.tasks_started > 0
        observations = super().start_task(group, reset_envs)
        if reset:
            self.context.sync_master(group)
        return observations

    def state_dict(self) -> dict[str, Any]:
        """:return: The schedule of this process's groups, with their generators."""
        state = super().state_dict()
        for saved, group in zip(state["groups"], self.groups):
            saved["index"] = group.index
            saved["rng"] = self.group_rngs[group.index].bit_generator.state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """
        :param state: A whole run's schedule (all G groups, as a saved model holds it); this process takes its groups.
        """
        if len(state["groups"]) != self.context.n_groups:
            raise ValueError(f"Saved schedule has {len(state['groups'])} task groups, this run has {self.context.n_groups}.")
        group_rngs = state.get("group_rngs")
        for group in self.groups:
            saved = state["groups"][group.index]
            group.task = saved["task"]
            group.iteration = saved["iteration"]
            group.warmup_length = saved["warmup_length"]
            group.tasks_started = saved["tasks_started"]
            if group_rngs is not None:
                self.group_rngs[group.index].bit_generator.state = group_rngs[group.index]
            else:
                # Saved by a single process (one generator for all groups): continue with fresh, distinct draws.
                self.group_rngs[group.index] = np.random.default_rng([self.seed, group.index, group.tasks_started])


class ScaledProgressBar(ProgressBarCallback):
    """A progress bar that counts the steps of all processes (they run in lockstep) on the one that shows it."""

    def __init__(self, world_size: int) -> None:
        super().__init__()
        self.world_size = world_size

    def _on_step(self) -> bool:
        self.pbar.update(self.training_env.num_envs * self.world_size)
        return True


def quiet_logger() -> Logger:
    """:return: A logger without outputs, for the processes other than rank 0."""
    return Logger(folder=None, output_formats=[])


def train_iteration(model: "MLSH", master_buffers: list[RolloutBuffer], joint_envs: np.ndarray) -> None:
    """
    The updates of one iteration on this process: its masters (averaged within their groups) and the shared
    sub-policies (averaged over all processes), with the same number of collectives on every process.

    :param model: The distributed MLSH model.
    :param master_buffers: This process's master buffer of each local group.
    :param joint_envs: This process's envs whose group is in its joint phase.
    """
    context: DistributedContext = model._dist
    sub = model.subpolicy_learner
    joint_samples = len(joint_envs) * model.n_steps
    needed = math.ceil(joint_samples / sub.batch_size)
    sizes = {group.index: buffer.buffer_size for group, buffer in zip(model.trainer.groups, master_buffers)}
    n_subpolicy_minibatches, largest_master = context.agree_on_sizes(needed, sizes)
    for group, buffer in zip(model.trainer.groups, master_buffers):
        master = group.master
        master.rollout_buffer = buffer
        if context.ranks_per_group > 1:
            averager: MasterGradientAverager = master._mlsh_averager  # type: ignore[attr-defined]
            n_minibatches = math.ceil(largest_master[group.index] / master.batch_size)
            master.rollout_buffer = SyncedMinibatches(buffer, n_minibatches, averager.set_weight)  # type: ignore[assignment]
        master._current_progress_remaining = model._current_progress_remaining
        master.train()
        master.rollout_buffer = buffer
    if n_subpolicy_minibatches == 0:
        return
    # Imported here: mlsh imports this module lazily, so a module-level import would be circular.

    full_buffer = sub.rollout_buffer
    has_data = len(joint_envs) > 0
    buffer = select_envs(full_buffer, joint_envs) if has_data and len(joint_envs) < model.n_envs else full_buffer
    optimizer: DistributedSubPolicyOptimizer = sub.policy.optimizer  # type: ignore[assignment]
    sub.rollout_buffer = SyncedMinibatches(buffer, n_subpolicy_minibatches, optimizer.set_sample_weight, has_data)  # type: ignore[assignment]
    sub._current_progress_remaining = model._current_progress_remaining
    logger = sub.logger
    if not has_data:
        # Its minibatches are stand-ins: keep their losses out of the logs.
        sub.set_logger(quiet_logger())
    try:
        sub.train()
    finally:
        sub.rollout_buffer = full_buffer
        sub.set_logger(logger)


def _to_cpu(tree: Any) -> Any:
    if th.is_tensor(tree):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {key: _to_cpu(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_cpu(value) for value in tree)
    return tree


def gather_checkpoint(model: "MLSH", data: dict[str, Any], params: dict[str, Any]) -> tuple[dict, dict] | None:
    """
    Collect on rank 0 what a complete model file holds: every group's master, optimizer, schedule and task generator
    (from the group's first rank), and every process's random streams. A collective call.

    :param model: The distributed model.
    :param data: This process's save data (rank 0's is completed).
    :param params: This process's parameters (sub-policies and its own groups' masters).
    :return: The complete data and parameters on rank 0; None on the other processes.
    """
    context: DistributedContext = model._dist
    schedule = model.trainer.state_dict()["groups"]
    groups = {}
    for group, saved in zip(model.trainer.groups, schedule):
        if context.leads(group.index):
            groups[group.index] = {
                "schedule": {key: value for key, value in saved.items() if key not in ("index", "rng")},
                "rng": saved["rng"],
                "n_updates": group.master._n_updates,
                "master": _to_cpu(params[f"master{group.index}"]),
                "master_optimizer": _to_cpu(params[f"master{group.index}_optimizer"]),
            }
    rank_state = {
        "collector_rng": model.collector.rng.bit_generator.state,
        "torch_rng_state": th.get_rng_state().numpy(),
        "numpy_rng_state": np.random.get_state(),
        "python_rng_state": random.getstate(),
    }
    gathered = context.gather_objects({"groups": groups, "rank_state": rank_state})
    if gathered is None:
        return None
    for share in gathered:
        groups.update(share["groups"])
    order = range(context.n_groups)
    params = {key: value for key, value in params.items() if not key.startswith("master")}
    for index in order:
        params[f"master{index}"] = groups[index]["master"]
        params[f"master{index}_optimizer"] = groups[index]["master_optimizer"]
    data = dict(data)
    data["trainer"] = {
        # A single process continues with one task generator: group 0's.
        "rng": groups[0]["rng"],
        "groups": [groups[index]["schedule"] for index in order],
        "group_rngs": [groups[index]["rng"] for index in order],
    }
    data["learner_updates"] = [model.subpolicy_learner._n_updates, *[groups[index]["n_updates"] for index in order]]
    # The file describes the whole run: all its envs, as one process would hold them.
    data["init_kwargs"] = {**data["init_kwargs"], "n_envs": model.n_envs * context.world_size}
    data["distributed"] = {
        "world_size": context.world_size,
        "n_envs_per_process": model.n_envs,
        "rank_states": [share["rank_state"] for share in gathered],
    }
    return data, params


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
