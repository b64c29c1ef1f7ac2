"""The MLSH meta-loop: task groups, their tasks, masters and warmup/joint phases."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv

from sb3_mlsh.tasks import TaskProtocolError, TaskSampler

__all__ = ["JOINT", "WARMUP", "MLSHMetaTrainer", "TaskGroup"]

WARMUP = "warmup"
JOINT = "joint"


@dataclass
class TaskGroup:
    """
    A group of envs that share a task and a master.

    :param index: Group index.
    :param env_indices: Indices of its envs in the VecEnv.
    :param master: Its master learner.
    :param task: Its current task.
    :param iteration: Iterations done on the current task.
    :param warmup_length: Warmup iterations of the current task.
    :param tasks_started: Number of tasks this group has started.
    """

    index: int
    env_indices: np.ndarray
    master: PPO
    task: Any = None
    iteration: int = 0
    warmup_length: int = 0
    tasks_started: int = 0

    @property
    def phase(self) -> str:
        """``"warmup"`` (only the master learns) or ``"joint"`` (the sub-policies learn from this group too)."""
        return WARMUP if self.iteration < self.warmup_length else JOINT


class MLSHMetaTrainer:
    """
    Schedules MLSH's meta-loop. Each task group runs exactly ``warmup_iterations`` iterations in which only its
    master learns, then exactly ``joint_iterations`` in which its data also trains the shared sub-policies; then
    it draws a new task and its master is re-initialised.

    With several groups their phases are staggered so that sub-policy updates spread evenly over iterations:
    the first task of group g gets ``round(g * (W + U) / G)`` extra warmup iterations (every later task has
    exactly W then U).

    :param task_sampler: Draws the tasks.
    :param env: The VecEnv whose envs the groups split among themselves (contiguous blocks).
    :param masters: One master learner per group.
    :param reset_master: Re-initialises a master's parameters and optimizer.
    :param warmup_iterations: W.
    :param joint_iterations: U.
    :param stagger: Stagger the groups' phases.
    :param seed: Seed of the task draws.
    """

    def __init__(
        self,
        task_sampler: TaskSampler,
        env: VecEnv,
        masters: list[PPO],
        reset_master: Callable[[PPO], None],
        warmup_iterations: int,
        joint_iterations: int,
        stagger: bool = True,
        seed: int | None = None,
    ) -> None:
        self.task_sampler = task_sampler
        self.env = env
        self.reset_master = reset_master
        self.warmup_iterations = warmup_iterations
        self.joint_iterations = joint_iterations
        self.rng = np.random.default_rng(seed)
        self.fixed_task: Any = None
        self.fixed_phase: str | None = None
        blocks = np.array_split(np.arange(env.num_envs), len(masters))
        period = warmup_iterations + joint_iterations
        self.groups = [
            TaskGroup(
                index=g,
                env_indices=block,
                master=master,
                warmup_length=warmup_iterations + (round(g * period / len(masters)) if stagger else 0),
            )
            for g, (block, master) in enumerate(zip(blocks, masters))
        ]

    @property
    def n_groups(self) -> int:
        """Number of task groups G."""
        return len(self.groups)

    def fix_task(self, task: Any, phase: str | None = WARMUP) -> None:
        """
        Transfer mode: every group keeps ``task`` forever, in the given phase (``"warmup"``: frozen sub-policies).

        :param task: The task.
        :param phase: ``"warmup"``, ``"joint"``, or None: each group's own schedule (W warmup iterations, then joint).
        """
        self.fixed_task = task
        self.fixed_phase = phase

    def phase(self, group: TaskGroup) -> str:
        """
        :param group: A task group.
        :return: Its phase this iteration (the fixed phase in transfer mode).
        """
        return self.fixed_phase if self.fixed_phase is not None else group.phase

    def joint_env_indices(self) -> np.ndarray:
        """:return: Envs whose group is in its joint phase (their data trains the sub-policies)."""
        joint = [group.env_indices for group in self.groups if self.phase(group) == JOINT]
        return np.concatenate(joint) if joint else np.zeros(0, dtype=np.int64)

    def _draw_task(self, group: TaskGroup) -> Any:
        return self.fixed_task if self.fixed_task is not None else self.task_sampler.sample(1, rng=self.rng)[0]

    def start_task(self, group: TaskGroup, reset_envs: bool) -> list[Any] | None:
        """
        Give ``group`` a new task and a fresh master.

        :param group: The group.
        :param reset_envs: Reset its envs now (otherwise the task applies from their next reset).
        :return: The observations after the reset, one per env of the group, or None.
        """
        if group.tasks_started > 0:
            self.reset_master(group.master)
            group.warmup_length = self.warmup_iterations
        group.task = self._draw_task(group)
        group.iteration = 0
        group.tasks_started += 1
        indices = group.env_indices.tolist()
        self.env.env_method("set_task", group.task, indices=indices)
        self._check_spaces(group.task, indices)
        if not reset_envs:
            return None
        return [obs for obs, _info in self.env.env_method("reset", indices=indices)]

    def _check_spaces(self, task: Any, indices: list[int]) -> None:
        """Refuse a task whose envs changed their spaces: the learners' networks are built for the first task's."""
        for name, expected in (("observation_space", self.env.observation_space), ("action_space", self.env.action_space)):
            for index, space in zip(indices, self.env.get_attr(name, indices=indices)):
                if space != expected:
                    raise TaskProtocolError(
                        f"Task {task!r} changed the {name} of env {index} to {space}; MLSH's networks take {expected}. "
                        "Every task of a family must share one observation and action space: fix set_task()."
                    )

    def start(self) -> None:
        """Give every group its first task (applied at the env reset that starts learning)."""
        for group in self.groups:
            if group.task is None:
                self.start_task(group, reset_envs=False)
            else:
                self.env.env_method("set_task", group.task, indices=group.env_indices.tolist())

    def end_iteration(self) -> list[tuple[TaskGroup, list[Any] | None]]:
        """
        Count one iteration for every group and move the groups whose task is over to a new one.

        :return: The groups that started a new task, with the observations of their freshly reset envs.
        """
        restarted = []
        for group in self.groups:
            group.iteration += 1
            if self.fixed_task is None and group.iteration >= group.warmup_length + self.joint_iterations:
                restarted.append((group, self.start_task(group, reset_envs=True)))
        return restarted

    def state_dict(self) -> dict[str, Any]:
        """:return: Everything needed to resume the schedule (masters' parameters excluded)."""
        return {
            "rng": self.rng.bit_generator.state,
            "groups": [
                {"task": g.task, "iteration": g.iteration, "warmup_length": g.warmup_length, "tasks_started": g.tasks_started}
                for g in self.groups
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """
        :param state: As returned by :meth:`state_dict`, for the same number of groups.
        """
        if len(state["groups"]) != len(self.groups):
            raise ValueError(f"Saved schedule has {len(state['groups'])} task groups, this model has {len(self.groups)}.")
        self.rng.bit_generator.state = state["rng"]
        for group, saved in zip(self.groups, state["groups"]):
            group.task = saved["task"]
            group.iteration = saved["iteration"]
            group.warmup_length = saved["warmup_length"]
            group.tasks_started = saved["tasks_started"]
