"""
What an MLSH model file holds, and how a loaded model continues: parameters, the task schedule, counters, reward scale,
random streams and, between iterations of a single process, the envs' episodes in progress (an exact resume).
"""

import io
import math
import os
import pathlib
import random
import resource
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from sb3_mlsh.common.observation import ObservationView
from sb3_mlsh.common.run_state import capture_envs, restore_envs
from sb3_mlsh.common.serialization import FORMAT_VERSION, ModelFileError, read_mlsh_model, write_mlsh_model
from sb3_mlsh.common.tasks import TaskSampler
from sb3_mlsh.distributed import RandomStreams, distributed_requested

if TYPE_CHECKING:
    from sb3_mlsh.mlsh.mlsh import MLSH

__all__ = ["check_saved_sizes", "get_parameters", "load_model", "save_model", "set_parameters"]

ModelT = TypeVar("ModelT", bound="MLSH")

#: The constructor arguments a model file records (besides ``stats_window_size``).
INIT_ARGUMENTS = (
    "n_subpolicies", "macro_duration", "warmup_iterations", "joint_iterations", "n_steps", "n_envs", "task_groups",
    "master_kwargs", "subpolicy_kwargs", "policy_kwargs", "master_epsilon", "skill_diversity", "discriminator_kwargs",
    "subpolicy_obs_exclude", "master_obs_exclude", "normalize_reward", "torch_threads", "stagger_groups",
    "vec_env_class", "seed", "max_macro_duration", "normalize_observation",
)  # fmt: skip


def get_parameters(model: "MLSH") -> dict[str, dict]:
    """:return: The state dicts of the sub-policy bank, of each local task group's master and of their optimizers."""
    params = {"subpolicies": model.policy.state_dict(), "subpolicies_optimizer": model.policy.optimizer.state_dict()}
    for group in model.schedule.groups:  # group.index is run-wide: a process holds only its own groups' masters
        params[f"master{group.index}"] = group.master.policy.state_dict()
        params[f"master{group.index}_optimizer"] = group.master.policy.optimizer.state_dict()
    if model.discriminator is not None:
        params["discriminator"] = model.discriminator.state()
    return params


def set_parameters(model: "MLSH", params: dict[str, Any], exact_match: bool) -> None:
    """
    :param params: As :func:`get_parameters` returns them.
    :param exact_match: Require parameters for every master (False: masters missing from ``params`` stay as they are).
    :raises ModelFileError: when the parameters do not fit the model's architecture.
    """
    try:
        model.policy.load_state_dict(params["subpolicies"])
    except (KeyError, RuntimeError) as error:
        raise ModelFileError(
            "The saved sub-policies do not fit this model: it was saved with another n_subpolicies, policy_kwargs, "
            f"env spaces or an incompatible sb3-mlsh version ({str(error).splitlines()[0]}). Load it with the "
            "arguments it was saved with."
        ) from error
    if "subpolicies_optimizer" in params:
        model.policy.optimizer.load_state_dict(params["subpolicies_optimizer"])
    if model.discriminator is not None and "discriminator" in params:
        model.discriminator.load_state(params["discriminator"])
    for group in model.schedule.groups:
        index, master = group.index, group.master
        if f"master{index}" in params:
            master.policy.load_state_dict(params[f"master{index}"])
            if f"master{index}_optimizer" in params:  # absent from a file saved with optimizers=False
                master.policy.optimizer.load_state_dict(params[f"master{index}_optimizer"])
        elif exact_match:
            raise ModelFileError(f"The saved model has no parameters for the master of task group {index}.")


def save_model(model: "MLSH", path: str | pathlib.Path | io.BufferedIOBase, optimizers: bool = True) -> None:
    """
    Write ``model`` to ``path`` (atomically; in a distributed run, a collective call of which rank 0 writes the file).

    :param optimizers: Write the optimizers' states too (False: the weights only).
    """
    subpolicy_updates, master_updates = model.learner_updates()
    data = {
        "mlsh_format_version": FORMAT_VERSION,
        "policy_name": model.policy_name,
        "task_sampler": model.task_sampler,
        "init_kwargs": {
            **{name: getattr(model, name) for name in INIT_ARGUMENTS},
            "stats_window_size": model.stats_window_size,
        },
        "observation_space": model.observation_space,
        "action_space": model.action_space,
        # A save inside an iteration (e.g. by CheckpointCallback) stores the state at the end of the last completed
        # iteration: the unfinished iteration's data has trained nothing yet, so a resume runs it again.
        "num_timesteps": model.completed_timesteps,
        "iteration": model.iteration,
        "trainer": model.schedule.state_dict(),
        "collector_rng": model.exploration_rng.bit_generator.state,
        "reward_scaler": None if model.reward_scaler is None else model.reward_scaler.state_dict(),
        "observation_normalizer": None if model.observation_normalizer is None else model.observation_normalizer.state_dict(),
        "learner_updates": [subpolicy_updates, *master_updates.values()],
        # SB3's minibatch shuffling draws from the global NumPy generator: restore it too for an exact resume.
        "numpy_rng_state": np.random.get_state(),
        "python_rng_state": random.getstate(),
        "run_state": _run_state(model),
        "run_id": model.run_id,
    }
    gathered = model.context.gather_checkpoint(data, get_parameters(model), master_updates, model.n_envs)
    if gathered is None:  # another process writes the file
        return
    gathered_data, params = gathered
    if not optimizers:
        params = {key: value for key, value in params.items() if not key.endswith("_optimizer")}
    write_mlsh_model(path, gathered_data, params, pytorch_variables={"torch_rng_state": th.get_rng_state()})


def _run_state(model: "MLSH") -> dict[str, Any] | None:
    """
    The envs' episodes in progress and the last observations, between iterations of a single-process run: with them a
    loaded model continues exactly where the saved one stopped. None inside an iteration (a save there holds the last
    completed iteration, whose envs have moved on) or for envs whose state cannot be captured.
    """
    between_iterations = model.num_timesteps == model.completed_timesteps
    rollout_start = model.get_rollout_start()
    if model.context.distributed or rollout_start is None or not between_iterations or model.env is None:
        return None
    env_states = capture_envs(model.env)
    if env_states is None:
        return None
    return {"envs": env_states, "last_obs": rollout_start[0], "last_episode_starts": rollout_start[1]}


def load_model(
    cls: type[ModelT],
    path: str | os.PathLike | io.BufferedIOBase,
    task_sampler: TaskSampler | str | Callable[[], gym.Env] | None,
    device: th.device | str,
    trusted: bool,
    env: Any,
    kwargs: dict[str, Any],
) -> ModelT:
    """The body of :meth:`MLSH.load <sb3_mlsh.MLSH.load>`, whose documentation gives the arguments."""
    if isinstance(env, (VecEnv, gym.Env)):
        # The model runs on the caller's envs (the constructor checks them); the tasks come from the task sampler.
        kwargs = {**kwargs, "env": env}
    elif env is not None:
        if task_sampler is not None:
            raise TypeError("Give the task sampler once: task_sampler= or its SB3 name env=, not both.")
        task_sampler = env
    data, params, pytorch_variables = read_mlsh_model(path, device, trusted, set(kwargs), task_sampler is not None)
    check_saved_sizes(path, data, params)
    init_kwargs = {**data["init_kwargs"], **kwargs}
    saved_distributed = data.get("distributed")
    if distributed_requested(kwargs.get("distributed")) and saved_distributed is not None and "n_envs" not in kwargs:
        init_kwargs["n_envs"] = saved_distributed["n_envs_per_process"]
    sampler = task_sampler if task_sampler is not None else data["task_sampler"]
    model = cls(data["policy_name"], sampler, device=device, **init_kwargs)
    for what in ("observation_space", "action_space"):
        saved, given = data.get(what), getattr(model, what)
        if saved is not None and (saved.shape != given.shape or type(saved) is not type(given)):
            raise ValueError(
                f"{path} was trained with {what} {saved}, but the envs of the given task sampler have {given}. "
                "Sub-policies transfer only between families with the same spaces (e.g. AntTwowalk to "
                "AntObstacleCourse): pass a task sampler of such a family, or none to keep the saved one."
            )
    saved_master_space = ObservationView(model.observation_space, data.get("saved_master_obs_exclude")).space
    same_masters = model.task_groups == data["saved_task_groups"] and model.master_view.space == saved_master_space
    if not same_masters:
        # Another number of task groups (e.g. one group for transfer) or another master view keeps the sub-policies
        # only: the masters and the task schedule start afresh.
        params = {key: value for key, value in params.items() if not key.startswith("master")}
    set_parameters(model, params, exact_match=same_masters)
    _restore_progress(model, data, same_masters)
    model.run_id = data.get("run_id") if isinstance(data.get("run_id"), str) else None
    # The caller's envs keep their own episodes.
    same_envs = same_masters and task_sampler is None and env is None and model.n_envs == data["saved_n_envs"]
    if same_envs and data.get("run_state") is not None:
        _restore_run_state(model, data["run_state"])
    streams = model.context.saved_random_streams(data, pytorch_variables.get("torch_rng_state"))
    if streams is not None:
        _restore_random_streams(model, streams)
    return model


#: Fewest bytes an env takes (the env, its wrappers and their buffers), for :func:`check_saved_sizes`.
MIN_BYTES_PER_ENV = 64 * 2**10


def _min_parameters(net_arch: Any) -> int:
    """
    :param net_arch: Hidden layer sizes as SB3 takes them: a list, or ``dict(pi=[...], vf=[...])``.
    :return: The fewest parameters networks with these hidden layers have (the weights and biases between hidden layers
        only): a bound that a model's saved weights always reach.
    """
    if isinstance(net_arch, dict):
        return sum(_min_parameters(layers) for layers in net_arch.values())
    if not isinstance(net_arch, (list, tuple)) or not all(isinstance(n, int) and n > 0 for n in net_arch):
        return 0  # nothing to bound: the constructor checks the value itself
    return sum(a * b for a, b in zip(net_arch[:-1], net_arch[1:])) + sum(net_arch)


def _numel(tree: Any) -> int:
    if th.is_tensor(tree):
        return tree.numel()
    if isinstance(tree, dict):
        return sum(_numel(value) for value in tree.values())
    return 0


def _memory_limit() -> int:
    """:return: The bytes this process may use: the machine's memory, or less under an address-space limit."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return limit if soft == resource.RLIM_INFINITY else min(limit, soft)


def _flat_size(space: Any) -> int:
    if isinstance(space, spaces.Discrete):
        return 1
    if isinstance(space, spaces.Dict):
        return sum(_flat_size(value) for value in space.spaces.values())
    return math.prod(getattr(space, "shape", None) or (1,))


def check_saved_sizes(path: Any, data: dict[str, Any], params: dict[str, Any]) -> None:
    """
    Check the sizes that a model file asks the constructor for before anything is built: sizes that shape weights
    (K, hidden layers, task groups) against the saved weights, which the file had to hold; the rollout buffers and envs
    (``n_steps``, ``n_envs``) against this machine's memory. Arguments the caller gives anew are not checked.

    :param path: The file, for messages.
    :param data: As :func:`~sb3_mlsh.common.serialization.read_mlsh_model` returns it.
    :param params: The saved parameters.
    :raises ModelFileError: for a size that no saved model of these weights has, or buffers this machine cannot hold.
    """
    kwargs = data["init_kwargs"]
    theta = params.get("subpolicies", {}).get("theta") if isinstance(params.get("subpolicies"), dict) else None
    if not th.is_tensor(theta) or theta.dim() != 2:
        raise ModelFileError(f"{path} holds no sub-policy weights (subpolicies.theta): not a complete sb3-mlsh model.")
    n_saved, width = theta.shape

    def refuse(asked: str, saved: str) -> ModelFileError:
        return ModelFileError(
            f"{path} asks for {asked}, but its saved weights are those of {saved}: the file is corrupt or crafted. Refused "
            "before building anything; to use these weights with other arguments, pass them anew (MLSH.load(path, ...))."
        )

    n_subpolicies = kwargs.get("n_subpolicies", n_saved)
    if n_subpolicies != n_saved:
        raise refuse(f"n_subpolicies = {n_subpolicies!r}", f"{n_saved} sub-policies")
    policy_kwargs = kwargs.get("policy_kwargs")
    bank_arch = policy_kwargs.get("net_arch") if isinstance(policy_kwargs, dict) else None
    if _min_parameters(bank_arch) > width:
        raise refuse(
            f"policy_kwargs net_arch = {bank_arch!r} (at least {_min_parameters(bank_arch)} weights per sub-policy)",
            f"{width} weights per sub-policy",
        )
    masters = [key for key in params if key.startswith("master") and not key.endswith("_optimizer")]
    task_groups = kwargs.get("task_groups", len(masters))
    if masters and task_groups != len(masters):
        raise refuse(f"task_groups = {task_groups!r}", f"{len(masters)} task groups' masters")
    master_kwargs = kwargs.get("master_kwargs")
    master_policy = master_kwargs.get("policy_kwargs") if isinstance(master_kwargs, dict) else None
    master_arch = master_policy.get("net_arch") if isinstance(master_policy, dict) else None
    master_size = min((_numel(params[key]) for key in masters), default=0)
    if _min_parameters(master_arch) > master_size:
        raise refuse(
            f"master_kwargs policy_kwargs net_arch = {master_arch!r} (at least {_min_parameters(master_arch)} weights)",
            f"masters of {master_size} weights",
        )
    discriminator_kwargs = kwargs.get("discriminator_kwargs")
    discriminator_arch = discriminator_kwargs.get("net_arch") if isinstance(discriminator_kwargs, dict) else None
    discriminator_size = _numel(params.get("discriminator", {}))
    diversity = kwargs.get("skill_diversity", 0)
    builds_discriminator = "discriminator" in params or (isinstance(diversity, (int, float)) and diversity > 0)
    if builds_discriminator and _min_parameters(discriminator_arch) > discriminator_size:
        raise refuse(
            f"discriminator_kwargs net_arch = {discriminator_arch!r} (at least {_min_parameters(discriminator_arch)} weights)",
            f"a discriminator of {discriminator_size} weights",
        )
    n_steps, n_envs = kwargs.get("n_steps", 1), kwargs.get("n_envs", 1)
    if not (isinstance(n_steps, int) and isinstance(n_envs, int)) or n_steps < 1 or n_envs < 1:
        return  # the constructor refuses them with its own message
    # Float32 rollout buffers: the sub-policies' (observation, one-hot, action and six numbers per step) and the masters'.
    per_step = 4 * (2 * _flat_size(data.get("observation_space")) + n_saved + _flat_size(data.get("action_space")) + 13)
    needed = n_steps * n_envs * per_step + n_envs * MIN_BYTES_PER_ENV
    if needed > _memory_limit():
        raise ModelFileError(
            f"{path} asks for n_steps = {n_steps} and n_envs = {n_envs}: its rollout buffers and envs alone need "
            f"{needed / 2**30:.1f} GiB, more than the {_memory_limit() / 2**30:.1f} GiB this process may use. Refused "
            "before building anything: the file is corrupt or crafted, or pass smaller values anew "
            "(MLSH.load(path, n_steps=..., n_envs=...))."
        )


def _restore_progress(model: "MLSH", data: dict[str, Any], same_masters: bool) -> None:
    """Counters, the task schedule (with the same task groups and master view), the reward scale and the learners'
    update counts."""
    subpolicy_updates, *master_updates = data["learner_updates"]
    model.restore_counters(data["num_timesteps"], subpolicy_updates, master_updates)
    model.iteration = data["iteration"]
    if same_masters:
        model.schedule.load_state_dict(data["trainer"])
    if model.reward_scaler is not None and data.get("reward_scaler") is not None:
        model.reward_scaler.load_state_dict(data["reward_scaler"])
    saved_statistics = data.get("observation_normalizer")
    if (model.observation_normalizer is None) != (saved_statistics is None):
        raise ValueError(
            f"The model was trained with normalize_observation={saved_statistics is not None}: its networks take "
            f"observations {'scaled by its saved statistics' if saved_statistics is not None else 'unscaled'}. Load it "
            "without overriding normalize_observation."
        )
    if model.observation_normalizer is not None and saved_statistics is not None:
        model.observation_normalizer.load_state_dict(saved_statistics)


def _restore_run_state(model: "MLSH", run_state: dict[str, Any]) -> None:
    """The envs continue their episodes: the next ``learn`` starts where the saved model stopped."""
    if not model.context.distributed and model.env is not None and restore_envs(model.env, run_state["envs"]):
        model.set_rollout_start(run_state["last_obs"], run_state["last_episode_starts"])


def _restore_random_streams(model: "MLSH", streams: RandomStreams) -> None:
    if streams.get("collector_rng") is not None:
        model.exploration_rng.bit_generator.state = streams["collector_rng"]
    if streams.get("torch_rng_state") is not None:
        th.set_rng_state(streams["torch_rng_state"].cpu())
    if streams.get("numpy_rng_state") is not None:
        np.random.set_state(streams["numpy_rng_state"])
    if streams.get("python_rng_state") is not None:
        version, internal, gauss = streams["python_rng_state"]  # JSON turns the tuples into lists
        random.setstate((version, tuple(internal), gauss))
