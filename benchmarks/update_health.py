"""
Is the sub-policies' PPO update healthy? Reads the TensorBoard events and ``iterations.csv`` of run folders written by
``python -m sb3_mlsh.train`` and prints, per window of steps, the mean over its iterations of the episodes' returns and
the median of the sub-policy learner's approximate KL, clip fraction and action std. A PPO update that moves the policy
within its trust region has an approximate KL of about 0.01 to 0.1 and a clip fraction well under 0.5; far above, the
update is dominated by clipping (e.g. unscaled observations: every step moves the actions by many standard deviations).

    V=benchmarks/results/HumanoidWalkCrawl/variants/subpolicy_obs_1M
    python benchmarks/update_health.py $V/runs/packaged $V/runs/body_only --labels packaged body-only --window 200000 \
        --out $V/update_health.csv
"""

import argparse
import glob
import os

import numpy as np
import pandas as pd
from _common import write_csv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = {
    "return": "rollout/iteration_ep_rew_mean",
    "approx_kl": "train/sub/approx_kl",
    "clip_fraction": "train/sub/clip_fraction",
    "std": "train/sub/std",
}


def read_scalars(run_folder: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """
    :param run_folder: A run folder (its TensorBoard events are in ``MLSH_<n>/``).
    :return: For each of :data:`TAGS`, the steps and values recorded.
    """
    events = sorted(glob.glob(os.path.join(run_folder, "MLSH_*", "events.out.tfevents.*")))
    if not events:
        raise FileNotFoundError(f"No TensorBoard events under {run_folder}/MLSH_*: is it a run folder of sb3_mlsh.train?")
    scalars: dict[str, tuple[list[int], list[float]]] = {name: ([], []) for name in TAGS}
    for path in events:
        accumulator = EventAccumulator(path, size_guidance={"scalars": 0})
        accumulator.Reload()
        available = set(accumulator.Tags()["scalars"])
        for name, tag in TAGS.items():
            if tag in available:
                for event in accumulator.Scalars(tag):
                    scalars[name][0].append(event.step)
                    scalars[name][1].append(event.value)
    result = {name: (np.array(steps), np.array(values)) for name, (steps, values) in scalars.items()}
    iterations = read_iteration_returns(run_folder)
    if iterations is not None:
        result["return"] = iterations
    return result


def read_iteration_returns(run_folder: str) -> tuple[np.ndarray, np.ndarray] | None:
    """
    The returns of every iteration, from the run's ``iterations.csv``: TensorBoard holds them only for the iterations it
    dumped (every ``--log-interval``), and a dump on an iteration in which no episode ended records none. After a
    resume the dumps count from the resumed iteration, so that with 1,000-step episodes and 500-step iterations every
    dump can miss.

    :param run_folder: A run folder of ``python -m sb3_mlsh.train``.
    :return: The steps and mean episode returns of the iterations in which episodes ended; None without the file.
    """
    path = os.path.join(run_folder, "iterations.csv")
    if not os.path.exists(path):
        return None
    table = pd.read_csv(path)
    ended = table[table["episodes"] > 0]
    return ended["timesteps"].to_numpy(), ended["episode_return_mean"].to_numpy(dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--labels", nargs="+", default=None, help="a label per run (default: the folder names)")
    parser.add_argument("--window", type=int, default=200_000, help="steps per row")
    parser.add_argument("--out", default=None, help="CSV to write")
    args = parser.parse_args()
    labels = args.labels or [os.path.basename(os.path.normpath(run)) for run in args.runs]
    rows = []
    for label, run in zip(labels, args.runs):
        scalars = read_scalars(run)
        last = max((steps.max() for steps, _ in scalars.values() if len(steps)), default=0)
        for start in range(0, int(last), args.window):
            row: dict = {"run": label, "from_step": start, "to_step": start + args.window}
            for name, (steps, values) in scalars.items():
                inside = values[(steps > start) & (steps <= start + args.window)]
                statistic = np.mean if name == "return" else np.median
                row[name] = round(float(statistic(inside)), 4) if len(inside) else float("nan")
            rows.append(row)
    header = f"{'run':>12} {'steps':>13} {'return':>9} {'approx_kl':>11} {'clip_fraction':>13} {'std':>7}"
    print(header)
    for row in rows:
        steps = f"{row['from_step'] / 1e6:g}-{row['to_step'] / 1e6:g} M"
        print(
            f"{row['run']:>12} {steps:>13} {row['return']:>9.1f} {row['approx_kl']:>11.3g} {row['clip_fraction']:>13.2f} "
            f"{row['std']:>7.3f}"
        )
    if args.out:
        write_csv(rows, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
