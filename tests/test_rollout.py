"""The rollout semantics of DESIGN.md, and predict's (sub-policy, steps left) state: each test names what breaks."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from toy_envs import ToyTaskEnv, make_toy, rollout_actions


class RewardLedger(gym.Wrapper):
    """Writes down every reward the env returns, per env."""

    def __init__(self, env: gym.Env, ledger: list) -> None:
        super().__init__(env)
        self.returned_rewards: list[float] = []
        ledger.append(self.returned_rewards)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.returned_rewards.append(float(reward))
        return obs, reward, terminated, truncated, info


def ledger_factory(ledger: list, max_episode_steps: int = 7, **kwargs):
    inner = make_toy(max_episode_steps=max_episode_steps, **kwargs)
    return lambda: RewardLedger(inner(), ledger)


def test_rewards_are_conserved_across_levels(collect, make_mlsh):
    ledger: list = []
    model = make_mlsh(ledger_factory(ledger, terminate_range=(2, 9)), n_envs=3, n_steps=23)
    ledger = [model.env.envs[i].get_wrapper_attr("returned_rewards") for i in range(model.n_envs)]
    result = collect(model)
    returned_by_envs = sum(sum(rewards) for rewards in ledger)
    assert sum(len(rewards) for rewards in ledger) == model.n_envs * model.n_steps
    assert result.env_reward_sum == pytest.approx(returned_by_envs, rel=1e-6)
    assert result.subpolicy_reward_sum == pytest.approx(returned_by_envs, rel=1e-5)
    assert result.master_reward_sum == pytest.approx(returned_by_envs, rel=1e-5)
    macro_reward = sum(log.reward.sum() for log in result.macro_steps)
    assert macro_reward == pytest.approx(returned_by_envs, rel=1e-6)


def test_macro_steps_end_after_n_steps_or_at_episode_end_and_envs_do_not_wait(collect, make_mlsh):
    model = make_mlsh(make_toy(max_episode_steps=50, terminate_range=(2, 9)), n_envs=4, n_steps=37, macro_duration=4)
    result = collect(model)
    log = result.macro_steps[0]
    starts_per_env = []
    for env_index in range(model.n_envs):
        mine = np.flatnonzero(log.env_index == env_index)
        start, length, episode_end = log.start[mine], log.length[mine], log.episode_end[mine]
        assert start[0] == 0
        np.testing.assert_array_equal(start[1:], start[:-1] + length[:-1])  # macro-steps tile the rollout
        assert start[-1] + length[-1] == model.n_steps
        cut_by_rollout_end = start + length == model.n_steps
        assert np.all((length == model.macro_duration) | episode_end | cut_by_rollout_end)
        assert np.all(length <= model.macro_duration)
        assert episode_end[length < model.macro_duration].all() or cut_by_rollout_end[length < model.macro_duration].any()
        assert episode_end.any(), "the toy env terminates within 9 steps"
        starts_per_env.append(set(start.tolist()))
    # Episodes end at different steps, and each env's master decides on its own schedule.
    assert len({frozenset(starts) for starts in starts_per_env}) > 1


def test_truncation_bootstraps_with_own_value_and_termination_does_not(collect, make_mlsh):
    model = make_mlsh(make_toy(max_episode_steps=5, reward_scale=0.0), n_envs=2, n_steps=12, macro_duration=100)
    result = collect(model)
    buffer = model.subpolicy_learner.rollout_buffer
    truncation_steps = [4, 9]
    nonzero = np.argwhere(buffer.rewards != 0)
    assert sorted({int(step) for step, _ in nonzero}) == truncation_steps
    assert np.all(buffer.episode_starts[[0, 5, 10]] == 1)
    # The master bootstraps each truncated macro-step and the one cut by the rollout's end.
    assert np.count_nonzero(result.master_buffers[0].rewards) == 3 * model.n_envs

    terminating = make_mlsh(
        make_toy(max_episode_steps=1000, terminate_range=(5, 5), reward_scale=0.0), n_envs=2, n_steps=12, macro_duration=100
    )
    collect(terminating)
    assert np.all(terminating.subpolicy_learner.rollout_buffer.rewards == 0)


def test_a_randomised_time_commitment_draws_each_macro_steps_length_and_is_saved(collect, make_mlsh, tmp_path):
    model = make_mlsh(make_toy(max_episode_steps=1000), n_envs=3, n_steps=120, macro_duration=2, max_macro_duration=6)
    log = collect(model).macro_steps[0]
    whole = log.start + log.length < model.n_steps  # not cut by the rollout's end (no episode ends in 120 steps)
    assert set(log.length[whole].tolist()) == {2, 3, 4, 5, 6}
    model.save(tmp_path / "model.zip")
    loaded = type(model).load(tmp_path / "model.zip", make_toy(max_episode_steps=1000), device="cpu")
    assert (loaded.macro_duration, loaded.max_macro_duration) == (2, 6)
    state = loaded.exploration_rng.bit_generator.state
    assert state == model.exploration_rng.bit_generator.state  # the draws continue where they stopped
    fixed = collect(make_mlsh(make_toy(max_episode_steps=1000), n_envs=3, n_steps=120, macro_duration=2)).macro_steps[0]
    assert set(fixed.length[fixed.start + fixed.length < 120].tolist()) == {2}


def test_a_switch_never_bootstraps_from_another_subpolicys_value(collect, make_mlsh):
    model = make_mlsh(
        make_toy(max_episode_steps=1000), n_envs=2, n_steps=40, macro_duration=1, n_subpolicies=2, master_epsilon=1.0
    )
    ledger_model_rewards = []
    original_step = model.env.step_wait

    def recording_step_wait():
        obs, rewards, dones, infos = original_step()
        ledger_model_rewards.append(rewards.copy())
        return obs, rewards, dones, infos

    model.env.step_wait = recording_step_wait
    collect(model)
    raw = np.array(ledger_model_rewards)
    buffer = model.subpolicy_learner.rollout_buffer
    policy = model.policy
    gamma = model.subpolicy_learner.gamma
    k = buffer.observations[:, :, -2:].argmax(axis=2)
    switches = continuations = 0
    for t in range(model.n_steps - 1):
        for e in range(model.n_envs):
            if k[t + 1, e] != k[t, e]:
                switches += 1
                assert buffer.episode_starts[t + 1, e] == 1, "a switch must cut the sub-policy's trace"
                next_obs = buffer.observations[t + 1, e].copy()
                next_obs[-2:] = np.eye(2)[k[t, e]]
                with th.no_grad():
                    own_value = policy.predict_values(th.as_tensor(next_obs[None])).item()
                assert buffer.rewards[t, e] == pytest.approx(raw[t, e] + gamma * own_value, rel=1e-4, abs=1e-5)
                # Cut: the advantage is the one-step TD error against its own bootstrap, nothing of the next sub-policy.
                assert buffer.advantages[t, e] == pytest.approx(buffer.rewards[t, e] - buffer.values[t, e], rel=1e-4, abs=1e-5)
            else:
                continuations += 1
                assert buffer.episode_starts[t + 1, e] == 0, "the same sub-policy continuing is not a cut"
                assert buffer.rewards[t, e] == pytest.approx(raw[t, e], rel=1e-6)
    assert switches > 10 and continuations > 10


def test_each_iteration_runs_exactly_d_steps_per_env_and_callbacks_see_every_step(make_mlsh):

    class Counter(BaseCallback):
        def _on_step(self) -> bool:
            return True

    model = make_mlsh(n_envs=2, n_steps=10)
    counter = Counter()
    model.learn(total_timesteps=60, callback=counter)
    assert model.iteration == 3
    assert model.num_timesteps == 60
    assert counter.n_calls == 30


def test_master_forward_only_for_deciding_envs(collect, make_mlsh):
    model = make_mlsh(make_toy(max_episode_steps=1000), n_envs=3, n_steps=20, macro_duration=5)
    batch_sizes = []
    master = model.masters[0]
    original = master.policy.get_distribution

    def spy(obs):
        batch_sizes.append(len(obs))
        return original(obs)

    master.policy.get_distribution = spy
    collect(model)
    assert batch_sizes == [3, 3, 3, 3]  # every 5 steps, one batched forward of all deciding envs


def test_box_actions_and_dict_observations_run(collect, make_mlsh):
    for kwargs, policy in ((dict(box_actions=True), "MlpPolicy"), (dict(dict_obs=True), "MultiInputPolicy")):
        model = make_mlsh(make_toy(**kwargs), policy, n_envs=2, n_steps=16, macro_duration=3, warmup_iterations=0)
        model.learn(64)
        assert model.iteration == 2
        _, state = model.predict(model.env.reset(), deterministic=True)
        assert state.shape == (2, 2)


def test_toy_env_is_a_valid_task_env():
    from stable_baselines3.common.env_checker import check_env

    check_env(ToyTaskEnv(terminate_range=(2, 5)))


def test_predict_state_carries_subpolicy_and_steps_left(make_mlsh):
    model = make_mlsh(macro_duration=4)
    _, states = rollout_actions(model, n=12)
    np.testing.assert_array_equal(states[:, 0, 1], [3, 2, 1, 0] * 3)
    for start in (0, 4, 8):
        assert len(set(states[start : start + 4, 0, 0].tolist())) == 1  # k fixed within a macro-step
    batch = np.stack([ToyTaskEnv().reset(seed=s)[0] for s in range(3)])
    batch_actions, state = model.predict(batch)
    assert batch_actions.shape == (3,) and state.shape == (3, 2)
    _, state = model.predict(batch, state=state, episode_start=np.array([True, False, False]))
    np.testing.assert_array_equal(state[:, 1], [3, 2, 2])
