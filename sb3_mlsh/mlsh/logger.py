"""MLSH's logs: the two learners' records under their own prefixes, and a summary of every iteration."""

from collections.abc import Callable
from typing import Any

import numpy as np
from stable_baselines3.common.logger import Logger

from sb3_mlsh.mlsh.buffers import RolloutResult
from sb3_mlsh.mlsh.schedule import JOINT, Phase, TaskGroup

__all__ = ["PrefixedLogger", "group_summary", "iteration_summary", "record_iteration"]


class PrefixedLogger(Logger):
    """
    Forwards an inner learner's ``train/*`` records to the MLSH logger under another prefix (``train/master/``,
    ``train/sub/``), averaged over the task groups' masters.

    :param parent: MLSH's logger.
    :param prefix: Replaces ``train/``.
    """

    def __init__(self, parent: Logger, prefix: str) -> None:
        super().__init__(folder=parent.get_dir(), output_formats=[])
        self.parent = parent
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return self.prefix + key[len("train/") :] if key.startswith("train/") else key

    def record(self, key: str, value: Any, exclude: str | tuple[str, ...] | None = None) -> None:
        if isinstance(value, (int, float, np.integer, np.floating)):
            self.parent.record_mean(self._key(key), float(value), exclude)
        else:
            self.parent.record(self._key(key), value, exclude)

    def record_mean(self, key: str, value: Any, exclude: str | tuple[str, ...] | None = None) -> None:
        self.parent.record_mean(self._key(key), value, exclude)

    def dump(self, step: int = 0) -> None:
        """The MLSH logger dumps."""


def iteration_summary(
    iteration: int,
    timesteps: int,
    rollout: RolloutResult,
    joint_groups: float,
    sum_over_processes: Callable[[np.ndarray], np.ndarray],
    with_diversity: bool,
) -> dict[str, Any]:
    """
    :param iteration: The iteration.
    :param timesteps: Primitive steps after it.
    :param rollout: What this process collected in it.
    :param joint_groups: This process's share of the task groups in their joint phase.
    :param sum_over_processes: Adds numbers up over the processes of the run (the statistics are the run's).
    :param with_diversity: Add the mean skill-diversity reward.
    :return: A row of ``MLSH.iteration_log``: mean episode return, episodes, joint groups and each sub-policy's share of
        the steps (and the mean diversity reward with a skill discriminator).
    """
    totals = sum_over_processes(
        np.array(
            [
                float(np.sum(rollout.episode_returns)),
                len(rollout.episode_returns),
                joint_groups,
                *rollout.subpolicy_counts,
            ],
            dtype=np.float64,
        )
    )
    return_sum, episodes, counts = float(totals[0]), round(totals[1]), totals[3:]
    entry = {
        "iteration": iteration,
        "timesteps": timesteps,
        "episode_return_mean": return_sum / episodes if episodes else float("nan"),
        "episodes": episodes,
        "joint_groups": round(totals[2]),
        "subpolicy_usage": (counts / max(counts.sum(), 1)).tolist(),
    }
    if with_diversity:
        # Per step, before the coefficient, and scored before the discriminator trained on this rollout: how well it
        # tells the skills apart on data it has not seen (0: not at all; log K: always sure and right).
        entry["diversity_reward_mean"] = rollout.diversity_reward_sum / max(int(rollout.subpolicy_counts.sum()), 1)
    return entry


def group_summary(
    rollout: RolloutResult,
    groups: list[TaskGroup],
    phases: list[Phase],
    n_run_groups: int,
    n_subpolicies: int,
    ranks_per_group: int,
    sum_over_processes: Callable[[np.ndarray], np.ndarray],
) -> dict[str, list]:
    """
    Per task group of the run: what its master chose, in which phase, on its how-manieth task. With several groups the
    run-wide usage mixes tasks; these tell whether each master routes its own task to one skill (``master_choice.py``).

    :param rollout: What this process collected.
    :param groups: This process's task groups.
    :param phases: Their phases in this iteration.
    :param n_run_groups: Task groups of the whole run.
    :param n_subpolicies: Number of sub-policies K.
    :param ranks_per_group: Processes that share each group (each counts its part of the steps).
    :param sum_over_processes: Adds numbers up over the processes of the run.
    :return: ``group_usage`` (per group, each sub-policy's share of its steps), ``group_joint`` (1 in the joint phase) and
        ``group_tasks_started`` (tasks the group has started, the current one included), indexed by run-wide group.
    """
    counts = np.zeros((n_run_groups, n_subpolicies), dtype=np.float64)
    flags = np.zeros((2, n_run_groups), dtype=np.float64)
    for group, phase, log in zip(groups, phases, rollout.macro_steps):
        counts[group.index] = np.bincount(log.subpolicy, weights=log.length, minlength=n_subpolicies)
        flags[:, group.index] = (float(phase == JOINT) / ranks_per_group, group.tasks_started / ranks_per_group)
    totals = sum_over_processes(np.concatenate([counts.ravel(), flags.ravel()]))
    counts, (joint, started) = totals[: counts.size].reshape(counts.shape), totals[counts.size :].reshape(2, -1)
    return {
        "group_usage": (counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)).round(4).tolist(),
        "group_joint": [round(value) for value in joint],
        "group_tasks_started": [round(value) for value in started],
    }


def record_iteration(
    logger: Logger,
    entry: dict[str, Any],
    groups: list[TaskGroup],
    rollout: RolloutResult | None,
    discriminator_stats: dict[str, float] | None,
) -> None:
    """
    Record MLSH's own keys for the next dump: the schedule (``mlsh/*``), each sub-policy's share of the steps, and the
    skill discriminator's statistics.

    :param logger: MLSH's logger.
    :param entry: The iteration's row of ``MLSH.iteration_log``.
    :param groups: This process's task groups.
    :param rollout: The iteration's rollout.
    :param discriminator_stats: The skill discriminator's last training statistics (None: no discriminator).
    """
    if entry["episodes"]:
        logger.record("rollout/iteration_ep_rew_mean", entry["episode_return_mean"])
    logger.record("mlsh/tasks_started", sum(group.tasks_started for group in groups))
    logger.record("mlsh/joint_groups", entry["joint_groups"])
    logger.record("mlsh/task_iteration", groups[0].iteration)
    if rollout is not None:
        logger.record("mlsh/macro_step_length", float(np.concatenate([log.length for log in rollout.macro_steps]).mean()))
    for index, fraction in enumerate(entry["subpolicy_usage"]):
        logger.record(f"mlsh/subpolicy_usage_{index}", float(fraction))
    if discriminator_stats is not None:
        logger.record("rollout/diversity_reward_mean", entry["diversity_reward_mean"])
        for key, value in discriminator_stats.items():
            logger.record(f"train/diversity/{key}", value)
