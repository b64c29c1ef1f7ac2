"""
The Python API against the command line, on the same machine in one run: steps per second of the README's "API in
ten lines" model (``MLSH(...).learn``, whose ``torch_threads=1`` default picks the thread count the CLI uses) and of
``python -m sb3_mlsh.train`` on the same settings, alternated, each in a fresh process.

    python benchmarks/api_speed.py --timesteps 50000 --rounds 2
"""

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

API = """
import time
from sb3_mlsh import MLSH
from sb3_mlsh import make_task_sampler
model = MLSH("MlpPolicy", make_task_sampler("mlsh/MovementBandits-v0", split="train"), n_subpolicies=2, macro_duration=10,
             warmup_iterations=2, master_kwargs=dict(learning_rate=0.03, clip_range=0.5),
             subpolicy_kwargs=dict(learning_rate=1e-3, batch_size=250), policy_kwargs=dict(share_scaled_steps=True),
             n_steps=250, n_envs=8, seed=0, {threads})
start = time.time()
model.learn(total_timesteps={timesteps})
print("steps/s", {timesteps} / (time.time() - start))
"""


def api(timesteps: int, threads: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", API.format(timesteps=timesteps, threads=threads)], capture_output=True, text=True
    )
    return float(re.search(r"steps/s ([0-9.]+)", out.stdout).group(1))  # type: ignore[union-attr]


def cli(timesteps: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "sb3_mlsh.train", "--env", "mlsh/MovementBandits-v0", "-n", str(timesteps), "-f",
                   folder, "--no-progress", "--verbose", "0", "--save-freq", "0"]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True)
    return float(re.search(r"\(([0-9]+) steps/s\)", out.stdout).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--with-torch-default", action="store_true", help="also the API with torch_threads=None")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"API (torch_threads=1, the default)": [], "CLI": []}
    if args.with_torch_default:
        rates["API (torch_threads=None: torch's default threads)"] = []
    started = time.time()
    for _ in range(args.rounds):
        rates["API (torch_threads=1, the default)"].append(api(args.timesteps, "torch_threads=1"))
        rates["CLI"].append(cli(args.timesteps))
        if args.with_torch_default:
            rates["API (torch_threads=None: torch's default threads)"].append(api(args.timesteps, "torch_threads=None"))
    print("command: python " + " ".join(sys.argv))
    print("| path | steps/s per round | mean | vs CLI |\n| --- | --- | --- | --- |")
    cli_mean = float(np.mean(rates["CLI"]))
    for name, values in rates.items():
        print(
            f"| {name} | {', '.join(f'{v:.0f}' for v in values)} | {np.mean(values):.0f} | {np.mean(values) / cli_mean:.2f} |"
        )
    print(f"{time.time() - started:.0f} s; {platform.machine()}, {os.cpu_count()} cores; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
