"""Two-level rollout collection: one pass over a VecEnv fills the sub-policy buffer and the masters' buffers."""

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sb3_mlsh.common.bank import SUBPOLICY_KEY, SubPolicyBankPolicy
from sb3_mlsh.common.normalization import RewardScaler
from sb3_mlsh.common.observation import SubPolicyView
from sb3_mlsh.common.type_aliases import Obs

if TYPE_CHECKING:
    from sb3_mlsh.common.diversity import SkillDiscriminator

__all__ = [
    "MacroStepLog",
    "NonFiniteError",
    "RolloutResult",
    "TwoLevelCollector",
    "batch_of_one",
    "predict_hierarchical",
    "select_envs",
    "write_env_obs",
]


class NonFiniteError(ValueError):
    """Raised when an env returns NaN or inf, or an update would make a learner's parameters non-finite."""


def _index_obs(obs: Obs, index: np.ndarray | slice) -> Obs:
    if isinstance(obs, dict):
        return {key: value[index] for key, value in obs.items()}
    return obs[index]


def _concat_obs(batches: list[Obs]) -> Obs:
    if isinstance(batches[0], dict):
        return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}  # type: ignore[index]
    return np.concatenate(cast(list[np.ndarray], batches))


def write_env_obs(last_obs: Obs, episode_starts: np.ndarray, env_indices: np.ndarray, observations: list[Any]) -> None:
    """
    Put freshly reset envs' first observations into the batch of current observations, in place.

    :param last_obs: The current observations of all envs.
    :param episode_starts: Whether each starts an episode (set for ``env_indices``).
    :param env_indices: The envs that were reset.
    :param observations: Their observations, one per env.
    """
    if isinstance(last_obs, dict):
        for key in last_obs:
            last_obs[key][env_indices] = np.stack([obs[key] for obs in observations])
    else:
        last_obs[env_indices] = np.stack(observations)
    episode_starts[env_indices] = True


def batch_of_one(obs: Any) -> Obs:
    """:return: One observation (an array, or a mapping of arrays) as a batch of one."""
    if isinstance(obs, dict):
        return {key: np.asarray(value)[None] for key, value in obs.items()}
    return np.asarray(obs)[None]


def all_finite(obs: Obs) -> bool:
    values = obs.values() if isinstance(obs, dict) else [obs]
    return all(np.isfinite(value).all() for value in values if np.issubdtype(np.asarray(value).dtype, np.floating))


@dataclass
class MacroStepLog:
    """
    The master's macro-steps of one group in one rollout, in the order they were decided.

    :param env_index: Env of each macro-step.
    :param start: Primitive step (within the rollout) at which it began.
    :param length: Number of primitive steps it lasted.
    :param subpolicy: The sub-policy the master chose.
    :param reward: Sum of its primitive rewards (raw, without any bootstrap).
    :param episode_end: Whether it ended with the episode (terminated or truncated).
    """

    env_index: np.ndarray
    start: np.ndarray
    length: np.ndarray
    subpolicy: np.ndarray
    reward: np.ndarray
    episode_end: np.ndarray


@dataclass
class RolloutResult:
    """
    What one rollout collected, besides the buffers.

    :param continue_training: False when a callback asked to stop.
    :param env_reward_sum: Sum of the rewards returned by the envs.
    :param subpolicy_reward_sum: Sum of the rewards in the sub-policy buffer, less the bootstrap values added to them
        (scaled rewards when the collector has a reward scaler).
    :param master_buffers: The filled buffer of each group's master.
    :param macro_steps: The macro-step log of each group.
    :param subpolicy_counts: Primitive steps taken by each sub-policy.
    :param episode_returns: Returns of the episodes that ended in this rollout (needs a Monitor wrapper).
    :param diversity_reward_sum: Sum of the discriminator's rewards ``log q(k | s') + log K``, before the coefficient that
        adds them to the sub-policies' rewards (not the masters').
    """

    continue_training: bool
    env_reward_sum: float = 0.0
    subpolicy_reward_sum: float = 0.0
    master_buffers: list[RolloutBuffer] = field(default_factory=list)
    macro_steps: list[MacroStepLog] = field(default_factory=list)
    subpolicy_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    episode_returns: list[float] = field(default_factory=list)

    master_bootstrap_sum: float = 0.0
    diversity_reward_sum: float = 0.0

    @property
    def master_reward_sum(self) -> float:
        """Sum of the rewards in the masters' buffers, less the bootstrap values added to them."""
        return float(sum(buffer.rewards.sum() for buffer in self.master_buffers)) - self.master_bootstrap_sum


class _MasterRecorder:
    """Records the macro-steps of one group while the rollout runs; builds the master's buffer at the end."""

    def __init__(self, env_indices: np.ndarray, capacity: int) -> None:
        self.env_indices = env_indices
        self.obs: list[Obs] = []
        self.actions: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.log_probs: list[np.ndarray] = []
        self.env_index = np.zeros(capacity, dtype=np.int64)
        self.start = np.zeros(capacity, dtype=np.int64)
        self.length = np.zeros(capacity, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float64)
        # gamma * V(next observation) for a macro-step cut by a time limit or by the end of the rollout
        self.bootstrap = np.zeros(capacity, dtype=np.float64)
        self.episode_end = np.zeros(capacity, dtype=bool)
        self.size = 0

    def open(
        self, env_index: np.ndarray, step: int, obs: Obs, actions: np.ndarray, values: np.ndarray, log_probs: np.ndarray
    ) -> np.ndarray:
        ids = np.arange(self.size, self.size + len(env_index))
        self.size += len(env_index)
        self.env_index[ids] = env_index
        self.start[ids] = step
        self.obs.append(obs)
        self.actions.append(actions)
        self.values.append(values)
        self.log_probs.append(log_probs)
        return ids

    def log(self) -> MacroStepLog:
        n = self.size
        return MacroStepLog(
            env_index=self.env_index[:n].copy(),
            start=self.start[:n].copy(),
            length=self.length[:n].copy(),
            subpolicy=np.concatenate(self.actions).astype(np.int64) if n else np.zeros(0, dtype=np.int64),
            reward=self.reward[:n].copy(),
            episode_end=self.episode_end[:n].copy(),
        )

    def build_buffer(self, master: PPO) -> RolloutBuffer:
        """
        Lay out each env's chain of macro-steps one after the other in a single-column SB3 buffer; a chain's
        boundary is marked as an episode start and its last macro-step is bootstrapped through its reward
        (as SB3 does for time limits), so that SB3's own GAE computes exact per-chain advantages.
        """
        n = self.size
        order = np.argsort(self.env_index[:n], kind="stable")
        obs = _index_obs(_concat_obs(self.obs), order)
        env_index = self.env_index[:n][order]
        chain_start = np.ones(n, dtype=bool)
        chain_start[1:] = env_index[1:] != env_index[:-1]
        after_episode_end = np.zeros(n, dtype=bool)
        after_episode_end[1:] = self.episode_end[:n][order][:-1]
        buffer_class = DictRolloutBuffer if isinstance(master.observation_space, spaces.Dict) else RolloutBuffer
        buffer = buffer_class(
            n,
            master.observation_space,  # type: ignore[arg-type]  # a Dict space exactly when the buffer is a Dict buffer
            master.action_space,
            device=master.device,
            gamma=master.gamma,
            gae_lambda=master.gae_lambda,
            n_envs=1,
        )
        if isinstance(obs, dict):
            for key, value in obs.items():
                buffer.observations[key][:, 0] = value.reshape(buffer.observations[key][:, 0].shape)
        else:
            buffer.observations[:, 0] = obs.reshape(buffer.observations[:, 0].shape)
        buffer.actions[:, 0, 0] = np.concatenate(self.actions)[order]
        buffer.rewards[:, 0] = (self.reward[:n] + self.bootstrap[:n])[order]
        buffer.episode_starts[:, 0] = chain_start | after_episode_end
        buffer.values[:, 0] = np.concatenate(self.values)[order]
        buffer.log_probs[:, 0] = np.concatenate(self.log_probs)[order]
        buffer.pos, buffer.full = n, True
        buffer.compute_returns_and_advantage(last_values=th.zeros(1), dones=np.ones(1))
        return buffer


class StepCounter(Protocol):
    """What the collector updates at every primitive step: an SB3 algorithm's step count and episode-info buffer."""

    num_timesteps: int

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None: ...


class _RolloutState:
    """
    Where every env stands while one rollout is collected.

    :param groups: ``(env indices, master)`` of each task group.
    :param n_steps: Primitive steps per env.
    :param n_envs: Envs.
    :param n_subpolicies: K.
    """

    def __init__(self, groups: list[tuple[np.ndarray, PPO]], n_steps: int, n_envs: int, n_subpolicies: int) -> None:
        self.groups = groups
        self.group_of_env = np.zeros(n_envs, dtype=np.int64)
        for g, (env_indices, _) in enumerate(groups):
            self.group_of_env[env_indices] = g
        self.recorders = [_MasterRecorder(env_indices, len(env_indices) * n_steps) for env_indices, _ in groups]
        #: Each env's open macro-step (its id in its group's recorder), steps left in it, and the sub-policy acting.
        self.open_ids = np.full(n_envs, -1, dtype=np.int64)
        self.macro_left = np.zeros(n_envs, dtype=np.int64)
        self.subpolicy = np.zeros(n_envs, dtype=np.int64)
        self.previous_subpolicy = np.zeros(n_envs, dtype=np.int64)
        self.counts = np.zeros(n_subpolicies, dtype=np.int64)
        #: The sub-policy of each step and the final observations of the episodes that ended, for the diversity reward.
        self.acting = np.zeros((n_steps, n_envs), dtype=np.int64)
        self.terminal_reached: list[tuple[int, int, Any]] = []
        self.subpolicy_bootstrap_sum = 0.0

    def end_step(self, step: int, dones: np.ndarray, infos: list[dict[str, Any]], record_terminals: bool) -> None:
        """Count the step off every macro-step; an episode's end closes its macro-step."""
        if record_terminals:
            self.acting[step] = self.subpolicy
            for env_index in np.flatnonzero(dones):
                if infos[env_index].get("terminal_observation") is not None:
                    self.terminal_reached.append((step, int(env_index), infos[env_index]["terminal_observation"]))
        self.macro_left -= 1
        self.macro_left[dones] = 0
        for recorder in self.recorders:
            mine = recorder.env_indices
            recorder.episode_end[self.open_ids[mine]] = dones[mine]
        self.previous_subpolicy = self.subpolicy.copy()


class TwoLevelCollector:
    """
    Collects one MLSH rollout over a VecEnv. Per primitive step: one forward of the sub-policy bank for all envs,
    and one forward of each group's master for just its envs whose macro-step begins.

    Semantics:

    - A macro-step ends after ``macro_duration`` steps, when the episode ends, or at the end of the rollout,
      whichever comes first; the master decides again at the next step of that env (envs do not wait for each other).
    - Time-limit truncation is bootstrapped by each learner with its own value of the final observation;
      termination is not.
    - When the master switches an env from sub-policy i to j, step t-1 of sub-policy i is cut from step t and
      bootstrapped with sub-policy i's own value of the observation at t: no advantage crosses into another
      sub-policy's value. A macro-step boundary that keeps the same sub-policy is not a cut.

    :param env: The VecEnv.
    :param subpolicy_learner: The PPO learner whose policy is a :class:`SubPolicyBankPolicy`.
    :param n_subpolicies: Number of sub-policies K.
    :param macro_duration: Primitive steps per macro-step N.
    :param master_epsilon: Probability that a master choice is replaced by a uniformly random sub-policy
        (the original's exploration; the replaced choice is what the master learns from).
    :param check_finite: Raise :class:`NonFiniteError` on NaN/inf observations or rewards.
    :param discriminator: A :class:`~sb3_mlsh.common.diversity.SkillDiscriminator` whose reward is added to the sub-policies'
        rewards, times ``diversity_coef`` (None: the paper's MLSH).
    :param diversity_coef: Weight of the discriminator's reward.
    :param view: The part of the env observation the sub-policies see (None: all of it).
    :param reward_scaler: Scales the rewards both learners learn from (None: raw rewards); logged returns stay raw.
    :param processes: Processes collecting in lockstep (a distributed run).
    :param seed: Seed of the master exploration's draws.
    """

    def __init__(
        self,
        env: VecEnv,
        subpolicy_learner: PPO,
        n_subpolicies: int,
        macro_duration: int,
        master_epsilon: float = 0.0,
        check_finite: bool = True,
        discriminator: "SkillDiscriminator | None" = None,
        diversity_coef: float = 0.0,
        view: SubPolicyView | None = None,
        reward_scaler: RewardScaler | None = None,
        processes: int = 1,
        seed: int | None = None,
    ) -> None:
        self.env = env
        self.subpolicy_learner = subpolicy_learner
        self.n_subpolicies = n_subpolicies
        self.macro_duration = macro_duration
        self.master_epsilon = master_epsilon
        self.check_finite = check_finite
        self.discriminator = discriminator
        self.diversity_coef = diversity_coef
        self.view = view or SubPolicyView(env.observation_space)
        self.reward_scaler = reward_scaler
        #: The master exploration's draws (``master_epsilon``).
        self.rng = np.random.default_rng(seed)
        #: Processes collecting in lockstep (distributed training): ``num_timesteps`` counts the steps of all of them.
        self.processes = processes
        self.dict_obs = isinstance(env.observation_space, spaces.Dict)
        self._eye = np.eye(n_subpolicies, dtype=np.float32)

    def subpolicy_obs(self, obs: Obs, subpolicy: np.ndarray) -> Obs:
        """
        :param obs: A batch of env observations.
        :param subpolicy: The active sub-policy of each.
        :return: The batch as the sub-policy learner sees it: its view of the observation plus the one-hot choice.
        """
        obs = self.view(obs)
        one_hot = self._eye[subpolicy]
        if isinstance(obs, dict):
            return {**obs, SUBPOLICY_KEY: one_hot}
        return np.concatenate([obs.reshape(len(subpolicy), -1).astype(np.float32, copy=False), one_hot], axis=1)

    def _master_act(self, master: PPO, obs: Obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs_tensor = obs_as_tensor(obs, master.device)
        distribution = master.policy.get_distribution(obs_tensor)
        actions = distribution.get_actions()
        if self.master_epsilon > 0:
            explore = th.as_tensor(self.rng.random(len(actions)) < self.master_epsilon, device=actions.device)
            random_actions = th.as_tensor(self.rng.integers(self.n_subpolicies, size=len(actions)), device=actions.device)
            actions = th.where(explore, random_actions, actions)
        log_probs = distribution.log_prob(actions)
        values = master.policy.predict_values(obs_tensor).flatten()
        return actions.cpu().numpy(), values.cpu().numpy(), log_probs.cpu().numpy()

    def _master_values(self, master: PPO, obs: Obs) -> np.ndarray:
        return master.policy.predict_values(obs_as_tensor(obs, master.device)).flatten().cpu().numpy()

    def _raise_non_finite(self, what: str, step: int, env_index: int) -> None:
        wrapper = "TransformReward" if what == "reward" else "TransformObservation (or ClipObservation)"
        raise NonFiniteError(
            f"Env {env_index} returned a non-finite {what} (NaN or inf) at rollout step {step}. MLSH cannot learn from it: "
            f"fix the env, or clip/sanitise its outputs with a wrapper (e.g. gymnasium.wrappers.{wrapper})."
        )

    def _check_step(self, step: int, rewards: np.ndarray, new_obs: Obs, dones: np.ndarray, infos: list[dict]) -> None:
        if not np.isfinite(rewards).all():
            self._raise_non_finite("reward", step, int(np.flatnonzero(~np.isfinite(rewards))[0]))
        if not all_finite(new_obs):
            first = next(i for i in range(len(rewards)) if not all_finite(_index_obs(new_obs, np.array([i]))))
            self._raise_non_finite("observation", step, first)
        for env_index in np.flatnonzero(dones):
            terminal = infos[env_index].get("terminal_observation")
            if terminal is not None and not all_finite(terminal):
                self._raise_non_finite("final observation of an episode", step, int(env_index))

    def collect(
        self,
        n_steps: int,
        groups: list[tuple[np.ndarray, PPO]],
        last_obs: Obs,
        last_episode_starts: np.ndarray,
        callback: BaseCallback,
        algorithm: StepCounter,
    ) -> tuple[RolloutResult, Obs, np.ndarray]:
        """
        :param n_steps: Primitive steps per env (D).
        :param groups: ``(env indices, master)`` of each task group.
        :param last_obs: Current observations of all envs.
        :param last_episode_starts: Whether each current observation is the first of an episode.
        :param callback: SB3 callback, called at every primitive step.
        :param algorithm: The MLSH model: its step counter and episode-info buffer are updated at every step, as SB3's
            ``collect_rollouts`` does, so that callbacks see them.
        :return: The result, the new last observations and episode starts.
        """
        env, sub = self.env, self.subpolicy_learner
        buffer = sub.rollout_buffer
        buffer.reset()
        sub.policy.set_training_mode(False)
        for _, master in groups:
            master.policy.set_training_mode(False)
        state = _RolloutState(groups, n_steps, env.num_envs, self.n_subpolicies)
        result = RolloutResult(continue_training=True)
        obs, episode_starts = last_obs, last_episode_starts
        callback.on_rollout_start()

        for step in range(n_steps):
            self._masters_decide(state, step, obs)
            sub_obs = self.subpolicy_obs(obs, state.subpolicy)
            with th.no_grad():
                actions_t, values_t, log_probs_t, all_values_t = self._policy.act(obs_as_tensor(sub_obs, sub.device))
            actions = actions_t.cpu().numpy()
            buffer_episode_starts = self._cut_switched_subpolicies(state, step, episode_starts, all_values_t)
            clipped_actions = actions
            if isinstance(sub.action_space, spaces.Box):
                clipped_actions = np.clip(actions, sub.action_space.low, sub.action_space.high)
            step_obs, rewards, dones, infos = env.step(clipped_actions)
            new_obs = cast(Obs, step_obs)  # MLSH refuses Tuple observation spaces
            algorithm.num_timesteps += env.num_envs * self.processes
            if self.check_finite:
                self._check_step(step, rewards, new_obs, dones, infos)
            callback.update_locals(locals())
            if not callback.on_step():
                result.continue_training = False
                return result, new_obs, dones
            algorithm._update_info_buffer(infos, dones)
            for env_index in np.flatnonzero(dones):
                if "episode" in infos[env_index]:
                    result.episode_returns.append(float(infos[env_index]["episode"]["r"]))
            stored_rewards = self._record_rewards(state, result, obs, rewards, dones, infos)
            buffer.add(sub_obs, actions, stored_rewards, buffer_episode_starts, values_t, log_probs_t)  # type: ignore[arg-type]
            state.end_step(step, dones, infos, record_terminals=self.discriminator is not None)
            obs, episode_starts = new_obs, dones

        self._finish(state, result, obs, episode_starts)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return result, obs, episode_starts

    @property
    def _policy(self) -> SubPolicyBankPolicy:
        return cast(SubPolicyBankPolicy, self.subpolicy_learner.policy)

    def _masters_decide(self, state: "_RolloutState", step: int, obs: Obs) -> None:
        """Each group's master picks a sub-policy for its envs whose macro-step begins (one forward per group)."""
        deciding = np.flatnonzero(state.macro_left == 0)
        if len(deciding) == 0:
            return
        for g, (_, master) in enumerate(state.groups):
            envs = deciding[state.group_of_env[deciding] == g]
            if len(envs) == 0:
                continue
            group_obs = _index_obs(obs, envs)
            with th.no_grad():
                actions, values, log_probs = self._master_act(master, group_obs)
            state.open_ids[envs] = state.recorders[g].open(envs, step, group_obs, actions, values, log_probs)
            state.subpolicy[envs] = actions
        state.macro_left[deciding] = self.macro_duration

    def _cut_switched_subpolicies(
        self, state: "_RolloutState", step: int, episode_starts: np.ndarray, all_values: th.Tensor
    ) -> np.ndarray:
        """
        A switch of sub-policy cuts the previous step from this one: bootstrap that step with its own sub-policy's value.

        :return: The episode starts to store for this step (a cut counts as one).
        """
        switched = np.zeros(0, dtype=np.int64)
        if step > 0:
            switched = np.flatnonzero((state.subpolicy != state.previous_subpolicy) & ~episode_starts)
        if len(switched):
            buffer = self.subpolicy_learner.rollout_buffer
            own_values = all_values[th.as_tensor(state.previous_subpolicy[switched]), th.as_tensor(switched)].cpu().numpy()
            buffer.rewards[buffer.pos - 1, switched] += self.subpolicy_learner.gamma * own_values
            state.subpolicy_bootstrap_sum += float(self.subpolicy_learner.gamma * own_values.sum())
        buffer_episode_starts = episode_starts.copy()
        buffer_episode_starts[switched] = True
        return buffer_episode_starts

    def _record_rewards(
        self, state: "_RolloutState", result: RolloutResult, obs: Obs, rewards: np.ndarray, dones: np.ndarray, infos: list
    ) -> np.ndarray:
        """
        Add this step's rewards (scaled, with a reward scaler) to each open macro-step, and bootstrap time-limit
        truncations: the sub-policy with its own value of the final observation, the master with its value.

        :return: The sub-policies' rewards to store.
        """
        rewards = rewards.astype(np.float64)
        result.env_reward_sum += float(rewards.sum())
        if self.reward_scaler is not None:
            rewards = self.reward_scaler(rewards, dones)
        state.counts += np.bincount(state.subpolicy, minlength=self.n_subpolicies)
        for recorder in state.recorders:
            mine = recorder.env_indices
            recorder.reward[state.open_ids[mine]] += rewards[mine]
            recorder.length[state.open_ids[mine]] += 1
        stored_rewards = rewards.copy()
        gamma = self.subpolicy_learner.gamma
        for env_index in np.flatnonzero(dones):
            terminal = infos[env_index].get("terminal_observation")
            if not infos[env_index].get("TimeLimit.truncated", False) or terminal is None:
                continue
            terminal_obs = batch_of_one(terminal)
            g = state.group_of_env[env_index]
            master = state.groups[g][1]
            with th.no_grad():
                terminal_sub_obs = self.subpolicy_obs(terminal_obs, state.subpolicy[[env_index]])
                bootstrap = gamma * self._policy.predict_values(obs_as_tensor(terminal_sub_obs, self._policy.device)).item()
                state.recorders[g].bootstrap[state.open_ids[env_index]] = (
                    master.gamma * self._master_values(master, terminal_obs)[0]
                )
            stored_rewards[env_index] += bootstrap
            state.subpolicy_bootstrap_sum += bootstrap
        return stored_rewards

    def _finish(self, state: "_RolloutState", result: RolloutResult, obs: Obs, episode_starts: np.ndarray) -> None:
        """Close the masters' buffers, add the diversity reward, and compute the sub-policies' advantages."""
        buffer = self.subpolicy_learner.rollout_buffer
        # The rollout's end cuts every unfinished macro-step: bootstrap it with the master's value of the last observation.
        for (env_indices, master), recorder in zip(state.groups, state.recorders):
            unfinished = env_indices[state.macro_left[env_indices] > 0]
            if len(unfinished):
                with th.no_grad():
                    values = self._master_values(master, _index_obs(obs, unfinished))
                recorder.bootstrap[state.open_ids[unfinished]] = master.gamma * values
            result.master_buffers.append(recorder.build_buffer(master))
            result.master_bootstrap_sum += float(recorder.bootstrap[: recorder.size].sum())
            result.macro_steps.append(recorder.log())
        if self.discriminator is not None:
            # One batched pass over the rollout (the discriminator does not change while it is collected).
            reached = self._reached_observations(buffer, obs, state.terminal_reached)
            diversity_rewards = self.discriminator.reward(reached, state.acting.ravel())
            buffer.rewards += self.diversity_coef * diversity_rewards.reshape(buffer.buffer_size, -1).astype(np.float32)
            result.diversity_reward_sum = float(diversity_rewards.sum())
        with th.no_grad():
            sub_obs = obs_as_tensor(self.subpolicy_obs(obs, state.subpolicy), self._policy.device)
            last_values = self._policy.predict_values(sub_obs)
        buffer.compute_returns_and_advantage(last_values=last_values, dones=episode_starts)
        result.subpolicy_counts = state.counts
        added = state.subpolicy_bootstrap_sum + self.diversity_coef * result.diversity_reward_sum
        result.subpolicy_reward_sum = float(buffer.rewards.sum()) - added

    def _reached_observations(self, buffer: RolloutBuffer, last_obs: Obs, terminal_reached: list[tuple[int, int, Any]]) -> Obs:
        """
        :param buffer: The filled sub-policy buffer: its observations hold the state of each step.
        :param last_obs: The observations after the last step.
        :param terminal_reached: ``(step, env, terminal observation)`` where an episode ended.
        :return: The state each step reached, as one batch of env observations in (step, env) order.
        """
        n_envs = buffer.n_envs
        if isinstance(buffer.observations, dict):
            reached = {}
            for key, stored in buffer.observations.items():
                if key == SUBPOLICY_KEY:
                    continue
                last = np.asarray(last_obs[key]).reshape(n_envs, *stored.shape[2:])  # type: ignore[call-overload]
                reached[key] = np.concatenate([stored[1:], last[None]])
                for step, env_index, terminal in terminal_reached:
                    reached[key][step, env_index] = np.asarray(terminal[key]).reshape(stored.shape[2:])
            return {key: value.reshape(-1, *value.shape[2:]) for key, value in reached.items()}
        stored = buffer.observations[..., : -self.n_subpolicies]
        flat = np.concatenate([stored[1:], np.asarray(last_obs).reshape(1, n_envs, -1)])
        for step, env_index, terminal in terminal_reached:
            flat[step, env_index] = np.asarray(terminal).reshape(-1)
        return flat.reshape(-1, flat.shape[-1])


def select_envs(buffer: RolloutBuffer, env_indices: np.ndarray) -> RolloutBuffer:
    """
    :param buffer: A filled buffer with computed advantages.
    :param env_indices: The env columns to keep.
    :return: A copy holding only those envs (the sub-policies learn only from joint-phase groups).
    """
    selected = copy.copy(buffer)
    for name in ("actions", "rewards", "returns", "episode_starts", "values", "log_probs", "advantages"):
        setattr(selected, name, getattr(buffer, name)[:, env_indices].copy())
    if isinstance(buffer.observations, dict):
        cast(Any, selected).observations = {key: value[:, env_indices].copy() for key, value in buffer.observations.items()}
    else:
        selected.observations = buffer.observations[:, env_indices].copy()
    selected.n_envs = len(env_indices)
    selected.generator_ready = False
    return selected


def predict_hierarchical(
    master: BasePolicy,
    subpolicies: SubPolicyBankPolicy,
    subpolicy_obs: Callable[[Obs, np.ndarray], Obs],
    macro_duration: int,
    observation: np.ndarray | dict[str, np.ndarray],
    state: tuple[np.ndarray, ...] | np.ndarray | None,
    episode_start: np.ndarray | None,
    deterministic: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Act outside a rollout, as ``MLSH.predict``: the master decides where a macro-step begins, the sub-policies act.

    :param master: The master's policy.
    :param subpolicies: The sub-policy bank.
    :param subpolicy_obs: Turns env observations and the active sub-policies into the bank's observations.
    :param macro_duration: N.
    :param observation: One observation or a batch.
    :param state: ``(n, 2)`` int array of (active sub-policy, primitive steps left in its macro-step); None at the start.
    :param episode_start: Whether each observation starts an episode (forces a new master decision).
    :param deterministic: Use the mode of both levels' distributions.
    :return: The actions and the new state.
    """
    vectorized = master.is_vectorized_observation(observation)
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
        choice, _ = master.predict(_index_obs(batch, indices), deterministic=deterministic)
        state[indices, 0] = choice
        state[indices, 1] = macro_duration
    actions, _ = subpolicies.predict(subpolicy_obs(batch, state[:, 0]), deterministic=deterministic)
    state[:, 1] -= 1
    return (actions if vectorized else actions[0]), state
