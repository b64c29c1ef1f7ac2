"""
Reference returns of every task family, on tasks drawn from the held-out split, fixed seeds.

    python benchmarks/reference_returns.py --episodes 20 --mujoco-episodes 5

Grid families: the scripted oracle (knows the task), random actions, and for comparison an agent that always
stays still. MuJoCo families: a standing-still policy (zero torques) and uniformly random actions.
Writes benchmarks/reference_returns.csv.
"""

import argparse
import csv
import os
import time

import numpy as np

import mlsh_envs
from mlsh_envs import evaluate_policy_fn

GRID_IDS = ("mlsh/MovementBandits-v0", "mlsh/KeyDoor-v0", "mlsh/FourRooms-v0", "mlsh/FourRoomsAllGoals-v0")
MUJOCO_IDS = (
    "mlsh/AntTwowalk-v0",
    "mlsh/AntMovement-v0",
    "mlsh/AntMaze-v0",
    "mlsh/AntObstacleCourse-v0",
    "mlsh/HumanoidWalkCrawl-v0",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per grid family and policy")
    parser.add_argument("--mujoco-episodes", type=int, default=5, help="episodes per MuJoCo family and policy")
    parser.add_argument("--split", default="test", help="task split to draw from: train, test or all")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "reference_returns.csv"))
    args = parser.parse_args()
    split = None if args.split == "all" else args.split
    rows = []
    for env_id in mlsh_envs.ENV_IDS:
        if env_id not in GRID_IDS + MUJOCO_IDS:
            continue
        n_episodes = args.episodes if env_id in GRID_IDS else args.mujoco_episodes
        policies = {
            "random": lambda env, obs: env.action_space.sample(),
            "zero" if env_id in MUJOCO_IDS else "stay": (
                (lambda env, obs: np.zeros(env.action_space.shape, dtype=env.action_space.dtype))
                if env_id in MUJOCO_IDS
                else (lambda env, obs: 0)
            ),
        }
        if env_id in GRID_IDS:
            start = time.perf_counter()
            oracle = lambda env, obs: env.get_wrapper_attr("oracle_action")(obs)  # noqa: E731
            mean, std = evaluate_policy_fn(env_id, oracle, n_episodes=n_episodes, split=split)
            rows.append({"env_id": env_id, "policy": "oracle", "mean": mean, "std": std, "episodes": n_episodes})
            print(f"{env_id:28s} {'oracle':7s} {mean:10.2f} +- {std:8.2f}  ({time.perf_counter() - start:.1f} s)")
        for name, policy in policies.items():
            start = time.perf_counter()
            mean, std = evaluate_policy_fn(env_id, policy, n_episodes=n_episodes, split=split)
            rows.append({"env_id": env_id, "policy": name, "mean": mean, "std": std, "episodes": n_episodes})
            print(f"{env_id:28s} {name:7s} {mean:10.2f} +- {std:8.2f}  ({time.perf_counter() - start:.1f} s)")
    for row in rows:
        row["mean"], row["std"], row["split"] = round(row["mean"], 2), round(row["std"], 2), args.split
    with open(args.out, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
