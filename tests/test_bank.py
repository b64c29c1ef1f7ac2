"""The sub-policy bank: independence of the K networks and agreement of its two evaluation paths."""

import copy

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from sb3_mlsh.mlsh.bank import SubPolicyBankPolicy, subpolicy_observation_space


def make_bank(k: int, action_space: spaces.Space, **kwargs) -> SubPolicyBankPolicy:
    obs_space = subpolicy_observation_space(spaces.Box(-1, 1, (4,), np.float32), k)
    return SubPolicyBankPolicy(obs_space, action_space, lambda _: 1e-3, n_subpolicies=k, **kwargs)


def batch(k: int, n: int, only: int | None = None) -> tuple[th.Tensor, th.Tensor]:
    index = th.full((n,), only) if only is not None else th.randint(k, (n,))
    return th.cat([th.rand(n, 4), th.nn.functional.one_hot(index, k).float()], dim=1), index


@pytest.mark.parametrize("action_space", [spaces.Discrete(3), spaces.Box(-1, 1, (2,), np.float32)])
def test_grouped_and_batched_paths_agree(action_space, monkeypatch):
    th.manual_seed(0)
    bank = make_bank(3, action_space)
    obs, _ = batch(3, 600)
    actions = th.as_tensor(np.stack([action_space.sample() for _ in range(600)]))
    results = []
    for threshold in (10**9, 1):  # all networks on all samples, then each network on its own (padded) samples
        monkeypatch.setattr(type(bank.actor), "grouped_from_work", threshold)
        values, log_prob, _ = bank.evaluate_actions(obs, actions)
        bank.optimizer.zero_grad()
        (values.sum() + log_prob.sum()).backward()
        results.append((values.detach(), log_prob.detach(), bank.theta.grad.clone()))
    for first, second in zip(*results):
        th.testing.assert_close(first, second, rtol=1e-5, atol=1e-5)


def test_gradients_reach_only_the_selected_subpolicy():
    bank = make_bank(3, spaces.Discrete(3))
    for n in (16, 1024):
        obs, _ = batch(3, n, only=1)
        values, log_prob, _ = bank.evaluate_actions(obs, th.zeros(n, dtype=th.long))
        bank.optimizer.zero_grad()
        (values.sum() + log_prob.sum()).backward()
        grad = bank.theta.grad
        assert grad[1].abs().sum() > 0
        assert th.all(grad[0] == 0) and th.all(grad[2] == 0)
        np.testing.assert_array_equal(bank.optimizer.active(), [False, True, False])


def test_each_subpolicy_has_its_own_log_std_and_optimizer():
    bank = make_bank(2, spaces.Box(-1, 1, (2,), np.float32))
    assert bank.log_std.shape == (2, 2)
    assert len(bank.optimizer.param_groups) == 2
    before = bank.theta.detach().clone()
    obs, _ = batch(2, 32, only=0)
    values, log_prob, _ = bank.evaluate_actions(obs, th.zeros(32, 2))
    bank.optimizer.zero_grad()
    (values.sum() - log_prob.sum()).backward()
    bank.optimizer.step()
    assert not th.equal(before[0], bank.theta[0]) and th.equal(before[1], bank.theta[1].detach())
    state = bank.optimizer.state_dict()
    bank.optimizer.load_state_dict(state)
    with pytest.raises(ValueError, match="cannot be loaded"):
        make_bank(3, spaces.Box(-1, 1, (2,), np.float32)).optimizer.load_state_dict(state)


def _one_step(bank: SubPolicyBankPolicy, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
    before = bank.theta.detach().clone()
    values, log_prob, _ = bank.evaluate_actions(obs, actions)
    bank.optimizer.zero_grad()
    (values.square().mean() - log_prob.mean()).backward()
    bank.optimizer.step()
    return bank.theta.detach() - before


def test_gradient_clip_is_per_subpolicy():
    th.manual_seed(0)
    bank = make_bank(2, spaces.Discrete(3), max_grad_norm=0.5)
    obs, _ = batch(2, 64)
    actions = th.randint(3, (64,))
    values, log_prob, _ = bank.evaluate_actions(obs, actions)
    bank.optimizer.zero_grad()
    (100 * values.square().mean() - log_prob.mean()).backward()
    expected = []
    for row in bank.theta.grad.clone():
        expected.append(row * min(1.0, 0.5 / (row.norm().item() + 1e-6)))
    bank.optimizer.step()
    for k in range(2):
        th.testing.assert_close(bank.optimizer.aliases[k][0].grad, expected[k])
        assert bank.optimizer.aliases[k][0].grad.norm() <= 0.5 + 1e-5


def test_share_scaled_steps_shrink_the_step_of_a_rarely_used_subpolicy():
    th.manual_seed(0)
    plain = make_bank(2, spaces.Discrete(3), share_scaled_steps=False)
    scaled = make_bank(2, spaces.Discrete(3), share_scaled_steps=True)
    scaled.load_state_dict(plain.state_dict())
    index = th.tensor([0] * 30 + [1] * 2)
    obs = th.cat([th.rand(32, 4), th.nn.functional.one_hot(index, 2).float()], dim=1)
    actions = th.randint(3, (32,))
    plain_step, scaled_step = _one_step(plain, obs, actions), _one_step(scaled, obs, actions)
    # Adam's first step moves every parameter by about the learning rate, whatever the gradient's scale:
    # sub-policy 1 holds 2 of 32 samples, so its learning rate is scaled by K * 2 / 32 = 1/8; sub-policy 0 keeps its own.
    th.testing.assert_close(scaled_step[0], plain_step[0])
    ratio = scaled_step[1].abs().max() / plain_step[1].abs().max()
    assert ratio == pytest.approx(1 / 8, rel=1e-3)
    assert scaled.optimizer.param_groups[1]["lr"] == plain.optimizer.param_groups[1]["lr"] == 1e-3


def _mixed_batch() -> tuple[th.Tensor, th.Tensor]:
    index = th.tensor([0, 1] * 8)
    obs = th.cat([th.rand(16, 4), th.nn.functional.one_hot(index, 2).float()], dim=1)
    return obs, th.randint(3, (16,))


def test_adam_runs_fused_and_a_state_saved_without_fusion_keeps_it_fused():
    th.manual_seed(0)
    fused = make_bank(2, spaces.Discrete(3))
    assert all(group["fused"] for group in fused.optimizer.param_groups)
    unfused = make_bank(2, spaces.Discrete(3), optimizer_kwargs={"eps": 1e-5})
    unfused.load_state_dict(fused.state_dict())
    batch = _mixed_batch()
    _one_step(unfused, *batch)
    fused.optimizer.load_state_dict(copy.deepcopy(unfused.optimizer.state_dict()))  # not sharing the moments' memory
    assert all(group["fused"] for group in fused.optimizer.param_groups)
    fused.load_state_dict(unfused.state_dict())
    # The same Adam either way: one more step from the same state moves both banks alike.
    th.testing.assert_close(_one_step(fused, *batch), _one_step(unfused, *batch), rtol=1e-5, atol=1e-7)
