"""KeyDoor: MovementBandits with a key to fetch before the paying goal (Frans et al., 2018)."""

from typing import Any

import numpy as np
from gymnasium import spaces

from mlsh_envs.movement_bandits import MovementBanditsEnv

__all__ = ["KeyDoorEnv"]


class KeyDoorEnv(MovementBanditsEnv):
    """
    MovementBandits plus a key. A point agent starts at the centre of a 400 x 400 plane; each episode two
    goals and a key are drawn uniformly in it. The agent picks the key up by coming within ``key_radius`` of
    it; from then on, reward is 1 on every step it is within ``goal_radius`` of the correct goal. Before the
    key is picked up no step pays. The task, which goal pays, is latent; the distribution has two tasks, so
    the held-out split is the whole distribution (as for MovementBandits).

    Observation: ``[agent, goal0, goal1, key] / 400`` and the has-key flag (9 numbers, all in [0, 1]).
    Actions: stay, +x, -x, +y, -y (20 units). The episode length (100) comes from the registered ``TimeLimit``.

    :param size: Side of the square plane.
    :param step_size: Distance moved by one action.
    :param goal_radius: Distance within which the correct goal pays (once the key is held).
    :param key_radius: Distance within which the key is picked up.
    :param render_mode: ``"rgb_array"`` for a top-down picture.
    """

    STATE_FIELDS = (*MovementBanditsEnv.STATE_FIELDS, "key", "has_key")

    agent: np.ndarray

    def __init__(
        self,
        size: float = 400.0,
        step_size: float = 20.0,
        goal_radius: float = 50.0,
        key_radius: float = 50.0,
        render_mode: str | None = None,
    ):
        super().__init__(size=size, step_size=step_size, goal_radius=goal_radius, render_mode=render_mode)
        self.key_radius = key_radius
        self.observation_space = spaces.Box(0.0, 1.0, shape=(9,), dtype=np.float32)
        self.key = np.zeros(2)
        self.has_key = False

    def set_task(self, task: int) -> None:
        """
        :param task: Index of the goal that pays (once the key is held) from the next reset on.
        """
        if task not in (0, 1):
            raise ValueError(f"A KeyDoor task is 0 or 1 (the index of the paying goal), got {task!r}.")
        self._next_task = int(task)

    def _obs(self) -> np.ndarray:
        positions = np.concatenate([self.agent, self.goals.ravel(), self.key]) / self.size
        return np.append(positions, float(self.has_key)).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        _, info = super().reset(seed=seed, options=options)
        self.key = self.np_random.uniform(0.0, self.size, size=2)
        self.has_key = bool(np.linalg.norm(self.agent - self.key) < self.key_radius)
        return self._obs(), info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.agent = np.clip(self.agent + self.step_size * self.MOVES[int(action)], 0.0, self.size)
        if not self.has_key and np.linalg.norm(self.agent - self.key) < self.key_radius:
            self.has_key = True
        reward = float(self.has_key and np.linalg.norm(self.agent - self.goals[self.task]) < self.goal_radius)
        return self._obs(), reward, False, False, {"task": self.task, "has_key": self.has_key}

    def oracle_action(self, obs: np.ndarray | None = None) -> int:
        """
        The scripted reference policy: it knows the task, walks to the key, then to the paying goal.

        :param obs: Unused; the oracle reads the env state.
        :return: An action.
        """
        target, radius = (self.goals[self.task], self.goal_radius) if self.has_key else (self.key, self.key_radius)
        delta = target - self.agent
        if np.linalg.norm(delta) < radius:
            return 0
        axis = int(np.argmax(np.abs(delta)))
        return [1, 3][axis] if delta[axis] > 0 else [2, 4][axis]

    def render(self) -> np.ndarray | None:
        image = super().render()
        if image is None:
            return None
        pixels = image.shape[0]
        scale = pixels / self.size
        yy, xx = np.mgrid[0:pixels, 0:pixels]
        if not self.has_key:
            key = (np.abs(xx - self.key[0] * scale) < 3) & (np.abs(yy - self.key[1] * scale) < 3)
            image[::-1][key] = (230, 180, 0)
        return image
