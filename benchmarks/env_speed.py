"""
Steps per second of each MuJoCo task family next to the Gymnasium env it builds on, random actions, same process.

    python benchmarks/env_speed.py --steps 4000 --rounds 7
    python benchmarks/env_speed.py --steps 4000 --rounds 7 --only Humanoid   # one pair; the csv gets its rows only

Three measurements per round, in turn (base, family, base without termination), so that all see the same machine
load; the table reports the median round of each and the ratios of the medians. Time is the process's CPU time
(``time.process_time``), less disturbed than wall time by other jobs on a shared machine (the envs are
single-threaded). Episodes that end are reset, and resets count in the time. The family draws a task of its
training split at every reset (``sample_tasks(1, "train")``), as in meta-training.

The comparisons made:

* ``ratio``: family / base env as registered (``Ant-v5``, ``Humanoid-v5``). These terminate when the robot
  falls, so with random actions Humanoid-v5 runs episodes of about 20 steps of a standing robot (a few feet
  contacts) and resets, while the families never terminate: their robot falls and keeps lying in contact with
  the floor, which costs more contact physics per step. Not a like-for-like comparison for the Humanoid.
* ``ratio_same_episodes``: family / base env with ``terminate_when_unhealthy=False``, i.e. the families' episode
  semantics (same physics, same fallen robot, same 1000-step ``TimeLimit``). This is the fair comparison: it
  measures what the family adds on top of the base env (obstacles in the model, reward, observation, info).

Writes benchmarks/env_speed.csv.
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
    :param seed: Seed of the env (and of its task draws) and of the actions.
    :return: Steps per second of CPU time, resets included.
    """
    env = gym.make(env_id, **env_kwargs)
    unwrapped = env.unwrapped
    is_family = hasattr(unwrapped, "sample_tasks")

    def reset() -> None:
        if is_family:
            unwrapped.set_task(unwrapped.sample_tasks(1, split="train")[0])
        env.reset()

    env.reset(seed=seed)  # seeds np_random, which draws the tasks
    reset()
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_steps)]
    start = time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            reset()
    elapsed = time.process_time() - start
    env.close()
    return n_steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per pair (median reported)")
    parser.add_argument("--only", default="", help="time only the pairs whose family id contains this")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "env_speed.csv"))
    args = parser.parse_args()
    rows = []
    for family, base in PAIRS:
        if args.only not in family:
            continue
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
