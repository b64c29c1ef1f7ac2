"""
A skill discriminator whose log-probability rewards sub-policies that visit states of their own.

This is DIAYN's objective (Eysenbach, Gupta, Ibarz, Levine, ICLR 2019), added to MLSH's task reward: beyond the
paper's method, and off unless ``MLSH(skill_diversity=...)`` is set. It was meant for goals that reward one cell only
(FourRooms), where MLSH's sub-policies become "go to the last goal and stay" skills; measured there, it makes the skills
distinct but transfer no better (benchmarks/RESULTS.md).
"""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, preprocess_obs
from stable_baselines3.common.torch_layers import create_mlp
from torch import nn
from torch.nn import functional as F

from sb3_mlsh.common.type_aliases import Obs
from sb3_mlsh.mlsh.bank import SUBPOLICY_KEY

__all__ = ["SkillDiscriminator"]


class SkillDiscriminator(nn.Module):
    """
    q(k | s): which of the K sub-policies is acting, guessed from the env observation alone. A sub-policy earns
    ``log q(k | s') - log(1 / K)`` per step (in nats): positive where the discriminator recognises it, zero where it
    cannot tell the sub-policies apart.

    :param observation_space: The env's observation space (without the sub-policy one-hot).
    :param n_subpolicies: Number of sub-policies K.
    :param net_arch: Hidden layer sizes.
    :param learning_rate: Adam learning rate.
    :param batch_size: Minibatch size of :meth:`train_on`.
    :param n_epochs: Passes over a rollout per :meth:`train_on`.
    :param device: Torch device.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        n_subpolicies: int,
        net_arch: tuple[int, ...] | list[int] = (64, 64),
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        n_epochs: int = 1,
        device: th.device | str = "cpu",
    ) -> None:
        super().__init__()
        if n_subpolicies < 2:
            raise ValueError(f"A skill discriminator needs n_subpolicies >= 2 (nothing to tell apart), got {n_subpolicies}.")
        self.observation_space = observation_space
        self.n_subpolicies = n_subpolicies
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.device = th.device(device)
        self.net = nn.Sequential(*create_mlp(get_flattened_obs_dim(observation_space), n_subpolicies, list(net_arch))).to(
            self.device
        )
        self.optimizer = th.optim.Adam(self.parameters(), lr=learning_rate)
        self._log_k = float(np.log(n_subpolicies))

    def _features(self, obs: Obs) -> th.Tensor:
        if isinstance(self.observation_space, spaces.Dict):
            assert isinstance(obs, dict)
            parts = []
            for key in sorted(self.observation_space.spaces):
                tensor = th.as_tensor(obs[key], device=self.device)
                features = preprocess_obs(tensor, self.observation_space.spaces[key])
                assert isinstance(features, th.Tensor)
                parts.append(features.float().flatten(1))
            return th.cat(parts, dim=1)
        tensor = th.as_tensor(np.asarray(obs), device=self.device)
        features = preprocess_obs(tensor, self.observation_space)
        assert isinstance(features, th.Tensor)
        return features.float().reshape(len(tensor), -1)

    def forward(self, obs: Obs) -> th.Tensor:
        """
        :param obs: A batch of env observations.
        :return: The logits of q(k | s), shape (batch, K).
        """
        return self.net(self._features(obs))

    @th.no_grad()
    def reward(self, obs: Obs, subpolicy: np.ndarray) -> np.ndarray:
        """
        :param obs: A batch of env observations (the states the sub-policies reached).
        :param subpolicy: The sub-policy that acted in each.
        :return: ``log q(k | s) + log K`` per sample.
        """
        log_q = F.log_softmax(self(obs), dim=1)
        chosen = log_q[th.arange(len(subpolicy), device=self.device), th.as_tensor(subpolicy, device=self.device)]
        return (chosen + self._log_k).cpu().numpy().astype(np.float64)

    def train_on(self, buffer_observations: Obs) -> dict[str, float]:
        """
        One round of cross-entropy training on the sub-policy learner's rollout.

        :param buffer_observations: The sub-policy buffer's observations, shape (n_steps, n_envs, ...): the env
            observation with the acting sub-policy's one-hot (the last K numbers, or the ``subpolicy`` key).
        :return: Mean loss and accuracy.
        """
        if isinstance(buffer_observations, dict):
            labels = buffer_observations[SUBPOLICY_KEY].reshape(-1, self.n_subpolicies).argmax(axis=1)
            obs: Obs = {
                key: value.reshape(-1, *value.shape[2:]) for key, value in buffer_observations.items() if key != SUBPOLICY_KEY
            }
        else:
            flat = buffer_observations.reshape(-1, buffer_observations.shape[-1])
            labels = flat[:, -self.n_subpolicies :].argmax(axis=1)
            obs = flat[:, : -self.n_subpolicies]
        features = self._features(obs)
        targets = th.as_tensor(labels, device=self.device)
        losses, hits = [], 0
        for _ in range(self.n_epochs):
            order = th.randperm(len(targets), device=self.device)
            for start in range(0, len(targets), self.batch_size):
                batch = order[start : start + self.batch_size]
                logits = self.net(features[batch])
                loss = F.cross_entropy(logits, targets[batch])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                losses.append(loss.item())
                hits += int((logits.argmax(dim=1) == targets[batch]).sum())
        return {"loss": float(np.mean(losses)), "accuracy": hits / (len(targets) * self.n_epochs)}

    def state(self) -> dict[str, Any]:
        """:return: The network's and the optimizer's state, for a saved model."""
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        """:param state: What :meth:`state` returned."""
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
