"""
Does the reward's scale change how far the sub-policies' policy moves? MLSH on a toy task whose rewards are multiplied
by 1 or 1000, with raw rewards and with ``normalize_reward=True``; printed: the mean change of the sub-policies' mean
action over 4 joint iterations, on fixed probe observations, per seed.

    python benchmarks/reward_scale.py --seeds 0 1 2
"""

import argparse
import os
import platform
import sys

import numpy as np
import torch as th

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from toy_envs import make_toy

from sb3_mlsh import MLSH


def policy_step(reward_scale: float, normalize_reward: bool, seed: int) -> float:
    """:return: The mean absolute change of the sub-policies' mean action over 4 joint iterations."""
    model = MLSH(
        "MlpPolicy",
        make_toy(max_episode_steps=20, box_actions=True, reward_scale=reward_scale),
        n_envs=2,
        n_steps=64,
        macro_duration=4,
        warmup_iterations=0,
        joint_iterations=1,
        normalize_reward=normalize_reward,
        seed=seed,
    )
    probe = th.as_tensor(model.subpolicy_obs(np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])))
    before = model.policy.get_distribution(probe).distribution.mean.detach().clone()
    model.learn(4 * 2 * 64)
    return float((model.policy.get_distribution(probe).distribution.mean.detach() - before).abs().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    th.set_num_threads(1)
    print("command: python " + " ".join(sys.argv))
    print("| rewards | scale 1 | scale 1000 | 1000 / 1 |\n| --- | --- | --- | --- |")
    for normalize in (False, True):
        small = [policy_step(1.0, normalize, seed) for seed in args.seeds]
        large = [policy_step(1000.0, normalize, seed) for seed in args.seeds]
        label = "scaled (`normalize_reward=True`)" if normalize else "raw"
        print(f"| {label} | {np.mean(small):.4f} | {np.mean(large):.4f} | {np.mean(large) / np.mean(small):.2f} |")
    print(f"seeds {args.seeds}; {platform.machine()}, {os.cpu_count()} cores, torch {th.__version__}")


if __name__ == "__main__":
    main()
