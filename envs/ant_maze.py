"""AntMaze: the Ant walks towards a goal behind blocks; one of several layouts per task (Frans et al., 2018)."""

from typing import Any

import numpy as np

from mlsh_envs.mujoco_utils import AntNavigationEnv, check_split

__all__ = ["ANT_MAZE_LAYOUTS", "AntMazeEnv"]

#: Layouts on a grid of 4 m cells (the Ant starts in cell (0, 0), x to the right, y up):
#: ``(blocks, goal)`` with the cells of the 4 x 4 x 2 m blocks and the goal cell. Each wall stands across the
#: straight line to the goal, so the Ant must go round it (up/down, then right, then back, and so on).
ANT_MAZE_LAYOUTS: tuple[tuple[tuple[tuple[int, int], ...], tuple[int, int]], ...] = (
    (((1, -1), (1, 0), (1, 1)), (2, 0)),  # 0: wall to the east, goal behind it
    (((1, 0), (1, 1), (1, 2)), (2, 1)),  # 1: wall to the north-east: go down, right, up
    (((1, -2), (1, -1), (1, 0)), (2, -1)),  # 2: wall to the south-east: go up, right, down
    (((-1, 1), (0, 1), (1, 1)), (0, 2)),  # 3: wall to the north, goal behind it
    (((1, -1), (1, 0), (1, 1), (2, 1)), (2, 0)),  # 4 (held out): goal in a pocket open to the south and east
    (((0, 1), (1, 1), (1, 0), (1, -1)), (2, 2)),  # 5 (held out): walls north and east: go down, right, up
)


class AntMazeEnv(AntNavigationEnv):
    """
    Gymnasium's Ant (``Ant-v5`` model and dynamics) in an arena of blocks. A task is a layout index: which
    blocks stand where, and where the goal is (:data:`ANT_MAZE_LAYOUTS`, 4 m cells, Ant starting in cell
    (0, 0)). The goal is latent; a green non-colliding sphere marks it in renders. Dense reward on every step:
    the torso's velocity towards the goal (its projection on the unit vector from torso to goal) minus
    ``ctrl_cost_weight * |a|^2`` (0.1). No early termination; 1000 steps (registered ``TimeLimit``).

    The model holds a fixed pool of 4 blocks, moved for each layout as mocap bodies (unused ones are
    parked far away), so spaces do not depend on the task. Split: layouts 0-3 train, 4-5 held out.

    Observation: Ant-v5's with the torso's x and y kept (107 numbers). Action: Ant-v5's (8 torques in [-1, 1]).

    :param cell_size: Side of a grid cell in metres.
    :param ctrl_cost_weight: Weight of the squared-action penalty.
    :param render_mode: ``"rgb_array"`` (needs an offscreen GL backend, e.g. ``MUJOCO_GL=egl``), or ``None``.
    :param ant_kwargs: Passed on to :class:`gymnasium.envs.mujoco.ant_v5.AntEnv`.
    """

    TRAIN_LAYOUTS = (0, 1, 2, 3)
    TEST_LAYOUTS = (4, 5)

    def __init__(
        self, cell_size: float = 4.0, ctrl_cost_weight: float = 0.1, render_mode: str | None = None, **ant_kwargs: Any
    ):
        self.cell_size = cell_size
        self.task = 0
        self._next_task = 0
        n_blocks = max(len(blocks) for blocks, _ in ANT_MAZE_LAYOUTS)
        half = cell_size / 2.0
        super().__init__(
            n_blocks=n_blocks,
            block_half_size=(half, half, 1.0),
            render_mode=render_mode,
            ctrl_cost_weight=ctrl_cost_weight,
            **ant_kwargs,
        )
        self._ezpickle_args = ()
        self._ezpickle_kwargs = {
            "cell_size": cell_size,
            "ctrl_cost_weight": ctrl_cost_weight,
            "render_mode": render_mode,
            **ant_kwargs,
        }
        self._apply_task()

    # Task protocol
    def sample_tasks(self, n: int, split: str | None = None) -> list[int]:
        """
        :param n: Number of tasks.
        :param split: ``"train"`` (layouts 0-3), ``"test"`` (held-out layouts 4-5) or ``None`` (all six).
        :return: ``n`` layout indices drawn uniformly from the split.
        """
        check_split(split)
        layouts = {None: tuple(range(len(ANT_MAZE_LAYOUTS))), "train": self.TRAIN_LAYOUTS, "test": self.TEST_LAYOUTS}[split]
        return [layouts[int(index)] for index in self.np_random.integers(len(layouts), size=n)]

    def set_task(self, task: int) -> None:
        """
        :param task: A layout index in ``range(6)`` (see :data:`ANT_MAZE_LAYOUTS`), from the next reset on.
        """
        if not isinstance(task, (int, np.integer)) or isinstance(task, bool) or not 0 <= task < len(ANT_MAZE_LAYOUTS):
            raise ValueError(f"An AntMaze task is a layout index in range({len(ANT_MAZE_LAYOUTS)}), got {task!r}.")
        self._next_task = int(task)

    def _apply_task(self) -> None:
        blocks, goal = ANT_MAZE_LAYOUTS[self.task]
        self._goal = self.cell_size * np.asarray(goal, dtype=np.float64)
        self._place(self._goal, [self.cell_size * np.asarray(cell, dtype=np.float64) for cell in blocks])

    def _task_reward(self, xy: np.ndarray, xy_velocity: np.ndarray, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        to_goal = self._goal - xy
        distance = float(np.hypot(*to_goal))
        toward = float(xy_velocity @ to_goal) / max(distance, 1e-6)
        ctrl_cost = self._ctrl_cost_weight * float(np.square(action).sum())
        return toward - ctrl_cost, {"distance": distance, "reward_toward": toward, "reward_ctrl": -ctrl_cost}
