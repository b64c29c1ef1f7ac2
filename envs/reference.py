"""Reference returns: the scripted oracle of a task family, or any policy function, on fixed seeds."""

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["evaluate_oracle", "evaluate_policy_fn"]


def evaluate_policy_fn(
    env_id: str,
    policy_fn: Callable[[gym.Env, Any], Any],
    n_episodes: int = 20,
    seed: int = 0,
    split: str | None = "test",
    **env_kwargs: Any,
) -> tuple[float, float]:
    """
    Mean and standard deviation of the episode return of ``policy_fn`` on tasks drawn from ``split``.

    :param env_id: A registered id.
    :param policy_fn: ``policy_fn(env, obs) -> action``; it gets the env so that an oracle can read the task.
    :param n_episodes: Episodes, each on a newly drawn task.
    :param seed: Seeds the env and the task draws.
    :param split: The task split to draw from.
    :param env_kwargs: Passed on to ``gymnasium.make``.
    :return: ``(mean, std)`` of the returns.
    """
    env = gym.make(env_id, **env_kwargs)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    sample_tasks = env.get_wrapper_attr("sample_tasks")
    set_task = env.get_wrapper_attr("set_task")
    returns = []
    for _ in range(n_episodes):
        set_task(sample_tasks(1, split=split)[0])
        obs, _ = env.reset()
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy_fn(env, obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns)), float(np.std(returns))


def evaluate_oracle(env_id: str, n_episodes: int = 20, seed: int = 0, **env_kwargs: Any) -> tuple[float, float]:
    """
    :param env_id: A registered id whose env has an ``oracle_action(obs)`` method.
    :param n_episodes: Episodes, each on a newly drawn task.
    :param seed: Seeds the env and the task draws.
    :return: ``(mean, std)`` of the oracle's returns.
    """
    return evaluate_policy_fn(
        env_id, lambda env, obs: env.get_wrapper_attr("oracle_action")(obs), n_episodes, seed, **env_kwargs
    )
