"""The sub-policy bank: independence of the K networks and agreement of its two evaluation paths."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from sb3_mlsh.policies import SubPolicyBankPolicy, subpolicy_observation_space


def make_bank(k: int, action_space: spaces.Space) -> SubPolicyBankPolicy:
    obs_space = subpolicy_observation_space(spaces.Box(-1, 1, (4,), np.float32), k)
    return SubPolicyBankPolicy(obs_space, action_space, lambda _: 1e-3, n_subpolicies=k)


def batch(k: int, n: int, only: int | None = None) -> tuple[th.Tensor, th.Tensor]:
    index = th.full((n,), only) if only is not None else th.randint(k, (n,))
    return th.cat([th.rand(n, 4), th.nn.functional.one_hot(index, k).float()], dim=1), index


@pytest.mark.parametrize("action_space", [spaces.Discrete(3), spaces.Box(-1, 1, (2,), np.float32)])
def test_chunked_and_batched_paths_agree(action_space, monkeypatch):
    th.manual_seed(0)
    bank = make_bank(3, action_space)
    obs, _ = batch(3, 600)
    actions = th.as_tensor(np.stack([action_space.sample() for _ in range(600)]))
    results = []
    for threshold in (10**9, 1):  # all networks on all samples, then each network on its own samples
        monkeypatch.setattr(type(bank.actor), "chunked_from_batch", threshold)
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
    assert len(bank.optimizer.optimizers) == 2
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
