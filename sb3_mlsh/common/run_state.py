"""The envs' side of a run in progress, so that save, load and continue is the uninterrupted run, bit for bit."""

import copy
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

__all__ = ["capture_envs", "monitor_files", "restore_envs"]

#: What each wrapper of a registered env (and SB3's Monitor) keeps about the episode in progress.
WRAPPER_FIELDS: dict[type, tuple[str, ...]] = {
    Monitor: ("rewards", "needs_reset", "total_steps"),
    TimeLimit: ("_elapsed_steps",),
    OrderEnforcing: ("_has_reset",),
    # Which one-time checks ran (a continued episode must not be checked as if it had just been reset).
    PassiveEnvChecker: ("checked_reset", "checked_step", "checked_render", "checked_data_reuse"),
}


def _layers(env: gym.Env) -> tuple[list[gym.Wrapper], gym.Env]:
    layers = []
    while isinstance(env, gym.Wrapper):
        layers.append(env)
        env = env.env
    return layers, env


def capture_envs(vec_env: VecEnv) -> list[dict[str, Any]] | None:
    """
    :param vec_env: The model's VecEnv.
    :return: Each env's episode in progress (its wrappers' counters and the env's own ``get_episode_state()``), or None when
        that cannot be captured: a ``SubprocVecEnv``, an env without ``get_episode_state`` (the shipped families have it), or a
        wrapper whose state is unknown here.
    """
    if not isinstance(vec_env, DummyVecEnv):
        return None
    states = []
    for env in vec_env.envs:
        layers, base = _layers(env)
        if any(type(layer) not in WRAPPER_FIELDS for layer in layers) or not callable(
            getattr(base, "get_episode_state", None)
        ):
            return None
        wrappers = [
            {"type": type(layer).__name__, **{f: copy.deepcopy(getattr(layer, f)) for f in WRAPPER_FIELDS[type(layer)]}}
            for layer in layers
        ]
        states.append({"wrappers": wrappers, "env": base.get_episode_state()})  # type: ignore[attr-defined]
    return states


def restore_envs(vec_env: VecEnv, states: list[dict[str, Any]]) -> bool:
    """
    :param vec_env: A freshly built VecEnv of the same family and size.
    :param states: What :func:`capture_envs` returned.
    :return: Whether every env was restored (False, and nothing changed, when the layout differs).
    """
    if not isinstance(vec_env, DummyVecEnv) or len(vec_env.envs) != len(states):
        return False
    chains = [_layers(env) for env in vec_env.envs]
    for (layers, base), state in zip(chains, states):
        if [type(layer).__name__ for layer in layers] != [w["type"] for w in state["wrappers"]]:
            return False
        if not callable(getattr(base, "set_episode_state", None)):
            return False
    for (layers, base), state in zip(chains, states):
        for layer, saved in zip(layers, state["wrappers"]):
            for field in WRAPPER_FIELDS[type(layer)]:
                setattr(layer, field, copy.deepcopy(saved[field]))
        base.set_episode_state(state["env"])  # type: ignore[attr-defined]
    return True


def monitor_files(vec_env: VecEnv) -> list[str] | None:
    """
    :param vec_env: The model's VecEnv.
    :return: The CSV files its envs' ``Monitor`` wrappers write (none when they write none), or None for a VecEnv whose
        envs live in other processes (``SubprocVecEnv``).
    """
    if not isinstance(vec_env, DummyVecEnv):
        return None
    files = []
    for env in vec_env.envs:
        for layer in _layers(env)[0]:
            writer = getattr(layer, "results_writer", None) if isinstance(layer, Monitor) else None
            if writer is not None:
                files.append(writer.file_handler.name)
    return files
