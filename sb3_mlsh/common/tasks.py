"""The task protocol (``sample_tasks`` / ``set_task``) and :class:`TaskSampler`."""

import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

__all__ = [
    "TaskProtocolError",
    "TaskSampler",
    "as_task_sampler",
    "check_task_protocol",
    "ensure_registered",
    "make_task_sampler",
]

#: The ``split`` values that task families in ``mlsh_envs`` understand.
SPLITS = ("train", "test")

#: The module that registers the ids of an env id namespace when it is imported (``mlsh/...``: ``mlsh_envs``).
ENV_ID_MODULES: dict[str, str] = {"mlsh": "mlsh_envs"}


class TaskProtocolError(TypeError):
    """Raised when an env does not implement the task protocol or task samplers disagree on spaces."""


class NoSplitError(TaskProtocolError):
    """Raised when a split is asked of an env whose ``sample_tasks`` takes no ``split``."""


def _env_name(env: gym.Env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def check_task_protocol(env: gym.Env) -> None:
    """
    Check that ``env`` (or any env it wraps) implements the task protocol of Meta-World and garage:
    ``sample_tasks(n) -> list`` and ``set_task(task)``.

    :param env: The env to check.
    :raises TaskProtocolError: naming the missing method and how to add it.
    """
    for method in ("sample_tasks", "set_task"):
        try:
            attr = env.get_wrapper_attr(method)
        except AttributeError:
            attr = None
        if not callable(attr):
            raise TaskProtocolError(
                f"Env {_env_name(env)!r} does not implement the task protocol: it has no method {method}(). "
                "MLSH needs `sample_tasks(n) -> list[task]` and `set_task(task)` (applied from the next reset) on the env, "
                "as Meta-World and garage envs have. Add both methods, or use a task family from mlsh_envs "
                "(e.g. make_task_sampler('mlsh/MovementBandits-v0'))."
            )


def _accepts_split(sample_tasks: Callable) -> bool:
    try:
        parameters = inspect.signature(sample_tasks).parameters
    except (TypeError, ValueError):
        return False
    return "split" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


class TaskSampler:
    """
    A family of tasks: makes fresh envs and samples tasks for them.

    A task is any picklable value that the env's ``set_task`` accepts. Samples are reproducible: the sampler
    seeds the env-side ``sample_tasks`` from its own random generator (or the one passed to :meth:`sample`).

    :param env: A registered Gymnasium env id (``"mlsh/MovementBandits-v0"``) or a callable returning a new env.
    :param split: Which part of the task distribution to draw from: ``"train"``, ``"test"`` (the held-out tasks
        used for transfer) or ``None`` for the env's whole distribution. A split is passed on to the env's
        ``sample_tasks(n, split=...)``, so only envs that accept that argument support it.
    :param env_kwargs: Keyword arguments for ``gymnasium.make`` when ``env`` is an id.
    :param seed: Seed of the sampler's own random generator.
    """

    def __init__(
        self,
        env: str | Callable[[], gym.Env],
        split: str | None = "train",
        env_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(env, str) and not callable(env):
            raise TypeError(f"TaskSampler needs an env id string or a callable returning an env, got {type(env).__name__}.")
        if split is not None and split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}: use one of {SPLITS} or None for the whole task distribution.")
        self.env = env
        self.split = split
        self.env_kwargs = dict(env_kwargs or {})
        self.rng = np.random.default_rng(seed)
        self._probe: gym.Env | None = None

    @property
    def env_id(self) -> str:
        """The env id, or the name of the env factory."""
        return self.env if isinstance(self.env, str) else getattr(self.env, "__name__", repr(self.env))

    def make_env(self) -> gym.Env:
        """
        :return: A fresh env of this family (no task set yet: it starts with the env's default task).
        """
        if isinstance(self.env, str):
            ensure_registered(self.env)
            try:
                env = gym.make(self.env, **self.env_kwargs)
            except gym.error.Error as error:
                raise gym.error.Error(
                    f"Cannot make env {self.env!r}: {error}. Check the id (the task families shipped with sb3-mlsh are "
                    'listed by `python -c "import mlsh_envs; print(mlsh_envs.ENV_IDS)"`).'
                ) from error
        else:
            env = self.env()
            if not isinstance(env, gym.Env):
                raise TypeError(f"The env factory of the TaskSampler returned {type(env).__name__}, not a gymnasium.Env.")
        check_task_protocol(env)
        return env

    def make_vec_env(
        self,
        n_envs: int,
        seed: int | None = None,
        start_index: int = 0,
        vec_env_cls: type[DummyVecEnv] | type[SubprocVecEnv] = DummyVecEnv,
        monitor_dir: str | None = None,
        monitor_kwargs: dict[str, Any] | None = None,
    ) -> VecEnv:
        """
        :param n_envs: Envs of the VecEnv.
        :param seed: Seed of the first env (the others: seed + 1, ...).
        :param start_index: Index of the first env (its Monitor file's name).
        :param vec_env_cls: ``DummyVecEnv`` or ``SubprocVecEnv``.
        :param monitor_dir: Where the Monitor CSVs go (None: not written).
        :param monitor_kwargs: Keyword arguments of SB3's ``Monitor``.
        :return: ``n_envs`` envs of this family, each in a ``Monitor``, checked to share the probe env's spaces.
        :raises TaskProtocolError: when an env has other spaces.
        """
        env = make_vec_env(
            self.make_env, n_envs, seed, start_index, monitor_dir, vec_env_cls=vec_env_cls, monitor_kwargs=monitor_kwargs
        )
        expected = (self.probe_env.observation_space, self.probe_env.action_space)
        for index, spaces_of_env in enumerate(zip(env.get_attr("observation_space"), env.get_attr("action_space"))):
            if spaces_of_env != expected:
                raise TaskProtocolError(
                    f"The task sampler's envs disagree on spaces: env {index} has {spaces_of_env[0]} / {spaces_of_env[1]}, "
                    f"the first has {expected[0]} / {expected[1]}. make_env() must always build envs with the same spaces."
                )
        return env

    @property
    def probe_env(self) -> gym.Env:
        """One env kept to read spaces and to draw tasks from."""
        if self._probe is None:
            self._probe = self.make_env()
            if self.split is not None and not _accepts_split(self._probe.get_wrapper_attr("sample_tasks")):
                raise NoSplitError(
                    f"Env {_env_name(self._probe)!r} has no train/held-out split (its sample_tasks() takes no `split`). "
                    "Pass split=None to the TaskSampler, or add a `split` argument to sample_tasks()."
                )
        return self._probe

    @property
    def observation_space(self) -> spaces.Space:
        """The observation space shared by every task of the family."""
        return self.probe_env.observation_space

    @property
    def action_space(self) -> spaces.Space:
        """The action space shared by every task of the family."""
        return self.probe_env.action_space

    def sample(self, n: int = 1, rng: np.random.Generator | None = None) -> list[Any]:
        """
        Draw ``n`` tasks.

        :param n: Number of tasks.
        :param rng: Random generator to draw with; defaults to the sampler's own.
        :return: A list of ``n`` tasks.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}.")
        rng = self.rng if rng is None else rng
        env = self.probe_env.unwrapped
        # Tasks are drawn with the env's own generator, re-seeded from ours so that draws are reproducible.
        env.np_random = np.random.default_rng(int(rng.integers(2**63)))
        sample_tasks = self.probe_env.get_wrapper_attr("sample_tasks")
        tasks = sample_tasks(n, split=self.split) if self.split is not None else sample_tasks(n)
        tasks = list(tasks)
        if len(tasks) != n:
            raise TaskProtocolError(f"sample_tasks({n}) of {self.env_id!r} returned {len(tasks)} tasks instead of {n}.")
        return tasks

    def close(self) -> None:
        """Close the env kept to read spaces and draw tasks."""
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_probe"] = None
        return state

    def __repr__(self) -> str:
        return f"TaskSampler({self.env_id!r}, split={self.split!r})"


def ensure_registered(env_id: str) -> ModuleType | None:
    """
    Import the module that registers ``env_id`` with gymnasium, when the id is in a namespace of
    :data:`ENV_ID_MODULES` (``mlsh/...``: ``mlsh_envs``), so that users need not import it by hand.

    :param env_id: A gymnasium env id.
    :return: That module (None for ids of other namespaces).
    """
    # sb3_mlsh knows the task families by their gymnasium ids only, and mlsh_envs builds on gymnasium alone: neither
    # package imports the other. The module is imported by the name that the id's namespace maps to, as gymnasium's own
    # make("module:Env-v0") imports the module named in the id (gymnasium.make only; gymnasium.spec and rl_zoo3's
    # registry lookups need the id registered beforehand, hence a function of our own).
    namespace, slash, _ = env_id.partition("/")
    module = ENV_ID_MODULES.get(namespace) if slash else None
    return None if module is None else importlib.import_module(module)


def make_task_sampler(env_id: str, split: str | None = "train", seed: int | None = None, **env_kwargs: Any) -> TaskSampler:
    """
    :param env_id: A registered id, e.g. ``"mlsh/MovementBandits-v0"``.
    :param split: ``"train"`` for meta-training tasks, ``"test"`` for the held-out transfer tasks, ``None`` for all.
    :param seed: Seed of the sampler's random generator.
    :param env_kwargs: Passed on to ``gymnasium.make``.
    :return: A :class:`~sb3_mlsh.TaskSampler` for that family.
    """
    return TaskSampler(env_id, split=split, env_kwargs=env_kwargs, seed=seed)


def as_task_sampler(
    task_sampler: "TaskSampler | str | Callable[[], gym.Env]",
    split: str | None = "train",
    env_kwargs: dict[str, Any] | None = None,
) -> TaskSampler:
    """
    :param task_sampler: A :class:`TaskSampler`, an env id, or an env factory.
    :param split: Split used when ``task_sampler`` is not a :class:`TaskSampler` yet; ``"train"`` falls back
        to the whole distribution for envs without a split.
    :param env_kwargs: Keyword arguments for ``gymnasium.make`` when ``task_sampler`` is an env id.
    :return: A :class:`TaskSampler`.
    """
    if isinstance(task_sampler, TaskSampler):
        return task_sampler
    sampler = TaskSampler(task_sampler, split=split, env_kwargs=env_kwargs)
    if split is not None:
        try:
            _ = sampler.probe_env
        except NoSplitError:
            sampler.close()
            sampler = TaskSampler(task_sampler, split=None, env_kwargs=env_kwargs)
    return sampler
