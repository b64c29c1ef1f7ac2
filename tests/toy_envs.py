"""Small envs with the task protocol, built to make the semantics of MLSH observable in tests."""

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit

if TYPE_CHECKING:
    from sb3_mlsh import MLSH


class ToyTaskEnv(gym.Env):
    """
    A task is an int in [0, n_tasks). Rewards are deterministic and distinct per step so that lost or doubled rewards
    show. Episodes end either by termination after a random length (``terminate_range``) or by a time limit.

    :param n_tasks: Number of tasks.
    :param terminate_range: (low, high) of the random episode length at which the env terminates; None: never.
    :param box_actions: Box(2) actions instead of Discrete(3).
    :param dict_obs: Dict observations.
    :param reward_scale: Multiplies every reward (0 makes a reward-free env).
    """

    def __init__(
        self,
        n_tasks: int = 3,
        terminate_range: tuple[int, int] | None = None,
        box_actions: bool = False,
        dict_obs: bool = False,
        reward_scale: float = 1.0,
    ) -> None:
        self.n_tasks = n_tasks
        self.terminate_range = terminate_range
        self.reward_scale = reward_scale
        self.dict_obs = dict_obs
        if dict_obs:
            self.observation_space = spaces.Dict(
                {"position": spaces.Box(-10.0, 10.0, shape=(2,), dtype=np.float32), "phase": spaces.Discrete(3)}
            )
        else:
            self.observation_space = spaces.Box(-10.0, 10.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32) if box_actions else spaces.Discrete(3)
        self.task = 0
        self._next_task = 0
        self.t = 0
        self.length = 0
        self.position = np.zeros(2)

    def sample_tasks(self, n: int, split: str | None = None) -> list[int]:
        return [int(task) for task in self.np_random.integers(self.n_tasks, size=n)]

    def set_task(self, task: int) -> None:
        if not 0 <= task < self.n_tasks:
            raise ValueError(f"task must be in [0, {self.n_tasks}), got {task}")
        self._next_task = int(task)

    def get_task(self) -> int:
        return self.task

    def _obs(self) -> Any:
        if self.dict_obs:
            return {"position": self.position.astype(np.float32), "phase": self.t % 3}
        return np.array([*self.position, self.t / 10.0], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.task = self._next_task
        self.t = 0
        self.position = self.np_random.uniform(-1, 1, size=2)
        low_high = self.terminate_range
        self.length = int(self.np_random.integers(low_high[0], low_high[1] + 1)) if low_high else -1
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.t += 1
        if isinstance(self.action_space, spaces.Box):
            move = np.clip(np.asarray(action, dtype=np.float64), -1, 1)
            hit = float(move[0] > 0) if self.task % 2 == 0 else float(move[0] <= 0)
        else:
            move = np.array([[0, 0], [1, 0], [0, 1]][int(action)], dtype=np.float64)
            hit = float(int(action) == self.task % 3)
        self.position = np.clip(self.position + 0.1 * move, -10, 10)
        reward = self.reward_scale * (hit + 0.001 * self.t + 0.01 * self.task)
        terminated = self.t == self.length
        return self._obs(), reward, terminated, False, {}


def make_toy(max_episode_steps: int = 7, **kwargs: Any):
    """:return: A factory of time-limited toy envs (usable as a task sampler)."""

    def factory() -> gym.Env:
        return TimeLimit(ToyTaskEnv(**kwargs), max_episode_steps=max_episode_steps)

    return factory


class NoProtocolEnv(gym.Env):
    observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(2, dtype=np.float32), 0.0, False, False, {}


class SpaceShiftEnv(ToyTaskEnv):
    """Its observation space grows with the task: a broken task family."""

    def set_task(self, task: int) -> None:
        super().set_task(task)
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(3 + task,), dtype=np.float32)

    def _obs(self) -> np.ndarray:
        return np.zeros(self.observation_space.shape, dtype=np.float32)


class NaNRewardEnv(ToyTaskEnv):
    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, (float("nan") if self.t == 3 else reward), terminated, truncated, info


class MultiDiscreteActionEnv(ToyTaskEnv):
    def __init__(self) -> None:
        super().__init__()
        self.action_space = spaces.MultiDiscrete([2, 2])


# The small model of the tests: 2 envs x 16 steps, N = 4, W = U = 1 (K: MLSH's default 2), seed 0, on the CPU.
# One definition for small_model and the make_mlsh fixture of conftest.py.
SMALL_MLSH: dict[str, Any] = dict(
    n_envs=2, n_steps=16, macro_duration=4, warmup_iterations=1, joint_iterations=1, seed=0, device="cpu"
)


def small_model(factory: Any = None, policy: str = "MlpPolicy", **kwargs: Any) -> "MLSH":
    """
    A small MLSH (``SMALL_MLSH``, any of it replaced by ``kwargs``) on ``factory``'s tasks (default: the toy family
    ``make_toy()``, unless SB3's ``env=`` gives the envs). Tests take the ``make_mlsh`` fixture, which also closes the
    envs; this is for the places a fixture does not reach (module-scoped fixtures, helpers).
    """
    from sb3_mlsh import MLSH

    if factory is None and "env" not in kwargs:
        factory = make_toy()
    return MLSH(policy, factory, **{**SMALL_MLSH, **kwargs})


def rollout_actions(model: "MLSH", n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """:return: ``model``'s deterministic actions and predict states over ``n`` steps of a toy env seeded 5."""
    env = ToyTaskEnv()
    obs, _ = env.reset(seed=5)
    state, actions, states = None, [], []
    for step in range(n):
        action, state = model.predict(obs, state=state, episode_start=np.array([step == 0]), deterministic=True)
        actions.append(action)
        states.append(state.copy())
        obs, *_ = env.step(action)
    return np.array(actions), np.array(states)
