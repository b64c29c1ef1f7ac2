"""MLSH: Meta Learning Shared Hierarchies (Frans et al., ICLR 2018) as a Stable-Baselines3 algorithm."""

import difflib
import inspect
import io
import os
import pathlib
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.save_util import save_to_zip_file
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import safe_mean
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from sb3_mlsh.checks import check_finite_gradients, guard_optimizer
from sb3_mlsh.diversity import SkillDiscriminator
from sb3_mlsh.normalization import RewardScaler
from sb3_mlsh.observation import ObsExclude, SubPolicyView
from sb3_mlsh.policies import SubPolicyBankPolicy, SubPolicyOptimizer, subpolicy_observation_space
from sb3_mlsh.rollout import RolloutResult, TwoLevelCollector, _all_finite, select_envs
from sb3_mlsh.run_state import capture_envs, restore_envs
from sb3_mlsh.serialization import ModelFileError, UntrustedValueError, decode, encode, read_model_zip
from sb3_mlsh.tasks import TaskProtocolError, TaskSampler, as_task_sampler
from sb3_mlsh.trainer import JOINT, WARMUP, MLSHMetaTrainer
from sb3_mlsh.type_aliases import NonFiniteError, Obs

__all__ = ["MLSH", "ModelFileError"]

SelfMLSH = TypeVar("SelfMLSH", bound="MLSH")

#: Written into every saved model; a zip without it is not an sb3-mlsh model.
#: 2: every entry JSON or a weights-only tensor file (sb3_mlsh.serialization); 1 (sb3-mlsh 0.1): SB3's pickles.
FORMAT_VERSION = 2

MASTER_DEFAULTS: dict[str, Any] = dict(
    learning_rate=0.01, n_epochs=10, batch_size=64, gamma=0.99, gae_lambda=0.98, clip_range=0.2, ent_coef=0.0
)
SUBPOLICY_DEFAULTS: dict[str, Any] = dict(
    learning_rate=3e-4,
    n_epochs=10,
    batch_size=256,
    gamma=0.99,
    gae_lambda=0.98,
    clip_range=0.2,
    ent_coef=0.0,
    max_grad_norm=0.5,
)
#: Above this many sub-policies MLSH warns: each would see too little data to learn a skill.
MAX_SENSIBLE_SUBPOLICIES = 64
#: PPO arguments that MLSH sets itself.
_RESERVED_LEARNER_KWARGS = {"env", "n_steps", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model", "policy"}


def _world_size() -> int:
    """:return: The number of processes of the run: the process group's, else torchrun's ``WORLD_SIZE``, else 1."""
    if th.distributed.is_available() and th.distributed.is_initialized():
        return th.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def _distributed_requested(distributed: bool | None) -> bool:
    """
    :param distributed: The user's choice (None: automatic).
    :return: Whether to train across processes: when asked, or automatically when more than one process runs.
    """
    return _world_size() > 1 if distributed is None else bool(distributed)


def _refuse_unknown_arguments(unknown: dict[str, Any]) -> None:
    """Raise a TypeError for arguments MLSH does not take, pointing SB3 habits (PPO's arguments) to the right learner."""
    ppo_arguments = set(inspect.signature(PPO.__init__).parameters) - {"self", "policy", "env"}
    own = set(inspect.signature(MLSH.__init__).parameters) - {"self", "unknown_kwargs"}
    hints = []
    for name in sorted(unknown):
        if name in ppo_arguments:
            hints.append(
                f"{name!r} is an argument of the two PPO learners: pass master_kwargs=dict({name}=...) and/or "
                f"subpolicy_kwargs=dict({name}=...)"
            )
        else:
            close = difflib.get_close_matches(name, own | ppo_arguments, n=1)
            hints.append(f"unknown argument {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError("MLSH(): " + "; ".join(hints) + ".")


def _max_episode_steps(env: gym.Env) -> int | None:
    """:return: The time limit of ``env`` (its spec's, or that of a ``TimeLimit`` wrapper), None when it has none."""
    spec = getattr(env, "spec", None)
    if spec is not None and spec.max_episode_steps is not None:
        return int(spec.max_episode_steps)
    while isinstance(env, gym.Wrapper):
        # Duck-typed: rl-baselines3-zoo swaps gymnasium's TimeLimit class for a subclass of its own.
        limit = getattr(env, "_max_episode_steps", None)
        if isinstance(limit, int):
            return limit
        env = env.env
    return None


class _PrefixedLogger(Logger):
    """Forwards an inner learner's ``train/*`` records to the MLSH logger under another prefix, averaged over groups."""

    def __init__(self, parent: Logger, prefix: str) -> None:
        super().__init__(folder=parent.get_dir(), output_formats=[])
        self.parent = parent
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return self.prefix + key[len("train/") :] if key.startswith("train/") else key

    def record(self, key: str, value: Any, exclude: str | tuple[str, ...] | None = None) -> None:
        if isinstance(value, (int, float, np.integer, np.floating)):
            self.parent.record_mean(self._key(key), float(value), exclude)
        else:
            self.parent.record(self._key(key), value, exclude)

    def record_mean(self, key: str, value: Any, exclude: str | tuple[str, ...] | None = None) -> None:
        self.parent.record_mean(self._key(key), value, exclude)

    def dump(self, step: int = 0) -> None:
        """The MLSH logger dumps."""


def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
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


class MLSH(BaseAlgorithm):
    """
    Meta Learning Shared Hierarchies (Frans, Ho, Chen, Abbeel, Schulman, ICLR 2018).

    K sub-policies are shared across tasks; a master, re-initialised for every task, picks one of them every
    ``macro_duration`` steps. Both levels are Stable-Baselines3 PPO learners with SB3's own ``train()``:
    the master over macro-steps (action = sub-policy index, reward = sum of the primitive rewards), the
    sub-policy learner over primitive steps with the master's choice in its observation and a bank of K
    independent networks as its policy. Per task: ``warmup_iterations`` master-only iterations, then
    ``joint_iterations`` iterations that also update the sub-policies, then a new task.

    :param policy: ``"MlpPolicy"`` (Box observations) or ``"MultiInputPolicy"`` (Dict observations); selects the
        master's SB3 policy and the sub-policy bank.
    :param task_sampler: A :class:`~sb3_mlsh.TaskSampler`, or an env id / env factory whose env implements
        ``sample_tasks`` and ``set_task``.
    :param n_subpolicies: Number of sub-policies K.
    :param macro_duration: Primitive steps per master decision N.
    :param warmup_iterations: Master-only iterations per task W.
    :param joint_iterations: Iterations per task that also update the sub-policies U.
    :param n_steps: Primitive steps per env per iteration D.
    :param n_envs: Number of envs.
    :param task_groups: Number of task groups G running concurrently, each with its own task and master.
    :param master_kwargs: PPO arguments of the master (defaults: the paper's, learning rate 0.01).
    :param subpolicy_kwargs: PPO arguments of the sub-policy learner (defaults: the paper's, learning rate 3e-4).
    :param policy_kwargs: Arguments of the sub-policy bank (:class:`~sb3_mlsh.policies.SubPolicyBankPolicy`).
    :param master_epsilon: Probability that a master choice is replaced by a random sub-policy (the original: 0.1).
    :param skill_diversity: Weight of a skill-diversity reward added to the sub-policies' rewards (not the masters'):
        ``log q(k | s') + log K`` per step, where a :class:`~sb3_mlsh.diversity.SkillDiscriminator` q learns which
        sub-policy acts from the env observation (DIAYN's objective). 0 (default) is the paper's MLSH.
    :param discriminator_kwargs: Arguments of the :class:`~sb3_mlsh.diversity.SkillDiscriminator` (``net_arch``,
        ``learning_rate``, ``batch_size``, ``n_epochs``).
    :param subpolicy_obs_exclude: Entries of the env observation that the sub-policies do not see (the master sees all):
        for a Box, indices into the flattened observation (e.g. ``[0, 1]``, an Ant's torso x and y); for a Dict, keys
        to drop or a mapping ``{key: indices}``. None (default): they see everything, as in the paper. See
        :class:`~sb3_mlsh.observation.SubPolicyView`.
    :param normalize_reward: Both learners learn from rewards divided by a running standard deviation of the discounted
        return (kept across tasks, saved with the model, used by :meth:`adapt` too), so that returns of any scale leave
        the policy step intact. False (default): raw rewards, as in the paper. Logged returns are always raw.
    :param torch_threads: Torch threads while :meth:`learn` runs (the previous setting is restored after). 1 (default):
        MLSH's small MLPs run fastest on one thread per process; torch's default (one per core) measured 19x slower on a
        busy 2-core machine. None: leave torch's setting alone.
    :param stagger_groups: Stagger the task groups' phases so that sub-policy updates spread evenly.
    :param vec_env_class: ``DummyVecEnv`` (default) or ``SubprocVecEnv``.
    :param monitor_dir: Where the Monitor CSVs go (None: not written).
    :param monitor_kwargs: Keyword arguments of SB3's ``Monitor`` (e.g. ``override_existing=False`` to append).
    :param stats_window_size: Episodes averaged in ``rollout/*`` logs.
    :param tensorboard_log: TensorBoard log folder.
    :param verbose: 0 silent, 1 logs every ``log_interval`` iterations.
    :param seed: Seed of everything (envs, task draws, networks).
    :param device: Torch device. In distributed mode ``"auto"`` means ``cuda:LOCAL_RANK`` when every process has a GPU.
    :param distributed: Train across the processes of a ``torch.distributed`` process group (launched by ``torchrun``):
        None (default) decides automatically (more than one process: the group is initialised, or ``WORLD_SIZE`` > 1);
        then ``n_envs`` is per process, ``task_groups`` counts the groups of the whole run, ``total_timesteps`` and
        ``num_timesteps`` count the steps of all processes, only rank 0 logs and writes saves, and ``save`` is a
        collective call (every process calls it). See ``sb3_mlsh.distributed``.
    :param _init_setup_model: Build the learners now.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": SubPolicyBankPolicy,
        "MultiInputPolicy": SubPolicyBankPolicy,
    }

    def __init__(
        self,
        policy: str | type[SubPolicyBankPolicy],
        task_sampler: TaskSampler | str | Callable[[], gym.Env],
        n_subpolicies: int = 2,
        macro_duration: int = 10,
        warmup_iterations: int = 9,
        joint_iterations: int = 1,
        n_steps: int = 2000,
        n_envs: int = 4,
        task_groups: int = 1,
        master_kwargs: dict[str, Any] | None = None,
        subpolicy_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        master_epsilon: float = 0.0,
        skill_diversity: float = 0.0,
        discriminator_kwargs: dict[str, Any] | None = None,
        subpolicy_obs_exclude: ObsExclude = None,
        normalize_reward: bool = False,
        torch_threads: int | None = 1,
        stagger_groups: bool = True,
        vec_env_class: type[DummyVecEnv] | type[SubprocVecEnv] | None = None,
        monitor_dir: str | None = None,
        monitor_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        distributed: bool | None = None,
        _init_setup_model: bool = True,
        **unknown_kwargs: Any,
    ) -> None:
        if unknown_kwargs:
            _refuse_unknown_arguments(unknown_kwargs)
        distributed = _distributed_requested(distributed)
        self._check_arguments(
            n_subpolicies,
            macro_duration,
            warmup_iterations,
            joint_iterations,
            n_steps,
            n_envs,
            task_groups,
            master_epsilon,
            processes=_world_size() if distributed else 1,
        )
        if not (isinstance(skill_diversity, (int, float, np.integer, np.floating)) and 0.0 <= skill_diversity < float("inf")):
            raise ValueError(f"Invalid MLSH arguments: skill_diversity must be a finite number >= 0, got {skill_diversity!r}.")
        if skill_diversity > 0 and n_subpolicies < 2:
            raise ValueError("Invalid MLSH arguments: skill_diversity > 0 needs n_subpolicies >= 2 (one skill has no rival).")
        if skill_diversity > 0 and distributed:
            raise NotImplementedError(
                "skill_diversity is not supported in distributed mode yet (each process's discriminator would learn from its "
                "own data only): train with skill_diversity in one process, or set skill_diversity=0."
            )
        self._dist: Any = None
        if distributed:
            # Lazy: a single process never imports the distributed code.
            from sb3_mlsh.distributed import DistributedContext

            self._dist = DistributedContext(task_groups, device)
            device = self._dist.device
            seed = self._dist.shared_seed(seed)
            self._dist.check_same_settings(
                dict(n_envs=n_envs, n_steps=n_steps, n_subpolicies=n_subpolicies, task_groups=task_groups, seed=seed)
            )
            if not self._dist.is_main:
                verbose, tensorboard_log = 0, None
            for name, kwargs in (("master_kwargs", master_kwargs), ("subpolicy_kwargs", subpolicy_kwargs)):
                if (kwargs or {}).get("target_kl") is not None:
                    # An early stop decided from local data would leave the other processes waiting in a collective.
                    raise ValueError(
                        f"{name}['target_kl'] is not supported in distributed mode: each process would stop its epochs at "
                        "a different minibatch. Remove target_kl (or lower n_epochs / the learning rate instead)."
                    )
        self.policy_name = policy if isinstance(policy, str) else "MlpPolicy"
        self.task_sampler = as_task_sampler(task_sampler)
        self.n_subpolicies = n_subpolicies
        self.macro_duration = macro_duration
        self.warmup_iterations = warmup_iterations
        self.joint_iterations = joint_iterations
        self.n_steps = n_steps
        self.n_envs = n_envs
        self.task_groups = task_groups
        self.master_kwargs = {**MASTER_DEFAULTS, **(master_kwargs or {})}
        self.subpolicy_kwargs = {**SUBPOLICY_DEFAULTS, **(subpolicy_kwargs or {})}
        for name, kwargs in (("master_kwargs", self.master_kwargs), ("subpolicy_kwargs", self.subpolicy_kwargs)):
            reserved = _RESERVED_LEARNER_KWARGS.intersection(kwargs)
            if reserved:
                raise ValueError(f"{name} may not set {sorted(reserved)}: MLSH sets these itself (pass them to MLSH()).")
            ppo_arguments = set(inspect.signature(PPO.__init__).parameters) - {"self", "policy", "env"}
            for key in sorted(set(kwargs) - ppo_arguments - _RESERVED_LEARNER_KWARGS):
                close = difflib.get_close_matches(key, ppo_arguments, n=1)
                raise ValueError(
                    f"{name}[{key!r}] is not an argument of SB3's PPO" + (f": did you mean {close[0]!r}?" if close else ".")
                )
        self.master_epsilon = master_epsilon
        self.skill_diversity = float(skill_diversity)
        self.discriminator_kwargs = dict(discriminator_kwargs or {})
        if not isinstance(normalize_reward, (bool, np.bool_)):
            raise ValueError(f"Invalid MLSH arguments: normalize_reward must be True or False, got {normalize_reward!r}.")
        if torch_threads is not None and (
            isinstance(torch_threads, bool) or not isinstance(torch_threads, int) or torch_threads < 1
        ):
            raise ValueError(
                f"Invalid MLSH arguments: torch_threads must be a positive integer or None, got {torch_threads!r}."
            )
        self.torch_threads = torch_threads
        self.subpolicy_obs_exclude = subpolicy_obs_exclude
        self.normalize_reward = bool(normalize_reward)
        self.stagger_groups = stagger_groups
        self.vec_env_class: type[DummyVecEnv] | type[SubprocVecEnv] = vec_env_class or DummyVecEnv
        self.monitor_dir = monitor_dir

        observation_space, action_space = self._checked_spaces()
        self.subpolicy_view = SubPolicyView(observation_space, subpolicy_obs_exclude)
        env = make_vec_env(
            self.task_sampler.make_env,
            n_envs=n_envs,
            seed=seed if self._dist is None or seed is None else self._dist.local_seed(seed, n_envs),
            # Distinct Monitor file names across processes: the global index of each env.
            start_index=0 if self._dist is None else self._dist.rank * n_envs,
            vec_env_cls=self.vec_env_class,
            monitor_dir=monitor_dir,
            monitor_kwargs=monitor_kwargs,
        )
        self._check_vec_env_spaces(env, observation_space, action_space)
        super().__init__(
            policy=policy,
            env=env,
            learning_rate=self.subpolicy_kwargs["learning_rate"],
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            monitor_wrapper=False,
            seed=seed,
            supported_action_spaces=(spaces.Discrete, spaces.Box),
        )
        self.iteration = 0
        self._completed_timesteps = 0
        self.iteration_log: list[dict[str, Any]] = []
        if _init_setup_model:
            self._setup_model()

    # ----------------------------------------------------------------------------------------------------- checks
    @staticmethod
    def _check_arguments(
        n_subpolicies: int,
        macro_duration: int,
        warmup_iterations: int,
        joint_iterations: int,
        n_steps: int,
        n_envs: int,
        task_groups: int,
        master_epsilon: float,
        processes: int = 1,
    ) -> None:
        problems = []
        if not isinstance(n_subpolicies, (int, np.integer)) or n_subpolicies < 1:
            problems.append(f"n_subpolicies (K) must be an integer >= 1, got {n_subpolicies!r}")
        if not isinstance(macro_duration, (int, np.integer)) or macro_duration < 1:
            problems.append(f"macro_duration (N) must be an integer >= 1, got {macro_duration!r}")
        for name, value in (("warmup_iterations (W)", warmup_iterations), ("joint_iterations (U)", joint_iterations)):
            if not isinstance(value, (int, np.integer)) or value < 0:
                problems.append(f"{name} must be an integer >= 0, got {value!r}")
        if not problems and warmup_iterations + joint_iterations == 0:
            problems.append("warmup_iterations + joint_iterations must be >= 1: a task must last at least one iteration")
        if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            problems.append(f"n_steps (D, steps per env per iteration) must be an integer >= 1, got {n_steps!r}")
        if not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            problems.append(f"n_envs must be an integer >= 1, got {n_envs!r}")
        if not isinstance(task_groups, (int, np.integer)) or task_groups < 1:
            problems.append(f"task_groups (G) must be an integer >= 1, got {task_groups!r}")
        elif processes > 1 and task_groups % processes == 0 and task_groups // processes > n_envs:
            problems.append(
                f"task_groups per process ({task_groups} / {processes} processes) cannot exceed n_envs per process "
                f"({n_envs}): every group needs at least one env"
            )
        elif processes == 1 and isinstance(n_envs, (int, np.integer)) and task_groups > n_envs:
            problems.append(f"task_groups ({task_groups}) cannot exceed n_envs ({n_envs}): every group needs at least one env")
        if not 0.0 <= master_epsilon <= 1.0:
            problems.append(f"master_epsilon must be a probability in [0, 1], got {master_epsilon!r}")
        if problems:
            raise ValueError("Invalid MLSH arguments: " + "; ".join(problems) + ".")

    def _checked_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        probe = self.task_sampler.probe_env
        observation_space, action_space = probe.observation_space, probe.action_space
        _check_spaces(observation_space, action_space)
        if self.policy_name == "MlpPolicy" and isinstance(observation_space, spaces.Dict):
            raise TypeError("The env has Dict observations: use MLSH('MultiInputPolicy', ...) instead of 'MlpPolicy'.")
        env_class = type(probe.unwrapped).__name__
        env_id = self.task_sampler.env_id
        env_id = env_id if env_id == env_class else f"{env_id} ({env_class})"
        try:
            tasks = self.task_sampler.sample(3)
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
            if not _all_finite(obs):
                raise NonFiniteError(
                    f"After set_task({task!r}) and reset(), the observation of {env_id!r} holds NaN or inf: MLSH cannot learn "
                    "from it. Fix the env, or sanitise its observations with a wrapper "
                    "(e.g. gymnasium.wrappers.TransformObservation with numpy.nan_to_num)."
                )
            if probe.observation_space != observation_space or probe.action_space != action_space:
                raise TaskProtocolError(
                    f"Task {task!r} of {self.task_sampler.env_id!r} changes the spaces to {probe.observation_space} / "
                    f"{probe.action_space} (first task: {observation_space} / {action_space}). All tasks of a family must "
                    "share one observation and action space: pad observations to a common shape."
                )
            if not observation_space.contains(obs):
                raise TaskProtocolError(
                    f"After set_task({task!r}) and reset(), the observation of {self.task_sampler.env_id!r} is outside its "
                    f"observation space {observation_space}. Fix the env's observation_space."
                )
        self._warn_about_sizes(probe)
        return observation_space, action_space

    def _warn_about_sizes(self, probe: gym.Env) -> None:
        """Warn about arguments that are legal but almost surely not what the user wants."""
        episode_length = _max_episode_steps(probe)
        if episode_length is not None and self.macro_duration > episode_length:
            warnings.warn(
                f"macro_duration (N={self.macro_duration}) is larger than the episode length of "
                f"{self.task_sampler.env_id!r} ({episode_length} steps): every macro-step is cut by the end of its episode, "
                "so the master decides once per episode. Use N < episode length (the paper: N between 10 and 200).",
                UserWarning,
            )
        if self.n_subpolicies > MAX_SENSIBLE_SUBPOLICIES:
            warnings.warn(
                f"n_subpolicies (K={self.n_subpolicies}) is larger than {MAX_SENSIBLE_SUBPOLICIES}: each sub-policy then sees "
                f"about 1/{self.n_subpolicies} of the data, the master's Discrete({self.n_subpolicies}) choice is hard to "
                "learn, and the bank costs K networks. The paper uses K between 2 and 4.",
                UserWarning,
            )

    @staticmethod
    def _check_vec_env_spaces(env: VecEnv, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        for index, (obs_space, act_space) in enumerate(zip(env.get_attr("observation_space"), env.get_attr("action_space"))):
            if obs_space != observation_space or act_space != action_space:
                raise TaskProtocolError(
                    f"The task sampler's envs disagree on spaces: env {index} has {obs_space} / {act_space}, the first "
                    f"has {observation_space} / {action_space}. make_env() must always build envs with the same spaces."
                )

    # ---------------------------------------------------------------------------------------------------- learners
    def _make_learner(
        self,
        policy: str | type[BasePolicy],
        observation_space: spaces.Space,
        action_space: spaces.Space,
        n_steps: int,
        n_envs: int,
        kwargs: dict[str, Any],
    ) -> PPO:
        # No env: the learners never step envs themselves (the collector fills their buffers), only their spaces are set.
        learner = PPO(
            cast(Any, policy),
            env=None,  # type: ignore[arg-type]
            n_steps=n_steps,
            device=self.device,
            seed=None,
            _init_setup_model=False,
            **kwargs,
        )
        learner.observation_space = observation_space
        learner.action_space = action_space
        learner.n_envs = n_envs
        learner._setup_model()
        return learner

    def _make_master(self, group_index: int = 0) -> PPO:
        master_policy = "MultiInputPolicy" if isinstance(self.observation_space, spaces.Dict) else "MlpPolicy"
        kwargs = self.master_kwargs
        shared = self._dist is not None and self._dist.ranks_per_group > 1
        if shared:
            # Clip after the gradients are averaged over the group's ranks, not before, in the averager's hook.
            kwargs = {**kwargs, "max_grad_norm": float("inf")}
        master = self._make_learner(
            master_policy, self.observation_space, spaces.Discrete(self.n_subpolicies), self.n_steps, 1, kwargs
        )
        guard_optimizer(master.policy.optimizer, "master", self._training_iteration)
        if shared:
            from sb3_mlsh.distributed import MasterGradientAverager

            master._mlsh_averager = MasterGradientAverager(  # type: ignore[attr-defined]
                self._dist, group_index, float(self.master_kwargs.get("max_grad_norm", 0.5))
            )
        return master

    def _reset_master(self, master: PPO) -> None:
        master.policy = master.policy_class(  # type: ignore[assignment]
            master.observation_space, master.action_space, master.lr_schedule, use_sde=master.use_sde, **master.policy_kwargs
        ).to(master.device)
        guard_optimizer(master.policy.optimizer, "master", self._training_iteration)

    def _training_iteration(self) -> int:
        return self.iteration

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        subpolicy_kwargs = dict(self.subpolicy_kwargs)
        bank_kwargs = {"n_subpolicies": self.n_subpolicies, "max_grad_norm": subpolicy_kwargs.pop("max_grad_norm")}
        bank_kwargs.update(self.policy_kwargs)
        # The bank clips gradients per sub-policy; PPO's joint clip would couple the sub-policies.
        subpolicy_kwargs.update(max_grad_norm=float("inf"), policy_kwargs=bank_kwargs)
        self.subpolicy_learner = self._make_learner(
            self.policy_class,
            subpolicy_observation_space(self.subpolicy_view.space, self.n_subpolicies),
            self.action_space,
            self.n_steps,
            self.n_envs,
            subpolicy_kwargs,
        )
        self.policy = self.subpolicy_learner.policy
        bank_optimizer = cast(SubPolicyOptimizer, self.policy.optimizer)
        bank_optimizer.before_step = lambda parameters: check_finite_gradients(parameters, "sub-policies", self.iteration)
        self.discriminator: SkillDiscriminator | None = None
        self._discriminator_stats: dict[str, float] = {}
        if self.skill_diversity > 0:
            self.discriminator = SkillDiscriminator(
                self.subpolicy_view.space, self.n_subpolicies, device=self.device, **self.discriminator_kwargs
            )
        assert self.env is not None
        self.collector = TwoLevelCollector(
            self.env,
            self.subpolicy_learner,
            self.n_subpolicies,
            self.macro_duration,
            master_epsilon=self.master_epsilon,
            discriminator=self.discriminator,
            diversity_coef=self.skill_diversity,
            view=self.subpolicy_view,
            reward_scaler=RewardScaler(self.n_envs, self.subpolicy_learner.gamma) if self.normalize_reward else None,
        )
        if self._dist is None:
            masters = [self._make_master() for _ in range(self.task_groups)]
            self.trainer = MLSHMetaTrainer(**self._trainer_arguments(masters))
            self.collector.rng = np.random.default_rng(None if self.seed is None else self.seed + 1)
        else:
            self._setup_distributed()

    def _trainer_arguments(self, masters: list[PPO]) -> dict[str, Any]:
        assert self.env is not None
        return dict(
            task_sampler=self.task_sampler,
            env=self.env,
            masters=masters,
            reset_master=self._reset_master,
            warmup_iterations=self.warmup_iterations,
            joint_iterations=self.joint_iterations,
            stagger=self.stagger_groups,
            seed=self.seed,
        )

    def _setup_distributed(self) -> None:
        from sb3_mlsh.distributed import DistributedMetaTrainer, DistributedSubPolicyOptimizer

        context = self._dist
        masters = [self._make_master(index) for index in context.local_groups]
        self.trainer = DistributedMetaTrainer(**self._trainer_arguments(masters), context=context)
        self.collector.rng = np.random.default_rng(context.local_seed(self.seed, self.n_envs) + 1)
        self.collector.processes = context.world_size
        # Identical start: rank 0's sub-policies everywhere, each group's first rank's master within the group.
        context.broadcast_parameters(list(self.policy.parameters()), src=0)
        self.policy.optimizer = DistributedSubPolicyOptimizer(  # type: ignore[assignment]
            self.policy.optimizer,  # type: ignore[arg-type]
            lambda: cast(np.ndarray, self.policy._sample_counts),
            context,
        )
        for group in self.trainer.groups:
            context.sync_master(group)

    @property
    def completed_timesteps(self) -> int:
        """Primitive steps of the completed iterations (less than ``num_timesteps`` while an iteration is collected)."""
        return self._completed_timesteps

    @property
    def masters(self) -> list[PPO]:
        """The master learner of each task group."""
        return [group.master for group in self.trainer.groups]

    @property
    def master(self) -> PPO:
        """The master that :meth:`predict` uses (group 0's; after :meth:`adapt`, the adapted one)."""
        return self.trainer.groups[0].master

    # ------------------------------------------------------------------------------------------------------ learn
    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        if self._dist is not None and progress_bar:
            # One bar, on rank 0, counting the steps of all processes.
            if self._dist.is_main:
                from stable_baselines3.common.callbacks import CallbackList, ConvertCallback

                from sb3_mlsh.distributed import ScaledProgressBar

                callbacks = callback if isinstance(callback, list) else [callback]
                callbacks = [c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in callbacks]
                callback = CallbackList([*callbacks, ScaledProgressBar(self._dist.world_size)])
            progress_bar = False
        return super()._init_callback(callback, progress_bar)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        if self._dist is not None and not self._dist.is_main and not self._custom_logger:
            from sb3_mlsh.distributed import quiet_logger

            self.set_logger(quiet_logger())
        if reset_num_timesteps:
            self.iteration = 0
            self.iteration_log = []
        if reset_num_timesteps or self._last_obs is None:
            self.trainer.start()
        total_timesteps, callback = super()._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        self._completed_timesteps = self.num_timesteps
        self.subpolicy_learner.set_logger(_PrefixedLogger(self.logger, "train/sub/"))
        for master in self.masters:
            master.set_logger(_PrefixedLogger(self.logger, "train/master/"))
        return total_timesteps, callback

    def learn(
        self: SelfMLSH,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "MLSH",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfMLSH:
        """
        Meta-train: iterations of ``n_steps`` primitive steps per env until ``total_timesteps`` primitive steps.

        :param total_timesteps: Primitive env steps (all envs together).
        :param callback: SB3 callback(s), called at every primitive step.
        :param log_interval: Log every this many iterations.
        :param tb_log_name: TensorBoard run name.
        :param reset_num_timesteps: Start counting (and the task schedule) anew.
        :param progress_bar: Show a progress bar (tqdm and rich).
        :return: The trained model.
        """
        threads_before = th.get_num_threads()
        if self.torch_threads is not None:
            th.set_num_threads(self.torch_threads)
        try:
            total_timesteps, callback = self._setup_learn(
                total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
            )
            callback.on_training_start(locals(), globals())
            while self.num_timesteps < total_timesteps:
                if not self._iterate(callback, total_timesteps, log_interval):
                    break
            callback.on_training_end()
        finally:
            th.set_num_threads(threads_before)
        return self

    def _iterate(self, callback: BaseCallback, total_timesteps: int, log_interval: int) -> bool:
        groups = [(group.env_indices, group.master) for group in self.trainer.groups]
        phases = [self.trainer.phase(group) for group in self.trainer.groups]
        assert self._last_obs is not None and self._last_episode_starts is not None  # set by _setup_learn
        result, self._last_obs, self._last_episode_starts = self.collector.collect(
            self.n_steps, groups, cast(Obs, self._last_obs), self._last_episode_starts, callback, self
        )
        if not result.continue_training:
            return False
        self.iteration += 1
        self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
        joint_envs = self.trainer.joint_env_indices()
        if self._dist is None:
            for master, buffer in zip(self.masters, result.master_buffers):
                master.rollout_buffer = buffer
                master._current_progress_remaining = self._current_progress_remaining
                master.train()
            if self.discriminator is not None:
                # Before the sub-policies' update, which flattens the buffer's (n_steps, n_envs) layout.
                self._discriminator_stats = self.discriminator.train_on(self.subpolicy_learner.rollout_buffer.observations)
            if len(joint_envs):
                self._train_subpolicies(joint_envs)
        else:
            from sb3_mlsh.distributed import train_iteration

            train_iteration(self, result.master_buffers, joint_envs)
        self._record_iteration(result, phases)
        if log_interval is not None and self.iteration % log_interval == 0:
            self._dump_logs(result, phases)
        for group, reset_obs in self.trainer.end_iteration():
            assert reset_obs is not None  # end_iteration resets the envs of a group that starts a task
            self._set_env_obs(group.env_indices, reset_obs)
        self._completed_timesteps = self.num_timesteps
        return True

    def _train_subpolicies(self, env_indices: np.ndarray) -> None:
        learner = self.subpolicy_learner
        full_buffer = learner.rollout_buffer
        if len(env_indices) < self.n_envs:
            learner.rollout_buffer = select_envs(full_buffer, env_indices)
        learner._current_progress_remaining = self._current_progress_remaining
        try:
            learner.train()
        finally:
            learner.rollout_buffer = full_buffer

    def _set_env_obs(self, env_indices: np.ndarray, observations: list[Any]) -> None:
        assert self._last_obs is not None and self._last_episode_starts is not None
        if isinstance(self._last_obs, dict):
            for key in self._last_obs:
                self._last_obs[key][env_indices] = np.stack([obs[key] for obs in observations])
        else:
            cast(np.ndarray, self._last_obs)[env_indices] = np.stack(observations)
        self._last_episode_starts[env_indices] = True

    def _record_iteration(self, result: RolloutResult, phases: list[str]) -> None:
        counts = result.subpolicy_counts
        episodes, return_sum = len(result.episode_returns), float(np.sum(result.episode_returns))
        joint_groups = sum(phase == JOINT for phase in phases)
        if self._dist is not None:
            # The run's statistics, not this process's: every rank adds its share (a group's ranks share its phase).
            totals = self._dist.sum_statistics(
                np.array([return_sum, episodes, joint_groups / self._dist.ranks_per_group, *counts], dtype=np.float64)
            )
            return_sum, episodes, joint_groups = float(totals[0]), round(totals[1]), round(totals[2])
            counts = totals[3:]
        usage = counts / max(counts.sum(), 1)
        self.iteration_log.append(
            {
                "iteration": self.iteration,
                "timesteps": self.num_timesteps,
                "episode_return_mean": return_sum / episodes if episodes else float("nan"),
                "episodes": episodes,
                "joint_groups": joint_groups,
                "subpolicy_usage": usage.tolist(),
            }
        )
        if self.discriminator is not None:
            # Per step, before the coefficient, and scored before the discriminator trained on this rollout: how well it
            # tells the skills apart on data it has not seen (0: not at all; log K: always sure and right).
            steps = max(int(result.subpolicy_counts.sum()), 1)
            self.iteration_log[-1]["diversity_reward_mean"] = result.diversity_reward_sum / steps

    def _dump_logs(self, result: RolloutResult, phases: list[str]) -> None:
        time_elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        fps = int((self.num_timesteps - self._num_timesteps_at_start) / time_elapsed)
        self.logger.record("time/iterations", self.iteration, exclude="tensorboard")
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", safe_mean([info["r"] for info in self.ep_info_buffer]))
            self.logger.record("rollout/ep_len_mean", safe_mean([info["l"] for info in self.ep_info_buffer]))
        if self.ep_success_buffer:  # envs that report info["is_success"], as SB3 logs them
            self.logger.record("rollout/success_rate", safe_mean(self.ep_success_buffer))
        entry = self.iteration_log[-1]  # this iteration, over all processes in distributed mode
        if entry["episodes"]:
            self.logger.record("rollout/iteration_ep_rew_mean", entry["episode_return_mean"])
        self.logger.record("time/fps", fps)
        self.logger.record("time/time_elapsed", int(time_elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.record("mlsh/tasks_started", sum(group.tasks_started for group in self.trainer.groups))
        self.logger.record("mlsh/joint_groups", entry["joint_groups"])
        self.logger.record("mlsh/task_iteration", self.trainer.groups[0].iteration)
        macro_lengths = np.concatenate([log.length for log in result.macro_steps])
        self.logger.record("mlsh/macro_step_length", float(macro_lengths.mean()))
        for index, fraction in enumerate(entry["subpolicy_usage"]):
            self.logger.record(f"mlsh/subpolicy_usage_{index}", float(fraction))
        if self.discriminator is not None:
            self.logger.record("rollout/diversity_reward_mean", entry["diversity_reward_mean"])
            for key, value in self._discriminator_stats.items():
                self.logger.record(f"train/diversity/{key}", value)
        self.logger.dump(step=self.num_timesteps)

    # ----------------------------------------------------------------------------------------------------- transfer
    def adapt(
        self: SelfMLSH,
        task: Any,
        total_timesteps: int,
        update_subpolicies: bool | str = False,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        progress_bar: bool = False,
    ) -> SelfMLSH:
        """
        Transfer to ``task``: fresh masters learn to use the sub-policies, which stay frozen unless asked otherwise.

        :param task: The new task (e.g. ``TaskSampler(..., split="test").sample()[0]``).
        :param total_timesteps: Primitive env steps to learn for.
        :param update_subpolicies: False: the sub-policies stay frozen. True: they learn from the first iteration on
            (joint phase). ``"after_warmup"``: the paper's fine-tuning, its meta-loop on one task: ``warmup_iterations``
            iterations with frozen sub-policies, then joint iterations for the rest of ``total_timesteps``.
        :param callback: SB3 callback(s).
        :param log_interval: Log every this many iterations.
        :param progress_bar: Show a progress bar.
        :return: The adapted model; :meth:`predict` then uses the adapted master.
        """
        self._refuse_in_distributed_mode("adapt")
        if update_subpolicies not in (False, True, "after_warmup"):
            raise ValueError(f"update_subpolicies must be False, True or 'after_warmup', got {update_subpolicies!r}.")
        # A phase of None lets each group run its own schedule: W warmup iterations, then joint ones (no task ends).
        phase = {False: WARMUP, True: JOINT, "after_warmup": None}[update_subpolicies]
        self.trainer.fix_task(task, phase)
        for group in self.trainer.groups:
            self._reset_master(group.master)
            group.task = None
        self._last_obs = None
        return self.learn(
            total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name="MLSH_adapt",
            reset_num_timesteps=True,
            progress_bar=progress_bar,
        )

    def _refuse_in_distributed_mode(self, method: str) -> None:
        if self._dist is not None:
            raise NotImplementedError(
                f"{method}() runs in one process: load the saved model there, e.g. MLSH.load(path, task_groups=1)."
            )

    def resume_meta_training(self) -> None:
        """Leave the transfer mode of :meth:`adapt`: the next :meth:`learn` samples tasks again."""
        self._refuse_in_distributed_mode("resume_meta_training")
        self.trainer.fix_task(None, None)
        self.trainer.fixed_phase = None
        for group in self.trainer.groups:
            self._reset_master(group.master)
            group.task = None
            group.tasks_started = 0
        self._last_obs = None

    # ------------------------------------------------------------------------------------------------------ predict
    def predict(  # type: ignore[override]  # the state is an (n, 2) array, not SB3's tuple of recurrent states
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Act with the master (group 0's) and the sub-policies.

        :param observation: One observation or a batch.
        :param state: ``(n, 2)`` int array of (active sub-policy, primitive steps left in its macro-step), as returned
            by the previous call; None at the start.
        :param episode_start: Whether each observation starts an episode (forces a new master decision).
        :param deterministic: Use the mode of the master's and the sub-policies' distributions.
        :return: The actions and the new state.
        """
        vectorized = self.master.policy.is_vectorized_observation(observation)  # type: ignore[attr-defined]
        batch: Obs
        if isinstance(observation, dict):
            batch = {key: np.asarray(value) if vectorized else np.asarray(value)[None] for key, value in observation.items()}
            n = len(next(iter(batch.values())))
        else:
            batch = np.asarray(observation) if vectorized else np.asarray(observation)[None]
            n = len(batch)
        state = np.zeros((n, 2), dtype=np.int64) if state is None else np.array(state, dtype=np.int64).reshape(n, 2)
        deciding = state[:, 1] <= 0
        if episode_start is not None:
            deciding |= np.asarray(episode_start, dtype=bool).reshape(n)
        if deciding.any():
            indices = np.flatnonzero(deciding)
            choice, _ = self.master.policy.predict(
                {key: value[indices] for key, value in batch.items()} if isinstance(batch, dict) else batch[indices],
                deterministic=deterministic,
            )
            state[indices, 0] = choice
            state[indices, 1] = self.macro_duration
        actions, _ = self.policy.predict(self.collector.subpolicy_obs(batch, state[:, 0]), deterministic=deterministic)
        state[:, 1] -= 1
        return (actions if vectorized else actions[0]), state

    def subpolicy_predict(self, observation: np.ndarray, subpolicy: int, deterministic: bool = False) -> np.ndarray:
        """
        Action of one sub-policy, e.g. to drive a :class:`~sb3_mlsh.MacroActionWrapper`.

        :param observation: One env observation.
        :param subpolicy: Which sub-policy acts.
        :param deterministic: Use the mode of its distribution.
        :return: The action.
        """
        batch = (
            {k: np.asarray(v)[None] for k, v in observation.items()}
            if isinstance(observation, dict)
            else np.asarray(observation)[None]
        )
        actions, _ = self.policy.predict(
            self.collector.subpolicy_obs(batch, np.array([subpolicy])), deterministic=deterministic
        )
        return actions[0]

    # ------------------------------------------------------------------------------------------------- save / load
    def set_random_seed(self, seed: int | None = None) -> None:
        """
        Seed torch, NumPy, Python, the envs, the task draws and the master exploration.

        :param seed: The seed (None: unseeded).
        """
        if getattr(self, "_dist", None) is None:
            super().set_random_seed(seed)
            if hasattr(self, "trainer"):
                self.trainer.rng = np.random.default_rng(seed)
                self.collector.rng = np.random.default_rng(None if seed is None else seed + 1)
            return
        # Distributed: each process its own streams (envs, actions); the task draws of a group the same on its ranks.
        local_seed = None if seed is None else self._dist.local_seed(seed, self.n_envs)
        super().set_random_seed(local_seed)
        if hasattr(self, "trainer") and seed is not None and local_seed is not None:
            groups = self.trainer.groups
            trainer = cast(Any, self.trainer)  # a DistributedMetaTrainer: one task generator per group
            trainer.group_rngs = {group.index: np.random.default_rng([seed, group.index]) for group in groups}
            self.collector.rng = np.random.default_rng(local_seed + 1)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []

    def get_parameters(self) -> dict[str, dict]:
        """
        :return: The state dicts of the sub-policy bank, of each task group's master and of all their optimizers.
        """
        params = {"subpolicies": self.policy.state_dict(), "subpolicies_optimizer": self.policy.optimizer.state_dict()}
        # group.index is the global group index (in distributed mode a process holds only its own groups' masters).
        for group in self.trainer.groups:
            params[f"master{group.index}"] = group.master.policy.state_dict()
            params[f"master{group.index}_optimizer"] = group.master.policy.optimizer.state_dict()
        if self.discriminator is not None:
            params["discriminator"] = self.discriminator.state()
        return params

    def set_parameters(
        self, load_path_or_dict: str | dict[str, Any], exact_match: bool = True, device: th.device | str = "auto"
    ) -> None:
        """
        Load the parameters that :meth:`get_parameters` returns.

        :param load_path_or_dict: A saved model's zip file, or the dict itself.
        :param exact_match: Require parameters for every master (False: masters missing from the dict stay as they are).
        :param device: Torch device to load the zip file to.
        :raises ModelFileError: when the parameters do not fit this model's architecture.
        """
        params = (
            load_path_or_dict if isinstance(load_path_or_dict, dict) else read_model_zip(load_path_or_dict, device=device)[1]
        )
        try:
            self.policy.load_state_dict(params["subpolicies"])
        except (KeyError, RuntimeError) as error:
            raise ModelFileError(
                "The saved sub-policies do not fit this model: it was saved with another n_subpolicies, policy_kwargs, "
                f"env spaces or an incompatible sb3-mlsh version ({str(error).splitlines()[0]}). Load it with the "
                "arguments it was saved with."
            ) from error
        if "subpolicies_optimizer" in params:
            self.policy.optimizer.load_state_dict(params["subpolicies_optimizer"])
        if self.discriminator is not None and "discriminator" in params:
            self.discriminator.load_state(params["discriminator"])
        for group in self.trainer.groups:
            index, master = group.index, group.master
            if f"master{index}" in params:
                master.policy.load_state_dict(params[f"master{index}"])
                master.policy.optimizer.load_state_dict(params[f"master{index}_optimizer"])
            elif exact_match:
                raise ModelFileError(f"The saved model has no parameters for the master of task group {index}.")

    def _init_kwargs(self) -> dict[str, Any]:
        return dict(
            n_subpolicies=self.n_subpolicies,
            macro_duration=self.macro_duration,
            warmup_iterations=self.warmup_iterations,
            joint_iterations=self.joint_iterations,
            n_steps=self.n_steps,
            n_envs=self.n_envs,
            task_groups=self.task_groups,
            master_kwargs=self.master_kwargs,
            subpolicy_kwargs=self.subpolicy_kwargs,
            policy_kwargs=self.policy_kwargs,
            master_epsilon=self.master_epsilon,
            skill_diversity=self.skill_diversity,
            discriminator_kwargs=self.discriminator_kwargs,
            subpolicy_obs_exclude=self.subpolicy_obs_exclude,
            normalize_reward=self.normalize_reward,
            torch_threads=self.torch_threads,
            stagger_groups=self.stagger_groups,
            vec_env_class=self.vec_env_class,
            stats_window_size=self._stats_window_size,
            seed=self.seed,
        )

    def save(self, path: str | pathlib.Path | io.BufferedIOBase, exclude: Any = None, include: Any = None) -> None:
        """
        Save the sub-policies, the masters, their optimizers, the task schedule and the counters to a zip file.
        The write is atomic: the file appears complete or not at all.

        In distributed mode every process must call it (it gathers the masters and schedules of all task groups);
        rank 0 writes one complete model, which :meth:`load` opens in a single process (with ``task_groups`` groups and
        ``n_envs`` = envs per process x processes) or in a distributed run of any layout.

        :param path: File path (``.zip`` is added when missing) or a writable file object.
        """
        data = {
            "mlsh_format_version": FORMAT_VERSION,
            "policy_name": self.policy_name,
            "task_sampler": self.task_sampler,
            "init_kwargs": self._init_kwargs(),
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            # A save inside an iteration (e.g. by CheckpointCallback) stores the state at the end of the last completed
            # iteration: the unfinished iteration's data has trained nothing yet, so a resume runs it again.
            "num_timesteps": getattr(self, "_completed_timesteps", self.num_timesteps),
            "iteration": self.iteration,
            "trainer": self.trainer.state_dict(),
            "collector_rng": self.collector.rng.bit_generator.state,
            "reward_scaler": None if self.collector.reward_scaler is None else self.collector.reward_scaler.state_dict(),
            "learner_updates": [self.subpolicy_learner._n_updates, *[master._n_updates for master in self.masters]],
            # SB3's minibatch shuffling draws from the global NumPy generator: restore it too for an exact resume.
            "numpy_rng_state": np.random.get_state(),
            "python_rng_state": random.getstate(),
            "run_state": self._run_state(),
        }
        pytorch_variables = {"torch_rng_state": th.get_rng_state()}
        params = self.get_parameters()
        if self._dist is not None:
            from sb3_mlsh.distributed import gather_checkpoint

            gathered = gather_checkpoint(self, data, params)
            if gathered is None:  # not rank 0: it has sent its share
                return
            data, params = gathered
        # JSON only (see sb3_mlsh.serialization): loading the file runs no code from it.
        data = {key: encode(value, key) for key, value in data.items()}
        if isinstance(path, io.BufferedIOBase):
            save_to_zip_file(path, data=data, params=params, pytorch_variables=pytorch_variables)
            return
        path = pathlib.Path(path)
        if path.suffix == "":
            path = path.with_suffix(".zip")
        path.parent.mkdir(parents=True, exist_ok=True)
        archive = io.BytesIO()
        save_to_zip_file(archive, data=data, params=params, pytorch_variables=pytorch_variables)
        # Write beside the target, then rename over it: a crash never leaves a half-written file in its place.
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
            try:
                tmp.write(archive.getvalue())
                tmp.flush()
                os.fsync(tmp.fileno())
            except BaseException:
                os.unlink(tmp.name)
                raise
        # NamedTemporaryFile creates the file private (0600): give it the mode any other file gets here.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp.name, 0o666 & ~umask)
        os.replace(tmp.name, path)

    def _run_state(self) -> dict[str, Any] | None:
        """
        The envs' episodes in progress and the last observations, between iterations of a single-process run: with
        them a loaded model continues exactly where the saved one stopped. None inside an iteration (a save there holds
        the last completed iteration, whose envs have moved on) or for envs whose state cannot be captured.
        """
        if self._dist is not None or self._last_obs is None or self.num_timesteps != self._completed_timesteps:
            return None
        assert self.env is not None
        env_states = capture_envs(self.env)
        if env_states is None:
            return None
        return {"envs": env_states, "last_obs": self._last_obs, "last_episode_starts": self._last_episode_starts}

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | os.PathLike | io.BufferedIOBase,
        task_sampler: TaskSampler | str | Callable[[], gym.Env] | None = None,
        device: th.device | str = "auto",
        trusted: bool = False,
        env: Any = None,
        **kwargs: Any,
    ) -> "MLSH":
        """
        Load a model saved by :meth:`save`. Loading runs no code from the file: a model file is JSON and tensors
        (:mod:`sb3_mlsh.serialization`). Only values that have no such form, a task sampler built from your own env
        factory or a learning rate given as your own function, are stored pickled; give them again (``task_sampler=``,
        ``subpolicy_kwargs=``, ...) or, for a file you trust, pass ``trusted=True``.

        :param path: The zip file.
        :param task_sampler: Task sampler for the loaded model (default: the one it was trained with).
        :param device: Torch device.
        :param trusted: Unpickle the values stored pickled (this runs code from the file: only for files you trust).
        :param env: SB3's name for ``task_sampler``: an env id or an env factory (MLSH builds its own VecEnv).
        :param kwargs: Override constructor arguments (e.g. ``n_envs``, ``verbose``, ``tensorboard_log``). With another
            ``task_groups`` than saved, only the sub-policies are loaded (fresh masters and schedule, as for transfer).
            A model saved by a distributed run opens in one process with all its task groups and its total env count;
            in a distributed run, every process takes its groups' masters and schedule, and ``n_envs`` per process as
            saved.
        :return: The model, ready to ``predict``, ``adapt`` or continue to ``learn``.
        """
        if env is not None:
            if task_sampler is not None:
                raise TypeError("Give the task sampler once: task_sampler= or its SB3 name env=, not both.")
            if isinstance(env, (VecEnv, gym.Env)):
                raise TypeError(
                    "MLSH builds its own VecEnv (one per task group's tasks), so load(env=...) takes what builds the envs: "
                    f"an env id or an env factory, or a TaskSampler as task_sampler=..., not a {type(env).__name__}."
                )
            task_sampler = env
        try:
            raw, params, pytorch_variables = read_model_zip(path, device=device)
        except FileNotFoundError:
            raise
        except ModelFileError as error:
            raise ModelFileError(f"{error}; use an earlier checkpoint, or save the model again.") from error
        if raw.get("mlsh_format_version") is None:
            raise ModelFileError(
                f"{path} is not an sb3-mlsh model (no mlsh_format_version in it): it is a model of another algorithm, "
                "which its own class loads (e.g. stable_baselines3.PPO.load)."
            )
        if raw["mlsh_format_version"] > FORMAT_VERSION:
            raise ModelFileError(
                f"{path} was saved by a newer sb3-mlsh (format {raw['mlsh_format_version']}); upgrade sb3-mlsh."
            )
        try:
            data = {
                key: decode(value, key, trusted) for key, value in raw.items() if key not in ("init_kwargs", "task_sampler")
            }
            # Overridden arguments and a given task sampler are not decoded: a pickled value that is replaced never loads.
            saved_kwargs = raw["init_kwargs"]
            if ":serialized:" in saved_kwargs:  # format 1: the whole mapping pickled by SB3
                saved_kwargs = decode(saved_kwargs, "init_kwargs", trusted)
            data["init_kwargs"] = {
                key: decode(value, f"init_kwargs.{key}", trusted) for key, value in saved_kwargs.items() if key not in kwargs
            }
            data["task_sampler"] = None if task_sampler is not None else decode(raw["task_sampler"], "task_sampler", trusted)
        except UntrustedValueError:
            if raw["mlsh_format_version"] < 2:
                raise ModelFileError(
                    f"{path} was saved by sb3-mlsh 0.1, whose files hold pickles that run code when loaded. "
                    "Load it once with MLSH.load(path, trusted=True), only if you trust the file, and save it again."
                ) from None
            raise
        init_kwargs = {**data["init_kwargs"], **kwargs}
        saved_distributed = data.get("distributed")
        distributed = _distributed_requested(kwargs.get("distributed"))
        if distributed and saved_distributed is not None and "n_envs" not in kwargs:
            init_kwargs["n_envs"] = saved_distributed["n_envs_per_process"]
        model = cls(
            data["policy_name"],
            task_sampler if task_sampler is not None else data["task_sampler"],
            device=device,
            **init_kwargs,
        )
        for what in ("observation_space", "action_space"):
            saved, given = data.get(what), getattr(model, what)
            if saved is not None and (saved.shape != given.shape or type(saved) is not type(given)):
                raise ValueError(
                    f"{path} was trained with {what} {saved}, but the envs of the given task sampler have {given}. "
                    "Sub-policies transfer only between families with the same spaces (e.g. AntTwowalk to "
                    "AntObstacleCourse): pass a task sampler of such a family, or none to keep the saved one."
                )
        same_groups = model.task_groups == saved_kwargs["task_groups"]
        if not same_groups:
            # A different number of task groups (e.g. one group for transfer) keeps the sub-policies only:
            # the masters and the task schedule start afresh.
            params = {key: value for key, value in params.items() if not key.startswith("master")}
        model.set_parameters(params, exact_match=same_groups, device=device)
        model.num_timesteps = model._completed_timesteps = data["num_timesteps"]
        model.iteration = data["iteration"]
        if same_groups:
            model.trainer.load_state_dict(data["trainer"])
        if model._dist is None:
            model.collector.rng.bit_generator.state = data["collector_rng"]
        run_state = data.get("run_state")
        same_envs = same_groups and task_sampler is None and model.n_envs == data["init_kwargs"].get("n_envs", model.n_envs)
        restorable = run_state is not None and model._dist is None and same_envs and model.env is not None
        if run_state is not None and restorable and restore_envs(model.env, run_state["envs"]):  # type: ignore[arg-type]
            # The envs continue their episodes: the next learn() starts where the saved model stopped.
            model._last_obs = run_state["last_obs"]
            model._last_episode_starts = run_state["last_episode_starts"]
        if model.collector.reward_scaler is not None and data.get("reward_scaler") is not None:
            model.collector.reward_scaler.load_state_dict(data["reward_scaler"])
        model.subpolicy_learner._n_updates, *master_updates = data["learner_updates"]
        for group in model.trainer.groups:
            if group.index < len(master_updates):
                group.master._n_updates = master_updates[group.index]
        torch_rng_state = pytorch_variables.get("torch_rng_state") if pytorch_variables else None
        numpy_rng_state, python_rng_state = data.get("numpy_rng_state"), data.get("python_rng_state")
        if model._dist is not None:
            rank_states = (saved_distributed or {}).get("rank_states")
            if rank_states is not None and len(rank_states) == model._dist.world_size:
                # Same number of processes: each continues its own random streams.
                state = rank_states[model._dist.rank]
                model.collector.rng.bit_generator.state = state["collector_rng"]
                torch_rng_state, numpy_rng_state = th.as_tensor(state["torch_rng_state"]), state["numpy_rng_state"]
                python_rng_state = state["python_rng_state"]
            else:
                # Another layout: the saved streams are rank 0's; keep this process's own, seeded ones.
                torch_rng_state = numpy_rng_state = python_rng_state = None
        if torch_rng_state is not None:
            th.set_rng_state(torch_rng_state.cpu())
        if numpy_rng_state is not None:
            np.random.set_state(numpy_rng_state)
        if python_rng_state is not None:
            version, internal, gauss = python_rng_state  # JSON turns the tuples into lists
            random.setstate((version, tuple(internal), gauss))
        return model
