"""
Scaling across processes: primitive env steps per second of MLSH with 1 and 2 processes (torchrun, gloo, the same
per-process n_envs and n_steps, one torch thread each), the cost of each all-reduce, and a projection to 120 ranks.

    python benchmarks/scaling.py                                   # MovementBandits
    python benchmarks/scaling.py --envs mlsh/MovementBandits-v0 mlsh/KeyDoor-v0 --timesteps 24000

Layouts timed: 1 process (G = 1, the plain single-process code), 2 processes with G = 2 (a group per process: only
the sub-policies are all-reduced) and 2 processes with G = 1 (one group over both: the master is all-reduced too).
Each with the family's schedule from the packaged YAML and with W = 0 (every iteration updates the sub-policies: the
most communication). Rounds alternate the layouts so that all see the same machine load; medians are reported.

Each process also measures its own time in rollouts, in updates and in all-reduces (calls, bytes), and its CPU time per
iteration: since the processes meet every iteration, the sum over iterations of the largest CPU time of any process
estimates the wall time on cores that nothing else uses (``idle_*_estimate``; it leaves out communication latency).
The 2-process runs time gloo all-reduces of several sizes on loopback (fastest of many calls) to fit the ring model
t(bytes, P) = 2 (P - 1) latency + 2 (P - 1) / P * bytes / bandwidth. The projection to P ranks puts the measured
per-process compute of one iteration next to that model's communication for the same per-iteration collectives.
Writes benchmarks/results/speed/scaling.csv and scaling_projection.csv.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FAMILIES = ("mlsh/MovementBandits-v0",)
LAYOUTS = ((1, 1), (2, 2), (2, 1))  # (processes, task groups)
PROBE_FLOATS = (1, 1_000, 10_000, 100_000, 1_000_000)


# ------------------------------------------------------------------------------------------------- one process
def _worker(args: argparse.Namespace) -> None:
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback

    import mlsh_envs  # noqa: F401  (registers the families)
    from sb3_mlsh import MLSH
    from sb3_mlsh.cli.hyperparams import load_hyperparams, parse_hyperparams
    from sb3_mlsh.distributed import launch as mlsh_distributed

    th.set_num_threads(1)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    class RolloutTimer(BaseCallback):
        """Wall time in rollouts, and this process's CPU time per iteration (it does not count waits in collectives)."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds = 0.0
            self.iterations = 0
            self.cpu_marks: list[float] = []

        def _on_training_start(self) -> None:
            self.cpu_marks.append(time.process_time())

        def _on_training_end(self) -> None:
            self.cpu_marks.append(time.process_time())

        def _on_rollout_start(self) -> None:
            self.started = time.perf_counter()
            if self.iterations:
                self.cpu_marks.append(time.process_time())

        def _on_rollout_end(self) -> None:
            self.seconds += time.perf_counter() - self.started
            self.iterations += 1

        def _on_step(self) -> bool:
            return True

    kwargs, _, _ = parse_hyperparams(load_hyperparams(args.env), args.env)
    kwargs["task_groups"] = args.task_groups
    if args.all_joint:
        kwargs.update(warmup_iterations=0, joint_iterations=max(kwargs.get("joint_iterations", 1), 1))
    model = MLSH("MlpPolicy", args.env, seed=0, device="cpu", **kwargs)
    timer = RolloutTimer()
    if world_size > 1:
        th.distributed.barrier()
    start = time.perf_counter()
    model.learn(args.timesteps * world_size, callback=timer)
    elapsed = time.perf_counter() - start
    report: dict[str, Any] = {
        "rank": rank,
        "seconds": elapsed,
        "timesteps": model.num_timesteps,
        "iterations": model.iteration,
        "rollout_seconds": timer.seconds,
        "cpu_seconds_per_iteration": np.diff(timer.cpu_marks).tolist(),
        "n_envs": model.n_envs,
        "n_steps": model.n_steps,
        "n_subpolicies": model.n_subpolicies,
        "subpolicy_parameters": model.policy.theta.numel(),
        "master_parameters": sum(p.numel() for p in model.master.policy.parameters()),
    }
    if model.context.distributed:
        report["comm"] = model.context.comm_stats
        probe = {}
        for n in PROBE_FLOATS:
            tensor = th.zeros(n)
            for _ in range(5):
                th.distributed.all_reduce(tensor)
            timings = []
            for _ in range(50 if n <= 100_000 else 10):
                th.distributed.barrier()
                began = time.perf_counter()
                th.distributed.all_reduce(tensor)
                timings.append(time.perf_counter() - began)
            # The fastest call: the least disturbed by other jobs on the cores.
            probe[n * 4] = min(timings)
        report["probe"] = probe
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as file:
        json.dump(report, file)
    # Without the barrier inside, gloo's threads can abort the interpreter at exit ("terminate called without an
    # active exception").
    mlsh_distributed.destroy_process_group()


# ------------------------------------------------------------------------------------------------------ driver
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(env_id: str, processes: int, task_groups: int, all_joint: bool, timesteps: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="mlsh-scaling-") as out:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={processes}",
            "--master_addr=127.0.0.1", f"--master_port={_free_port()}", os.path.abspath(__file__), "--worker",
            "--env", env_id, "--task-groups", str(task_groups), "--timesteps", str(timesteps), "--out", out,
        ] + (["--all-joint"] if all_joint else [])  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        reports = []
        for rank in range(processes):
            with open(os.path.join(out, f"rank{rank}.json")) as file:
                reports.append(json.load(file))
        return reports


def fit_ring(probe: dict[str, float], processes: int = 2) -> tuple[float, float]:
    """
    :param probe: Seconds per all-reduce by message size in bytes, measured with ``processes`` ranks.
    :return: Latency (s) and bandwidth (bytes/s) of the ring model, least squares.
    """
    sizes = np.array([float(b) for b in probe])
    times = np.array(list(probe.values()))
    design = np.stack([np.full_like(sizes, 2 * (processes - 1)), 2 * (processes - 1) / processes * sizes], axis=1)
    (latency, inverse_bandwidth), *_ = np.linalg.lstsq(design, times, rcond=None)
    return max(float(latency), 1e-7), 1.0 / max(float(inverse_bandwidth), 1e-15)


def ring_seconds(n_bytes: float, processes: int, latency: float, bandwidth: float) -> float:
    """:return: Seconds of one ring all-reduce of ``n_bytes`` over ``processes`` ranks."""
    if processes <= 1:
        return 0.0
    return 2 * (processes - 1) * latency + 2 * (processes - 1) / processes * n_bytes / bandwidth


def project(
    rows: list[dict[str, Any]], processes: int, task_groups: int, network: tuple[float, float]
) -> list[dict[str, Any]]:
    """
    Throughput of ``processes`` ranks in ``task_groups`` groups (``processes / task_groups`` ranks share a master), from
    the 2-process runs with one group over both processes (both kinds of gradient all-reduce measured) and W = 0: with
    at least W + U staggered groups, some group is in its joint phase at every iteration, so that every iteration
    carries a whole sub-policy update, on which all ranks wait.

    :param rows: Measured rows.
    :param processes: Ranks P.
    :param task_groups: Groups G.
    :param network: Latency (s) and bandwidth (bytes/s) between machines.
    :return: One row per measured source row and network (the loopback fit, and ``network``).
    """
    projections = []
    for row in rows:
        if int(row["processes"]) != 2 or int(row["task_groups"]) != 1 or row["schedule"] != "W=0":
            continue
        for name, (latency, bandwidth) in (
            ("loopback", (float(row["loopback_latency_us"]) * 1e-6, float(row["loopback_bandwidth_MBps"]) * 1e6)),
            ("assumed", network),
        ):
            sub = ring_seconds(float(row["subpolicy_bytes_per_allreduce"]), processes, latency, bandwidth)
            master = ring_seconds(float(row["master_bytes_per_allreduce"]), processes // task_groups, latency, bandwidth)
            sync = ring_seconds(8.0 * (task_groups + 1), processes, latency, bandwidth)
            comm = (
                float(row["sub_allreduces_per_iteration"]) * sub
                + float(row["master_allreduces_per_iteration"]) * master
                + float(row["sync_allreduces_per_iteration"]) * sync
            )
            compute = float(row["compute_ms_per_iteration"]) / 1000
            steps = processes * int(row["n_envs_per_process"]) * int(row["n_steps"])
            projections.append(
                {
                    "env": row["env"],
                    "network": name,
                    "latency_us": round(latency * 1e6, 1),
                    "bandwidth_MBps": round(bandwidth / 1e6),
                    "ranks": processes,
                    "groups": task_groups,
                    "subpolicy_allreduce_ms": round(sub * 1000, 2),
                    "master_allreduce_ms": round(master * 1000, 2),
                    "compute_ms_per_iteration": round(compute * 1000, 1),
                    "comm_ms_per_iteration": round(comm * 1000, 1),
                    "steps_per_s": round(steps / (compute + comm)),
                    "efficiency": round(compute / (compute + comm), 3),
                }
            )
    return projections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(FAMILIES), help="env ids")
    parser.add_argument("--timesteps", type=int, default=24_000, help="primitive steps per process per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (median reported)")
    parser.add_argument("--project-to", type=int, default=120, help="ranks of the projection")
    parser.add_argument("--project-groups", type=int, default=10, help="task groups of the projection")
    parser.add_argument(
        "--network",
        nargs=2,
        type=float,
        default=(50e-6, 1.25e9),
        metavar=("LATENCY_S", "BYTES_PER_S"),
        help="latency and bandwidth of the projection's network between machines (default: 10 GbE, 50 us)",
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results", "speed", "scaling.csv"))
    parser.add_argument("--from-csv", default=None, help="only redo the projection from a scaling.csv already measured")
    # Worker mode, run by torchrun.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--env", help=argparse.SUPPRESS)
    parser.add_argument("--task-groups", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--all-joint", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    sys.path.insert(0, HERE)
    from _common import machine, write_csv

    if args.from_csv is not None:
        import csv

        with open(args.from_csv) as file:
            projections = project(list(csv.DictReader(file)), args.project_to, args.project_groups, tuple(args.network))
        for projection in projections:
            print("projection " + " ".join(f"{key}={value}" for key, value in projection.items()))
        write_csv(projections, args.from_csv.replace(".csv", "_projection.csv"))
        return
    started = time.time()
    load_before = os.getloadavg()
    rows = []
    for env_id in args.envs:
        for all_joint in (False, True):
            runs: dict[tuple[int, int], list[list[dict[str, Any]]]] = {layout: [] for layout in LAYOUTS}
            for _ in range(args.rounds):
                for processes, task_groups in LAYOUTS:
                    runs[processes, task_groups].append(_launch(env_id, processes, task_groups, all_joint, args.timesteps))
            single = float(np.median([r[0]["timesteps"] / max(rep["seconds"] for rep in r) for r in runs[1, 1]]))
            for (processes, task_groups), reports in runs.items():
                # A run is as fast as its slowest process (they meet at every collective).
                rates = [r[0]["timesteps"] / max(rep["seconds"] for rep in r) for r in reports]
                last = reports[-1]
                rank0 = last[0]
                iterations = rank0["iterations"]
                row: dict[str, Any] = {
                    "env": env_id,
                    "schedule": "W=0" if all_joint else "yaml",
                    "processes": processes,
                    "task_groups": task_groups,
                    "n_envs_per_process": rank0["n_envs"],
                    "n_steps": rank0["n_steps"],
                    "timesteps_per_process": args.timesteps,
                    "steps_per_s": round(float(np.median(rates))),
                    "speedup": round(float(np.median(rates)) / single, 2),
                    "iteration_ms": round(1000 * rank0["seconds"] / iterations, 1),
                    "rollout_ms_per_iteration": round(1000 * rank0["rollout_seconds"] / iterations, 1),
                    # One float32 message per minibatch: the gradients plus the K sample counts (the master's: plus 1).
                    "subpolicy_bytes_per_allreduce": 4 * (rank0["subpolicy_parameters"] + rank0["n_subpolicies"]),
                    "master_bytes_per_allreduce": 4 * (rank0["master_parameters"] + 1),
                }
                for name in ("sub", "master", "sync"):
                    comm = rank0.get("comm", {}).get(name, {"seconds": 0.0, "calls": 0, "bytes": 0})
                    row[f"{name}_allreduces_per_iteration"] = round(comm["calls"] / iterations, 2)
                    row[f"{name}_allreduce_ms"] = round(1000 * comm["seconds"] / max(comm["calls"], 1), 3)
                    row[f"{name}_bytes_per_iteration"] = round(comm["bytes"] / iterations)
                # Idle-machine estimate: the processes meet every iteration, so an iteration lasts as long as the largest
                # CPU time any process spent on it (CPU time leaves out the waits that other jobs on the cores cause).
                critical = np.max([rep["cpu_seconds_per_iteration"] for rep in last], axis=0).sum()
                row["cpu_critical_path_s"] = round(float(critical), 2)
                row["idle_steps_per_s_estimate"] = round(rank0["timesteps"] / critical)
                comm_seconds = sum(c["seconds"] for c in rank0.get("comm", {}).values())
                row["compute_ms_per_iteration"] = round(1000 * (rank0["seconds"] - comm_seconds) / iterations, 1)
                row["loopback_latency_us"] = row["loopback_bandwidth_MBps"] = ""
                if "probe" in rank0:
                    latency, bandwidth = fit_ring(rank0["probe"], processes)
                    row["loopback_latency_us"] = round(1e6 * latency, 1)
                    row["loopback_bandwidth_MBps"] = round(bandwidth / 1e6)
                rows.append(row)
    single = {(row["env"], row["schedule"]): row["idle_steps_per_s_estimate"] for row in rows if row["processes"] == 1}
    for row in rows:
        row["idle_speedup_estimate"] = round(row["idle_steps_per_s_estimate"] / single[row["env"], row["schedule"]], 2)
        print(" ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    projections = project(rows, args.project_to, args.project_groups, tuple(args.network))
    for projection in projections:
        print("projection " + " ".join(f"{key}={value}" for key, value in projection.items()), flush=True)
    write_csv(rows, args.out)
    write_csv(projections, args.out.replace(".csv", "_projection.csv"))
    print(
        f"machine: {machine()}; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"{time.time() - started:.0f} s in all; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
