"""MovementBandits: walk to the one of two goals that pays, without being told which (Frans et al., 2018)."""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from mlsh_envs.state import FieldStateMixin

__all__ = ["MovementBanditsEnv"]


class MovementBanditsEnv(FieldStateMixin, gym.Env):
    """
    A point agent starts at the centre of a 400 x 400 plane; each episode two goals are drawn uniformly in it.
    The task, which goal pays, is latent: reward is 1 on every step the agent is within 50 units of the
    correct goal. The task distribution has two tasks (goal 0 or goal 1), so the held-out split is the whole
    distribution: transfer here means learning a fresh master for a task drawn anew.

    Observation: ``[agent, goal0, goal1] / 400`` (6 numbers). Actions: stay, +x, -x, +y, -y (20 units).
    The episode length (50) comes from the registered ``TimeLimit``.

    :param size: Side of the square plane.
    :param step_size: Distance moved by one action.
    :param goal_radius: Distance within which the correct goal pays.
    :param render_mode: ``"rgb_array"`` for a top-down picture.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    MOVES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float64)

    STATE_FIELDS = ("task", "_next_task", "agent", "goals")
    agent: np.ndarray
    goals: np.ndarray

    def __init__(
        self, size: float = 400.0, step_size: float = 20.0, goal_radius: float = 50.0, render_mode: str | None = None
    ):
        self.size = size
        self.step_size = step_size
        self.goal_radius = goal_radius
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(6,), dtype=np.float32)
        self.action_space = spaces.Discrete(5)
        self.task = 0
        self._next_task = 0
        self.agent = np.full(2, size / 2)
        self.goals = np.zeros((2, 2))

    # Task protocol
    def sample_tasks(self, n: int, split: str | None = None) -> list[int]:
        """
        :param n: Number of tasks.
        :param split: ``"train"``, ``"test"`` or ``None``: all three are the same two tasks.
        :return: ``n`` goal indices drawn uniformly from {0, 1}.
        """
        if split not in (None, "train", "test"):
            raise ValueError(f"Unknown split {split!r}.")
        return [int(task) for task in self.np_random.integers(2, size=n)]

    def set_task(self, task: int) -> None:
        """
        :param task: Index of the goal that pays from the next reset on.
        """
        if task not in (0, 1):
            raise ValueError(f"A MovementBandits task is 0 or 1 (the index of the paying goal), got {task!r}.")
        self._next_task = int(task)

    def get_task(self) -> int:
        return self.task

    def _obs(self) -> np.ndarray:
        return (np.concatenate([self.agent, self.goals.ravel()]) / self.size).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.task = self._next_task
        self.agent = np.full(2, self.size / 2)
        self.goals = self.np_random.uniform(0.0, self.size, size=(2, 2))
        return self._obs(), {"task": self.task}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.agent = np.clip(self.agent + self.step_size * self.MOVES[int(action)], 0.0, self.size)
        distance = np.linalg.norm(self.agent - self.goals[self.task])
        reward = float(distance < self.goal_radius)
        return self._obs(), reward, False, False, {"task": self.task}

    def oracle_action(self, obs: np.ndarray | None = None) -> int:
        """
        The scripted reference policy: it knows the task and walks to the paying goal along the longer axis.

        :param obs: Unused; the oracle reads the env state.
        :return: An action.
        """
        delta = self.goals[self.task] - self.agent
        if np.linalg.norm(delta) < self.goal_radius:
            return 0
        axis = int(np.argmax(np.abs(delta)))
        return [1, 3][axis] if delta[axis] > 0 else [2, 4][axis]

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        pixels = 100
        scale = pixels / self.size
        image = np.full((pixels, pixels, 3), 255, dtype=np.uint8)
        yy, xx = np.mgrid[0:pixels, 0:pixels]
        for index, goal in enumerate(self.goals):
            inside = (xx - goal[0] * scale) ** 2 + (yy - goal[1] * scale) ** 2 < (self.goal_radius * scale) ** 2
            image[inside] = (60, 180, 75) if index == self.task else (200, 200, 200)
        agent = (xx - self.agent[0] * scale) ** 2 + (yy - self.agent[1] * scale) ** 2 < 9
        image[agent] = (0, 0, 200)
        return image[::-1]
