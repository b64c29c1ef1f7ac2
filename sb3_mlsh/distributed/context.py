"""
Where a process stands in a run, as one interface with two implementations: :class:`LocalContext` (one process: every
method is the identity or does nothing) and its subclass :class:`~sb3_mlsh.distributed.torch_context.TorchContext`
(processes launched by ``torchrun``). MLSH calls the same methods in both cases, so one update path serves both.
"""

from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import MaybeCallback

if TYPE_CHECKING:  # the bank belongs to MLSH, which builds on this package
    from sb3_mlsh.mlsh.bank import SubPolicyBankPolicy


__all__ = ["LocalContext", "RandomStreams"]

#: A process's random streams, as a model file stores them: ``collector_rng`` (a NumPy bit generator state),
#: ``torch_rng_state``, ``numpy_rng_state`` and ``python_rng_state``.
RandomStreams = dict[str, Any]


class LocalContext:
    """
    This process's share of the run: its rank, its task groups, and how its learners meet the other processes'. This
    class is the single-process implementation, in which the process hosts every task group and nothing is exchanged.

    :param n_groups: Task groups G over the whole run.
    :param device: The torch device of this process.
    """

    #: Each task group draws its tasks from a generator of its own (True), or all groups from one (False).
    per_group_task_draws = False
    #: Whether this is a ``torch.distributed`` run (a save between iterations of a single process also holds the envs'
    #: episodes in progress, so that a resume continues them exactly).
    distributed = False

    def __init__(self, n_groups: int, device: th.device | str = "auto") -> None:
        self.n_groups = n_groups
        self.device = device
        self.rank = 0
        self.world_size = 1
        self.ranks_per_group = 1
        #: The global indices of the task groups this process runs.
        self.local_groups = list(range(n_groups))

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and saves."""
        return self.rank == 0

    # ------------------------------------------------------------------------------------------------------ seeding
    def local_seed(self, seed: int | None, n_envs: int) -> int | None:
        """
        :param seed: The run's seed.
        :param n_envs: Envs per process.
        :return: This process's seed (its envs and action sampling).
        """
        return seed

    def shared_seed(self, seed: int | None) -> int | None:
        """
        :param seed: The seed given to this process.
        :return: The run's seed, the same on every process.
        """
        return seed

    def check_same_settings(self, settings: dict[str, Any]) -> None:
        """:param settings: Settings that every process must share."""

    def agree(self, seed: int | None, **settings: Any) -> int | None:
        """
        :param seed: The seed given to this process.
        :param settings: Settings that every process must share (e.g. ``n_envs`` and ``n_steps``).
        :return: The run's seed, the same on every process.
        :raises ValueError: when a process disagrees on a setting.
        """
        seed = self.shared_seed(seed)
        self.check_same_settings({**settings, "seed": seed})
        return seed

    # ----------------------------------------------------------------------------------------------------- learners
    def master_kwargs(self, kwargs: dict[str, Any], group_index: int) -> dict[str, Any]:
        """
        :param kwargs: PPO arguments of the master of task group ``group_index``.
        :return: The arguments to build it with here.
        """
        return kwargs

    def share_master(self, group_index: int, master: PPO) -> None:
        """
        Make a new or reset master identical on the ranks of its task group, and route its steps through their average.

        :param group_index: Global index of the task group.
        :param master: Its master.
        """

    def share_subpolicies(self, policy: "SubPolicyBankPolicy") -> None:
        """:param policy: The sub-policy bank, made identical on every process and its steps averaged over them."""

    # ---------------------------------------------------------------------------------------------------- iteration
    def agree_on_sizes(self, subpolicy_minibatches: int, master_sizes: dict[int, int]) -> tuple[int, dict[int, int]]:
        """
        :param subpolicy_minibatches: Sub-policy minibatches this process needs (0: no joint-phase data).
        :param master_sizes: Macro-steps in this process's master buffer of each local group.
        :return: What every process uses: the largest of each over the processes.
        """
        return subpolicy_minibatches, master_sizes

    def master_minibatches(self, buffer: RolloutBuffer, group_index: int, largest_size: int, batch_size: int) -> RolloutBuffer:
        """
        :param buffer: The master's filled buffer.
        :param group_index: Global index of its task group.
        :param largest_size: The largest buffer of the group's ranks.
        :param batch_size: The master's minibatch size.
        :return: What the master trains on (the buffer itself, or minibatches in step with the group's other ranks).
        """
        return buffer

    def subpolicy_minibatches(self, buffer: RolloutBuffer, n_minibatches: int, has_data: bool) -> RolloutBuffer:
        """
        :param buffer: The joint-phase part of the sub-policies' buffer.
        :param n_minibatches: Minibatches per epoch, agreed over the processes.
        :param has_data: Whether this process has joint-phase data.
        :return: What the sub-policies train on.
        """
        return buffer

    def sum_statistics(self, values: np.ndarray) -> np.ndarray:
        """
        :param values: Numbers to add up over all processes (e.g. episode returns and counts).
        :return: Their sums.
        """
        return values

    # ------------------------------------------------------------------------------------------------- learn, save
    def learn_callback(self, callback: MaybeCallback, progress_bar: bool) -> tuple[MaybeCallback, bool]:
        """
        :param callback: The user's callback(s).
        :param progress_bar: Whether to show a progress bar.
        :return: The callbacks and progress-bar flag that SB3's ``_init_callback`` gets.
        """
        return callback, progress_bar

    def logger(self) -> Logger | None:
        """:return: The logger this process must use instead of the configured one (None: the configured one)."""
        return None

    def gather_checkpoint(
        self, data: dict[str, Any], params: dict[str, Any], master_updates: dict[int, int], n_envs: int
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """
        A collective call in a distributed run: collect what a complete model file holds.

        :param data: This process's save data.
        :param params: This process's parameters (sub-policies and its groups' masters).
        :param master_updates: Gradient steps of each local group's master.
        :param n_envs: Envs per process.
        :return: The complete data and parameters where the file is written; None elsewhere.
        """
        return data, params

    def saved_random_streams(self, data: dict[str, Any], torch_rng_state: th.Tensor | None) -> RandomStreams | None:
        """
        :param data: A loaded model file's data.
        :param torch_rng_state: The torch generator state stored in it.
        :return: The random streams this process continues with (None: keep its own, seeded ones).
        """
        return {
            "collector_rng": data.get("collector_rng"),
            "torch_rng_state": torch_rng_state,
            "numpy_rng_state": data.get("numpy_rng_state"),
            "python_rng_state": data.get("python_rng_state"),
        }
