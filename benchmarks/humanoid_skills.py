"""
What each meta-trained sub-policy of HumanoidWalkCrawl does alone: from the start of an episode, one sub-policy acts for
the whole episode (deterministic, its mean action) on each course. Per seed, sub-policy and course: the return, how far
the Humanoid got along x, and the share of steps it spent upright on walk segments and low on crawl segments (the steps
that pay); and a picture of the torso's height along x over each course's ceilings.

    python benchmarks/humanoid_skills.py --model-tag yaml2M --models benchmarks/results/HumanoidWalkCrawl/models --seeds 0

Models are read from <models>/<tag>_mlsh-HumanoidWalkCrawl-v0_seed<s>.zip (transfer.py's layout). Writes
<results>/humanoid_skills_HumanoidWalkCrawl.csv and .png (default results: benchmarks/results/HumanoidWalkCrawl), and
prints the table with the command.
"""

import argparse
import os
import time

import gymnasium as gym
import numpy as np
import torch as th
from ant_skills import COLOURS, family_tasks, report, skill_table

import mlsh_envs  # noqa: F401  (registers the families)
from sb3_mlsh import MLSH

ENV_ID = "mlsh/HumanoidWalkCrawl-v0"
RESULTS = os.path.join(os.path.dirname(__file__), "results")


def run_subpolicy(model: MLSH, env: gym.Env, task: tuple, subpolicy: int, seed: int = 0) -> dict:
    """One deterministic episode of ``subpolicy`` alone on ``task``: return, progress, paying steps, and the path."""
    env.get_wrapper_attr("set_task")(task)
    obs, _ = env.reset(seed=seed)
    total, done, steps = 0.0, False, []
    while not done:
        obs, reward, terminated, truncated, info = env.step(model.subpolicy_predict(obs, subpolicy, deterministic=True))
        total += float(reward)
        steps.append((info["x_position"], info["height"], info["segment_type"] == "crawl", info["pays"]))
        done = terminated or truncated
    x, height, crawl, pays = (np.array(column) for column in zip(*steps))
    return dict(
        ret=total,
        final_x=float(x[-1]),
        paying_share=float(pays.mean()),
        upright_on_walk=float(pays[~crawl].mean()) if (~crawl).any() else np.nan,
        low_on_crawl=float(pays[crawl].mean()) if crawl.any() else np.nan,
        path=np.stack([x, height], axis=1),
    )


def plot(paths: dict, tasks: list, seeds: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = gym.make(ENV_ID).unwrapped
    fig, axes = plt.subplots(len(seeds), len(tasks), figsize=(3.6 * len(tasks), 2.8 * len(seeds)), squeeze=False)
    for row, seed in enumerate(seeds):
        for column, task in enumerate(tasks):
            ax = axes[row, column]
            for index, kind in enumerate(task):
                start = env.course_start + index * env.segment_length
                if kind == "crawl":
                    ax.axvspan(start, start + env.segment_length, ymin=0.0, ymax=1.0, color="0.85")
                    ax.hlines(env.ceiling_height, start, start + env.segment_length, color="0.3", linewidth=3)
            ax.axhline(env.walk_height, color="green", linestyle=":", linewidth=1)
            ax.axhline(env.crawl_height, color="purple", linestyle=":", linewidth=1)
            for k, xz in enumerate(paths[seed, task]):
                ax.plot(xz[:, 0], xz[:, 1], color=COLOURS[k % len(COLOURS)], linewidth=1.0, label=f"sub-policy {k}")
            ax.set_xlabel("torso x (m)", fontsize="small")
            ax.set_ylabel("torso height (m)", fontsize="small")
            ax.set_title(f"seed {seed}: {'-'.join(task)}", fontsize="small")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="x-small", loc="best")
    fig.suptitle(
        f"{ENV_ID}: each sub-policy alone from x = 0\ngrey: under a ceiling; dotted: the walk (green) and crawl (purple) "
        "heights",
        fontsize="small",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test", choices=("all", "train", "test"), help="which courses")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model-tag", default="yaml2M")
    parser.add_argument("--models", default=os.path.join(RESULTS, "models"))
    parser.add_argument("--results", default=os.path.join(RESULTS, "HumanoidWalkCrawl"), help="output folder")
    args = parser.parse_args()
    th.set_num_threads(1)
    tasks = family_tasks(ENV_ID, args.split)
    started = time.time()
    models = {
        seed: os.path.join(args.models, f"{args.model_tag}_{ENV_ID.replace('/', '-')}_seed{seed}.zip") for seed in args.seeds
    }
    frame, paths = skill_table(models, ENV_ID, tasks, run_subpolicy, label="-".join)
    frame = frame.round(3)
    os.makedirs(args.results, exist_ok=True)
    frame.to_csv(os.path.join(args.results, "humanoid_skills_HumanoidWalkCrawl.csv"), index=False)
    plot(paths, tasks, args.seeds, os.path.join(args.results, "humanoid_skills_HumanoidWalkCrawl.png"))
    report(frame, started)


if __name__ == "__main__":
    main()
