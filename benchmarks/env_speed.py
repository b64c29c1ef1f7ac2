"""
Steps per second of each MuJoCo task family next to the Gymnasium env it builds on, random actions, same process.

    python benchmarks/env_speed.py --steps 5000 --rounds 3

Rounds alternate family and base env so that both see the same machine load; the table reports the median round.
Episodes that end are reset, and resets count in the time. The base envs are timed twice: as registered
(``ratio``; Ant-v5 and Humanoid-v5 terminate when the robot falls, so with random actions Humanoid-v5 is
mostly standing and resetting) and with ``terminate_when_unhealthy=False`` (``ratio_same_episodes``), which
gives them the families' episodes: no early termination, so a fallen robot keeps lying in contact with the
floor, which costs more physics per step. Writes benchmarks/env_speed.csv.
"""

import argparse
import csv
import os
import platform
import time
from typing import Any

import gymnasium as gym
import numpy as np

import mlsh_envs  # noqa: F401  (registers the mlsh/ ids)

PAIRS = (
    ("mlsh/AntTwowalk-v0", "Ant-v5"),
    ("mlsh/AntMaze-v0", "Ant-v5"),
    ("mlsh/AntObstacleCourse-v0", "Ant-v5"),
    ("mlsh/HumanoidWalkCrawl-v0", "Humanoid-v5"),
)


def steps_per_second(env_id: str, n_steps: int, seed: int = 0, **env_kwargs: Any) -> float:
    """
    :param env_id: A registered id.
    :param env_kwargs: Passed on to ``gymnasium.make``.
    :param n_steps: Steps to time.
    :param seed: Seed of the env and of the actions.
    :return: Steps per second, resets included.
    """
    env = gym.make(env_id, **env_kwargs)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_steps)]
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return n_steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per pair (median reported)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "env_speed.csv"))
    args = parser.parse_args()
    rows = []
    for family, base in PAIRS:
        family_rates, base_rates, same_rates = [], [], []
        for round_index in range(args.rounds):
            base_rates.append(steps_per_second(base, args.steps, seed=round_index))
            family_rates.append(steps_per_second(family, args.steps, seed=round_index))
            same_rates.append(steps_per_second(base, args.steps, seed=round_index, terminate_when_unhealthy=False))
        family_rate, base_rate = float(np.median(family_rates)), float(np.median(base_rates))
        same_rate = float(np.median(same_rates))
        rows.append(
            {
                "env_id": family,
                "base_env_id": base,
                "steps_per_s": round(family_rate, 1),
                "base_steps_per_s": round(base_rate, 1),
                "ratio": round(family_rate / base_rate, 3),
                "base_no_termination_steps_per_s": round(same_rate, 1),
                "ratio_same_episodes": round(family_rate / same_rate, 3),
                "steps": args.steps,
                "rounds": args.rounds,
                "machine": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)",
            }
        )
    header = f"{'env':28s} {'steps/s':>9s} {'base':>12s} {'base steps/s':>13s} {'ratio':>6s} {'no-term':>8s} {'ratio':>6s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['env_id']:28s} {row['steps_per_s']:9.0f} {row['base_env_id']:>12s} {row['base_steps_per_s']:13.0f} "
            f"{row['ratio']:6.2f} {row['base_no_termination_steps_per_s']:8.0f} {row['ratio_same_episodes']:6.2f}"
        )
    with open(args.out, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
