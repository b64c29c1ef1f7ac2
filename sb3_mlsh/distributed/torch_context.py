"""
Multi-process MLSH with ``torch.distributed``: the task groups spread over processes launched by ``torchrun``.

Layout, for P processes and G task groups:

- P % G == 0: each group spans P / G consecutive ranks, which share its task and its master; the master's gradients
  are averaged within the group (weighted by each rank's minibatch size) and clipped after averaging.
- G % P == 0: each rank hosts G / P whole groups, as a single process does.

The sub-policies are shared by all ranks: per sub-policy k, gradients are averaged over all ranks weighted by the
number of joint-phase samples of k in each rank's minibatch (a rank in warmup, or without a sample of k, weighs 0),
in one all-reduce per minibatch. Every collective runs the same number of times on every rank: the number of
minibatches per epoch is agreed on before each update.
"""

import math
import os
import random
import secrets
import time
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch as th
import torch.distributed as dist
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback, ProgressBarCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import MaybeCallback

from sb3_mlsh.distributed.context import LocalContext, RandomStreams
from sb3_mlsh.distributed.gradients import MasterGradientAverager, SubPolicyGradientAverager, SyncedMinibatches
from sb3_mlsh.distributed.launch import check_layout, collective_timeout, init_process_group

if TYPE_CHECKING:  # the bank belongs to MLSH, which builds on this package
    from sb3_mlsh.mlsh.bank import SubPolicyBankPolicy, SubPolicyOptimizer

__all__ = ["ScaledProgressBar", "TorchContext"]


class TorchContext(LocalContext):
    """
    Where this process stands in the run: its rank, its task groups, and the process groups it talks through.

    All processes must build it at the same point (it creates process groups, a collective call).

    :param n_groups: Task groups G over the whole run.
    :param device: The requested torch device: ``"auto"`` or ``"cuda"`` become ``cuda:LOCAL_RANK`` when every process
        has a GPU, the CPU otherwise.
    """

    per_group_task_draws = True
    distributed = True

    def __init__(self, n_groups: int, device: th.device | str = "auto") -> None:
        if not dist.is_initialized():
            init_process_group()
        super().__init__(n_groups, device)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        check_layout(n_groups, self.world_size)
        # Small CPU messages (sizes, statistics, checkpoints) go through gloo even when the default group is NCCL.
        timeout = collective_timeout()
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
        self.subpolicy_averager = SubPolicyGradientAverager(
            lambda message: self._all_reduce(message, "sub", self.tensor_group)
        )
        self.master_averagers: dict[int, MasterGradientAverager] = {}

    # --------------------------------------------------------------------------------------------------------- layout
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

    def local_seed(self, seed: int | None, n_envs: int) -> int | None:
        """
        :param seed: The run's seed.
        :param n_envs: Envs per process.
        :return: This process's seed: envs are seeded as the envs of one process with ``n_envs * P`` envs would be,
            and each process samples actions from its own stream.
        """
        return None if seed is None else seed + self.rank * n_envs

    def shared_seed(self, seed: int | None) -> int | None:
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

    def master_kwargs(self, kwargs: dict[str, Any], group_index: int) -> dict[str, Any]:
        """A master shared by several ranks clips its gradients after they are averaged, not before (see
        :class:`~sb3_mlsh.distributed.gradients.MasterGradientAverager`)."""
        if self.ranks_per_group == 1:
            return kwargs
        process_group = self.group_process_groups[group_index]
        self.master_averagers[group_index] = MasterGradientAverager(
            lambda message: self._all_reduce(message, "master", process_group), float(kwargs.get("max_grad_norm", 0.5))
        )
        return {**kwargs, "max_grad_norm": float("inf")}

    def share_master(self, group_index: int, master: PPO) -> None:
        if self.ranks_per_group == 1:
            return
        leader = self.ranks_of_group(group_index)[0]
        self.broadcast_parameters(list(master.policy.parameters()), src=leader, group=self.group_process_groups[group_index])
        self.master_averagers[group_index].attach(master.policy.optimizer)

    def share_subpolicies(self, policy: "SubPolicyBankPolicy") -> None:
        self.broadcast_parameters(list(policy.parameters()), src=0)
        cast("SubPolicyOptimizer", policy.optimizer).reduce_gradients = self.subpolicy_averager

    # ------------------------------------------------------------------------------------------------------ iteration
    def agree_on_sizes(self, subpolicy_minibatches: int, master_sizes: dict[int, int]) -> tuple[int, dict[int, int]]:
        """One collective per iteration: the largest number of sub-policy minibatches any process needs, and the largest
        master buffer of each task group."""
        sizes = th.zeros(1 + self.n_groups, dtype=th.int64)
        sizes[0] = subpolicy_minibatches
        for index, size in master_sizes.items():
            sizes[1 + index] = size
        self._all_reduce(sizes, "sync", self.cpu_group, op=dist.ReduceOp.MAX)
        return int(sizes[0]), {index: int(sizes[1 + index]) for index in master_sizes}

    def master_minibatches(self, buffer: RolloutBuffer, group_index: int, largest_size: int, batch_size: int) -> RolloutBuffer:
        if self.ranks_per_group == 1:
            return buffer
        n_minibatches = math.ceil(largest_size / batch_size)
        synced = SyncedMinibatches(buffer, n_minibatches, self.master_averagers[group_index].set_weight)
        return cast(RolloutBuffer, synced)

    def subpolicy_minibatches(self, buffer: RolloutBuffer, n_minibatches: int, has_data: bool) -> RolloutBuffer:
        return cast(RolloutBuffer, SyncedMinibatches(buffer, n_minibatches, self.subpolicy_averager.set_weight, has_data))

    def sum_statistics(self, values: np.ndarray) -> np.ndarray:
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

    # ------------------------------------------------------------------------------------------------- learn, save
    def learn_callback(self, callback: MaybeCallback, progress_bar: bool) -> tuple[MaybeCallback, bool]:
        """One progress bar, on rank 0, counting the steps of all processes."""
        if not (progress_bar and self.is_main):
            return callback, False
        callbacks = callback if isinstance(callback, list) else [callback]
        converted = [c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in callbacks]
        return CallbackList([*converted, ScaledProgressBar(self.world_size)]), False

    def logger(self) -> Logger | None:
        """Only rank 0 logs: the others get a logger without outputs."""
        return None if self.is_main else Logger(folder=None, output_formats=[])

    def gather_checkpoint(
        self, data: dict[str, Any], params: dict[str, Any], master_updates: dict[int, int], n_envs: int
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """
        Collect on rank 0 every group's master, optimizer, schedule and task generator (from the group's first rank)
        and every process's random streams; the file then describes the whole run, as one process holding all its envs.
        """
        groups = {}
        for saved in data["trainer"]["groups"]:
            index = saved["index"]
            if self.leads(index):
                groups[index] = {
                    "schedule": {key: value for key, value in saved.items() if key not in ("index", "rng")},
                    "rng": saved["rng"],
                    "n_updates": master_updates[index],
                    "master": _to_cpu(params[f"master{index}"]),
                    "master_optimizer": _to_cpu(params[f"master{index}_optimizer"]),
                }
        rank_state = {
            "collector_rng": data["collector_rng"],
            "torch_rng_state": th.get_rng_state().numpy(),
            "numpy_rng_state": np.random.get_state(),
            "python_rng_state": random.getstate(),
        }
        gathered = self.gather_objects({"groups": groups, "rank_state": rank_state})
        if gathered is None:
            return None
        for share in gathered:
            groups.update(share["groups"])
        order = range(self.n_groups)
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
        data["learner_updates"] = [data["learner_updates"][0], *[groups[index]["n_updates"] for index in order]]
        data["init_kwargs"] = {**data["init_kwargs"], "n_envs": n_envs * self.world_size}
        data["distributed"] = {
            "world_size": self.world_size,
            "n_envs_per_process": n_envs,
            "rank_states": [share["rank_state"] for share in gathered],
        }
        return data, params

    def saved_random_streams(self, data: dict[str, Any], torch_rng_state: th.Tensor | None) -> RandomStreams | None:
        """With as many processes as the saved run, each continues its own streams; otherwise its own, seeded ones."""
        rank_states = (data.get("distributed") or {}).get("rank_states")
        if rank_states is None or len(rank_states) != self.world_size:
            return None
        state = rank_states[self.rank]
        return {**state, "torch_rng_state": th.as_tensor(state["torch_rng_state"])}


def _to_cpu(tree: Any) -> Any:
    if th.is_tensor(tree):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {key: _to_cpu(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_cpu(value) for value in tree)
    return tree


class ScaledProgressBar(ProgressBarCallback):
    """A progress bar that counts the steps of all processes (they run in lockstep) on the one that shows it."""

    def __init__(self, world_size: int) -> None:
        super().__init__()
        self.world_size = world_size

    def _on_step(self) -> bool:
        self.pbar.update(self.training_env.num_envs * self.world_size)
        return True
