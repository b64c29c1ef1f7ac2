"""Reward and observation scaling that keep the learners' losses and inputs on one scale whatever the env's."""

from typing import Any

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd

__all__ = ["ObservationNormalizer", "RewardScaler"]


class RewardScaler:
    """
    Divides rewards by a running standard deviation of the discounted return, as SB3's ``VecNormalize(norm_reward=True)``
    does, but inside MLSH: one statistic for the whole run, kept across tasks (a fresh master must not see a new reward
    scale), saved with the model and used the same way by :meth:`~sb3_mlsh.MLSH.adapt`.

    Why: with returns of hundreds (the Ant families), the value loss's gradient is about 200x the policy loss's, and the
    gradient-norm clip then shrinks every policy step to a fraction of a percent; the policy stops learning.

    :param n_envs: Number of envs.
    :param gamma: Discount of the returns whose spread is measured (the sub-policy learner's).
    :param clip: Scaled rewards are clipped to ``[-clip, clip]``.
    :param epsilon: Added to the variance before the square root.
    """

    def __init__(self, n_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8) -> None:
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon
        self.return_rms = RunningMeanStd(shape=())
        self.returns = np.zeros(n_envs)

    @property
    def scale(self) -> float:
        """What a raw reward is divided by."""
        return float(np.sqrt(self.return_rms.var + self.epsilon))

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """
        Update the statistics with one step of every env and scale its rewards.

        :param rewards: Raw rewards, shape (n_envs,).
        :param dones: Whether each env's episode ended at this step.
        :return: The scaled, clipped rewards.
        """
        self.returns = self.returns * self.gamma + rewards
        self.return_rms.update(self.returns)
        self.returns[dones] = 0.0
        return np.clip(rewards / self.scale, -self.clip, self.clip)

    def resize(self, n_envs: int) -> None:
        """
        :param n_envs: The new number of envs (e.g. a loaded model with another ``n_envs``); running returns restart.
        """
        if len(self.returns) != n_envs:
            self.returns = np.zeros(n_envs)

    def state_dict(self) -> dict[str, Any]:
        """:return: Plain numbers and lists only, so that a saved model holds no pickled objects for them."""
        return {
            "mean": float(self.return_rms.mean),
            "var": float(self.return_rms.var),
            "count": float(self.return_rms.count),
            "returns": self.returns.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """:param state: What :meth:`state_dict` returned."""
        self.return_rms.mean = np.asarray(state["mean"], dtype=np.float64)
        self.return_rms.var = np.asarray(state["var"], dtype=np.float64)
        self.return_rms.count = float(state["count"])
        returns = np.asarray(state["returns"], dtype=np.float64)
        if len(returns) == len(self.returns):
            self.returns = returns


class ObservationNormalizer:
    """
    Scales observations by a running mean and standard deviation of the env's observations, entry by entry, as SB3's
    ``VecNormalize(norm_obs=True)`` does, but inside MLSH: one statistic for the whole run, kept across tasks, saved with
    the model and frozen by :meth:`~sb3_mlsh.MLSH.adapt`, so that frozen sub-policies see their inputs on the scale they
    learned on. Master and sub-policies see the same scaled observation (each its own view of it).

    Why: some envs observe quantities thousands of times larger than others (Humanoid-v5's contact forces reach
    |x| ~ 3,400 where the median entry is about 3); unscaled, they saturate the first layer.

    :param shape: Shape of one observation (a ``Box``'s).
    :param clip: Scaled observations are clipped to ``[-clip, clip]``.
    :param epsilon: Added to the variance before the square root.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8) -> None:
        self.clip = clip
        self.epsilon = epsilon
        self.obs_rms = RunningMeanStd(shape=shape)

    def update(self, observations: np.ndarray) -> None:
        """:param observations: A batch of raw observations, one per env."""
        self.obs_rms.update(np.asarray(observations, dtype=np.float64))

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """
        :param observations: A batch of raw observations.
        :return: The batch scaled and clipped, as float32 (what the networks take).
        """
        scaled = (np.asarray(observations, dtype=np.float64) - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """:return: Plain numbers and lists only, so that a saved model holds no pickled objects for them."""
        return {"mean": self.obs_rms.mean.tolist(), "var": self.obs_rms.var.tolist(), "count": float(self.obs_rms.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """:param state: What :meth:`state_dict` returned (for an observation of this normaliser's shape)."""
        mean = np.asarray(state["mean"], dtype=np.float64)
        var = np.asarray(state["var"], dtype=np.float64)
        if mean.shape != self.obs_rms.mean.shape or var.shape != self.obs_rms.var.shape:
            raise ValueError(
                f"The saved observation statistics have shape {mean.shape}, the observation space {self.obs_rms.mean.shape}: "
                "the model was saved for another env."
            )
        self.obs_rms.mean, self.obs_rms.var, self.obs_rms.count = mean, var, float(state["count"])
