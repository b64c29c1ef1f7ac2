"""AntTwowalk (AntBandits): the Ant walks to the one of two targets that pays (Frans et al., 2018)."""

from typing import Any

import numpy as np

from mlsh_envs.mujoco_utils import AntNavigationEnv, check_split

__all__ = ["AntTwowalkEnv"]


class AntTwowalkEnv(AntNavigationEnv):
    """
    Gymnasium's Ant (``Ant-v5`` model and dynamics) must walk to one of two targets, ``(5, 0)`` or ``(0, 5)``.
    The task, which target, is latent (the observation does not show it); a green, non-colliding sphere marks
    it in renders. Reward on every step: ``-distance_weight * distance ** distance_exponent`` with ``distance``
    the torso's distance in the plane to the target. Defaults ``(0.1, 1.0)`` give -0.5 per step at the start;
    the original release used ``(1 / 3000, 0.5)``. No early termination; 1000 steps (registered ``TimeLimit``).
    Two tasks, so the held-out split is the whole distribution (as for MovementBandits).

    Observation: Ant-v5's with the torso's x and y kept (107 numbers). Action: Ant-v5's (8 torques in [-1, 1]).

    :param distance_weight: Scale of the distance penalty.
    :param distance_exponent: Power of the distance in the penalty.
    :param render_mode: ``"rgb_array"`` (needs an offscreen GL backend, e.g. ``MUJOCO_GL=egl``), or ``None``.
    :param ant_kwargs: Passed on to :class:`gymnasium.envs.mujoco.ant_v5.AntEnv`.
    """

    TARGETS = np.array([[5.0, 0.0], [0.0, 5.0]])

    def __init__(
        self, distance_weight: float = 0.1, distance_exponent: float = 1.0, render_mode: str | None = None, **ant_kwargs: Any
    ):
        self.distance_weight = distance_weight
        self.distance_exponent = distance_exponent
        self.task = 0
        self._next_task = 0
        super().__init__(n_blocks=0, render_mode=render_mode, **ant_kwargs)
        self._ezpickle_args = ()
        self._ezpickle_kwargs = {
            "distance_weight": distance_weight,
            "distance_exponent": distance_exponent,
            "render_mode": render_mode,
            **ant_kwargs,
        }
        self._apply_task()

    # Task protocol
    def sample_tasks(self, n: int, split: str | None = None) -> list[int]:
        """
        :param n: Number of tasks.
        :param split: ``"train"``, ``"test"`` or ``None``: all three are the same two tasks.
        :return: ``n`` target indices drawn uniformly from {0, 1}: 0 is ``(5, 0)``, 1 is ``(0, 5)``.
        """
        check_split(split)
        return [int(task) for task in self.np_random.integers(2, size=n)]

    def set_task(self, task: int) -> None:
        """
        :param task: Index of the target, 0 for ``(5, 0)`` or 1 for ``(0, 5)``, from the next reset on.
        """
        if task not in (0, 1):
            raise ValueError(f"An AntTwowalk task is 0 or 1 (target (5, 0) or (0, 5)), got {task!r}.")
        self._next_task = int(task)

    def _apply_task(self) -> None:
        self._target = self.TARGETS[self.task]
        self._place(self._target)

    def _task_reward(self, xy: np.ndarray, xy_velocity: np.ndarray, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        distance = float(np.hypot(*(xy - self._target)))
        return -self.distance_weight * distance**self.distance_exponent, {"distance": distance}
