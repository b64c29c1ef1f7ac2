"""AntObstacleCourse: a sparse, far goal behind obstacles, for transfer of the Twowalk skills (Frans et al., 2018)."""

from typing import Any

import numpy as np

from mlsh_envs.mujoco_utils import AntNavigationEnv, check_split

__all__ = ["ANT_OBSTACLE_COURSES", "AntObstacleCourseEnv"]

#: Courses ``(blocks, goal)``: centres of the 3 x 3 x 2 m obstacles and the goal, in metres; the Ant starts at
#: the origin. Every goal lies in the +x/+y quadrant, reachable by legs along +x and +y (the two Twowalk
#: directions) that go round the obstacles placed across the straight line.
ANT_OBSTACLE_COURSES: tuple[tuple[tuple[tuple[float, float], ...], tuple[float, float]], ...] = (
    (((6.0, 6.0), (10.0, 10.0)), (16.0, 16.0)),  # 0: obstacles on the diagonal
    (((8.0, 2.0), (8.0, -1.0)), (20.0, 6.0)),  # 1: a wall across +x: go up first
    (((2.0, 8.0), (-1.0, 8.0)), (6.0, 20.0)),  # 2: a wall across +y: go right first
    (((6.0, 0.0), (6.0, 3.0), (12.0, 9.0), (12.0, 12.0)), (18.0, 12.0)),  # 3: two walls
    (((0.0, 7.0), (3.0, 7.0), (10.0, 12.0), (10.0, 15.0)), (14.0, 18.0)),  # 4 (held out)
    (((7.0, 0.0), (7.0, 3.0), (7.0, -3.0), (14.0, 14.0), (17.0, 14.0)), (20.0, 20.0)),  # 5 (held out)
)


class AntObstacleCourseEnv(AntNavigationEnv):
    """
    Gymnasium's Ant (``Ant-v5`` model and dynamics) must reach a far goal past obstacles. A task is a course
    index (:data:`ANT_OBSTACLE_COURSES`): where the obstacles stand and where the goal is. The goal is latent;
    a green non-colliding sphere marks it in renders. Sparse reward: 1 on every step the torso is within
    ``goal_radius`` (5.5 m) of the goal, else 0. No early termination; 2000 steps (registered ``TimeLimit``).
    The paper uses this family to transfer the AntTwowalk sub-policies (walk along +x, along +y), whose
    observation and action spaces it shares.

    The model holds a fixed pool of 5 obstacles, moved for each course as mocap bodies (unused ones
    are parked far away). Split: courses 0-3 train, 4-5 held out.

    Observation: Ant-v5's with the torso's x and y kept (107 numbers). Action: Ant-v5's (8 torques in [-1, 1]).

    The original code stood the Ant up again every 200 steps; ``restand_every=200`` does the same (off by default).

    :param goal_radius: Distance to the goal within which a step pays 1.
    :param render_mode: ``"rgb_array"`` (needs an offscreen GL backend, e.g. ``MUJOCO_GL=egl``), or ``None``.
    :param ant_kwargs: Passed on to :class:`~mlsh_envs.mujoco_utils.AntNavigationEnv` (``restand_every``) and
        :class:`gymnasium.envs.mujoco.ant_v5.AntEnv`.
    """

    TRAIN_COURSES = (0, 1, 2, 3)
    TEST_COURSES = (4, 5)

    def __init__(self, goal_radius: float = 5.5, render_mode: str | None = None, **ant_kwargs: Any):
        self.goal_radius = goal_radius
        self.task = 0
        self._next_task = 0
        n_blocks = max(len(blocks) for blocks, _ in ANT_OBSTACLE_COURSES)
        super().__init__(n_blocks=n_blocks, block_half_size=(1.5, 1.5, 1.0), render_mode=render_mode, **ant_kwargs)
        self._ezpickle_args = ()
        self._ezpickle_kwargs = {"goal_radius": goal_radius, "render_mode": render_mode, **ant_kwargs}
        self._apply_task()

    # Task protocol
    def sample_tasks(self, n: int, split: str | None = None) -> list[int]:
        """
        :param n: Number of tasks.
        :param split: ``"train"`` (courses 0-3), ``"test"`` (held-out courses 4-5) or ``None`` (all six).
        :return: ``n`` course indices drawn uniformly from the split.
        """
        check_split(split)
        every = tuple(range(len(ANT_OBSTACLE_COURSES)))
        courses = {None: every, "train": self.TRAIN_COURSES, "test": self.TEST_COURSES}[split]
        return [courses[int(index)] for index in self.np_random.integers(len(courses), size=n)]

    def set_task(self, task: int) -> None:
        """
        :param task: A course index in ``range(6)`` (see :data:`ANT_OBSTACLE_COURSES`), from the next reset on.
        """
        if not isinstance(task, (int, np.integer)) or isinstance(task, bool) or not 0 <= task < len(ANT_OBSTACLE_COURSES):
            raise ValueError(
                f"An AntObstacleCourse task is a course index in range({len(ANT_OBSTACLE_COURSES)}), got {task!r}."
            )
        self._next_task = int(task)

    def _apply_task(self) -> None:
        blocks, goal = ANT_OBSTACLE_COURSES[self.task]
        self._goal = np.asarray(goal, dtype=np.float64)
        self._place(self._goal, blocks)

    def _task_reward(self, xy: np.ndarray, xy_velocity: np.ndarray, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        distance = float(np.hypot(*(self._goal - xy)))
        return float(distance < self.goal_radius), {"distance": distance}
