"""
What each meta-trained sub-policy of an Ant family does alone: from the start of an episode, one sub-policy acts for the
whole episode (deterministic, its mean action) on each task. Per seed, sub-policy and task: the return, the torso's
final distance to the target or goal, its closest approach, its final x and y, and the share of steps the Ant spent on
its back; and a picture of every x-y path over the task's blocks.

    python benchmarks/ant_skills.py --env mlsh/AntTwowalk-v0 --model-tag yaml --seeds 0 1 2

Models are read from <models>/<tag>_<family>_seed<s>.zip (transfer.py's layout). Writes
<results>/ant_skills_<family>.csv and ant_skills_<family>.png (default results: benchmarks/results/<family the skills
run on>), and prints the table with the command.
"""

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch as th

import mlsh_envs
from sb3_mlsh import MLSH, make_task_sampler

RESULTS = os.path.join(os.path.dirname(__file__), "results")
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def family_tasks(env_id: str, split: str) -> list[int]:
    """:return: Every task of the family's ``split`` (its tasks are few), in order."""
    return sorted(set(make_task_sampler(env_id, split=None if split == "all" else split, seed=0).sample(500)))


def run_subpolicy(model: MLSH, env: gym.Env, task: int, subpolicy: int, seed: int = 0) -> dict:
    """One deterministic episode of ``subpolicy`` alone on ``task``: return, final and closest distance, and the path."""
    env.get_wrapper_attr("set_task")(task)
    obs, _ = env.reset(seed=seed)
    unwrapped = env.unwrapped
    path, total, closest, done = [unwrapped.data.qpos[:2].copy()], 0.0, np.nan, False
    info: dict = {}
    upside_down = []
    while not done:
        obs, reward, terminated, truncated, info = env.step(model.subpolicy_predict(obs, subpolicy, deterministic=True))
        total += float(reward)
        _, qx, qy, _ = unwrapped.data.qpos[3:7]
        upside_down.append(1.0 - 2.0 * (qx * qx + qy * qy) < 0.0)  # the torso's up axis points below the horizon
        closest = float(np.fmin(closest, info.get("distance", np.nan)))  # NaN for AntMovement: a direction, no target
        path.append(unwrapped.data.qpos[:2].copy())
        done = terminated or truncated
    final_x, final_y = path[-1]
    final = dict(final_distance=float(info.get("distance", np.nan)), closest=closest, final_x=final_x, final_y=final_y)
    final["upside_down"] = float(np.mean(upside_down))
    return dict(ret=total, **final, path=np.array(path))


def skill_table(
    model_paths: dict[int, str], env_id: str, tasks: list, run: Callable[..., dict], label: Callable[[Any], Any] = str
) -> tuple[pd.DataFrame, dict]:
    """
    :param model_paths: The model of each seed.
    :param env_id: The family the skills run on.
    :param tasks: Its tasks.
    :param run: One episode of a sub-policy alone, ``run(model, env, task, k)``: a dict of numbers and its ``path``.
    :param label: How a task is written in the table.
    :return: A row per seed, sub-policy and task, and the paths by ``(seed, task)`` (one per sub-policy).
    """
    env = gym.make(env_id)
    rows, paths = [], {}
    for seed, model_path in model_paths.items():
        if not os.path.exists(model_path):
            sys.exit(f"No model at {model_path}: meta-train it (RESULTS.md has each family's command), or pass --models.")
        model = MLSH.load(model_path, n_envs=1, task_groups=1, device="cpu")
        for task in tasks:
            paths[seed, task] = []
            for k in range(model.n_subpolicies):
                outcome = run(model, env, task, k)
                paths[seed, task].append(outcome.pop("path"))
                rows.append(dict(seed=seed, subpolicy=k, task=label(task), **outcome))
    env.close()
    return pd.DataFrame(rows), paths


def report(frame: pd.DataFrame, started: float) -> None:
    """Print the table with the command that made it, the machine and the time it took."""
    print("command: python " + " ".join(sys.argv))
    print(frame.to_string(index=False))
    print(f"{time.time() - started:.0f} s; {platform.machine()}, {os.cpu_count()} cores, torch {th.__version__}")


def plot(paths: dict, env_id: str, tasks: list[int], seeds: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    env = gym.make(env_id)
    fig, axes = plt.subplots(len(seeds), len(tasks), figsize=(3.2 * len(tasks), 3.0 * len(seeds)), squeeze=False)
    for row, seed in enumerate(seeds):
        for column, task in enumerate(tasks):
            ax = axes[row, column]
            env.get_wrapper_attr("set_task")(task)
            env.reset(seed=0)
            for x, y, half_x, half_y in env.unwrapped.obstacles:
                ax.add_patch(Rectangle((x - half_x, y - half_y), 2 * half_x, 2 * half_y, color="0.6"))
            goal = env.unwrapped.goal_position
            ax.plot(*goal, marker="*", color="green", markersize=14, linestyle="none")
            for k, xy in enumerate(paths[seed, task]):
                ax.plot(xy[:, 0], xy[:, 1], color=COLOURS[k % len(COLOURS)], linewidth=1.2, label=f"sub-policy {k}")
            ax.plot(0, 0, marker="o", color="black", markersize=4)
            ax.set_aspect("equal", adjustable="datalim")
            ax.grid(alpha=0.3)
            ax.set_title(f"seed {seed}, task {task}", fontsize="small")
    axes[0, 0].legend(fontsize="x-small", loc="best")
    fig.suptitle(f"{env_id}: each sub-policy alone from the start (black dot)\nstar: the task's goal", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mlsh/AntTwowalk-v0", choices=[e for e in mlsh_envs.ENV_IDS if "Ant" in e])
    parser.add_argument("--on", default=None, choices=[e for e in mlsh_envs.ENV_IDS if "Ant" in e], help="run on this family")
    parser.add_argument("--split", default="all", choices=("all", "train", "test"), help="which tasks of the family")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model-tag", default="yaml")
    parser.add_argument("--models", default=os.path.join(RESULTS, "models"))
    parser.add_argument("--results", default=None, help="output folder (default: benchmarks/results/<family>)")
    args = parser.parse_args()
    th.set_num_threads(1)
    target = args.on or args.env
    tasks = family_tasks(target, args.split)
    started = time.time()
    models = {
        seed: os.path.join(args.models, f"{args.model_tag}_{args.env.replace('/', '-')}_seed{seed}.zip") for seed in args.seeds
    }
    frame, paths = skill_table(models, target, tasks, run_subpolicy, label=int)
    frame = frame.round(2)
    name = args.env.split("/")[-1].replace("-v0", "") + ("" if args.on is None else "_on_" + target.split("/")[-1][:-3])
    args.results = args.results or os.path.join(RESULTS, target.split("/")[-1].replace("-v0", ""))
    os.makedirs(args.results, exist_ok=True)
    frame.to_csv(os.path.join(args.results, f"ant_skills_{name}.csv"), index=False)
    plot(paths, target, tasks, args.seeds, os.path.join(args.results, f"ant_skills_{name}.png"))
    report(frame, started)


if __name__ == "__main__":
    main()
