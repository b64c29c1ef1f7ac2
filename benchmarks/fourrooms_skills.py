"""
What each FourRooms sub-policy learned: every sub-policy of every meta-trained seed acts alone from the start cell for
whole episodes, and the picture shows where it spends its steps (one grid per sub-policy, one row per seed), with the
held-out goals that ``transfer.py`` tested marked. A skill that sits on one cell is a "go to that cell" skill: useful
for a new goal only when the goal is that cell.

    python benchmarks/fourrooms_skills.py --model-tag fast --seeds 0 1 2 3 4

Reads benchmarks/results/models/<tag>_mlsh-FourRooms-v0_seed<s>.zip (written by transfer.py) and the tested goals
from transfer_FourRooms_seed<s>.csv in ``--results`` (default benchmarks/results/FourRooms); writes fourrooms_skills.png and
fourrooms_skills.csv there (per sub-policy: its most visited cell, the share of steps there, and its return alone on
each tested goal).
"""

import argparse
import ast
import os

import gymnasium as gym
import numpy as np
import pandas as pd
import torch as th
from _common import machine, write_csv
from transfer import subpolicy_task_returns

import mlsh_envs  # noqa: F401  (registers the families)
from sb3_mlsh import MLSH

ENV_ID = "mlsh/FourRooms-v0"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def visits_and_returns(model: MLSH, goals: list[tuple[int, int]], episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """
    :param model: A meta-trained FourRooms model.
    :param goals: Goal cells on which to measure each sub-policy's return.
    :param episodes: Episodes per sub-policy (and per goal).
    :return: Visit counts (K, rows, cols) over all episodes, and the mean return of each sub-policy on each goal (K, goals).
    """
    visits = np.zeros((model.n_subpolicies, *gym.make(ENV_ID).unwrapped.walls.shape))

    def count_visit(subpolicy: int, env: gym.Env) -> None:
        base = env.unwrapped
        visits[(subpolicy, *base.cells[base.agent])] += 1

    returns = subpolicy_task_returns(model, ENV_ID, list(goals), episodes, on_step=count_visit)
    return visits, returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-tag", default="fast")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--episodes", type=int, default=10, help="episodes per sub-policy and goal")
    parser.add_argument("--models", default=os.path.join(RESULTS, "models"))
    parser.add_argument(
        "--results",
        default=os.path.join(RESULTS, "FourRooms"),
        help="where transfer.py wrote its seed files; the outputs go there too",
    )
    args = parser.parse_args()
    th.set_num_threads(1)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    walls = gym.make(ENV_ID).unwrapped.walls
    rows, figure_rows = [], []
    for seed in args.seeds:
        model = MLSH.load(
            os.path.join(args.models, f"{args.model_tag}_mlsh-FourRooms-v0_seed{seed}.zip"), n_envs=1, task_groups=1
        )
        tested = pd.read_csv(os.path.join(args.results, f"transfer_FourRooms_seed{seed}.csv"))["task"].unique()
        goals = [tuple(ast.literal_eval(text)) for text in tested]
        visits, returns = visits_and_returns(model, goals, args.episodes)
        figure_rows.append((seed, visits, goals))
        for k in range(model.n_subpolicies):
            cell = np.unravel_index(visits[k].argmax(), walls.shape)
            rows.append(
                dict(
                    seed=seed,
                    subpolicy=k,
                    most_visited_cell=f"({cell[0]}, {cell[1]})",
                    share_of_steps_there=round(visits[k][cell] / visits[k].sum(), 3),
                    return_alone_on_tested_goals="; ".join(f"{goal}: {returns[k, i]:.1f}" for i, goal in enumerate(goals)),
                )
            )
    n_subpolicies = figure_rows[0][1].shape[0]
    fig, axes = plt.subplots(len(figure_rows), n_subpolicies, figsize=(2.2 * n_subpolicies, 2.3 * len(figure_rows)))
    axes = np.atleast_2d(axes)
    for (seed, visits, goals), row_axes in zip(figure_rows, axes):
        for k, ax in enumerate(row_axes):
            share = np.ma.masked_where(walls, visits[k] / visits[k].sum())
            ax.imshow(np.where(walls, 1.0, np.nan), cmap="Greys", vmin=0, vmax=1.5)
            ax.imshow(share, cmap="viridis", vmin=0, vmax=0.3)
            for goal in goals:
                ax.plot(goal[1], goal[0], marker="*", markersize=10, color="gold", markeredgecolor="k")
            ax.plot(9, 7, marker="o", markersize=4, color="white", markeredgecolor="k")  # the start cell
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"seed {seed}, sub-policy {k}", fontsize="x-small")
    fig.suptitle(
        "Where each FourRooms sub-policy spends its steps alone (o: start, *: tested held-out goals)", fontsize="small"
    )
    fig.tight_layout()
    out = os.path.join(args.results, "fourrooms_skills.png")
    fig.savefig(out, dpi=90)
    plt.close(fig)
    write_csv(rows, os.path.join(args.results, "fourrooms_skills.csv"))
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"machine: {machine()}; wrote {out}")


if __name__ == "__main__":
    main()
