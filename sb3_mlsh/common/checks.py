"""
Checks that refuse what MLSH cannot learn from, with errors that name the fix: bad arguments, unsupported spaces, task
samplers that break the task protocol, and non-finite updates (no optimizer step from a NaN or inf gradient).
"""

import copy
import difflib
import inspect
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.preprocessing import is_image_space

from sb3_mlsh.common import sb3_internals
from sb3_mlsh.common.observation import index_obs
from sb3_mlsh.common.tasks import TaskProtocolError, TaskSampler
from sb3_mlsh.common.type_aliases import Obs

__all__ = [
    "MAX_SENSIBLE_SUBPOLICIES",
    "RESERVED_LEARNER_KWARGS",
    "NonFiniteError",
    "all_finite",
    "check_arguments",
    "check_finite_gradients",
    "check_finite_step",
    "check_spaces",
    "check_task_sampler",
    "guard_optimizer",
    "learner_kwargs",
    "max_episode_steps",
    "refuse_unknown_arguments",
]


class NonFiniteError(ValueError):
    """Raised when an env returns NaN or inf, or an update would make a learner's parameters non-finite."""


def all_finite(obs: Obs) -> bool:
    """:return: Whether every float in the observation (an array, or a mapping of arrays) is finite."""
    values = obs.values() if isinstance(obs, dict) else [obs]
    return all(np.isfinite(value).all() for value in values if np.issubdtype(np.asarray(value).dtype, np.floating))


def _raise_non_finite(what: str, step: int, env_index: int) -> None:
    wrapper = "TransformReward" if what == "reward" else "TransformObservation (or ClipObservation)"
    raise NonFiniteError(
        f"Env {env_index} returned a non-finite {what} (NaN or inf) at rollout step {step}. MLSH cannot learn from it: "
        f"fix the env, or clip/sanitise its outputs with a wrapper (e.g. gymnasium.wrappers.{wrapper})."
    )


def check_finite_step(step: int, rewards: np.ndarray, new_obs: Obs, dones: np.ndarray, infos: list[dict]) -> None:
    """
    :raises NonFiniteError: naming the env and the step, if a VecEnv step returned a NaN or inf reward, observation or
        final observation of an episode.
    """
    if not np.isfinite(rewards).all():
        _raise_non_finite("reward", step, int(np.flatnonzero(~np.isfinite(rewards))[0]))
    if not all_finite(new_obs):
        first = next(i for i in range(len(rewards)) if not all_finite(index_obs(new_obs, np.array([i]))))
        _raise_non_finite("observation", step, first)
    for env_index in np.flatnonzero(dones):
        terminal = infos[env_index].get("terminal_observation")
        if terminal is not None and not all_finite(terminal):
            _raise_non_finite("final observation of an episode", step, int(env_index))


#: Above this many sub-policies MLSH warns: each would see too little data to learn a skill.
MAX_SENSIBLE_SUBPOLICIES = 64
#: PPO arguments that MLSH sets itself.
RESERVED_LEARNER_KWARGS = {"env", "n_steps", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model", "policy"}
#: The arguments of SB3's PPO that the two learners take.
_PPO_ARGUMENTS = set(inspect.signature(PPO.__init__).parameters) - {"self", "policy", "env"}


def check_finite_gradients(parameters: Iterable[th.Tensor], learner: str, iteration: int) -> None:
    """
    :param parameters: The parameters about to be stepped.
    :param learner: Which learner, for the message.
    :param iteration: The iteration being trained, for the message.
    :raises NonFiniteError: if a gradient holds NaN or inf (the caller has not stepped: parameters are unchanged).
    """
    grads = [param.grad for param in parameters if param.grad is not None]
    if grads and not bool(th.stack([th.isfinite(grad).all() for grad in grads]).all()):
        raise NonFiniteError(
            f"The {learner}'s gradient is not finite (NaN or inf) in the update of iteration {iteration}: the update was "
            "refused and its parameters are as they were. Likely source: rewards too large for float32 losses (scale "
            "them: normalize_reward=True, or gymnasium.wrappers.TransformReward), or observations with huge values "
            "(clip them, e.g. gymnasium.wrappers.ClipObservation)."
        )


def guard_optimizer(optimizer: th.optim.Optimizer, learner: str, iteration: Callable[[], int]) -> None:
    """
    Make ``optimizer.step()`` check the gradients first (one device sync per step).

    :param optimizer: A torch optimizer (e.g. a master's Adam).
    :param learner: Which learner, for the message.
    :param iteration: Returns the iteration being trained.
    """

    def check(optimizer: th.optim.Optimizer, args: Any, kwargs: Any) -> None:
        check_finite_gradients((p for group in optimizer.param_groups for p in group["params"]), learner, iteration())

    optimizer.register_step_pre_hook(check)


# ---------------------------------------------------------------------------------------------------------- arguments
def refuse_unknown_arguments(unknown: dict[str, Any], own_arguments: set[str]) -> None:
    """
    :param unknown: Keyword arguments that MLSH does not take (none: nothing to refuse).
    :param own_arguments: The names MLSH takes.
    :raises TypeError: naming, for each, the learner that takes it (PPO's arguments) or the closest valid name.
    """
    if not unknown:
        return
    hints = []
    for name in sorted(unknown):
        if name in _PPO_ARGUMENTS:
            hints.append(
                f"{name!r} is an argument of the two PPO learners: pass master_kwargs=dict({name}=...) and/or "
                f"subpolicy_kwargs=dict({name}=...)"
            )
        else:
            close = difflib.get_close_matches(name, own_arguments | _PPO_ARGUMENTS, n=1)
            hints.append(f"unknown argument {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError("MLSH(): " + "; ".join(hints) + ".")


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= minimum)


def check_arguments(
    n_subpolicies: int,
    macro_duration: int,
    warmup_iterations: int,
    joint_iterations: int,
    n_steps: int,
    n_envs: int,
    task_groups: int,
    master_epsilon: float,
    skill_diversity: float,
    normalize_reward: bool,
    torch_threads: int | None,
    processes: int = 1,
    distributed: bool = False,
    max_macro_duration: int | None = None,
    normalize_observation: bool = False,
) -> None:
    """
    :param processes: Processes of the run.
    :param distributed: Whether the run is distributed (even over one process).
    :param max_macro_duration: The longest macro-step of a randomised time commitment (None: none).
    :param normalize_observation: Whether observations are scaled by running statistics.
    :raises ValueError: listing every argument of MLSH's schedule and options that is out of range.
    :raises NotImplementedError: for an option that a distributed run does not support.
    """
    problems = []
    if not _is_int(n_subpolicies, 1):
        problems.append(f"n_subpolicies (K) must be an integer >= 1, got {n_subpolicies!r}")
    if not _is_int(macro_duration, 1):
        problems.append(f"macro_duration (N) must be an integer >= 1, got {macro_duration!r}")
    elif max_macro_duration is not None and not _is_int(max_macro_duration, macro_duration):
        problems.append(
            f"max_macro_duration must be None or an integer >= macro_duration ({macro_duration}), got {max_macro_duration!r}"
        )
    for name, value in (("warmup_iterations (W)", warmup_iterations), ("joint_iterations (U)", joint_iterations)):
        if not _is_int(value, 0):
            problems.append(f"{name} must be an integer >= 0, got {value!r}")
    if not problems and warmup_iterations + joint_iterations == 0:
        problems.append("warmup_iterations + joint_iterations must be >= 1: a task must last at least one iteration")
    if not _is_int(n_steps, 1):
        problems.append(f"n_steps (D, steps per env per iteration) must be an integer >= 1, got {n_steps!r}")
    if not _is_int(n_envs, 1):
        problems.append(f"n_envs must be an integer >= 1, got {n_envs!r}")
    if not _is_int(task_groups, 1):
        problems.append(f"task_groups (G) must be an integer >= 1, got {task_groups!r}")
    elif processes > 1 and task_groups % processes == 0 and task_groups // processes > n_envs:
        problems.append(
            f"task_groups per process ({task_groups} / {processes} processes) cannot exceed n_envs per process "
            f"({n_envs}): every group needs at least one env"
        )
    elif processes == 1 and _is_int(n_envs, 1) and task_groups > n_envs:
        problems.append(f"task_groups ({task_groups}) cannot exceed n_envs ({n_envs}): every group needs at least one env")
    if not 0.0 <= master_epsilon <= 1.0:
        problems.append(f"master_epsilon must be a probability in [0, 1], got {master_epsilon!r}")
    if not (isinstance(skill_diversity, (int, float, np.integer, np.floating)) and 0.0 <= skill_diversity < float("inf")):
        problems.append(f"skill_diversity must be a finite number >= 0, got {skill_diversity!r}")
    elif skill_diversity > 0 and _is_int(n_subpolicies, 1) and n_subpolicies < 2:
        problems.append("skill_diversity > 0 needs n_subpolicies >= 2 (one skill has no rival)")
    if not isinstance(normalize_reward, (bool, np.bool_)):
        problems.append(f"normalize_reward must be True or False, got {normalize_reward!r}")
    if not isinstance(normalize_observation, (bool, np.bool_)):
        problems.append(f"normalize_observation must be True or False, got {normalize_observation!r}")
    if torch_threads is not None and not _is_int(torch_threads, 1):
        problems.append(f"torch_threads must be a positive integer or None, got {torch_threads!r}")
    if problems:
        raise ValueError("Invalid MLSH arguments: " + "; ".join(problems) + ".")
    if skill_diversity > 0 and distributed:
        raise NotImplementedError(
            "skill_diversity is not supported in distributed mode yet (each process's discriminator would learn from its "
            "own data only): train with skill_diversity in one process, or set skill_diversity=0."
        )
    if normalize_observation and distributed:
        raise NotImplementedError(
            "normalize_observation is not supported in distributed mode yet (each process would scale the shared "
            "sub-policies' inputs by its own statistics): train with it in one process, or set normalize_observation=False "
            "(-params normalize_observation:false; the HumanoidWalkCrawl YAML sets it) and scale the observations in the "
            "env (e.g. gymnasium.wrappers.TransformObservation with fixed statistics)."
        )


def learner_kwargs(name: str, defaults: dict[str, Any], given: dict[str, Any] | None, distributed: bool) -> dict[str, Any]:
    """
    :param name: ``"master_kwargs"`` or ``"subpolicy_kwargs"``, for the message.
    :param defaults: That learner's defaults.
    :param given: The PPO arguments given for it.
    :param distributed: Whether the run is distributed.
    :return: The defaults updated with the given arguments, checked.
    :raises ValueError: for an argument that MLSH sets itself, one that PPO does not take (with the closest name), a
        ``batch_size`` below 2, or ``target_kl`` in a distributed run.
    """
    kwargs = {**defaults, **(given or {})}
    reserved = RESERVED_LEARNER_KWARGS.intersection(kwargs)
    if reserved:
        raise ValueError(f"{name} may not set {sorted(reserved)}: MLSH sets these itself (pass them to MLSH()).")
    batch_size = kwargs.get("batch_size")
    if isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool) and batch_size < 2:
        # PPO normalises the advantages over each minibatch: one sample has no spread (SB3 asserts it).
        raise ValueError(
            f"{name}['batch_size'] must be an integer >= 2 (PPO normalises advantages per minibatch), got {batch_size}."
        )
    for key in sorted(set(kwargs) - _PPO_ARGUMENTS - RESERVED_LEARNER_KWARGS):
        close = difflib.get_close_matches(key, _PPO_ARGUMENTS, n=1)
        hint = f": did you mean {close[0]!r}?" if close else "."
        raise ValueError(f"{name}[{key!r}] is not an argument of SB3's PPO{hint}")
    if distributed and kwargs.get("target_kl") is not None:
        # An early stop decided from local data would leave the other processes waiting in a collective.
        raise ValueError(
            f"{name}['target_kl'] is not supported in distributed mode: each process would stop its epochs at "
            "a different minibatch. Remove target_kl (or lower n_epochs / the learning rate instead)."
        )
    return kwargs


# ------------------------------------------------------------------------------------------------------------- spaces


def max_episode_steps(env: gym.Env) -> int | None:
    """:return: The time limit of ``env`` (its spec's, or that of a ``TimeLimit`` wrapper), None when it has none."""
    spec = getattr(env, "spec", None)
    if spec is not None and spec.max_episode_steps is not None:
        return int(spec.max_episode_steps)
    while isinstance(env, gym.Wrapper):
        limit = sb3_internals.time_limit(env)  # duck-typed: rl-baselines3-zoo subclasses gymnasium's TimeLimit
        if isinstance(limit, int):
            return limit
        env = env.env
    return None


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """:raises TypeError: for spaces MLSH does not support, naming the wrapper that fixes them."""
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        raise TypeError(
            f"Unsupported action space {action_space}: MLSH supports Discrete and Box actions. "
            "Flatten MultiDiscrete/MultiBinary actions into a Discrete space with a wrapper."
        )
    if isinstance(observation_space, spaces.Dict):
        for key, space in observation_space.spaces.items():
            if not isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)):
                raise TypeError(f"Unsupported space {space} under key {key!r} of the Dict observation: flatten it first.")
        return
    if not isinstance(observation_space, spaces.Box):
        raise TypeError(
            f"Unsupported observation space {observation_space}: MLSH supports Box and Dict observations. "
            "Wrap the env with gymnasium.wrappers.FlattenObservation (a Discrete observation becomes a one-hot Box)."
        )
    if is_image_space(observation_space):
        raise TypeError(
            f"Image observations {observation_space.shape} are not supported by the MLP sub-policy bank yet; "
            "extract features first (e.g. a wrapper with a pretrained encoder) or flatten them."
        )


def check_task_sampler(
    task_sampler: TaskSampler, policy_name: str, macro_duration: int, n_subpolicies: int
) -> tuple[spaces.Space, spaces.Space]:
    """
    Try the task protocol on a probe env: draw tasks, set each and reset, and check that the spaces stay the same.

    :param task_sampler: The task sampler.
    :param policy_name: ``"MlpPolicy"`` or ``"MultiInputPolicy"``.
    :param macro_duration: N, checked against the episode length.
    :param n_subpolicies: K.
    :return: The observation and action spaces of the family.
    :raises TaskProtocolError: naming what to fix in the env.
    """
    probe = task_sampler.probe_env
    observation_space, action_space = probe.observation_space, probe.action_space
    check_spaces(observation_space, action_space)
    if policy_name == "MlpPolicy" and isinstance(observation_space, spaces.Dict):
        raise TypeError("The env has Dict observations: use MLSH('MultiInputPolicy', ...) instead of 'MlpPolicy'.")
    env_class = type(probe.unwrapped).__name__
    env_id = task_sampler.env_id
    env_id = env_id if env_id == env_class else f"{env_id} ({env_class})"
    try:
        tasks = task_sampler.sample(3)
    except TaskProtocolError:
        raise
    except Exception as error:
        raise TaskProtocolError(
            f"The task sampler of {env_id!r} failed to draw tasks: its sample_tasks() raised "
            f"{type(error).__name__}: {error}. Fix the env's sample_tasks(n) (it must return a list of n tasks)."
        ) from error
    # A task must not change the spaces: the masters and the bank are built once for all tasks.
    for task in tasks:
        try:
            probe.get_wrapper_attr("set_task")(task)
            obs, _ = probe.reset()
        except Exception as error:
            raise TaskProtocolError(
                f"set_task({task!r}) then reset() of {env_id!r} raised {type(error).__name__}: {error}. "
                "Every task that sample_tasks() draws must be accepted by set_task()."
            ) from error
        if not all_finite(obs):
            raise NonFiniteError(
                f"After set_task({task!r}) and reset(), the observation of {env_id!r} holds NaN or inf: MLSH cannot learn "
                "from it. Fix the env, or sanitise its observations with a wrapper "
                "(e.g. gymnasium.wrappers.TransformObservation with numpy.nan_to_num)."
            )
        if probe.observation_space != observation_space or probe.action_space != action_space:
            raise TaskProtocolError(
                f"Task {task!r} of {task_sampler.env_id!r} changes the spaces to {probe.observation_space} / "
                f"{probe.action_space} (first task: {observation_space} / {action_space}). All tasks of a family must "
                "share one observation and action space: pad observations to a common shape."
            )
        if not observation_space.contains(obs):
            raise TaskProtocolError(
                f"After set_task({task!r}) and reset(), the observation of {task_sampler.env_id!r} is outside its "
                f"observation space {observation_space}. Fix the env's observation_space."
            )
    _check_step(probe, env_id, action_space)
    _warn_about_sizes(probe, task_sampler.env_id, macro_duration, n_subpolicies)
    return observation_space, action_space


def _check_step(probe: gym.Env, env_id: str, action_space: spaces.Space) -> None:
    """
    One step of the probe env (which only reads spaces and draws tasks, reseeded at each draw) with an action from a
    seeded copy of the action space, so that no generator of the run moves: a reward that is not one number would
    otherwise fail deep inside SB3's Monitor at the first step of training, without naming the env.
    """
    space = copy.deepcopy(action_space)
    space.seed(0)
    try:
        _, reward, _, _, _ = probe.step(space.sample())
    except Exception as error:
        raise TaskProtocolError(
            f"step() of {env_id!r} after reset() raised {type(error).__name__}: {error}. Fix the env's step(): it must "
            f"accept any action of its action space {action_space}."
        ) from error
    array = np.asarray(reward)
    if array.shape != () or array.dtype.kind not in "biuf":
        raise TaskProtocolError(
            f"step() of {env_id!r} returned a reward of shape {array.shape} and type {type(reward).__name__} ({reward!r}): "
            "a gymnasium env returns one number per step. Return float(reward) (for a one-element array: reward.item())."
        )


def _warn_about_sizes(probe: gym.Env, env_id: str, macro_duration: int, n_subpolicies: int) -> None:
    """Warn about arguments that are legal but almost surely not what the user wants."""
    episode_length = max_episode_steps(probe)
    if episode_length is not None and macro_duration > episode_length:
        warnings.warn(
            f"macro_duration (N={macro_duration}) is larger than the episode length of "
            f"{env_id!r} ({episode_length} steps): every macro-step is cut by the end of its episode, "
            "so the master decides once per episode. Use N < episode length (the paper: N between 10 and 200).",
            UserWarning,
        )
    if n_subpolicies > MAX_SENSIBLE_SUBPOLICIES:
        warnings.warn(
            f"n_subpolicies (K={n_subpolicies}) is larger than {MAX_SENSIBLE_SUBPOLICIES}: each sub-policy then sees "
            f"about 1/{n_subpolicies} of the data, the master's Discrete({n_subpolicies}) choice is hard to "
            "learn, and the bank costs K networks. The paper uses K between 2 and 4.",
            UserWarning,
        )
