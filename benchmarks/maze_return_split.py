"""
Where an AntMaze transfer return comes from: progress towards the goal, or torques spared.

AntMaze pays, on every step, the torso's velocity towards the goal minus the control cost ``0.1 |a|^2``. The goal
does not move, so the velocity term sums over an episode to (start distance - final distance) / dt, up to the
velocity's finite difference (under 1 % of the control cost on a random-action episode). Every transfer seed file
holds each iteration's mean return and mean final distance over the same episodes, so each splits, without a rerun,
into

* progress: start distance - final distance, in metres (the velocity term is progress / dt);
* control cost: progress / dt - return, the torques' share.

    python benchmarks/maze_return_split.py benchmarks/results/AntMaze \\
        benchmarks/results/AntMaze/variants/hippo_time_commitment --labels yaml hippo --iterations 10

Reads every ``transfer_AntMaze_seed<k>.csv`` in each folder, and every ``transfer_<Family>_to_AntMaze_seed<k>.csv``
(skills meta-trained on another family, adapted on AntMaze with ``transfer.py --transfer-env mlsh/AntMaze-v0``).
Prints, per folder, method and held-out layout, the mean over seeds and iterations 1 to ``--iterations`` of the
return, the progress and the control cost, and the same over both layouts; writes them to ``--out``.
"""

import argparse
import glob
import os
import sys
import time

import gymnasium as gym
import numpy as np
import pandas as pd

import mlsh_envs  # noqa: F401  (registers the mlsh/ ids)
from mlsh_envs.ant_maze import ANT_MAZE_LAYOUTS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import finish

ENV_ID = "mlsh/AntMaze-v0"
SEED_FILE_PATTERNS = ("transfer_AntMaze_seed*.csv", "transfer_*_to_AntMaze_seed*.csv")


def maze_geometry(env_id: str = ENV_ID) -> tuple[dict[int, float], float]:
    """:return: Each layout's start distance to its goal (the Ant starts at the origin), and the env's step in seconds."""
    env = gym.make(env_id)
    try:
        unwrapped = env.unwrapped
        cell_size, dt = float(unwrapped.cell_size), float(unwrapped.dt)  # type: ignore[attr-defined]
    finally:
        env.close()
    return {task: cell_size * float(np.hypot(*goal)) for task, (_, goal) in enumerate(ANT_MAZE_LAYOUTS)}, dt


def split_returns(frame: pd.DataFrame, start_distance: dict[int, float], dt: float) -> pd.DataFrame:
    """
    :param frame: Rows of transfer seed files: ``task``, ``ret`` (mean return of the episodes that ended in the
        iteration) and ``distance`` (their mean final distance to the goal).
    :param start_distance: Each layout's distance from the start to the goal.
    :param dt: Seconds per env step.
    :return: ``frame`` with ``progress`` (metres closer to the goal) and ``control_cost`` added.
    """
    unknown = sorted(set(frame["task"]) - set(start_distance))
    if unknown:
        known = sorted(start_distance)
        raise ValueError(f"layouts {unknown} are not AntMaze layouts {known}: is every folder an AntMaze transfer?")
    frame = frame.copy()
    frame["progress"] = frame["task"].map(start_distance) - frame["distance"]
    frame["control_cost"] = frame["progress"] / dt - frame["ret"]
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="folders holding transfer_AntMaze_seed<k>.csv files")
    parser.add_argument("--labels", nargs="+", help="one name per folder (default: the folder's name)")
    parser.add_argument("--iterations", type=int, default=10, help="iterations 1 to this count")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "AntMaze", "return_split.csv"))
    args = parser.parse_args()
    labels = args.labels or [os.path.basename(os.path.normpath(folder)) for folder in args.folders]
    if len(labels) != len(args.folders):
        parser.error(f"--labels: give one per folder ({len(args.folders)}), or none")
    seed_files = [
        sorted(path for pattern in SEED_FILE_PATTERNS for path in glob.glob(os.path.join(folder, pattern)))
        for folder in args.folders
    ]
    for folder, files in zip(args.folders, seed_files):
        if not files:
            parser.error(f"{folder} holds no transfer_AntMaze_seed<k>.csv: run benchmarks/transfer.py --env {ENV_ID} first")
    started = time.time()
    start_distance, dt = maze_geometry()
    rows = []
    for files, label in zip(seed_files, labels):
        frame = pd.concat([pd.read_csv(path) for path in files])
        frame = frame[(frame["iteration"] <= args.iterations) & frame["ret"].notna()]
        frame = split_returns(frame, start_distance, dt)
        columns = ["ret", "progress", "control_cost"]
        for method, by_method in frame.groupby("method"):
            runs = by_method.groupby(["seed", "task"])[columns].mean()  # one row per run, as transfer.py summarises
            per_task = runs.groupby("task").mean()
            per_task.loc["both"] = runs.mean()
            for task, values in per_task.iterrows():
                row = dict(source=label, method=method, layout=task, seeds=by_method["seed"].nunique())
                rows.append(row | {column: round(float(values[column]), 2) for column in columns})
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"iterations 1-{args.iterations}; progress in metres, dt {dt} s; command: python {' '.join(sys.argv)}")
    finish(rows, args.out, started)


if __name__ == "__main__":
    main()
