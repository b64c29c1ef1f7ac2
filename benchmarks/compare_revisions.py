"""
Training speed of two revisions of sb3_mlsh side by side, in one run: for a refactoring, "speed does not regress" is a
ratio measured under the same machine load, not two numbers from different days.

    python benchmarks/compare_revisions.py --before 9071191 --envs mlsh/MovementBandits-v0 --rounds 3

Each round runs this tree's ``benchmarks/throughput.py --rounds 1`` (SB3 PPO, MLSH in warmup and in all-joint
iterations, the family's schedule) once with each revision's package, the two alternating, in fresh processes: the same
measurement of two packages. The revision ``--before`` is checked out with ``git worktree`` into a temporary folder
(removed at the end); "after" is the working tree. ``--clock cpu`` (the default) counts steps per second of each
process's CPU time, which other processes on the cores disturb much less than the wall clock.
Prints and writes the median over rounds of each revision's steps per second, the MLSH / PPO ratios of each, and
after / before. Writes benchmarks/results/speed/before_after.csv.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from _common import finish, print_row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURES = ("ppo_sps", "mlsh_warmup_sps", "mlsh_all_joint_sps", "mlsh_sps")


def measure(tree: str, env_ids: list[str], timesteps: int, clock: str) -> list[dict[str, str]]:
    """:return: One throughput.py row per env, measured with the sb3_mlsh package of ``tree``."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "throughput.csv")
        command = [sys.executable, os.path.join(ROOT, "benchmarks", "throughput.py"), "--envs", *env_ids]
        command += ["--rounds", "1", "--timesteps", str(timesteps), "--clock", clock, "--out", out]
        environment = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
        check = [sys.executable, "-c", "import sb3_mlsh; print(sb3_mlsh.__file__)"]
        package = subprocess.run(check, env=environment, cwd=tree, capture_output=True, text=True, check=True).stdout.strip()
        if not package.startswith(tree):
            raise RuntimeError(f"{tree}: PYTHONPATH did not select its package (got {package}).")
        subprocess.run(command, env=environment, cwd=tree, check=True, stdout=subprocess.DEVNULL)
        with open(out) as file:
            return list(csv.DictReader(file))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision measured as 'before'")
    parser.add_argument("--envs", nargs="+", default=["mlsh/MovementBandits-v0"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=24_000)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="steps per second of CPU or wall time")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "speed", "before_after.csv"))
    args = parser.parse_args()
    started = time.time()
    before_tree = tempfile.mkdtemp(prefix="sb3_mlsh_before_")
    add = ["git", "-C", ROOT, "worktree", "add", "--detach", before_tree, args.before]
    subprocess.run(add, check=True, capture_output=True)
    trees = {"before": before_tree, "after": ROOT}
    rates: dict[tuple[str, str, str], list[float]] = {}
    try:
        for round_index in range(args.rounds):
            order = list(trees) if round_index % 2 == 0 else list(reversed(trees))
            for name in order:
                for row in measure(trees[name], args.envs, args.timesteps, args.clock):
                    for key in MEASURES:
                        rates.setdefault((row["env"], name, key), []).append(float(row[key]))
            print(f"round {round_index + 1}/{args.rounds} done ({time.time() - started:.0f} s)", flush=True)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", before_tree], check=False)
    rows = []
    for env_id in args.envs:
        median = {(name, key): float(np.median(rates[(env_id, name, key)])) for name in trees for key in MEASURES}
        row: dict[str, object] = {"env": env_id, "before": args.before, "rounds": args.rounds, "timesteps": args.timesteps}
        row["clock"] = args.clock
        for name in trees:
            for key in MEASURES:
                row[f"{name}_{key}"] = round(median[(name, key)])
            row[f"{name}_all_joint_over_ppo"] = round(median[(name, "mlsh_all_joint_sps")] / median[(name, "ppo_sps")], 2)
            row[f"{name}_schedule_over_ppo"] = round(median[(name, "mlsh_sps")] / median[(name, "ppo_sps")], 2)
        for key in MEASURES[1:]:
            row[f"after_over_before_{key.removesuffix('_sps')}"] = round(median[("after", key)] / median[("before", key)], 3)
        rows.append(row)
        print_row(row)
    finish(rows, args.out, started)


if __name__ == "__main__":
    main()
