"""The optional skill-diversity reward (``MLSH(skill_diversity=...)``): each test fails if the property it names breaks."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from test_rollout import ledger_factory
from toy_envs import make_toy

from sb3_mlsh import MLSH
from sb3_mlsh.mlsh.diversity import SkillDiscriminator


def _separable_rollout(n_subpolicies: int = 2, n_steps: int = 64, n_envs: int = 4) -> np.ndarray:
    """A sub-policy buffer's observations in which sub-policy k always stands at x = k (the last K numbers: its one-hot)."""
    rng = np.random.default_rng(0)
    subpolicy = rng.integers(n_subpolicies, size=(n_steps, n_envs))
    obs = np.stack([subpolicy.astype(np.float32), rng.normal(size=(n_steps, n_envs)).astype(np.float32)], axis=-1)
    return np.concatenate([obs, np.eye(n_subpolicies, dtype=np.float32)[subpolicy]], axis=-1)


def test_reward_is_zero_on_average_before_training_and_favours_each_skills_own_states_after():
    th.manual_seed(0)
    box = spaces.Box(-5.0, 5.0, shape=(2,), dtype=np.float32)
    discriminator = SkillDiscriminator(box, 2, learning_rate=1e-2, batch_size=64)
    states = np.array([[0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    # Untrained: q is near uniform, so the reward log q + log K is near 0 for every skill.
    assert np.abs(discriminator.reward(states, np.array([0, 1]))).max() < 0.3
    rollout = _separable_rollout()
    for _ in range(30):
        stats = discriminator.train_on(rollout)
    assert stats["accuracy"] > 0.95 and stats["loss"] < 0.2
    own = discriminator.reward(states, np.array([0, 1]))
    other = discriminator.reward(states, np.array([1, 0]))
    assert np.all(own > 0.5) and np.all(own <= np.log(2) + 1e-6)
    assert np.all(other < -1.0)


def test_bonus_goes_to_the_subpolicies_only_and_env_reward_stays_conserved(collect, make_mlsh):
    ledger: list = []
    model = make_mlsh(ledger_factory(ledger, terminate_range=(2, 9)), n_envs=3, n_steps=23, skill_diversity=0.5)
    ledger = [model.env.envs[i].get_wrapper_attr("returned_rewards") for i in range(model.n_envs)]
    # A discriminator that always answers "sub-policy 0" with certainty: the bonus is log K for 0, very negative else.
    with th.no_grad():
        last = model.discriminator.net[-1]
        last.weight.zero_()
        last.bias.copy_(th.tensor([20.0, -20.0]))
    result = collect(model)
    returned_by_envs = sum(sum(rewards) for rewards in ledger)
    assert result.master_reward_sum == pytest.approx(returned_by_envs, rel=1e-5)
    assert result.subpolicy_reward_sum == pytest.approx(returned_by_envs, rel=1e-5)
    usage = result.subpolicy_counts
    # Reported before the coefficient; the conservation above holds only if 0.5 times it went into the buffer.
    expected = usage[0] * np.log(2) + usage[1] * (-40.0 + np.log(2))
    assert result.diversity_reward_sum == pytest.approx(expected, rel=1e-3)
    assert usage.min() > 0, "both sub-policies act in this rollout"


def test_without_skill_diversity_nothing_changes(collect, make_mlsh):
    ledger: list = []
    model = make_mlsh(ledger_factory(ledger), n_envs=3, n_steps=23)
    assert model.discriminator is None
    assert collect(model).diversity_reward_sum == 0.0


def test_skill_diversity_saves_loads_and_logs(make_mlsh, tmp_path):
    model = make_mlsh(
        make_toy(dict_obs=True),
        "MultiInputPolicy",
        macro_duration=3,
        warmup_iterations=0,
        skill_diversity=0.2,
        discriminator_kwargs=dict(net_arch=[8], learning_rate=0.01),
    )
    model.learn(64)
    assert set(model._discriminator_stats) == {"loss", "accuracy"}
    before = [p.detach().clone() for p in model.discriminator.parameters()]
    model.save(tmp_path / "model.zip")
    loaded = MLSH.load(tmp_path / "model.zip", make_toy(dict_obs=True), device="cpu")
    assert loaded.skill_diversity == 0.2 and loaded.discriminator.net[0].out_features == 8
    for saved, restored in zip(before, loaded.discriminator.parameters(), strict=True):
        assert th.equal(saved, restored)
    assert loaded.discriminator.optimizer.state_dict()["state"], "the optimizer's moments are restored too"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(skill_diversity=-0.1), "skill_diversity must be a finite number >= 0"),
        (dict(skill_diversity=float("nan")), "skill_diversity must be a finite number >= 0"),
        (dict(skill_diversity=0.1, n_subpolicies=1), "needs n_subpolicies >= 2"),
    ],
)
def test_bad_skill_diversity_is_refused_with_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLSH("MlpPolicy", make_toy(), n_envs=2, n_steps=8, **kwargs)


def test_skill_diversity_is_refused_in_distributed_mode():
    with pytest.raises(NotImplementedError, match="skill_diversity is not supported in distributed mode"):
        MLSH("MlpPolicy", make_toy(), n_envs=2, n_steps=8, skill_diversity=0.1, distributed=True)


def test_identical_skills_on_a_reward_free_env_are_pulled_apart():
    # No task reward and two identical sub-policies: without the diversity reward their gradients are zero and they stay
    # identical; with it they must come to act differently, and the discriminator must tell them apart on new data.
    model = MLSH(
        "MlpPolicy",
        make_toy(max_episode_steps=30, reward_scale=0.0),
        n_envs=4,
        n_steps=60,
        macro_duration=30,
        warmup_iterations=0,
        joint_iterations=1,
        skill_diversity=1.0,
        subpolicy_kwargs=dict(learning_rate=3e-3, batch_size=60),
        discriminator_kwargs=dict(learning_rate=3e-3, batch_size=60, n_epochs=4),
        seed=0,
    )
    with th.no_grad():
        model.policy.theta[1:] = model.policy.theta[0]
    model.learn(4 * 60 * 15)
    states = np.asarray(model.env.reset(), dtype=np.float32)
    probabilities = []
    for k in range(2):
        sub_obs = th.as_tensor(model.subpolicy_obs(states, np.full(len(states), k)))
        with th.no_grad():
            probabilities.append(model.policy.get_distribution(sub_obs).distribution.probs)
    total_variation = 0.5 * (probabilities[0] - probabilities[1]).abs().sum(dim=1).mean().item()
    assert total_variation > 0.3
    held_out_scores = [entry["diversity_reward_mean"] for entry in model.iteration_log[-5:]]
    assert np.mean(held_out_scores) > 0.2


class StepObservationLedger(gym.Wrapper):
    """Writes down the observation of every step, before any automatic reset replaces it."""

    def __init__(self, env: gym.Env, ledger: list) -> None:
        super().__init__(env)
        self.observations: list = []
        ledger.append(self.observations)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.observations.append(obs)
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize("dict_obs", [False, True])
def test_each_step_is_scored_on_the_state_it_reached_with_the_subpolicy_that_acted(collect, make_mlsh, dict_obs):
    ledger: list = []
    inner = make_toy(max_episode_steps=6, terminate_range=(2, 5), dict_obs=dict_obs)
    model = make_mlsh(
        lambda: StepObservationLedger(inner(), ledger),
        "MultiInputPolicy" if dict_obs else "MlpPolicy",
        n_envs=3,
        n_steps=23,
        skill_diversity=1.0,
    )
    ledger = [model.env.envs[i].get_wrapper_attr("observations") for i in range(model.n_envs)]
    seen = {}

    def spy(obs, subpolicy):
        seen.update(obs=obs, subpolicy=subpolicy)
        return np.zeros(len(subpolicy))

    model.discriminator.reward = spy
    collect(model)
    n_steps, n_envs = model.n_steps, model.n_envs
    buffer = model.subpolicy_learner.rollout_buffer
    one_hot = buffer.observations["subpolicy"] if dict_obs else buffer.observations[..., -model.n_subpolicies :]
    np.testing.assert_array_equal(seen["subpolicy"], one_hot.argmax(axis=-1).ravel())
    for env_index in range(n_envs):
        assert len(ledger[env_index]) == n_steps
        for step in range(n_steps):
            row = step * n_envs + env_index
            expected = ledger[env_index][step]
            if dict_obs:
                np.testing.assert_allclose(seen["obs"]["position"][row], expected["position"])
                assert int(seen["obs"]["phase"][row].item()) == expected["phase"]
            else:
                np.testing.assert_allclose(seen["obs"][row], expected)
