"""
MLSH's buffers. The sub-policies learn from SB3's own ``RolloutBuffer`` (one row per primitive step); each task group's
master learns from a :class:`MacroStepBuffer`, one row per macro-step, turned into an SB3 ``RolloutBuffer`` at the end of
the rollout so that SB3's PPO ``train()`` runs on it unchanged.
"""

import copy
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

from sb3_mlsh.common.observation import concat_obs, index_obs
from sb3_mlsh.common.type_aliases import Obs
from sb3_mlsh.mlsh.bank import SUBPOLICY_KEY

__all__ = ["MacroStepBuffer", "MacroStepLog", "RolloutResult", "reached_observations", "select_envs"]


@dataclass
class MacroStepLog:
    """
    The master's macro-steps of one group in one rollout, in the order they were decided.

    :param env_index: Env of each macro-step.
    :param start: Primitive step (within the rollout) at which it began.
    :param length: Number of primitive steps it lasted.
    :param subpolicy: The sub-policy the master chose.
    :param reward: Sum of its primitive rewards (raw, without any bootstrap).
    :param episode_end: Whether it ended with the episode (terminated or truncated).
    """

    env_index: np.ndarray
    start: np.ndarray
    length: np.ndarray
    subpolicy: np.ndarray
    reward: np.ndarray
    episode_end: np.ndarray


@dataclass
class RolloutResult:
    """
    What one rollout collected, besides the buffers.

    :param continue_training: False when a callback asked to stop.
    :param env_reward_sum: Sum of the rewards returned by the envs.
    :param subpolicy_reward_sum: Sum of the rewards in the sub-policy buffer, less the bootstrap values added to them
        (scaled rewards when the model scales rewards).
    :param master_buffers: The filled buffer of each group's master.
    :param macro_steps: The macro-step log of each group.
    :param subpolicy_counts: Primitive steps taken by each sub-policy.
    :param episode_returns: Returns of the episodes that ended in this rollout (needs a Monitor wrapper).
    :param master_bootstrap_sum: Sum of the bootstrap values added to the masters' rewards.
    :param subpolicy_bootstrap_sum: Sum of the bootstrap values added to the sub-policies' rewards.
    :param diversity_reward_sum: Sum of the discriminator's rewards ``log q(k | s') + log K``, before the coefficient that
        adds them to the sub-policies' rewards (not the masters').
    """

    continue_training: bool = True
    env_reward_sum: float = 0.0
    subpolicy_reward_sum: float = 0.0
    master_buffers: list[RolloutBuffer] = field(default_factory=list)
    macro_steps: list[MacroStepLog] = field(default_factory=list)
    subpolicy_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    episode_returns: list[float] = field(default_factory=list)
    master_bootstrap_sum: float = 0.0
    subpolicy_bootstrap_sum: float = 0.0
    diversity_reward_sum: float = 0.0

    @property
    def master_reward_sum(self) -> float:
        """Sum of the rewards in the masters' buffers, less the bootstrap values added to them."""
        return float(sum(buffer.rewards.sum() for buffer in self.master_buffers)) - self.master_bootstrap_sum


class MacroStepBuffer:
    """
    One task group's macro-steps in one rollout. Each of the group's envs has one open macro-step at a time: the master
    opens it with its decision, the primitive rewards add up in it, and it closes after N steps, with the episode, or
    with the rollout.

    :param env_indices: The group's envs (indices into the VecEnv).
    :param n_steps: Primitive steps per env in the rollout (the most macro-steps an env can have).
    :param n_envs: Envs of the VecEnv.
    """

    def __init__(self, env_indices: np.ndarray, n_steps: int, n_envs: int) -> None:
        self.env_indices = env_indices
        capacity = len(env_indices) * n_steps
        self.obs: list[Obs] = []
        self.actions: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.log_probs: list[np.ndarray] = []
        self.env_index = np.zeros(capacity, dtype=np.int64)
        self.start = np.zeros(capacity, dtype=np.int64)
        self.length = np.zeros(capacity, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float64)
        #: gamma * V(next observation) for a macro-step cut by a time limit or by the end of the rollout.
        self.bootstrap = np.zeros(capacity, dtype=np.float64)
        self.episode_end = np.zeros(capacity, dtype=bool)
        self.size = 0
        #: Each env's open macro-step (a row of this buffer; -1 for envs of other groups).
        self.open_row = np.full(n_envs, -1, dtype=np.int64)

    def open(
        self, env_index: np.ndarray, step: int, obs: Obs, actions: np.ndarray, values: np.ndarray, log_probs: np.ndarray
    ) -> None:
        """The master decided for the envs ``env_index`` at primitive ``step``: a macro-step begins for each."""
        rows = np.arange(self.size, self.size + len(env_index))
        self.size += len(env_index)
        self.env_index[rows] = env_index
        self.start[rows] = step
        self.obs.append(obs)
        self.actions.append(actions)
        self.values.append(values)
        self.log_probs.append(log_probs)
        self.open_row[env_index] = rows

    def add(self, rewards: np.ndarray, dones: np.ndarray) -> None:
        """One primitive step of every env: its reward adds to the open macro-step, which an episode's end closes."""
        mine = self.env_indices
        rows = self.open_row[mine]
        self.reward[rows] += rewards[mine]
        self.length[rows] += 1
        self.episode_end[rows] = dones[mine]

    def cut(self, env_index: np.ndarray | int, bootstrap: np.ndarray | float) -> None:
        """A time limit or the rollout's end cut these envs' open macro-steps: ``bootstrap`` is gamma * V(next obs)."""
        self.bootstrap[self.open_row[env_index]] = bootstrap

    def log(self) -> MacroStepLog:
        """:return: The macro-steps, in the order they were decided."""
        n = self.size
        return MacroStepLog(
            env_index=self.env_index[:n].copy(),
            start=self.start[:n].copy(),
            length=self.length[:n].copy(),
            subpolicy=np.concatenate(self.actions).astype(np.int64) if n else np.zeros(0, dtype=np.int64),
            reward=self.reward[:n].copy(),
            episode_end=self.episode_end[:n].copy(),
        )

    def to_rollout_buffer(self, master: PPO) -> RolloutBuffer:
        """
        Lay out each env's chain of macro-steps one after the other in a single-column SB3 buffer; a chain's
        boundary is marked as an episode start and its last macro-step is bootstrapped through its reward
        (as SB3 does for time limits), so that SB3's own GAE computes exact per-chain advantages.

        :param master: The group's master (its spaces, device, gamma and GAE lambda).
        :return: The buffer, with returns and advantages computed.
        """
        n = self.size
        order = np.argsort(self.env_index[:n], kind="stable")
        obs = index_obs(concat_obs(self.obs), order)
        env_index = self.env_index[:n][order]
        chain_start = np.ones(n, dtype=bool)
        chain_start[1:] = env_index[1:] != env_index[:-1]
        after_episode_end = np.zeros(n, dtype=bool)
        after_episode_end[1:] = self.episode_end[:n][order][:-1]
        buffer_class = DictRolloutBuffer if isinstance(master.observation_space, spaces.Dict) else RolloutBuffer
        buffer = buffer_class(
            n,
            master.observation_space,  # type: ignore[arg-type]  # a Dict space exactly when the buffer is a Dict buffer
            master.action_space,
            device=master.device,
            gamma=master.gamma,
            gae_lambda=master.gae_lambda,
            n_envs=1,
        )
        if isinstance(obs, dict):
            for key, value in obs.items():
                buffer.observations[key][:, 0] = value.reshape(buffer.observations[key][:, 0].shape)
        else:
            buffer.observations[:, 0] = obs.reshape(buffer.observations[:, 0].shape)
        buffer.actions[:, 0, 0] = np.concatenate(self.actions)[order]
        buffer.rewards[:, 0] = (self.reward[:n] + self.bootstrap[:n])[order]
        buffer.episode_starts[:, 0] = chain_start | after_episode_end
        buffer.values[:, 0] = np.concatenate(self.values)[order]
        buffer.log_probs[:, 0] = np.concatenate(self.log_probs)[order]
        buffer.pos, buffer.full = n, True
        buffer.compute_returns_and_advantage(last_values=th.zeros(1), dones=np.ones(1))
        return buffer


def reached_observations(
    buffer: RolloutBuffer, last_obs: Obs, terminal_reached: list[tuple[int, int, Any]], n_subpolicies: int
) -> Obs:
    """
    :param buffer: The filled sub-policy buffer: its observations hold the state of each step.
    :param last_obs: The observations after the last step.
    :param terminal_reached: ``(step, env, terminal observation)`` where an episode ended.
    :param n_subpolicies: K (the one-hot choice that ends each stored Box observation is left out).
    :return: The state each step reached, as one batch of env observations in (step, env) order.
    """
    n_envs = buffer.n_envs
    if isinstance(buffer.observations, dict):
        reached = {}
        for key, stored in buffer.observations.items():
            if key == SUBPOLICY_KEY:
                continue
            last = np.asarray(last_obs[key]).reshape(n_envs, *stored.shape[2:])  # type: ignore[call-overload]
            reached[key] = np.concatenate([stored[1:], last[None]])
            for step, env_index, terminal in terminal_reached:
                reached[key][step, env_index] = np.asarray(terminal[key]).reshape(stored.shape[2:])
        return {key: value.reshape(-1, *value.shape[2:]) for key, value in reached.items()}
    stored = buffer.observations[..., :-n_subpolicies]
    flat = np.concatenate([stored[1:], np.asarray(last_obs).reshape(1, n_envs, -1)])
    for step, env_index, terminal in terminal_reached:
        flat[step, env_index] = np.asarray(terminal).reshape(-1)
    return flat.reshape(-1, flat.shape[-1])


def select_envs(buffer: RolloutBuffer, env_indices: np.ndarray) -> RolloutBuffer:
    """
    :param buffer: A filled buffer with computed advantages.
    :param env_indices: The env columns to keep.
    :return: A copy holding only those envs (the sub-policies learn only from joint-phase groups).
    """
    selected = copy.copy(buffer)
    for name in ("actions", "rewards", "returns", "episode_starts", "values", "log_probs", "advantages"):
        setattr(selected, name, getattr(buffer, name)[:, env_indices].copy())
    if isinstance(buffer.observations, dict):
        cast(Any, selected).observations = {key: value[:, env_indices].copy() for key, value in buffer.observations.items()}
    else:
        selected.observations = buffer.observations[:, env_indices].copy()
    selected.n_envs = len(env_indices)
    selected.generator_ready = False
    return selected
