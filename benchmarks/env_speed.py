"""
Steps per second of each MuJoCo task family next to the Gymnasium env it builds on, random actions, same process.

    python benchmarks/env_speed.py --steps 1000 --rounds 20
    python benchmarks/env_speed.py --only Humanoid   # one pair; the csv then holds its row only

Per pair, three envs are made once: the base env as registered, the family, and the base env without
termination. Each round times a chunk of ``--steps`` random-action steps of each of the three in turn (who goes
first rotates), their episodes running on from one chunk to the next, so that all three see the same machine load
and, over the rounds, the same episode phases. The table reports the median chunk rate of each env and, as ratios,
the median over rounds of the round's family / base ratio. Time is the process's CPU time
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

The ``*contacts_per_step`` columns give the mean number of MuJoCo contacts after a step of each env (an untimed
chunk run after the rounds): the physics cost of a step grows with them, and they explain ``ratio``.

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
    ("mlsh/AntMovement-v0", "Ant-v5"),
    ("mlsh/AntMaze-v0", "Ant-v5"),
    ("mlsh/AntObstacleCourse-v0", "Ant-v5"),
    ("mlsh/HumanoidWalkCrawl-v0", "Humanoid-v5"),
)


class Stepper:
    """
    An env stepped with random actions in timed chunks; its episodes run on from one chunk to the next.

    :param env_id: A registered id.
    :param seed: Seed of the env (and of a family's task draws) and of the actions.
    :param env_kwargs: Passed on to ``gymnasium.make``.
    """

    def __init__(self, env_id: str, seed: int = 0, **env_kwargs: Any):
        self.env = gym.make(env_id, **env_kwargs)
        self.unwrapped = self.env.unwrapped
        self.is_family = hasattr(self.unwrapped, "sample_tasks")
        self.env.reset(seed=seed)  # seeds np_random, which draws the tasks
        self.reset()
        self.env.action_space.seed(seed)

    def reset(self) -> None:
        if self.is_family:
            self.unwrapped.set_task(self.unwrapped.sample_tasks(1, split="train")[0])
        self.env.reset()

    def steps_per_second(self, n_steps: int) -> float:
        """
        :param n_steps: Steps to time (the random actions are drawn before).
        :return: Steps per second of CPU time, resets included.
        """
        actions = [self.env.action_space.sample() for _ in range(n_steps)]
        step = self.env.step
        start = time.process_time()
        for action in actions:
            _, _, terminated, truncated, _ = step(action)
            if terminated or truncated:
                self.reset()
        return n_steps / (time.process_time() - start)

    def contacts_per_step(self, n_steps: int) -> float:
        """
        :param n_steps: Steps to run, untimed.
        :return: Mean number of MuJoCo contacts after a step: what the physics costs grow with.
        """
        total = 0
        for _ in range(n_steps):
            _, _, terminated, truncated, _ = self.env.step(self.env.action_space.sample())
            total += self.unwrapped.data.ncon
            if terminated or truncated:
                self.reset()
        return total / n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="steps per timed chunk")
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds of chunks per pair (medians reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the envs, their tasks and the actions")
    parser.add_argument("--only", default="", help="time only the pairs whose family id contains this")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "env_speed.csv"))
    args = parser.parse_args()
    rows = []
    for family, base in PAIRS:
        if args.only not in family:
            continue
        steppers = {
            "base": Stepper(base, seed=args.seed),
            "family": Stepper(family, seed=args.seed),
            "same": Stepper(base, seed=args.seed, terminate_when_unhealthy=False),
        }
        rates: dict[str, list[float]] = {name: [] for name in steppers}
        for round_index in range(args.rounds):
            names = list(steppers)
            names = names[round_index % 3 :] + names[: round_index % 3]  # rotate who goes first
            for name in names:
                rates[name].append(steppers[name].steps_per_second(args.steps))
        contacts = {name: stepper.contacts_per_step(args.steps) for name, stepper in steppers.items()}
        for stepper in steppers.values():
            stepper.env.close()
        family_rate, base_rate, same_rate = (float(np.median(rates[name])) for name in ("family", "base", "same"))
        # Ratios: the median over rounds of the round's ratio (the three chunks of a round see about the same load).
        ratio = float(np.median(np.divide(rates["family"], rates["base"])))
        ratio_same = float(np.median(np.divide(rates["family"], rates["same"])))
        rows.append(
            {
                "env_id": family,
                "base_env_id": base,
                "steps_per_s": round(family_rate, 1),
                "base_steps_per_s": round(base_rate, 1),
                "ratio": round(ratio, 3),
                "base_no_termination_steps_per_s": round(same_rate, 1),
                "ratio_same_episodes": round(ratio_same, 3),
                "contacts_per_step": round(contacts["family"], 2),
                "base_contacts_per_step": round(contacts["base"], 2),
                "base_no_termination_contacts_per_step": round(contacts["same"], 2),
                "steps": args.steps,
                "rounds": args.rounds,
                "machine": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)",
            }
        )
    header = (
        f"{'env':28s} {'steps/s':>9s} {'base':>12s} {'base steps/s':>13s} {'ratio':>6s} {'no-term':>8s} {'ratio':>6s}"
        f" {'contacts: family / base / no-term':>34s}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['env_id']:28s} {row['steps_per_s']:9.0f} {row['base_env_id']:>12s} {row['base_steps_per_s']:13.0f} "
            f"{row['ratio']:6.2f} {row['base_no_termination_steps_per_s']:8.0f} {row['ratio_same_episodes']:6.2f}"
            f" {row['contacts_per_step']:16.2f} / {row['base_contacts_per_step']:.2f} /"
            f" {row['base_no_termination_contacts_per_step']:.2f}"
        )
    with open(args.out, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
