"""Train and tune MLSH with rl-baselines3-zoo (``pip install sb3-mlsh[zoo]``).

The zoo builds a VecEnv from ``--env`` and passes it to ``ALGOS[algo](env=..., **hyperparams)``. MLSH builds its own
envs from a task sampler, so :class:`ZooMLSH` takes the task family from that VecEnv's env id (and its ``env_kwargs``,
number of envs, VecEnv class and Monitor folder), closes it and builds MLSH's own. :func:`register` adds ``"mlsh"`` to
the zoo's ``ALGOS``, its Optuna sampler to ``HYPERPARAMS_SAMPLER`` and a converter to ``HYPERPARAMS_CONVERTER``.

Example::

    python -m sb3_mlsh.cli.zoo --algo mlsh --env mlsh/MovementBandits-v0 -n 200000
    python -m sb3_mlsh.cli.zoo --algo mlsh --env mlsh/MovementBandits-v0 -n 50000 -optimize --n-trials 20 --n-jobs 1

Without ``--conf-file`` the YAML shipped with sb3-mlsh is used (its entries are zoo entries: constructor arguments plus
``n_timesteps``, ``n_envs`` and ``policy``).
"""

import functools
import os
import pathlib
import sys
from typing import Any

from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper

from sb3_mlsh.cli.hyperparams import (
    CONSTRUCTOR_KEYS,
    HyperparameterError,
    default_hyperparams_file,
    load_hyperparams,
    parse_hyperparams,
)
from sb3_mlsh.common.tasks import TaskSampler, as_task_sampler, ensure_registered
from sb3_mlsh.mlsh import MLSH

__all__ = ["ZooMLSH", "convert_mlsh_params", "main", "register", "sample_mlsh_params"]

#: Name of MLSH in the zoo's ``ALGOS``.
ALGO_NAME = "mlsh"


def _task_sampler_from_vec_env(env: VecEnv) -> tuple[TaskSampler, dict[str, Any]]:
    """
    :param env: The VecEnv that the zoo made from ``--env``.
    :return: A task sampler of the same family, and the MLSH arguments read off the VecEnv
        (``n_envs``, ``vec_env_class``, ``monitor_dir``).
    """
    if isinstance(env, VecEnvWrapper):
        raise ValueError(
            f"MLSH builds its own envs and cannot use the zoo's {type(env).__name__}: remove `normalize`, `frame_stack` "
            "and `vec_env_wrapper` from the MLSH hyperparameters."
        )
    spec = env.get_attr("spec", indices=[0])[0]
    if spec is None:
        raise ValueError("The zoo's env has no spec (it was not made from a registered id): MLSH needs the env id.")
    env_kwargs = dict(spec.kwargs or {})
    sampler = as_task_sampler(spec.id, split="train", env_kwargs=env_kwargs)
    monitor_dir = None
    if isinstance(env, DummyVecEnv) and isinstance(env.envs[0], Monitor) and env.envs[0].results_writer is not None:
        monitor_dir = os.path.dirname(env.envs[0].results_writer.file_handler.name)
    extra = {
        "n_envs": env.num_envs,
        "vec_env_class": SubprocVecEnv if isinstance(env, SubprocVecEnv) else DummyVecEnv,
        "monitor_dir": monitor_dir,
    }
    # MLSH's own envs replace these (and rewrite the same Monitor files).
    env.close()
    return sampler, extra


def _merge_learning_rates(kwargs: dict[str, Any], master_lr: float | None, subpolicy_lr: float | None) -> dict[str, Any]:
    for key, value in (("master_kwargs", master_lr), ("subpolicy_kwargs", subpolicy_lr)):
        if value is not None:
            kwargs[key] = {**(kwargs.get(key) or {}), "learning_rate": value}
    return kwargs


class ZooMLSH(MLSH):
    """
    :class:`~sb3_mlsh.MLSH` with the constructor the zoo calls: ``ZooMLSH(env=vec_env, policy=..., **hyperparams)``.

    :param policy: The policy name (``"MlpPolicy"`` or ``"MultiInputPolicy"``).
    :param env: The zoo's VecEnv (its env id, ``env_kwargs``, number of envs, VecEnv class and Monitor folder are
        used; the VecEnv itself is closed), or anything :class:`~sb3_mlsh.MLSH` takes as task sampler.
    :param master_learning_rate: Shortcut for ``master_kwargs["learning_rate"]`` (a flat key for Optuna).
    :param subpolicy_learning_rate: Shortcut for ``subpolicy_kwargs["learning_rate"]``.
    :param kwargs: :class:`~sb3_mlsh.MLSH` arguments; ``master_kwargs``, ``subpolicy_kwargs`` and ``policy_kwargs``
        may be ``"dict(...)"`` strings and their learning rates ``"lin_<x>"`` schedules, as in ``python -m sb3_mlsh.train``.
    """

    def __init__(
        self,
        policy: str,
        env: VecEnv | TaskSampler | str,
        master_learning_rate: float | None = None,
        subpolicy_learning_rate: float | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(env, VecEnv):
            task_sampler, extra = _task_sampler_from_vec_env(env)
            kwargs = {**extra, **{key: value for key, value in kwargs.items() if key not in extra or value is not None}}
        else:
            task_sampler = env  # type: ignore[assignment]
        yaml_style = {key: value for key, value in kwargs.items() if key in CONSTRUCTOR_KEYS}
        parsed, _, _ = parse_hyperparams(yaml_style, getattr(task_sampler, "env_id", str(task_sampler)))
        kwargs = _merge_learning_rates({**kwargs, **parsed}, master_learning_rate, subpolicy_learning_rate)
        super().__init__(policy, task_sampler, **kwargs)

    @classmethod
    def load(  # type: ignore[override]
        cls, path: str | pathlib.Path, env: VecEnv | None = None, device: str = "auto", **kwargs: Any
    ) -> "ZooMLSH":
        """
        Load a model for the zoo's ``--trained-agent`` (continue training).

        :param path: The zip file.
        :param env: The zoo's VecEnv (see :class:`ZooMLSH`); None: the task sampler the model was trained with.
        :param device: Torch device.
        :param kwargs: Constructor arguments to override.
        :return: The model.
        """
        task_sampler = None
        if isinstance(env, VecEnv):
            task_sampler, extra = _task_sampler_from_vec_env(env)
            kwargs = {**extra, **kwargs}
        return super().load(path, task_sampler=task_sampler, device=device, **kwargs)  # type: ignore[return-value]


def convert_mlsh_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    :param sampled_params: The Optuna parameters of a trial (as :func:`sample_mlsh_params` names them).
    :return: :class:`ZooMLSH` arguments.
    """
    return dict(sampled_params)


MACRO_DURATIONS = (5, 10, 20, 50, 100, 200)


def search_space(env_id: str | None) -> dict[str, Any]:
    """
    The Optuna ranges for a task family, taken from its episode length and its YAML entry: N below the episode length,
    K from 2 to twice the family's K, W from 1 to twice its W (at least 4), each learning rate from a tenth to three
    times the family's. Without a family (or an entry): the ranges of the paper's families together.

    :param env_id: The family's env id.
    :return: ``macro_duration`` (choices), ``n_subpolicies`` / ``warmup_iterations`` (low, high) and the two learning
        rates (low, high).
    """
    space: dict[str, Any] = {
        "macro_duration": MACRO_DURATIONS,
        "n_subpolicies": (2, 8),
        "warmup_iterations": (1, 30),
        "master_learning_rate": (1e-4, 3e-2),
        "subpolicy_learning_rate": (1e-5, 3e-3),
    }
    if env_id is None:
        return space
    import gymnasium as gym

    ensure_registered(env_id)
    spec = gym.spec(env_id) if env_id in gym.registry else None
    if spec is not None and spec.max_episode_steps:
        shorter = tuple(n for n in MACRO_DURATIONS if n < spec.max_episode_steps)
        space["macro_duration"] = shorter or (max(1, spec.max_episode_steps // 2),)
    try:
        kwargs, _, _ = parse_hyperparams(load_hyperparams(env_id), env_id)
    except HyperparameterError:
        return space
    k, w = kwargs.get("n_subpolicies", 2), kwargs.get("warmup_iterations", 9)
    space["n_subpolicies"] = (2, max(4, 2 * k))
    space["warmup_iterations"] = (1, max(4, 2 * w))
    for key, learner in (("master_learning_rate", "master_kwargs"), ("subpolicy_learning_rate", "subpolicy_kwargs")):
        rate = kwargs.get(learner, {}).get("learning_rate")
        value = rate(1.0) if callable(rate) else rate
        if isinstance(value, (int, float)) and value > 0:
            space[key] = (value / 10, value * 3)
    return space


def sample_mlsh_params(
    trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any], env_id: str | None = None
) -> dict[str, Any]:
    """
    Optuna sampler of MLSH's hyperparameters for the zoo's ``-optimize``: N, K, W and the two learning rates, in the
    family's ranges (:func:`search_space`).

    :param trial: The Optuna trial.
    :param n_actions: Unused (the zoo's action-noise argument).
    :param n_envs: Unused.
    :param additional_args: Unused.
    :param env_id: The task family (``register`` binds it from ``--env``).
    :return: :class:`ZooMLSH` arguments.
    """
    space = search_space(env_id)
    return convert_mlsh_params(
        {
            "macro_duration": trial.suggest_categorical("macro_duration", list(space["macro_duration"])),
            "n_subpolicies": trial.suggest_int("n_subpolicies", *space["n_subpolicies"]),
            "warmup_iterations": trial.suggest_int("warmup_iterations", *space["warmup_iterations"]),
            "master_learning_rate": trial.suggest_float("master_learning_rate", *space["master_learning_rate"], log=True),
            "subpolicy_learning_rate": trial.suggest_float(
                "subpolicy_learning_rate", *space["subpolicy_learning_rate"], log=True
            ),
        }
    )


def register(env_id: str | None = None) -> None:
    """
    Add MLSH to rl-baselines3-zoo: ``ALGOS["mlsh"]``, its Optuna sampler and its parameter converter.

    :param env_id: The family to search (its ranges: :func:`search_space`); its id is registered for the zoo's lookup.
    """
    try:
        from rl_zoo3 import hyperparams_opt, utils
    except ImportError as error:
        raise ImportError("rl-baselines3-zoo is not installed: pip install sb3-mlsh[zoo]") from error
    if env_id is not None:
        ensure_registered(env_id)
    utils.ALGOS[ALGO_NAME] = ZooMLSH
    hyperparams_opt.HYPERPARAMS_SAMPLER[ALGO_NAME] = functools.partial(sample_mlsh_params, env_id=env_id)
    hyperparams_opt.HYPERPARAMS_CONVERTER[ALGO_NAME] = convert_mlsh_params


def _with_defaults(argv: list[str]) -> list[str]:
    argv = list(argv)
    if "--algo" not in argv:
        argv = ["--algo", ALGO_NAME, *argv]
    algo = argv[argv.index("--algo") + 1]
    if algo == ALGO_NAME and "--conf-file" not in argv and "-conf" not in argv:
        argv += ["--conf-file", default_hyperparams_file()]
    if "--num-threads" not in argv:
        argv += ["--num-threads", "1"]  # MLP policies on the CPU: more threads only contend
    return argv


def main(argv: list[str] | None = None) -> None:
    """
    Register MLSH, then run the zoo's own ``train`` entry with ``argv`` (default: the command line).
    ``--algo mlsh``, ``--conf-file <sb3-mlsh's YAML>`` and ``--num-threads 1`` are added when missing.

    :param argv: The zoo's command-line arguments.
    """
    argv = _with_defaults(sys.argv[1:] if argv is None else argv)
    register(argv[argv.index("--env") + 1] if "--env" in argv[:-1] else None)
    from rl_zoo3.train import train

    saved_argv = sys.argv
    sys.argv = ["python -m sb3_mlsh.cli.zoo", *argv]
    try:
        train()
    finally:
        sys.argv = saved_argv


if __name__ == "__main__":
    main()
