"""The two levels' SB3 PPO learners, built without an env: MLSH's collector fills their buffers."""

from typing import Any, cast

import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv

from sb3_mlsh.common import sb3_internals

__all__ = ["make_learner", "reset_policy", "train_on"]


def make_learner(
    policy: str | type[BasePolicy],
    observation_space: spaces.Space,
    action_space: spaces.Space,
    n_steps: int,
    n_envs: int,
    device: th.device | str,
    kwargs: dict[str, Any],
) -> PPO:
    """
    :param policy: The PPO policy (a name or a class).
    :param observation_space: What the learner observes.
    :param action_space: What it acts in.
    :param n_steps: Steps per env in its buffer.
    :param n_envs: Columns of its buffer.
    :param device: Torch device.
    :param kwargs: Further PPO arguments.
    :return: A PPO learner with its spaces set and no env: it never steps envs itself, SB3's ``train()`` runs on the
        buffer it is given.
    """
    learner = PPO(cast(Any, policy), env=cast(GymEnv, None), n_steps=n_steps, device=device, _init_setup_model=False, **kwargs)
    learner.observation_space, learner.action_space, learner.n_envs = observation_space, action_space, n_envs
    sb3_internals.setup_model(learner)
    return learner


def reset_policy(learner: PPO) -> None:
    """Give ``learner`` a freshly initialised policy and optimizer (a new task's master)."""
    learner.policy = learner.policy_class(  # type: ignore[assignment]
        learner.observation_space, learner.action_space, learner.lr_schedule, use_sde=learner.use_sde, **learner.policy_kwargs
    ).to(learner.device)


def train_on(learner: PPO, buffer: RolloutBuffer, progress_remaining: float, log: bool = True) -> None:
    """
    SB3's PPO update of ``learner`` on ``buffer`` (its own buffer and logger are put back after).

    :param learner: A learner built by :func:`make_learner`.
    :param buffer: The filled buffer to learn from.
    :param progress_remaining: MLSH's progress (1 to 0), which the learner's schedules (learning rate, clip range) follow.
    :param log: Record the update's losses (False: nowhere).
    """
    own_buffer, logger = learner.rollout_buffer, learner.logger
    learner.rollout_buffer = buffer
    sb3_internals.set_progress_remaining(learner, progress_remaining)
    if not log:
        learner.set_logger(Logger(folder=None, output_formats=[]))
    try:
        learner.train()
    finally:
        learner.rollout_buffer = own_buffer
        learner.set_logger(logger)
