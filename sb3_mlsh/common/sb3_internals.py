"""
The private attributes of Stable-Baselines3 (and one of gymnasium) that MLSH needs and that have no public API, each
behind one small function: the rest of sb3-mlsh calls these and never touches another object's private state, so that
an SB3 release that renames one of them breaks here, in one place. ``tests/test_imports.py`` keeps it so.
"""

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.vec_env import VecEnv

__all__ = ["n_updates", "rollout_samples", "set_n_updates", "set_progress_remaining", "setup_model", "time_limit", "wrap_env"]


def n_updates(learner: PPO) -> int:
    """
    SB3 counts a learner's gradient steps in ``_n_updates`` (logged as ``train/n_updates``) with no public getter.

    :param learner: A PPO learner.
    :return: Its gradient steps so far.
    """
    return learner._n_updates


def set_n_updates(learner: PPO, value: int) -> None:
    """
    Continue a saved learner's count of gradient steps (SB3 has no public setter of ``_n_updates``).

    :param learner: A PPO learner.
    :param value: Its gradient steps so far.
    """
    learner._n_updates = value


def setup_model(learner: PPO) -> None:
    """
    Build a learner created with ``_init_setup_model=False``: SB3 builds its policy and buffer in ``_setup_model()``,
    which only the constructor calls, and MLSH's learners get their spaces set before (they have no env).

    :param learner: A PPO learner with ``observation_space``, ``action_space`` and ``n_envs`` set.
    """
    learner._setup_model()


def set_progress_remaining(learner: PPO, progress_remaining: float) -> None:
    """
    Set the progress (1 to 0) that ``learner.train()`` reads its schedules (learning rate, clip range) at. SB3 sets it
    only from a learner's own ``learn()`` loop, which MLSH's learners never run.

    :param learner: A PPO learner.
    :param progress_remaining: The progress remaining.
    """
    learner._current_progress_remaining = progress_remaining


def rollout_samples(buffer: RolloutBuffer, indices: np.ndarray) -> RolloutBufferSamples:
    """
    The samples of a filled rollout buffer at given flat indices: SB3's public ``get()`` only draws its own shuffled
    minibatches of one size, and distributed MLSH splits a permutation in the number of minibatches all ranks agreed on.

    :param buffer: A filled rollout buffer, flattened by a first ``get()``.
    :param indices: Flat indices into it.
    :return: Those samples, as ``get()`` yields them.
    """
    return buffer._get_samples(indices)


def wrap_env(env: gym.Env, verbose: int = 0) -> VecEnv:
    """
    Wrap one env as SB3's algorithms do with an env passed to them (a ``Monitor`` unless it has one, a ``DummyVecEnv``,
    and ``VecTransposeImage`` for channel-last images); SB3 keeps this in the private static ``_wrap_env``.

    :param env: One env.
    :param verbose: 1: say which wrappers are added.
    :return: The wrapped env.
    """
    return BaseAlgorithm._wrap_env(env, verbose)


def time_limit(wrapper: gym.Wrapper) -> Any:
    """
    The limit of a ``TimeLimit`` wrapper, duck-typed (rl-baselines3-zoo swaps gymnasium's class for a subclass of its
    own). Gymnasium keeps it in ``_max_episode_steps`` and shows it publicly only in the wrapper's ``spec``, which is
    None for an env made without a registered id.

    :param wrapper: Any gymnasium wrapper.
    :return: Its ``_max_episode_steps`` (None where it has none).
    """
    return getattr(wrapper, "_max_episode_steps", None)
