"""Per-level observations (what the sub-policies and the masters see) and reward scaling (returns of any scale)."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from gymnasium.wrappers import TransformObservation
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from toy_envs import make_toy, small_model

from sb3_mlsh import MLSH
from sb3_mlsh.common.checks import check_arguments
from sb3_mlsh.common.normalization import ObservationNormalizer, RewardScaler
from sb3_mlsh.common.observation import ObservationView


def test_box_view_keeps_the_other_entries_in_order():
    view = ObservationView(spaces.Box(-np.arange(1, 6, dtype=np.float32), np.arange(1, 6, dtype=np.float32)), [0, -1])
    assert view.space.shape == (3,)
    np.testing.assert_array_equal(view.space.high, [2, 3, 4])
    batch = np.arange(10, dtype=np.float32).reshape(2, 5)
    np.testing.assert_array_equal(view(batch), [[1, 2, 3], [6, 7, 8]])


def test_slices_name_ranges_of_entries_as_python_slices_do():
    box = spaces.Box(-1, 1, (10,))
    np.testing.assert_array_equal(ObservationView(box, [0, "4:"]).space.shape, (3,))  # keeps 1, 2, 3
    batch = np.arange(20.0).reshape(2, 10)
    np.testing.assert_array_equal(ObservationView(box, [0, "4:"])(batch), [[1, 2, 3], [11, 12, 13]])
    np.testing.assert_array_equal(ObservationView(box, [":2", "-3:"])(batch)[0], [2, 3, 4, 5, 6])
    dict_view = ObservationView(spaces.Dict({"body": box}), {"body": ["2:9"]})
    assert dict_view.space["body"].shape == (3,)


def test_dict_view_drops_keys_and_entries():
    space = spaces.Dict({"goal": spaces.Box(-1, 1, (2,)), "body": spaces.Box(-1, 1, (3,)), "phase": spaces.Discrete(3)})
    assert set(ObservationView(space, ["goal"]).space.spaces) == {"body", "phase"}
    view = ObservationView(space, {"body": [1]})
    assert view.space["body"].shape == (2,)
    batch = {"goal": np.zeros((2, 2)), "body": np.arange(6.0).reshape(2, 3), "phase": np.array([0, 2])}
    out = view(batch)
    np.testing.assert_array_equal(out["body"], [[0, 2], [3, 5]])
    np.testing.assert_array_equal(out["phase"], [0, 2])


@pytest.mark.parametrize(
    ("space", "exclude", "message"),
    [
        (spaces.Box(-1, 1, (3,)), [3], "index 3 is out of range for 3 entries"),
        (spaces.Box(-1, 1, (3,)), [0, 0], "names an index twice"),
        (spaces.Box(-1, 1, (3,)), [0, 1, 2], "would see nothing"),
        (spaces.Box(-1, 1, (3,)), [1.5], "is not an integer index"),
        (spaces.Box(-1, 1, (3,)), ["x"], "neither an integer index nor a 'start:stop' slice"),
        (spaces.Box(-1, 1, (3,)), ["5:"], "selects none of the 3 entries"),
        (spaces.Box(-1, 1, (3,)), [0, "0:2"], "names an index twice"),
        (spaces.Box(-1, 1, (3,)), {"a": [0]}, "give a list of indices"),
        (spaces.Dict({"a": spaces.Box(-1, 1, (2,))}), ["b"], "does not have; its keys are ['a']"),
        (spaces.Dict({"a": spaces.Box(-1, 1, (2,))}), ["a"], "hides every key"),
        (spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Box(-1, 1, (2,))}), {"a": [0]}, "drop the key whole"),
        (spaces.Dict({"a": spaces.Box(-1, 1, (2,))}), [0], "a list of keys or a mapping"),
    ],
)
def test_bad_exclusions_name_the_fix(space, exclude, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        ObservationView(space, exclude)


def test_subpolicies_see_the_view_and_the_master_everything(tmp_path):
    model = small_model(subpolicy_obs_exclude=[0, 1])
    assert model.subpolicy_learner.observation_space.shape == (1 + 2,)  # t / 10, plus the one-hot of K = 2
    assert model.masters[0].observation_space.shape == (3,)
    model.learn(64)
    # The sub-policies' buffer holds only the kept entry (the time feature t / 10) and the one-hot choice.
    stored = model.subpolicy_learner.rollout_buffer.observations
    assert stored.shape[-1] == 3
    np.testing.assert_allclose(stored[..., 0] * 10 % 1, 0, atol=1e-4)
    # Two observations that differ only in the hidden entries get the same sub-policy action.
    obs = np.array([0.3, -0.4, 0.2], dtype=np.float32)
    moved = np.array([5.0, 7.0, 0.2], dtype=np.float32)
    for k in range(2):
        assert model.subpolicy_predict(obs, k, deterministic=True) == model.subpolicy_predict(moved, k, deterministic=True)
    path = tmp_path / "view.zip"
    model.save(path)
    loaded = MLSH.load(path, make_toy(), device="cpu")
    assert loaded.subpolicy_obs_exclude == [0, 1]
    for k in range(2):
        assert loaded.subpolicy_predict(obs, k, deterministic=True) == model.subpolicy_predict(obs, k, deterministic=True)
    _, state = loaded.predict(obs, deterministic=True)
    assert state.shape == (1, 2)
    loaded.adapt(1, 32)


def test_the_master_sees_only_its_view(make_mlsh, tmp_path):
    # The master sees the toy's position only (entries 0 and 1), the sub-policies everything.
    model = make_mlsh(master_obs_exclude=["2:"], n_envs=2, n_steps=16, macro_duration=4, seed=0)
    assert model.masters[0].observation_space.shape == (2,)
    assert model.subpolicy_learner.observation_space.shape == (3 + 2,)
    model.learn(64)  # 7-step episodes: time limits bootstrap the master's macro-steps through its view too
    master_obs = model._rollout.master_buffers[0].observations
    assert master_obs.shape[-1] == 2
    assert np.abs(master_obs).max() <= 1.5  # positions start in [-1, 1] and move 0.1 a step; t / 10 is not there
    # Observations that differ only in the hidden entry (t / 10) get the same master choice.
    obs = np.array([[0.3, -0.4, 0.2], [0.3, -0.4, 0.6]], dtype=np.float32)
    choices = model.master.predict(model.master_view(obs), deterministic=True)[0]
    assert choices[0] == choices[1]
    _, state = model.predict(obs, deterministic=True)  # predict takes the env's whole observation
    np.testing.assert_array_equal(state[:, 0], choices)
    path = tmp_path / "master_view.zip"
    model.save(path)
    loaded = MLSH.load(path, make_toy(), device="cpu")
    assert loaded.master_obs_exclude == ["2:"]
    for parameter, saved in zip(loaded.master.policy.parameters(), model.master.policy.parameters()):
        th.testing.assert_close(parameter, saved)
    # Another master view keeps the sub-policies and starts fresh masters that see it.
    seeing_all = MLSH.load(path, make_toy(), device="cpu", master_obs_exclude=None)
    assert seeing_all.master.observation_space.shape == (3,)
    for k in range(2):
        assert seeing_all.subpolicy_predict(obs[0], k, deterministic=True) == model.subpolicy_predict(obs[0], k, True)
    seeing_all.adapt(1, 32)


def test_a_master_that_would_see_nothing_is_refused(make_mlsh):
    with pytest.raises(ValueError, match=r"master_obs_exclude for the Box observation hides all 3 entries: the master"):
        make_mlsh(master_obs_exclude=[0, "1:"])


def test_dict_observation_view_trains():
    model = small_model(make_toy(dict_obs=True), "MultiInputPolicy", subpolicy_obs_exclude=["position"])
    assert set(model.subpolicy_learner.observation_space.spaces) == {"phase", "subpolicy"}
    model.learn(64)
    assert set(model.subpolicy_learner.rollout_buffer.observations) == {"phase", "subpolicy"}


def test_reward_scaler_matches_the_return_spread_and_round_trips():
    scaler = RewardScaler(n_envs=2, gamma=0.9)
    rng = np.random.default_rng(0)
    for step in range(2000):
        scaled = scaler(rng.normal(100.0, 10.0, size=2), np.array([step % 50 == 49] * 2))
    # Returns of a constant 100 per step discounted by 0.9 reach about 1000: the scale follows their spread.
    assert 100 < scaler.scale < 1000
    assert np.abs(scaled).max() <= scaler.clip
    copy = RewardScaler(n_envs=2, gamma=0.9)
    copy.load_state_dict(scaler.state_dict())
    step = np.array([5.0, 5.0]), np.array([False, False])
    np.testing.assert_allclose(copy(*step), scaler(*step))


def _policy_step(reward_scale: float, normalize_reward: bool) -> float:
    """How far the sub-policies' mean action moves in a few joint iterations on a toy task paying ``reward_scale``."""
    model = small_model(
        factory=make_toy(max_episode_steps=20, box_actions=True, reward_scale=reward_scale),
        n_steps=64,
        warmup_iterations=0,
        normalize_reward=normalize_reward,
    )
    probe = th.as_tensor(model.subpolicy_obs(np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])))
    before = model.policy.get_distribution(probe).distribution.mean.detach().clone()
    model.learn(4 * 2 * 64)
    after = model.policy.get_distribution(probe).distribution.mean.detach()
    return float((after - before).abs().mean())


def test_a_large_reward_scale_no_longer_freezes_the_policy():
    raw_small, raw_large = _policy_step(1.0, False), _policy_step(1000.0, False)
    scaled_small, scaled_large = _policy_step(1.0, True), _policy_step(1000.0, True)
    # Raw rewards 1000x larger: the value loss dominates each sub-policy's gradient-norm clip, the policy moves less
    # (measured: 0.0033 against 0.0084).
    assert raw_large < 0.5 * raw_small
    # Scaled rewards: the policy step does not depend on the reward scale (measured: 0.0106 for both).
    assert scaled_large == pytest.approx(scaled_small, rel=0.01)
    assert scaled_large > 2 * raw_large


#: The toy family's three observation entries on very different scales, as Humanoid-v5's contact forces are to its joints.
OBS_SCALE = np.array([1000.0, 1.0, 0.001], dtype=np.float32)


def _scaled_toy():
    def factory() -> gym.Env:
        env = make_toy()()
        space = spaces.Box(-10.0 * OBS_SCALE, 10.0 * OBS_SCALE, dtype=np.float32)
        return TransformObservation(env, lambda obs: (obs * OBS_SCALE).astype(np.float32), space)

    return factory


def test_observation_normalizer_scales_as_vec_normalize_and_round_trips():
    normalizer = ObservationNormalizer(shape=(3,))
    rng = np.random.default_rng(0)
    for _ in range(1000):
        normalizer.update(rng.normal([500.0, -2.0, 0.0], [100.0, 1.0, 0.001], size=(4, 3)))
    batch = rng.normal([500.0, -2.0, 0.0], [100.0, 1.0, 0.001], size=(1000, 3))
    scaled = normalizer(batch)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=0.15)
    np.testing.assert_allclose(scaled.std(axis=0), 1.0, atol=0.15)
    vec_normalize = VecNormalize(DummyVecEnv([make_toy()]), norm_obs=True, norm_reward=False)
    vec_normalize.obs_rms = normalizer.obs_rms
    np.testing.assert_allclose(scaled, vec_normalize.normalize_obs(batch), rtol=1e-5, atol=1e-6)
    assert np.abs(normalizer(np.array([[1e6, 0.0, 0.0]]))).max() == normalizer.clip
    copy = ObservationNormalizer(shape=(3,))
    copy.load_state_dict(normalizer.state_dict())
    np.testing.assert_array_equal(copy(batch), scaled)
    with pytest.raises(ValueError, match="saved for another env"):
        ObservationNormalizer(shape=(4,)).load_state_dict(normalizer.state_dict())


def test_normalize_observation_scales_what_both_levels_see_and_adapt_freezes_it(make_mlsh):
    model = make_mlsh(_scaled_toy(), normalize_observation=True, n_envs=2, n_steps=16, warmup_iterations=0)
    model.learn(4 * 2 * 16)
    # The statistics counted the first observations and every step's (SB3's RunningMeanStd starts at a count of 1e-4).
    assert model.observation_normalizer.obs_rms.count == pytest.approx(2 + 4 * 2 * 16, abs=0.01)
    subpolicy_inputs = model.rollout_buffer.observations[..., :3].reshape(-1, 3)
    master_inputs = model._rollout.master_buffers[0].observations.reshape(-1, 3)
    for inputs in (subpolicy_inputs, master_inputs):
        assert np.abs(inputs).max() <= model.observation_normalizer.clip
        assert np.abs(inputs[:, 0]).max() < 5  # the raw entry reaches about 1,000 x 1.5
    assert np.abs(subpolicy_inputs[:, 2]).max() > 100 * 0.0007  # the raw entry (t / 10,000) stays under 0.0007
    statistics = model.observation_normalizer.state_dict()
    model.adapt(task=1, total_timesteps=2 * 2 * 16)
    assert model.observation_normalizer.state_dict() == statistics
    model.resume_meta_training()
    model.learn(2 * 16)
    assert model.observation_normalizer.state_dict()["count"] > statistics["count"]


def test_a_saved_normalizer_predicts_from_raw_observations_and_may_not_be_dropped(make_mlsh, tmp_path):
    model = make_mlsh(_scaled_toy(), normalize_observation=True)
    model.learn(3 * 32)
    model.save(tmp_path / "model.zip")
    loaded = MLSH.load(tmp_path / "model.zip", _scaled_toy(), device="cpu")
    assert loaded.observation_normalizer.state_dict() == model.observation_normalizer.state_dict()
    raw = np.array([[900.0, 0.5, 0.001], [-300.0, -0.2, -0.0005]], dtype=np.float32)
    actions, _ = model.predict(raw, deterministic=True)
    loaded_actions, _ = loaded.predict(raw, deterministic=True)
    np.testing.assert_array_equal(loaded_actions, actions)
    scaled = model.normalize_obs(raw)
    model.observation_normalizer = None  # the same networks on inputs scaled by hand
    np.testing.assert_array_equal(model.predict(scaled, deterministic=True)[0], actions)
    with pytest.raises(ValueError, match="trained with normalize_observation=True"):
        MLSH.load(tmp_path / "model.zip", _scaled_toy(), device="cpu", normalize_observation=False)


def test_normalize_observation_refuses_what_it_cannot_scale(make_mlsh):
    with pytest.raises(ValueError, match="normalize_observation must be True or False"):
        make_mlsh(normalize_observation="yes")
    with pytest.raises(ValueError, match="scales Box observations"):
        make_mlsh(make_toy(dict_obs=True), "MultiInputPolicy", normalize_observation=True)
    with pytest.raises(NotImplementedError, match="normalize_observation is not supported in distributed mode") as error:
        check_arguments(2, 4, 1, 1, 16, 2, 1, 0.0, 0.0, False, 1, 1, True, None, normalize_observation=True)
    assert "-params normalize_observation:false" in str(error.value)  # the fix, for a YAML entry that sets it
