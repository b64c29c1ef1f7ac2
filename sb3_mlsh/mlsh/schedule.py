"""The schedule of MLSH's meta-loop: task groups, their tasks, masters and warmup/joint phases."""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv

from sb3_mlsh.common.tasks import TaskProtocolError, TaskSampler

__all__ = ["JOINT", "WARMUP", "GroupLayout", "MLSHMetaTrainer", "Phase", "TaskGroup", "TaskSchedule"]


class Phase(str, Enum):
    """A task group's phase in an iteration of the meta-loop."""

    #: Only the group's master learns (the paper's W warmup iterations of a fresh master on a new task).
    WARMUP = "warmup"
    #: The group's data also trains the shared sub-policies (the paper's U joint iterations).
    JOINT = "joint"


WARMUP = Phase.WARMUP
JOINT = Phase.JOINT


class GroupLayout(Protocol):
    """Which task groups this process runs (the run's ``torch.distributed`` context, or a single process's)."""

    #: Task groups G of the whole run.
    n_groups: int
    #: The run-wide index of each group this process runs.
    local_groups: list[int]
    #: Each group draws its tasks from a generator of its own, seeded from (seed, group index), so that the processes
    #: of a group draw the same tasks; False: one generator for all groups.
    per_group_task_draws: bool

    def share_master(self, group_index: int, master: PPO) -> None:
        """Make a new or reset master identical on the processes of its group."""


@dataclass
class TaskGroup:
    """
    A group of envs that share a task and a master.

    :param index: Group index within the whole run (in a distributed run, a process hosts some of the groups).
    :param env_indices: Indices of its envs in this process's VecEnv.
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
    def phase(self) -> Phase:
        """:attr:`Phase.WARMUP` (only the master learns) or :attr:`Phase.JOINT` (the sub-policies learn from it too)."""
        return WARMUP if self.iteration < self.warmup_length else JOINT


class TaskSchedule:
    """
    Schedules MLSH's meta-loop. Each task group runs exactly ``warmup_iterations`` iterations in which only its
    master learns, then exactly ``joint_iterations`` in which its data also trains the shared sub-policies; then
    it draws a new task and its master is re-initialised.

    With several groups their phases are staggered so that sub-policy updates spread evenly over iterations:
    the first task of group g gets ``round(g * (W + U) / G)`` extra warmup iterations (every later task has
    exactly W then U).

    :param task_sampler: Draws the tasks.
    :param env: The VecEnv whose envs the groups split among themselves (contiguous blocks).
    :param masters: One master learner per group of this process.
    :param warmup_iterations: W.
    :param joint_iterations: U.
    :param stagger: Stagger the groups' phases.
    :param seed: Seed of the task draws.
    :param layout: Which groups of the run the masters belong to, in a distributed run (None: this process runs one
        group per master, all of the run's); a new or reset master is then shared with the group's other processes.
    :param reset_master: Re-initialises a master when its group starts a new task; None (MLSH's choice): the caller
        does it, as ``MLSH.train`` does.
    """

    def __init__(
        self,
        task_sampler: TaskSampler,
        env: VecEnv,
        masters: list[PPO],
        warmup_iterations: int,
        joint_iterations: int,
        stagger: bool = True,
        seed: int | None = None,
        layout: GroupLayout | None = None,
        reset_master: Callable[[PPO], None] | None = None,
    ) -> None:
        self.task_sampler = task_sampler
        self.env = env
        self.reset_master = reset_master
        self.warmup_iterations = warmup_iterations
        self.joint_iterations = joint_iterations
        self.layout = layout
        self.per_group_draws = layout is not None and layout.per_group_task_draws
        self.fixed_task: Any = None
        self.fixed_phase: Phase | None = None
        indices = list(range(len(masters))) if layout is None else layout.local_groups
        self.n_run_groups = len(masters) if layout is None else layout.n_groups
        blocks = np.array_split(np.arange(env.num_envs), len(masters))
        period = warmup_iterations + joint_iterations
        self.groups = [
            TaskGroup(
                index=index,
                env_indices=block,
                master=master,
                warmup_length=warmup_iterations + (round(index * period / self.n_run_groups) if stagger else 0),
            )
            for index, block, master in zip(indices, blocks, masters)
        ]
        #: The position in :attr:`groups` of each env's group.
        self.group_of_env = np.zeros(env.num_envs, dtype=np.int64)
        for position, block in enumerate(blocks):
            self.group_of_env[block] = position
        self.seed(seed)
        for group in self.groups:
            self._share_master(group)

    def seed(self, seed: int | None) -> None:
        """
        :param seed: Seed of the task draws (per group: from (seed, group index)).
        """
        if self.per_group_draws and seed is None:
            raise ValueError("Per-group task draws need a seed shared by the processes of the run.")
        self._seed = seed
        self.rng = np.random.default_rng(seed)
        if self.per_group_draws:
            assert seed is not None
            self.rngs = {group.index: np.random.default_rng([seed, group.index]) for group in self.groups}
        else:
            self.rngs = {group.index: self.rng for group in self.groups}

    @property
    def n_groups(self) -> int:
        """Number of task groups of this process."""
        return len(self.groups)

    def fix_task(self, task: Any, phase: Phase | str | None = WARMUP) -> None:
        """
        Transfer mode: every group keeps ``task`` forever, in the given phase (``"warmup"``: frozen sub-policies).

        :param task: The task (None: leave transfer mode and draw tasks again).
        :param phase: ``"warmup"``, ``"joint"``, or None: each group's own schedule (W warmup iterations, then joint).
        """
        self.fixed_task = task
        self.fixed_phase = None if phase is None else Phase(phase)

    def phase(self, group: TaskGroup) -> Phase:
        """
        :param group: A task group.
        :return: Its phase this iteration (the fixed phase in transfer mode).
        """
        return self.fixed_phase if self.fixed_phase is not None else group.phase

    def joint_env_indices(self) -> np.ndarray:
        """:return: Envs whose group is in its joint phase (their data trains the sub-policies)."""
        joint = [group.env_indices for group in self.groups if self.phase(group) == JOINT]
        return np.concatenate(joint) if joint else np.zeros(0, dtype=np.int64)

    def draw_task(self, group: TaskGroup) -> Any:
        """
        :param group: A task group.
        :return: Its next task (the fixed task in transfer mode).
        """
        if self.fixed_task is not None:
            return self.fixed_task
        return self.task_sampler.sample(1, rng=self.rngs[group.index])[0]

    def start_task(self, group: TaskGroup, reset_envs: bool) -> list[Any] | None:
        """
        Give ``group`` a new task; from its second task on, its master (re-initialised by the caller) is shared with the
        group's other processes and the warmup has its regular length W.

        :param group: The group.
        :param reset_envs: Reset its envs now (otherwise the task applies from their next reset).
        :return: The observations after the reset, one per env of the group, or None.
        """
        if group.tasks_started > 0:
            if self.reset_master is not None:
                self.reset_master(group.master)
            self._share_master(group)
            group.warmup_length = self.warmup_iterations
        group.task = self.draw_task(group)
        group.iteration = 0
        group.tasks_started += 1
        indices = group.env_indices.tolist()
        self.env.env_method("set_task", group.task, indices=indices)
        self._check_spaces(group.task, indices)
        if not reset_envs:
            return None
        return [obs for obs, _info in self.env.env_method("reset", indices=indices)]

    def _share_master(self, group: TaskGroup) -> None:
        if self.layout is not None:
            self.layout.share_master(group.index, group.master)

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

    def end_iteration(self) -> list[TaskGroup]:
        """
        Count one iteration for every group.

        :return: The groups whose task is over (W + U iterations done), which must start a new one.
        """
        for group in self.groups:
            group.iteration += 1
        if self.fixed_task is not None:
            return []
        return [group for group in self.groups if group.iteration >= group.warmup_length + self.joint_iterations]

    def state_dict(self) -> dict[str, Any]:
        """:return: Everything needed to resume the schedule (masters' parameters excluded)."""
        return {
            "rng": self.rngs[self.groups[0].index].bit_generator.state,
            "groups": [
                {
                    "index": group.index,
                    "task": group.task,
                    "iteration": group.iteration,
                    "warmup_length": group.warmup_length,
                    "tasks_started": group.tasks_started,
                    "rng": self.rngs[group.index].bit_generator.state,
                }
                for group in self.groups
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """
        :param state: A whole run's schedule (all G groups, as :meth:`state_dict` or a distributed save writes it);
            this process takes its groups.
        """
        if len(state["groups"]) != self.n_run_groups:
            raise ValueError(f"Saved schedule has {len(state['groups'])} task groups, this model has {self.n_run_groups}.")
        for group in self.groups:
            saved = state["groups"][group.index]
            group.task = saved["task"]
            group.iteration = saved["iteration"]
            group.warmup_length = saved["warmup_length"]
            group.tasks_started = saved["tasks_started"]
        if not self.per_group_draws:
            self.rng.bit_generator.state = state["rng"]
            return
        group_rngs = state.get("group_rngs")
        for group in self.groups:
            if group_rngs is not None:
                self.rngs[group.index].bit_generator.state = group_rngs[group.index]
            else:
                # Saved by a single process (one generator for all groups): continue with fresh, distinct draws.
                assert self._seed is not None  # per-group draws have a seed
                self.rngs[group.index] = np.random.default_rng([self._seed, group.index, group.tasks_started])


class MLSHMetaTrainer(TaskSchedule):
    """
    Deprecated name of :class:`TaskSchedule`, which schedules tasks and phases and trains nothing itself. Takes the old
    arguments, ``reset_master`` fourth.
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
        layout: GroupLayout | None = None,
    ) -> None:
        warnings.warn("MLSHMetaTrainer is deprecated: use TaskSchedule.", DeprecationWarning, stacklevel=2)
        super().__init__(task_sampler, env, masters, warmup_iterations, joint_iterations, stagger, seed, layout, reset_master)
