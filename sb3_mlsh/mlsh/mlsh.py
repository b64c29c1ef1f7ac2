"""MLSH: Meta Learning Shared Hierarchies (Frans et al., ICLR 2018) as a Stable-Baselines3 algorithm."""

import inspect
import io
import math
import os
import pathlib
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from sb3_mlsh.common.checks import (
    check_arguments,
    check_finite_gradients,
    check_finite_step,
    check_task_sampler,
    guard_optimizer,
    learner_kwargs,
    refuse_unknown_arguments,
)
from sb3_mlsh.common.learners import make_learner, reset_policy, train_on
from sb3_mlsh.common.normalization import ObservationNormalizer, RewardScaler
from sb3_mlsh.common.observation import ObservationView, ObsExclude, batch_of_one, index_obs, write_env_obs
from sb3_mlsh.common.sb3_internals import n_updates, set_n_updates, wrap_env
from sb3_mlsh.common.serialization import read_model_zip
from sb3_mlsh.common.tasks import TaskSampler, as_task_sampler
from sb3_mlsh.common.type_aliases import Obs
from sb3_mlsh.distributed import distributed_requested, make_context, world_size
from sb3_mlsh.mlsh import persistence
from sb3_mlsh.mlsh.bank import SUBPOLICY_KEY, SubPolicyBankPolicy, SubPolicyOptimizer, subpolicy_observation_space
from sb3_mlsh.mlsh.buffers import MacroStepBuffer, RolloutResult, reached_observations, select_envs
from sb3_mlsh.mlsh.diversity import SkillDiscriminator
from sb3_mlsh.mlsh.logger import PrefixedLogger, group_summary, iteration_summary, record_iteration
from sb3_mlsh.mlsh.policies import MlpPolicy, MultiInputPolicy, predict_hierarchical
from sb3_mlsh.mlsh.schedule import JOINT, Phase, TaskSchedule

__all__ = ["MASTER_DEFAULTS", "MLSH", "SUBPOLICY_DEFAULTS"]

#: The sub-policy learner's arguments that SB3's ``OnPolicyAlgorithm`` also takes.
SB3_ATTRIBUTES = ("learning_rate", "gamma", "gae_lambda", "ent_coef", "max_grad_norm")

SelfMLSH = TypeVar("SelfMLSH", bound="MLSH")

MASTER_DEFAULTS: dict[str, Any] = dict(
    learning_rate=0.01, n_epochs=10, batch_size=64, gamma=0.99, gae_lambda=0.98, clip_range=0.2, ent_coef=0.0
)
SUBPOLICY_DEFAULTS: dict[str, Any] = dict(
    learning_rate=3e-4, n_epochs=10, batch_size=256, gamma=0.99, gae_lambda=0.98, clip_range=0.2, ent_coef=0.0,
    max_grad_norm=0.5,
)  # fmt: skip

TaskSource = TaskSampler | str | Callable[[], gym.Env]


def _tasks_and_envs(
    task_sampler: TaskSource | None, env: VecEnv | gym.Env | TaskSource | None, verbose: int
) -> tuple[TaskSource, VecEnv | None]:
    """
    Read SB3's ``env`` argument: what builds the envs (the task sampler under its SB3 name), or envs to run on.

    :return: The source of the tasks and the caller's VecEnv (None: MLSH builds its envs).
    """
    if isinstance(env, gym.Env):
        env = wrap_env(env, verbose)  # as SB3 does: a DummyVecEnv of the env in a Monitor
    if isinstance(env, VecEnv):
        if task_sampler is not None:
            return task_sampler, env
        spec = env.get_attr("spec", indices=[0])[0]
        if spec is None:
            raise TypeError(
                "MLSH(env=<VecEnv>) draws the tasks from the envs' registered id, and these envs have no registered id "
                "(spec is None): pass the tasks too, MLSH(policy, TaskSampler(your_env_factory), env=vec_env)."
            )
        env_kwargs = {key: value for key, value in (spec.kwargs or {}).items() if key != "render_mode"}
        return as_task_sampler(spec.id, env_kwargs=env_kwargs), env
    if env is not None:
        if task_sampler is not None:
            raise TypeError("MLSH(): give the tasks once, as task_sampler or as its SB3 name env, not both.")
        return env, None
    if task_sampler is None:
        raise TypeError(
            "MLSH() needs the tasks: a TaskSampler, an env id or an env factory, e.g. "
            "MLSH('MlpPolicy', 'mlsh/MovementBandits-v0') or MLSH('MlpPolicy', env='mlsh/MovementBandits-v0')."
        )
    return task_sampler, None


def _checked_vec_env(env: VecEnv, task_sampler: TaskSampler) -> VecEnv:
    """:return: ``env``, checked to run the task sampler's family: same spaces, and a ``set_task`` in every env."""
    for name in ("observation_space", "action_space"):
        given, expected = getattr(env, name), getattr(task_sampler, name)
        if given != expected:
            raise ValueError(
                f"The envs given as env= have {name} {given}, but the tasks of {task_sampler.env_id!r} have {expected}: "
                "pass envs of that family (gymnasium.make of its id), or the tasks of yours as task_sampler=."
            )
    if not env.has_attr("set_task"):
        raise TypeError(
            "The envs given as env= have no set_task(task): MLSH sets each env's task through "
            "env_method('set_task', task), so they must implement the task protocol (sample_tasks, set_task)."
        )
    return env


class MLSH(OnPolicyAlgorithm):
    """
    Meta Learning Shared Hierarchies (Frans, Ho, Chen, Abbeel, Schulman, ICLR 2018).

    K sub-policies are shared across tasks; a master, re-initialised for every task, picks one of them every
    ``macro_duration`` steps. Both levels are Stable-Baselines3 PPO learners with SB3's own ``train()``:
    the master over macro-steps (action = sub-policy index, reward = sum of the primitive rewards), the
    sub-policy learner over primitive steps with the master's choice in its observation and a bank of K
    independent networks as its policy. Per task: ``warmup_iterations`` master-only iterations, then
    ``joint_iterations`` iterations that also update the sub-policies, then a new task (:meth:`train`).

    :param policy: ``"MlpPolicy"`` (Box observations) or ``"MultiInputPolicy"`` (Dict observations); selects the
        master's SB3 policy and the sub-policy bank.
    :param task_sampler: The tasks: a :class:`~sb3_mlsh.TaskSampler`, or an env id / env factory whose env implements
        ``sample_tasks`` and ``set_task`` (or give it as ``env``, SB3's name).
    :param n_subpolicies: Number of sub-policies K.
    :param macro_duration: Primitive steps per master decision N.
    :param max_macro_duration: A randomised time commitment (HiPPO, Li et al. 2020): while learning, each macro-step lasts
        a whole number of steps drawn uniformly from ``macro_duration`` to this, so that no skill can count on a fixed
        switch time. None (default): always ``macro_duration``, as in the paper. ``predict`` keeps ``macro_duration``;
        :meth:`adapt` draws too (load with ``max_macro_duration=None`` to adapt at a fixed length).
    :param warmup_iterations: Master-only iterations per task W.
    :param joint_iterations: Iterations per task that also update the sub-policies U.
    :param n_steps: Primitive steps per env per iteration D.
    :param n_envs: Number of envs (with ``env`` a VecEnv: its number of envs).
    :param task_groups: Number of task groups G running concurrently, each with its own task and master.
    :param master_kwargs: PPO arguments of the master (defaults: the paper's, learning rate 0.01).
    :param subpolicy_kwargs: PPO arguments of the sub-policy learner (defaults: the paper's, learning rate 3e-4).
    :param policy_kwargs: Arguments of the sub-policy bank (:class:`~sb3_mlsh.mlsh.bank.SubPolicyBankPolicy`).
    :param master_epsilon: Probability that a master choice is replaced by a random sub-policy (the original: 0.1).
    :param skill_diversity: Weight of DIAYN's reward ``log q(k | s') + log K``, added to the sub-policies' rewards, where a
        :class:`~sb3_mlsh.mlsh.diversity.SkillDiscriminator` q learns which sub-policy acts. 0: the paper's MLSH.
    :param discriminator_kwargs: Arguments of that discriminator.
    :param subpolicy_obs_exclude: Entries of the env observation that the sub-policies do not see: for a Box, indices
        into the flattened observation (e.g. ``[0, 1]``, an Ant's torso x and y; ``"start:stop"`` slices too); for a
        Dict, keys to drop or a mapping ``{key: indices}``. None (default): they see everything, as in the paper.
    :param master_obs_exclude: Entries of the env observation that the masters do not see, in the same form (e.g.
        ``["3:"]``: only the first three entries, where the body is). None (default): they see everything, as in the
        paper. A model loaded with another value keeps its sub-policies only (fresh masters, as for transfer).
    :param normalize_reward: Both learners learn from rewards divided by a running std of the discounted return (kept
        across tasks, saved, used by :meth:`adapt`): returns of any scale leave the policy step intact. False: the paper.
    :param normalize_observation: Both levels see the env's observations scaled entry by entry by their running mean and
        standard deviation (clipped to +-10, as SB3's ``VecNormalize``; a ``Box`` observation space only). The statistics
        are kept across tasks, saved with the model and frozen by :meth:`adapt`. :meth:`predict` takes raw observations.
        False: the paper.
    :param torch_threads: Torch threads while :meth:`learn` runs: 1 (default) is fastest for MLSH's small MLPs (torch's
        default measured 19x slower on a busy 2-core machine); None leaves torch's setting.
    :param stagger_groups: Stagger the task groups' phases so that sub-policy updates spread evenly.
    :param vec_env_class: ``DummyVecEnv`` (default) or ``SubprocVecEnv``.
    :param monitor_dir: Where the Monitor CSVs go (None: not written).
    :param monitor_kwargs: Keyword arguments of SB3's ``Monitor`` (e.g. ``override_existing=False`` to append).
    :param stats_window_size: Episodes averaged in ``rollout/*`` logs.
    :param tensorboard_log: TensorBoard log folder.
    :param verbose: 0 silent, 1 logs every ``log_interval`` iterations.
    :param seed: Seed of everything (envs, task draws, networks).
    :param device: Torch device. In distributed mode ``"auto"`` means ``cuda:LOCAL_RANK`` when every process has a GPU.
    :param distributed: Train across the processes that ``torchrun`` launched (None: when there are several). Then
        ``n_envs`` is per process, ``task_groups`` and the step counts are the whole run's, only rank 0 logs and writes
        saves, and ``save`` is a collective call (:mod:`sb3_mlsh.distributed`).
    :param env: SB3's argument: the tasks, as ``task_sampler`` takes them (an env id, an env factory or a
        :class:`~sb3_mlsh.TaskSampler`), or envs of a task family to run on: a VecEnv (or one env, which is wrapped as
        SB3 does), whose tasks MLSH sets with ``env_method("set_task", task)``; the tasks are drawn from
        ``task_sampler``, or without it from the envs' registered id.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "MultiInputPolicy": MultiInputPolicy}
    policy: SubPolicyBankPolicy  # type: ignore[assignment]
    #: The task and phase schedule of the task groups (their tasks, masters, iterations and phases).
    schedule: TaskSchedule

    def __init__(
        self,
        policy: str | type[SubPolicyBankPolicy],
        task_sampler: TaskSampler | str | Callable[[], gym.Env] | None = None,
        n_subpolicies: int = 2,
        macro_duration: int = 10,
        max_macro_duration: int | None = None,
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
        master_obs_exclude: ObsExclude = None,
        normalize_reward: bool = False,
        normalize_observation: bool = False,
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
        env: VecEnv | gym.Env | TaskSampler | str | Callable[[], gym.Env] | None = None,
        _init_setup_model: bool = True,
        **unknown_kwargs: Any,
    ) -> None:
        refuse_unknown_arguments(unknown_kwargs, set(inspect.signature(MLSH.__init__).parameters) - {"self"})
        distributed = distributed_requested(distributed)
        task_sampler, given_env = _tasks_and_envs(task_sampler, env, verbose)
        if given_env is not None:
            if distributed:
                raise ValueError(
                    "MLSH(env=<VecEnv>) runs in one process: in distributed mode each process builds its own envs, "
                    "so pass an env id or a TaskSampler."
                )
            if monitor_dir is not None:
                raise ValueError(
                    "monitor_dir is for the envs MLSH builds: wrap the envs you pass in SB3's Monitor(env, filename) instead."
                )
            n_envs = given_env.num_envs
        check_arguments(
            n_subpolicies, macro_duration, warmup_iterations, joint_iterations, n_steps, n_envs, task_groups,
            master_epsilon, skill_diversity, normalize_reward, torch_threads, world_size() if distributed else 1, distributed,
            max_macro_duration, normalize_observation,
        )  # fmt: skip
        self.master_kwargs = learner_kwargs("master_kwargs", MASTER_DEFAULTS, master_kwargs, distributed)
        self.subpolicy_kwargs = learner_kwargs("subpolicy_kwargs", SUBPOLICY_DEFAULTS, subpolicy_kwargs, distributed)
        # This process's place in the run (a collective call when it is distributed), and the run's seed.
        self.context = make_context(distributed, task_groups, device)
        seed = self.context.agree(seed, n_envs=n_envs, n_steps=n_steps, n_subpolicies=n_subpolicies, task_groups=task_groups)
        self.policy_name = policy if isinstance(policy, str) else "MlpPolicy"
        self.task_sampler = as_task_sampler(task_sampler)
        self.n_subpolicies, self.macro_duration, self.task_groups = n_subpolicies, macro_duration, task_groups
        self.max_macro_duration = max_macro_duration
        self.warmup_iterations, self.joint_iterations = warmup_iterations, joint_iterations
        self.master_epsilon, self.skill_diversity = master_epsilon, float(skill_diversity)
        self.discriminator_kwargs = dict(discriminator_kwargs or {})
        self.subpolicy_obs_exclude, self.master_obs_exclude = subpolicy_obs_exclude, master_obs_exclude
        self.normalize_reward, self.torch_threads, self.stagger_groups = bool(normalize_reward), torch_threads, stagger_groups
        self.vec_env_class = vec_env_class or DummyVecEnv
        observation_space, _ = check_task_sampler(self.task_sampler, self.policy_name, macro_duration, n_subpolicies)
        self.normalize_observation = bool(normalize_observation)
        if self.normalize_observation and not isinstance(observation_space, spaces.Box):
            raise ValueError(
                f"normalize_observation=True scales Box observations; {self.task_sampler.env_id}'s observation space is "
                f"{observation_space}. Scale the entries that need it in the env (e.g. gymnasium.wrappers."
                "NormalizeObservation inside a TransformObservation for a Dict key), or set normalize_observation=False."
            )
        self.subpolicy_view = ObservationView(observation_space, subpolicy_obs_exclude)
        self.master_view = ObservationView(observation_space, master_obs_exclude, "master_obs_exclude", "the master")
        if given_env is None:
            start_index, local_seed = self.context.rank * n_envs, self.context.local_seed(seed, n_envs)  # numbered run-wide
            vec_env = self.task_sampler.make_vec_env(
                n_envs, local_seed, start_index, self.vec_env_class, monitor_dir, monitor_kwargs
            )
        else:
            vec_env = _checked_vec_env(given_env, self.task_sampler)
        super().__init__(
            policy=cast(Any, policy),
            env=vec_env,
            n_steps=n_steps,
            # SB3's on-policy attributes describe the sub-policy learner; each master has its own.
            **{key: self.subpolicy_kwargs[key] for key in SB3_ATTRIBUTES},
            vf_coef=self.subpolicy_kwargs.get("vf_coef", 0.5),
            use_sde=False,
            sde_sample_freq=-1,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log if self.context.is_main else None,
            verbose=verbose if self.context.is_main else 0,
            device=self.context.device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Discrete, spaces.Box),
        )
        self.iteration, self._completed_timesteps = 0, 0
        #: The run of ``python -m sb3_mlsh.train`` this model belongs to (saved with it, so that a run adopts only its own
        #: checkpoints); None outside such a run.
        self.run_id: str | None = None
        self.iteration_log: list[dict[str, Any]] = []
        self._rollout: RolloutResult | None = None
        if _init_setup_model:
            self._setup_model()

    def _make_master(self, group_index: int) -> PPO:
        master_space = self.master_view.space
        master_policy = "MultiInputPolicy" if isinstance(master_space, spaces.Dict) else "MlpPolicy"
        kwargs = self.context.master_kwargs(self.master_kwargs, group_index)
        action_space = spaces.Discrete(self.n_subpolicies)
        master = make_learner(master_policy, master_space, action_space, self.n_steps, 1, self.device, kwargs)
        guard_optimizer(master.policy.optimizer, "master", lambda: self.iteration)
        return master

    def _reset_master(self, master: PPO) -> None:
        reset_policy(master)
        guard_optimizer(master.policy.optimizer, "master", lambda: self.iteration)

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        subpolicy_kwargs = dict(self.subpolicy_kwargs)
        bank_kwargs = {"n_subpolicies": self.n_subpolicies, "max_grad_norm": subpolicy_kwargs.pop("max_grad_norm")}
        bank_kwargs.update(self.policy_kwargs)
        # The bank clips gradients per sub-policy; PPO's joint clip would couple the sub-policies.
        subpolicy_kwargs.update(max_grad_norm=float("inf"), policy_kwargs=bank_kwargs)
        bank_space = subpolicy_observation_space(self.subpolicy_view.space, self.n_subpolicies)
        self.subpolicy_learner = make_learner(
            self.policy_class, bank_space, self.action_space, self.n_steps, self.n_envs, self.device, subpolicy_kwargs
        )
        self.policy = cast(SubPolicyBankPolicy, self.subpolicy_learner.policy)
        self.rollout_buffer = self.subpolicy_learner.rollout_buffer
        bank_optimizer = cast(SubPolicyOptimizer, self.policy.optimizer)
        bank_optimizer.before_step = lambda parameters: check_finite_gradients(parameters, "sub-policies", self.iteration)
        self.discriminator: SkillDiscriminator | None = None
        self._discriminator_stats: dict[str, float] = {}
        if self.skill_diversity > 0:
            self.discriminator = SkillDiscriminator(
                self.subpolicy_view.space, self.n_subpolicies, device=self.device, **self.discriminator_kwargs
            )
        assert self.env is not None
        self.reward_scaler = RewardScaler(self.n_envs, self.gamma) if self.normalize_reward else None
        self.observation_normalizer: ObservationNormalizer | None = None
        if self.normalize_observation:
            self.observation_normalizer = ObservationNormalizer(cast(spaces.Box, self.observation_space).shape)
        #: Set by :meth:`adapt`: the observation statistics stay as meta-training left them.
        self.observation_statistics_frozen = False
        local_seed = self.context.local_seed(self.seed, self.n_envs)
        #: The draws of the master's exploration (``master_epsilon``) and of randomised macro-step lengths.
        self.exploration_rng = np.random.default_rng(None if local_seed is None else local_seed + 1)
        self._one_hot = np.eye(self.n_subpolicies, dtype=np.float32)
        #: Set by :meth:`adapt`: frozen sub-policies act on the mode of their distributions.
        self.frozen_subpolicies_deterministic = False
        self.schedule = TaskSchedule(
            self.task_sampler,
            self.env,
            [self._make_master(index) for index in self.context.local_groups],
            warmup_iterations=self.warmup_iterations,
            joint_iterations=self.joint_iterations,
            stagger=self.stagger_groups,
            seed=self.seed,
            layout=self.context,
        )
        # An identical start on every process: rank 0's sub-policies (the schedule did the same for the masters).
        self.context.share_subpolicies(self.policy)

    @property
    def completed_timesteps(self) -> int:
        """Primitive steps of the completed iterations (less than ``num_timesteps`` while an iteration is collected)."""
        return self._completed_timesteps

    @property
    def masters(self) -> list[PPO]:
        """The master learner of each task group."""
        return [group.master for group in self.schedule.groups]

    @property
    def trainer(self) -> TaskSchedule:
        """Deprecated name of :attr:`schedule`."""
        warnings.warn("MLSH.trainer is deprecated: use MLSH.schedule.", DeprecationWarning, stacklevel=2)
        return self.schedule

    @property
    def master(self) -> PPO:
        """The master that :meth:`predict` uses (group 0's; after :meth:`adapt`, the adapted one)."""
        return self.schedule.groups[0].master

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
        Meta-train, as SB3's on-policy algorithms learn: iterations of :meth:`collect_rollouts` then :meth:`train`, until
        ``total_timesteps`` primitive steps of all envs (``reset_num_timesteps`` also restarts the task schedule).
        """
        threads_before = th.get_num_threads()
        if self.torch_threads is not None:
            th.set_num_threads(self.torch_threads)
        try:
            return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
        finally:
            th.set_num_threads(threads_before)

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """
        One rollout of every task group. At each primitive step, each group's master picks one of the K sub-policies for
        its envs whose macro-step begins (every N steps, and at an episode's start), then the chosen sub-policies act.
        Fills ``rollout_buffer`` (one row per primitive step, for the sub-policies) and each master's
        :class:`~sb3_mlsh.mlsh.buffers.MacroStepBuffer` (one row per macro-step).

        Time limits are bootstrapped by each level with its own value of the final observation; terminations are not.
        When the master switches an env from sub-policy i to j, the step before the switch is cut and bootstrapped with
        i's own value, so that no advantage crosses into another sub-policy's value.

        :return: False when a callback asked to stop.
        """
        assert self._last_obs is not None and self._last_episode_starts is not None  # set by _setup_learn
        groups = self.schedule.groups
        phases = [self.schedule.phase(group) for group in groups]
        # Frozen sub-policies learn nothing from their own noise: acting on the mode leaves the master's choice as the
        # only exploration (a mixed rollout, some groups learning, samples).
        deterministic = self.frozen_subpolicies_deterministic and all(phase is Phase.WARMUP for phase in phases)
        self.policy.set_training_mode(False)
        for group in groups:
            group.master.policy.set_training_mode(False)
        rollout_buffer.reset()
        macro_buffers = [MacroStepBuffer(group.env_indices, n_rollout_steps, self.n_envs) for group in groups]
        rollout = RolloutResult(subpolicy_counts=np.zeros(self.n_subpolicies, dtype=np.int64))
        macro_steps_left = np.zeros(self.n_envs, dtype=np.int64)  # 0: the master decides at this step
        subpolicy = np.zeros(self.n_envs, dtype=np.int64)  # the active sub-policy of each env
        previous_subpolicy = subpolicy.copy()
        acting = np.zeros((n_rollout_steps, self.n_envs), dtype=np.int64)  # for the skill discriminator
        terminal_reached: list[tuple[int, int, Any]] = []
        obs, episode_starts = cast(Obs, self._last_obs), self._last_episode_starts
        callback.on_rollout_start()

        for step in range(n_rollout_steps):
            net_obs = self.normalize_obs(obs)  # what both levels' networks see
            # 1. The master decides where a macro-step begins: one forward pass per group, for just those envs.
            deciding = np.flatnonzero(macro_steps_left == 0)
            for position, (group, macro_buffer) in enumerate(zip(groups, macro_buffers)):
                envs = deciding[self.schedule.group_of_env[deciding] == position]
                if len(envs):
                    group_obs = self.master_view(index_obs(net_obs, envs))
                    choices, values, log_probs = self._master_act(group.master, group_obs)
                    macro_buffer.open(envs, step, group_obs, choices, values, log_probs)
                    subpolicy[envs] = choices
            macro_steps_left[deciding] = self._macro_step_lengths(len(deciding))

            # 2. The chosen sub-policies act: one forward pass of the bank for all envs.
            subpolicy_obs = self.subpolicy_obs(net_obs, subpolicy)
            with th.no_grad():
                actions_t, values_t, log_probs_t, all_values_t = self.policy.act(
                    obs_as_tensor(subpolicy_obs, self.device), deterministic
                )
            actions = actions_t.cpu().numpy()
            # A switch of sub-policy cuts the previous step from this one: bootstrap it with its own sub-policy's value.
            buffer_episode_starts = episode_starts.copy()
            switched = np.flatnonzero((subpolicy != previous_subpolicy) & ~episode_starts) if step > 0 else np.zeros(0, int)
            if len(switched):
                own_values = all_values_t[th.as_tensor(previous_subpolicy[switched]), th.as_tensor(switched)].cpu().numpy()
                rollout_buffer.rewards[rollout_buffer.pos - 1, switched] += self.gamma * own_values
                rollout.subpolicy_bootstrap_sum += float(self.gamma * own_values.sum())
                buffer_episode_starts[switched] = True

            # 3. The env steps.
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)
            step_obs, env_rewards, dones, infos = env.step(clipped_actions)
            new_obs = cast(Obs, step_obs)  # MLSH refuses Tuple observation spaces
            self.num_timesteps += env.num_envs * self.context.world_size  # the run's steps, all processes in lockstep
            check_finite_step(step, env_rewards, new_obs, dones, infos)
            self._update_observation_statistics(new_obs)
            callback.update_locals(locals())
            if not callback.on_step():
                self._last_obs, self._last_episode_starts = new_obs, dones
                return False
            self._update_info_buffer(infos, dones)
            ended = np.flatnonzero(dones)
            rollout.episode_returns += [float(infos[i]["episode"]["r"]) for i in ended if "episode" in infos[i]]

            # 4. Both levels' buffers: the reward adds to each open macro-step; time limits are bootstrapped.
            rewards = env_rewards.astype(np.float64)
            rollout.env_reward_sum += float(rewards.sum())
            if self.reward_scaler is not None:
                rewards = self.reward_scaler(rewards, dones)
            rollout.subpolicy_counts += np.bincount(subpolicy, minlength=self.n_subpolicies)
            subpolicy_rewards = rewards.copy()
            for env_index in ended:
                terminal = infos[env_index].get("terminal_observation")
                if infos[env_index].get("TimeLimit.truncated", False) and terminal is not None:
                    bootstrap = self._bootstrap_time_limit(int(env_index), terminal, subpolicy, macro_buffers)
                    subpolicy_rewards[env_index] += bootstrap
                    rollout.subpolicy_bootstrap_sum += bootstrap
            for macro_buffer in macro_buffers:
                macro_buffer.add(rewards, dones)
            rollout_buffer.add(subpolicy_obs, actions, subpolicy_rewards, buffer_episode_starts, values_t, log_probs_t)  # type: ignore[arg-type]
            if self.discriminator is not None:
                acting[step] = subpolicy
                finals = [(i, infos[i].get("terminal_observation")) for i in ended]
                terminal_reached += [(step, int(i), self._normalize_one(final)) for i, final in finals if final is not None]
            # An episode's end also ends its macro-step: the master decides at the next step of that env.
            macro_steps_left -= 1
            macro_steps_left[dones] = 0
            previous_subpolicy = subpolicy.copy()
            obs, episode_starts = new_obs, dones

        # The rollout's end cuts every unfinished macro-step: bootstrap it with the master's value of the last observation.
        net_obs = self.normalize_obs(obs)
        for group, macro_buffer in zip(groups, macro_buffers):
            unfinished = group.env_indices[macro_steps_left[group.env_indices] > 0]
            if len(unfinished):
                values = self._master_values(group.master, self.master_view(index_obs(net_obs, unfinished)))
                macro_buffer.cut(unfinished, group.master.gamma * values)
            rollout.master_buffers.append(macro_buffer.to_rollout_buffer(group.master))
            rollout.master_bootstrap_sum += float(macro_buffer.bootstrap[: macro_buffer.size].sum())
            rollout.macro_steps.append(macro_buffer.log())
        if self.discriminator is not None:
            self._add_diversity_reward(rollout_buffer, rollout, net_obs, acting, terminal_reached)
        with th.no_grad():
            last_values = self.policy.predict_values(obs_as_tensor(self.subpolicy_obs(net_obs, subpolicy), self.device))
        rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=episode_starts)
        added = rollout.subpolicy_bootstrap_sum + self.skill_diversity * rollout.diversity_reward_sum
        rollout.subpolicy_reward_sum = float(rollout_buffer.rewards.sum()) - added
        self._last_obs, self._last_episode_starts = obs, episode_starts
        callback.update_locals(locals())
        callback.on_rollout_end()

        self.iteration += 1
        self._rollout = rollout
        # The run's statistics: every process adds its share (a group's ranks share its phase, and each counts its part).
        joint_share = sum(phase == JOINT for phase in phases) / self.context.ranks_per_group
        with_diversity = self.discriminator is not None
        summary = iteration_summary(
            self.iteration, self.num_timesteps, rollout, joint_share, self.context.sum_statistics, with_diversity
        )
        if self.task_groups > 1:
            summary.update(
                group_summary(
                    rollout,
                    groups,
                    phases,
                    self.task_groups,
                    self.n_subpolicies,
                    self.context.ranks_per_group,
                    self.context.sum_statistics,
                )
            )
        self.iteration_log.append(summary)
        return True

    def train(self) -> None:
        """
        The body of the paper's meta-loop, after each rollout. Every task group has its own task and master:

        1. every master learns from its macro-steps, in its W warmup iterations and its U joint ones alike;
        2. the shared sub-policies learn from the groups in their joint phase only (a fresh master's choices are
           noise until it has warmed up);
        3. a group whose W + U iterations on its task are done draws a new task, and its master starts afresh.

        With several processes the same steps run on each, the updates averaged over them (:mod:`sb3_mlsh.distributed`).
        """
        assert self._rollout is not None and self._last_episode_starts is not None  # set by collect_rollouts
        sub, progress = self.subpolicy_learner, self._current_progress_remaining
        joint_envs = self.schedule.joint_env_indices()
        # Every process runs as many minibatches as the busiest, so that each collective meets the others.
        subpolicy_minibatches, master_sizes = self.context.agree_on_sizes(
            math.ceil(len(joint_envs) * self.n_steps / sub.batch_size),
            {group.index: buffer.buffer_size for group, buffer in zip(self.schedule.groups, self._rollout.master_buffers)},
        )
        # 1. Warmup and joint: each master learns to pick sub-policies for its task.
        for group, buffer in zip(self.schedule.groups, self._rollout.master_buffers):
            minibatches = self.context.master_minibatches(
                buffer, group.index, master_sizes[group.index], group.master.batch_size
            )
            train_on(group.master, minibatches, progress)
        if self.discriminator is not None:
            # Before the sub-policies' update, which flattens the buffer's (n_steps, n_envs) layout.
            self._discriminator_stats = self.discriminator.train_on(sub.rollout_buffer.observations)
        # 2. Joint only: the sub-policies learn from the groups whose masters have warmed up.
        if subpolicy_minibatches > 0:
            has_data = len(joint_envs) > 0
            buffer = select_envs(sub.rollout_buffer, joint_envs) if 0 < len(joint_envs) < self.n_envs else sub.rollout_buffer
            # A process whose groups all warm up keeps the others company in the collectives; its stand-ins are not logged.
            train_on(sub, self.context.subpolicy_minibatches(buffer, subpolicy_minibatches, has_data), progress, log=has_data)
        # 3. Tasks that are over: a fresh master and a new task for their groups.
        for group in self.schedule.end_iteration():
            self._reset_master(group.master)
            first_observations = self.schedule.start_task(group, reset_envs=True)
            assert first_observations is not None
            write_env_obs(cast(Obs, self._last_obs), self._last_episode_starts, group.env_indices, first_observations)
        self._completed_timesteps = self.num_timesteps

    def normalize_obs(self, obs: Obs) -> Obs:
        """
        :param obs: A batch of raw env observations.
        :return: The batch as both levels' networks take it: scaled by the running statistics (``normalize_observation``),
            else unchanged.
        """
        return obs if self.observation_normalizer is None else self.observation_normalizer(cast(np.ndarray, obs))

    def _normalize_one(self, observation: Any) -> Any:
        return observation if self.observation_normalizer is None else self.observation_normalizer(observation[None])[0]

    def _update_observation_statistics(self, obs: Obs) -> None:
        if self.observation_normalizer is not None and not self.observation_statistics_frozen:
            self.observation_normalizer.update(cast(np.ndarray, obs))

    def subpolicy_obs(self, obs: Obs, subpolicy: np.ndarray) -> Obs:
        """
        :param obs: A batch of env observations (scaled, with ``normalize_observation``: :meth:`normalize_obs`).
        :param subpolicy: The active sub-policy of each.
        :return: The batch as the sub-policies see it: their view of the observation plus the one-hot choice.
        """
        obs = self.subpolicy_view(obs)
        one_hot = self._one_hot[subpolicy]
        if isinstance(obs, dict):
            return {**obs, SUBPOLICY_KEY: one_hot}
        return np.concatenate([obs.reshape(len(subpolicy), -1).astype(np.float32, copy=False), one_hot], axis=1)

    def _macro_step_lengths(self, n: int) -> int | np.ndarray:
        """:return: How long the ``n`` macro-steps that begin now last (drawn when ``max_macro_duration`` is set)."""
        if self.max_macro_duration is None:
            return self.macro_duration
        return self.exploration_rng.integers(self.macro_duration, self.max_macro_duration + 1, size=n)

    @th.no_grad()
    def _master_act(self, master: PPO, obs: Obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:return: The master's choices (with probability ``master_epsilon`` a random sub-policy), values, log-probs."""
        obs_tensor = obs_as_tensor(obs, master.device)
        distribution = master.policy.get_distribution(obs_tensor)
        actions = distribution.get_actions()
        if self.master_epsilon > 0:
            rng, n = self.exploration_rng, len(actions)
            explore = th.as_tensor(rng.random(n) < self.master_epsilon, device=actions.device)
            random_actions = th.as_tensor(rng.integers(self.n_subpolicies, size=n), device=actions.device)
            actions = th.where(explore, random_actions, actions)
        log_probs = distribution.log_prob(actions)
        values = master.policy.predict_values(obs_tensor).flatten()
        return actions.cpu().numpy(), values.cpu().numpy(), log_probs.cpu().numpy()

    @th.no_grad()
    def _master_values(self, master: PPO, obs: Obs) -> np.ndarray:
        return master.policy.predict_values(obs_as_tensor(obs, master.device)).flatten().cpu().numpy()

    @th.no_grad()
    def _bootstrap_time_limit(
        self, env_index: int, terminal: Any, subpolicy: np.ndarray, macro_buffers: list[MacroStepBuffer]
    ) -> float:
        """
        A time limit cut the episode of env ``env_index``: its macro-step is bootstrapped with its master's value of the
        final observation ``terminal``.

        :return: The sub-policy's bootstrap, gamma times the acting sub-policy's own value of the final observation.
        """
        terminal_obs = self.normalize_obs(batch_of_one(terminal))
        group_position = self.schedule.group_of_env[env_index]
        master = self.schedule.groups[group_position].master
        terminal_subpolicy_obs = self.subpolicy_obs(terminal_obs, subpolicy[[env_index]])
        bootstrap = self.gamma * self.policy.predict_values(obs_as_tensor(terminal_subpolicy_obs, self.device)).item()
        master_value = self._master_values(master, self.master_view(terminal_obs))[0]
        macro_buffers[group_position].cut(env_index, master.gamma * master_value)
        return bootstrap

    def _add_diversity_reward(
        self,
        rollout_buffer: RolloutBuffer,
        rollout: RolloutResult,
        last_obs: Obs,
        acting: np.ndarray,
        terminal_reached: list[tuple[int, int, Any]],
    ) -> None:
        """Add DIAYN's reward of the state each step reached to the sub-policies' rewards, in one batched pass."""
        assert self.discriminator is not None
        reached = reached_observations(rollout_buffer, last_obs, terminal_reached, self.n_subpolicies)
        diversity_rewards = self.discriminator.reward(reached, acting.ravel())
        per_step = diversity_rewards.reshape(rollout_buffer.buffer_size, -1).astype(np.float32)
        rollout_buffer.rewards += self.skill_diversity * per_step
        rollout.diversity_reward_sum = float(diversity_rewards.sum())

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        logger = self.context.logger()
        if logger is not None and not self._custom_logger:
            self.set_logger(logger)
        if reset_num_timesteps:
            self.iteration = 0
            self.iteration_log = []
        envs_reset = reset_num_timesteps or self._last_obs is None
        if envs_reset:
            for group in self.schedule.groups:
                if group.task is None and group.tasks_started > 0:
                    self._reset_master(group.master)  # every task after a group's first starts with a fresh master
            self.schedule.start()
        total_timesteps, callback = super()._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        self._completed_timesteps = self.num_timesteps
        if envs_reset:
            self._update_observation_statistics(cast(Obs, self._last_obs))
        self.subpolicy_learner.set_logger(PrefixedLogger(self.logger, "train/sub/"))
        for master in self.masters:
            master.set_logger(PrefixedLogger(self.logger, "train/master/"))
        return total_timesteps, callback

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        return super()._init_callback(*self.context.learn_callback(callback, progress_bar))

    def dump_logs(self, iteration: int = 0) -> None:
        """Write SB3's records, ``time/iterations`` counting MLSH's iterations across resumes, and MLSH's ``mlsh/*``."""
        discriminator_stats = self._discriminator_stats if self.discriminator is not None else None
        record_iteration(self.logger, self.iteration_log[-1], self.schedule.groups, self._rollout, discriminator_stats)
        super().dump_logs(self.iteration)

    def adapt(
        self: SelfMLSH,
        task: Any,
        total_timesteps: int,
        update_subpolicies: bool | str = False,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        progress_bar: bool = False,
        deterministic_subpolicies: bool = False,
    ) -> SelfMLSH:
        """
        Transfer to ``task``: fresh masters learn to use the sub-policies, which stay frozen unless asked otherwise.

        :param task: The new task (e.g. ``TaskSampler(..., split="test").sample()[0]``).
        :param total_timesteps: Primitive env steps to learn for.
        :param update_subpolicies: False: the sub-policies stay frozen. True: they learn from the first iteration on
            (joint phase). ``"after_warmup"``: the paper's fine-tuning, its meta-loop on one task: ``warmup_iterations``
            iterations with frozen sub-policies, then joint iterations for the rest of ``total_timesteps``.
        :param callback: SB3 callback(s); ``log_interval`` and ``progress_bar`` as in :meth:`learn`.
        :param deterministic_subpolicies: While the sub-policies are frozen, they act on the mode of their
            distributions (the mean, for continuous actions), so that their exploration noise costs nothing on the new
            task; once they learn (``"after_warmup"``), they sample again.
        :return: The adapted model; :meth:`predict` then uses the adapted master.
        """
        self._refuse_in_distributed_mode("adapt")
        if update_subpolicies not in (False, True, "after_warmup"):
            raise ValueError(f"update_subpolicies must be False, True or 'after_warmup', got {update_subpolicies!r}.")
        # A phase of None lets each group run its own schedule: W warmup iterations, then joint ones (no task ends).
        self.schedule.fix_task(task, {False: Phase.WARMUP, True: Phase.JOINT, "after_warmup": None}[update_subpolicies])
        self.frozen_subpolicies_deterministic = deterministic_subpolicies
        # The sub-policies keep the input scale they learned on (with normalize_observation).
        self.observation_statistics_frozen = True
        self._fresh_masters()
        return self.learn(total_timesteps, callback, log_interval, "MLSH_adapt", True, progress_bar)

    def resume_meta_training(self) -> None:
        """Leave the transfer mode of :meth:`adapt`: the next :meth:`learn` samples tasks again."""
        self._refuse_in_distributed_mode("resume_meta_training")
        self.schedule.fix_task(None, None)
        self.frozen_subpolicies_deterministic = False
        self.observation_statistics_frozen = False
        self._fresh_masters()
        for group in self.schedule.groups:
            group.tasks_started = 0

    def _fresh_masters(self) -> None:
        for group in self.schedule.groups:
            self._reset_master(group.master)
            group.task = None
        self._last_obs = None

    def _refuse_in_distributed_mode(self, method: str) -> None:
        if self.context.distributed:
            raise NotImplementedError(
                f"{method}() runs in one process: load the saved model there, e.g. MLSH.load(path, task_groups=1)."
            )

    def predict(  # type: ignore[override]  # the state is an (n, 2) array, not SB3's tuple of recurrent states
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Act with the master (group 0's) and the sub-policies. ``state`` is an ``(n, 2)`` int array of (active
        sub-policy, primitive steps left in its macro-step), as the previous call returned it (None at the start); an
        ``episode_start`` forces a new master decision. :return: The actions and the new state.
        """
        return predict_hierarchical(
            self.master.policy, self.policy, self.master_view, self.subpolicy_obs, self.macro_duration,
            self.normalize_obs(observation), state, episode_start, deterministic,
        )  # fmt: skip

    def subpolicy_predict(self, observation: np.ndarray, subpolicy: int, deterministic: bool = False) -> np.ndarray:
        """
        Action of one sub-policy, e.g. to drive a :class:`~sb3_mlsh.MacroActionWrapper`.

        :param observation: One env observation.
        :param subpolicy: Which sub-policy acts.
        :param deterministic: Use the mode of its distribution.
        :return: The action.
        """
        subpolicy_obs = self.subpolicy_obs(self.normalize_obs(batch_of_one(observation)), np.array([subpolicy]))
        actions, _ = self.policy.predict(subpolicy_obs, deterministic=deterministic)
        return actions[0]

    def set_random_seed(self, seed: int | None = None) -> None:
        """Seed torch, NumPy, Python, the envs, the task draws and the master exploration (each process its own)."""
        local_seed = self.context.local_seed(seed, self.n_envs)
        super().set_random_seed(local_seed)
        if hasattr(self, "schedule"):
            self.schedule.seed(seed)
            self.exploration_rng = np.random.default_rng(None if local_seed is None else local_seed + 1)

    # What a saved model continues from: persistence saves and restores these, never the attributes behind them.

    @property
    def stats_window_size(self) -> int:
        """Episodes averaged in the ``rollout/*`` logs (the constructor's ``stats_window_size``)."""
        return self._stats_window_size

    def get_rollout_start(self) -> tuple[Obs, np.ndarray] | None:
        """
        :return: The last observations and episode-start flags of the envs, which the next rollout continues from; None
            when the next :meth:`learn` resets the envs (before the first one, and after :meth:`adapt` or
            :meth:`resume_meta_training`).
        """
        if self._last_obs is None:
            return None
        return cast(Obs, self._last_obs), cast(np.ndarray, self._last_episode_starts)

    def set_rollout_start(self, last_obs: Obs, last_episode_starts: np.ndarray) -> None:
        """
        Continue from envs whose episodes were restored: the next :meth:`learn` does not reset them.

        :param last_obs: The envs' last observations, as :meth:`get_rollout_start` returned them.
        :param last_episode_starts: Which of the envs start an episode with them.
        """
        self._last_obs, self._last_episode_starts = last_obs, last_episode_starts

    def learner_updates(self) -> tuple[int, dict[int, int]]:
        """
        :return: The gradient steps (SB3's ``train/n_updates``) of the sub-policy learner, and of the master of each of
            this process's task groups by the group's run-wide index.
        """
        masters = {group.index: n_updates(group.master) for group in self.schedule.groups}
        return n_updates(self.subpolicy_learner), masters

    def restore_counters(self, num_timesteps: int, subpolicy_updates: int, master_updates: list[int]) -> None:
        """
        Continue the step and update counts of a saved model, from the end of its last completed iteration.

        :param num_timesteps: Primitive env steps of the completed iterations (:attr:`completed_timesteps` too).
        :param subpolicy_updates: Gradient steps of the sub-policy learner.
        :param master_updates: Gradient steps of the master of each task group, by the group's run-wide index (a group
            past its end keeps its count).
        """
        self.num_timesteps = self._completed_timesteps = num_timesteps
        set_n_updates(self.subpolicy_learner, subpolicy_updates)
        for group in self.schedule.groups:
            if group.index < len(master_updates):
                set_n_updates(group.master, master_updates[group.index])

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []

    def get_parameters(self) -> dict[str, dict]:
        """:return: The state dicts of the sub-policy bank, of each task group's master and of all their optimizers."""
        return persistence.get_parameters(self)

    def set_parameters(
        self, load_path_or_dict: str | dict[str, Any], exact_match: bool = True, device: th.device | str = "auto"
    ) -> None:
        """
        Load what :meth:`get_parameters` returns, from the dict or a model file; with ``exact_match=False`` masters
        missing from it stay as they are. Raises :class:`ModelFileError` when they do not fit the architecture.
        """
        params = load_path_or_dict if isinstance(load_path_or_dict, dict) else read_model_zip(load_path_or_dict, device)[1]
        persistence.set_parameters(self, params, exact_match)

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Any = None,
        include: Any = None,
        optimizers: bool = True,
    ) -> None:
        """
        Save the sub-policies, the masters, their optimizers, the task schedule, the counters and the random streams to
        ``path`` (a file path, ``.zip`` added when missing, or a file object). The write is atomic, and loading runs no
        code from the file. In distributed mode every process calls it, and rank 0 writes the whole run's model.

        :param path: Where to write.
        :param exclude: Not supported (SB3's argument): a model file is complete or weights-only (``optimizers``).
        :param include: Not supported (SB3's argument), as ``exclude``.
        :param optimizers: Write the optimizers' states. False writes the weights only (Adam's state is twice their size): such
            a file transfers, predicts and adapts exactly as the complete one, but a ``learn`` that continues from it
            starts its optimizers afresh, so it is no exact resume.
        """
        if exclude is not None or include is not None:
            raise ValueError(
                "MLSH.save takes no exclude or include: a model file holds everything that loading, transfer and an "
                "exact resume need. For a smaller file with the weights only, call save(path, optimizers=False)."
            )
        persistence.save_model(self, path, optimizers)

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfMLSH],
        path: str | os.PathLike | io.BufferedIOBase,
        task_sampler: TaskSampler | str | Callable[[], gym.Env] | None = None,
        device: th.device | str = "auto",
        trusted: bool = False,
        env: VecEnv | gym.Env | TaskSource | None = None,
        **kwargs: Any,
    ) -> SelfMLSH:
        """
        Load a model saved by :meth:`save`; loading runs no code from the file (:mod:`sb3_mlsh.common.serialization`).
        Values stored pickled (a task sampler of your own env factory, a learning rate of your own function) must be
        given again (``task_sampler=``, ``subpolicy_kwargs=``, ...), or, for a file you trust, ``trusted=True``.

        :param path: The zip file.
        :param task_sampler: Task sampler for the loaded model (default: the saved one).
        :param device: Torch device.
        :param trusted: Unpickle the values stored pickled (this runs code from the file: only for files you trust).
        :param env: As in SB3: envs to run on, a VecEnv (or one env) of the model's family, e.g. to ``adapt`` and then
            ``evaluate_policy(model, env)`` or record through ``VecVideoRecorder``; MLSH sets their tasks with
            ``env_method("set_task", task)`` and draws tasks from ``task_sampler`` (default: the saved one). An env id,
            an env factory or a TaskSampler is taken as ``task_sampler``.
        :param kwargs: Override constructor arguments (e.g. ``n_envs``, ``verbose``). With another ``task_groups`` than
            saved, only the sub-policies load (fresh masters and schedule, as for transfer). A distributed run's model
            opens in one process with all its groups and envs, or in a distributed run of any layout.
        :return: The model, ready to ``predict``, ``adapt`` or continue to ``learn``.
        """
        return persistence.load_model(cls, path, task_sampler, device, trusted, env, kwargs)
