"""AntMovement: the Ant walks along +x or along +y, whichever direction pays (the original MLSH code)."""

from typing import Any

import numpy as np

from mlsh_envs.mujoco_utils import AntNavigationEnv, check_split

__all__ = ["AntMovementEnv"]


class AntMovementEnv(AntNavigationEnv):
    """
    Gymnasium's Ant (``Ant-v5`` model and dynamics) must walk along a direction, ``+x`` (task 0) or ``+y`` (task 1),
    and stay on the line through the origin along it. The task is latent (the observation does not show it); a green,
    non-colliding sphere far along the direction, at ``(10, 0)`` or ``(0, 10)``, marks it in renders (a visual cue
    only: nothing happens there). Reward on every step:
    ``velocity - lateral_weight * |lateral| - control_weight * |a|^2`` with ``velocity`` the torso's velocity along
    the direction (m/s), ``lateral`` its coordinate across the direction (``y`` for task 0, ``x`` for task 1) and
    ``a`` the action. No early termination; 1000 steps (registered ``TimeLimit``). Two tasks, so the held-out split
    is the whole distribution (as for AntTwowalk). The step's info holds ``progress`` (the torso's coordinate along
    the direction) and ``lateral`` (the absolute coordinate across it).

    Observation: Ant-v5's with the torso's x and y kept (107 numbers). Action: Ant-v5's (8 torques in [-1, 1]).

    :param lateral_weight: Scale of the penalty on the distance from the line along the direction.
    :param control_weight: Scale of the penalty on the squared norm of the action.
    :param render_mode: ``"rgb_array"`` (needs an offscreen GL backend, e.g. ``MUJOCO_GL=egl``), or ``None``.
    :param ant_kwargs: Passed on to :class:`~mlsh_envs.mujoco_utils.AntNavigationEnv` and
        :class:`gymnasium.envs.mujoco.ant_v5.AntEnv`.
    """

    #: Unit vector of each task's direction: 0 is ``+x``, 1 is ``+y``.
    DIRECTIONS = np.array([[1.0, 0.0], [0.0, 1.0]])
    #: Where the marker of each task's direction stands.
    MARKER_DISTANCE = 10.0

    def __init__(
        self, lateral_weight: float = 0.5, control_weight: float = 0.1, render_mode: str | None = None, **ant_kwargs: Any
    ):
        self.lateral_weight = lateral_weight
        self.control_weight = control_weight
        self.task = 0
        self._next_task = 0
        super().__init__(n_blocks=0, render_mode=render_mode, **ant_kwargs)
        self._ezpickle_args = ()
        self._ezpickle_kwargs = {
            "lateral_weight": lateral_weight,
            "control_weight": control_weight,
            "render_mode": render_mode,
            **ant_kwargs,
        }
        self._apply_task()

    # Task protocol
    def sample_tasks(self, n: int, split: str | None = None) -> list[int]:
        """
        :param n: Number of tasks.
        :param split: ``"train"``, ``"test"`` or ``None``: all three are the same two tasks.
        :return: ``n`` direction indices drawn uniformly from {0, 1}: 0 is ``+x``, 1 is ``+y``.
        """
        check_split(split)
        return [int(task) for task in self.np_random.integers(2, size=n)]

    def set_task(self, task: int) -> None:
        """
        :param task: Index of the direction, 0 for ``+x`` or 1 for ``+y``, from the next reset on.
        """
        if isinstance(task, bool | np.bool_) or task not in (0, 1):
            raise ValueError(f"An AntMovement task is 0 or 1 (walk along +x or +y), got {task!r}.")
        self._next_task = int(task)

    def _apply_task(self) -> None:
        self._direction = self.DIRECTIONS[self.task]
        self._across = self.DIRECTIONS[1 - self.task]
        self._place(self.MARKER_DISTANCE * self._direction)

    def _task_reward(self, xy: np.ndarray, xy_velocity: np.ndarray, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        velocity = float(xy_velocity @ self._direction)
        lateral = abs(float(xy @ self._across))
        control_cost = self.control_weight * float(np.sum(np.square(action)))
        reward = velocity - self.lateral_weight * lateral - control_cost
        return reward, {"progress": float(xy @ self._direction), "lateral": lateral, "control_cost": control_cost}
