"""
The sub-policy bank's forward and training step against the alternative DESIGN.md names: K separate MLPs (one module
call per sub-policy on its own samples). Also SB3's single ActorCriticPolicy as the floor. Times one rollout
forward (no gradient) and one PPO-style training step (forward, backward, optimizer step) per batch size.

    python benchmarks/bank_forward.py --k 2 4 --batch-sizes 8 250 2000
    python benchmarks/bank_forward.py --paths --batch-sizes 8 16 32 64 128 --out benchmarks/results/speed/bank_paths.csv

Writes benchmarks/results/speed/bank_forward.csv. With ``--paths`` it also times the bank with each of its two evaluation
paths forced (all K networks on every sample, or each network's samples padded into a row of their own), which places
the bank's ``grouped_from_work``.
"""

import argparse
import os
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch as th
from _common import machine, write_csv
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy

from sb3_mlsh.mlsh.bank import SubPolicyBankPolicy, subpolicy_observation_space

OBS_DIM, N_ACTIONS = 6, 5


class SeparatePolicies:
    """K SB3 ActorCriticPolicies, each evaluated on its own samples: the straightforward implementation."""

    def __init__(self, k: int) -> None:
        space = spaces.Box(-1, 1, (OBS_DIM,), np.float32)
        self.policies = [ActorCriticPolicy(space, spaces.Discrete(N_ACTIONS), lambda _: 3e-4) for _ in range(k)]

    def act(self, obs: th.Tensor, index: th.Tensor) -> None:
        with th.no_grad():
            for k, policy in enumerate(self.policies):
                mask = index == k
                if mask.any():
                    policy(obs[mask])

    def train_step(self, obs: th.Tensor, index: th.Tensor, actions: th.Tensor) -> None:
        for k, policy in enumerate(self.policies):
            mask = index == k
            if not mask.any():
                continue
            values, log_prob, entropy = policy.evaluate_actions(obs[mask], actions[mask])
            loss = values.mean() + log_prob.mean() + entropy.mean()
            policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            policy.optimizer.step()


def rollout_forward(forward: Callable, obs: th.Tensor) -> None:
    with th.no_grad():
        forward(obs)


def train_step(policy: BasePolicy, obs: th.Tensor, actions: th.Tensor, max_grad_norm: float | None) -> None:
    values, log_prob, entropy = policy.evaluate_actions(obs, actions)
    loss = values.mean() + log_prob.mean() + entropy.mean()
    policy.optimizer.zero_grad()
    loss.backward()
    if max_grad_norm is not None:  # the bank clips per sub-policy inside its optimizer
        th.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
    policy.optimizer.step()


def timed(function: Callable[[], None], repeats: int) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 250, 2000])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--paths", action="store_true", help="also time the bank with each evaluation path forced")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "speed", "bank_forward.csv"))
    args = parser.parse_args()
    th.set_num_threads(1)
    th.manual_seed(0)
    obs_space = spaces.Box(-1, 1, (OBS_DIM,), np.float32)
    single = ActorCriticPolicy(obs_space, spaces.Discrete(N_ACTIONS), lambda _: 3e-4)
    rows = []
    for k in args.k:
        bank = SubPolicyBankPolicy(
            subpolicy_observation_space(obs_space, k), spaces.Discrete(N_ACTIONS), lambda _: 3e-4, n_subpolicies=k
        )
        separate = SeparatePolicies(k)
        for batch in args.batch_sizes:
            obs = th.rand(batch, OBS_DIM)
            index = th.randint(k, (batch,))
            actions = th.randint(N_ACTIONS, (batch,))
            bank_obs = th.cat([obs, th.nn.functional.one_hot(index, k).float()], dim=1)

            row = {
                "K": k,
                "batch": batch,
                "bank_act_ms": timed(partial(rollout_forward, bank.act, bank_obs), args.repeats),
                "separate_act_ms": timed(partial(separate.act, obs, index), args.repeats),
                "single_sb3_act_ms": timed(partial(rollout_forward, single, obs), args.repeats),
                "bank_train_ms": timed(partial(train_step, bank, bank_obs, actions, None), args.repeats),
                "separate_train_ms": timed(partial(separate.train_step, obs, index, actions), args.repeats),
                "single_sb3_train_ms": timed(partial(train_step, single, obs, actions, 0.5), args.repeats),
            }
            if args.paths:
                bank_class = type(bank.actor)  # the actor's and the critic's bank class
                default = bank_class.grouped_from_work
                for path, threshold in (("all_k", 10**9), ("grouped", 0)):
                    bank_class.grouped_from_work = threshold
                    row[f"bank_act_{path}_ms"] = timed(partial(rollout_forward, bank.act, bank_obs), args.repeats)
                    row[f"bank_train_{path}_ms"] = timed(partial(train_step, bank, bank_obs, actions, None), args.repeats)
                bank_class.grouped_from_work = default
            row = {key: round(value, 3) if isinstance(value, float) else value for key, value in row.items()}
            rows.append(row)
            print(" ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    write_csv(rows, args.out)
    print(f"machine: {machine()}; wrote {args.out}")


if __name__ == "__main__":
    main()
