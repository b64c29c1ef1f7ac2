"""Plots people look at, from the command line.

Example::

    python -m sb3_mlsh.plot logs/mlsh/mlsh-MovementBandits-v0_1 logs/ppo/MovementBandits_1 --out bandits.png

draws the learning curves of all runs on one figure (``bandits.png``), the sub-policy usage over training of each MLSH
run (``bandits_usage_<run>.png``) and, for a run of a 2D or grid family (MovementBandits, KeyDoor, FourRooms) with a
saved model, episodes coloured by the active sub-policy (``bandits_trajectories_<run>.png``).
"""

import argparse
import os

from sb3_mlsh.common.plotting import plot_learning_curves, plot_subpolicy_usage, plot_trajectories

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """:return: The parser of ``python -m sb3_mlsh.plot``."""
    parser = argparse.ArgumentParser(prog="python -m sb3_mlsh.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_FOLDER", help="Run folders with Monitor CSVs (MLSH and baselines).")
    parser.add_argument("--out", type=str, default=None, help="PNG of the learning curves (default: <first run>/curves.png).")
    parser.add_argument("--labels", nargs="+", default=None, help="Legend of each run (default: the folder names).")
    parser.add_argument("--window", type=int, default=100, help="Episodes in the rolling mean.")
    parser.add_argument("--episodes", type=int, default=4, help="Episodes drawn in each trajectory picture.")
    parser.add_argument("--no-trajectories", action="store_true", help="Do not draw trajectories from saved models.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the trajectory episodes.")
    parser.add_argument(
        "--adapt",
        type=int,
        default=10_000,
        metavar="STEPS",
        help="Before each trajectory, train a fresh master on its task for this many steps (0: the saved master).",
    )
    return parser


def _model_of(run: str) -> str | None:
    for name in ("model.zip", *sorted(f for f in os.listdir(run) if f.endswith(".zip"))):
        if os.path.isfile(os.path.join(run, name)):
            return os.path.join(run, name)
    return None


def main(argv: list[str] | None = None) -> list[str]:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``).
    :return: The PNG files written.
    """
    args = build_parser().parse_args(argv)
    for run in args.runs:
        if not os.path.isdir(run):
            raise FileNotFoundError(f"{run} is not a run folder.")
    if args.labels is not None and len(args.labels) != len(args.runs):
        raise ValueError(f"--labels needs one label per run ({len(args.runs)}), got {len(args.labels)}.")
    out = args.out or os.path.join(args.runs[0], "curves.png")
    stem = os.path.splitext(out)[0]
    written = [plot_learning_curves(args.runs, out, labels=args.labels, window=args.window)]
    for run in args.runs:
        name = os.path.basename(os.path.normpath(run))
        usage = plot_subpolicy_usage(run, f"{stem}_usage_{name}.png")
        if usage is None:
            continue  # not an MLSH run
        written.append(usage)
        model = None if args.no_trajectories else _model_of(run)
        if model is None:
            continue
        from sb3_mlsh.mlsh import MLSH

        loaded = MLSH.load(model)
        try:
            written.append(
                plot_trajectories(
                    loaded, f"{stem}_trajectories_{name}.png", args.episodes, seed=args.seed, adapt_steps=args.adapt
                )
            )
        except TypeError as error:  # a family without positions (e.g. the MuJoCo ones)
            print(f"No trajectories for {name}: {error}")
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
