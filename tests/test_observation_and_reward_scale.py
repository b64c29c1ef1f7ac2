"""Per-level observations (what the sub-policies see) and reward scaling (returns of any scale)."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from toy_envs import make_toy, small_model

from sb3_mlsh import MLSH
from sb3_mlsh.common.normalization import RewardScaler
from sb3_mlsh.common.observation import SubPolicyView


def test_box_view_keeps_the_other_entries_in_order():
    view = SubPolicyView(spaces.Box(-np.arange(1, 6, dtype=np.float32), np.arange(1, 6, dtype=np.float32)), [0, -1])
    assert view.space.shape == (3,)
    np.testing.assert_array_equal(view.space.high, [2, 3, 4])
    batch = np.arange(10, dtype=np.float32).reshape(2, 5)
    np.testing.assert_array_equal(view(batch), [[1, 2, 3], [6, 7, 8]])


def test_slices_name_ranges_of_entries_as_python_slices_do():
    box = spaces.Box(-1, 1, (10,))
    np.testing.assert_array_equal(SubPolicyView(box, [0, "4:"]).space.shape, (3,))  # keeps 1, 2, 3
    batch = np.arange(20.0).reshape(2, 10)
    np.testing.assert_array_equal(SubPolicyView(box, [0, "4:"])(batch), [[1, 2, 3], [11, 12, 13]])
    np.testing.assert_array_equal(SubPolicyView(box, [":2", "-3:"])(batch)[0], [2, 3, 4, 5, 6])
    dict_view = SubPolicyView(spaces.Dict({"body": box}), {"body": ["2:9"]})
    assert dict_view.space["body"].shape == (3,)


def test_dict_view_drops_keys_and_entries():
    space = spaces.Dict({"goal": spaces.Box(-1, 1, (2,)), "body": spaces.Box(-1, 1, (3,)), "phase": spaces.Discrete(3)})
    assert set(SubPolicyView(space, ["goal"]).space.spaces) == {"body", "phase"}
    view = SubPolicyView(space, {"body": [1]})
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
        SubPolicyView(space, exclude)


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
