"""
Training throughput: primitive env steps per second of MLSH and of plain SB3 PPO on the same env, with the same
n_envs, n_steps, minibatch size and epochs, in one run; plus the raw env with random actions (the limit).

    python benchmarks/throughput.py                       # MovementBandits, KeyDoor, FourRooms
    python benchmarks/throughput.py --envs all --timesteps 32000
    python benchmarks/throughput.py --envs mlsh/FourRooms-v0 -params skill_diversity:0.1 --out /tmp/diversity.csv

MLSH is timed in its two kinds of iteration: warmup (U = 0: only the masters learn) and joint (W = 0: every iteration
also updates the sub-policies, the worst case). An iteration costs the same whichever task it is on, so the speed of
the family's schedule from the packaged YAML (W warmup then U joint iterations per task) follows exactly from the two:
``(W + U) / (W / warmup + U / joint)``; a timed run of a few iterations would see only the start of the schedule.
Methods alternate within each round so that all see the same machine load; the median over rounds is reported.
Writes benchmarks/results/speed/throughput.csv.
"""

import argparse
import os
import time
from typing import Any

import numpy as np
import torch as th
from _common import finish, print_row
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import mlsh_envs
from sb3_mlsh import MLSH
from sb3_mlsh.cli.hyperparams import load_hyperparams, override_hyperparams, parse_hyperparams

GRID_FAMILIES = ("mlsh/MovementBandits-v0", "mlsh/KeyDoor-v0", "mlsh/FourRooms-v0")


def _learner_settings(
    env_id: str, n_envs: int | None, n_steps: int | None, overrides: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    kwargs, _, _ = parse_hyperparams(override_hyperparams(load_hyperparams(env_id), overrides), env_id)
    if n_envs is not None:
        kwargs["n_envs"] = n_envs
    if n_steps is not None:
        kwargs["n_steps"] = n_steps
    sub = {"batch_size": 256, "n_epochs": 10, **kwargs.get("subpolicy_kwargs", {})}
    ppo = dict(n_steps=kwargs["n_steps"], batch_size=sub["batch_size"], n_epochs=sub["n_epochs"], gamma=0.99, gae_lambda=0.98)
    return kwargs, ppo


#: What the rates are per second of: wall-clock time, or this process's CPU time (``--clock cpu``: less sensitive to
#: other processes on the cores, which stretch the wall clock but not the work done).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def raw_env_rate(env_id: str, n_envs: int, timesteps: int) -> float:
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    env.reset()
    actions = [np.stack([env.action_space.sample() for _ in range(n_envs)]) for _ in range(timesteps // n_envs)]
    start = clock()
    for action in actions:
        env.step(action)
    elapsed = clock() - start
    env.close()
    return len(actions) * n_envs / elapsed


def ppo_rate(env_id: str, n_envs: int, settings: dict[str, Any], timesteps: int) -> float:
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    model = PPO("MlpPolicy", env, seed=0, device="cpu", **settings)
    start = clock()
    model.learn(timesteps)
    return model.num_timesteps / (clock() - start)


def mlsh_rate(env_id: str, kwargs: dict[str, Any], timesteps: int) -> float:
    model = MLSH("MlpPolicy", env_id, seed=0, device="cpu", **kwargs)
    start = clock()
    model.learn(timesteps)
    return model.num_timesteps / (clock() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(GRID_FAMILIES), help="env ids, or 'all'")
    parser.add_argument("--timesteps", type=int, default=40_000, help="primitive steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    parser.add_argument("--n-envs", type=int, default=None, help="override the YAML's n_envs")
    parser.add_argument("--n-steps", type=int, default=None, help="override the YAML's n_steps (D)")
    parser.add_argument("--hyperparams", "-params", nargs="+", default=[], metavar="KEY:VALUE", help="YAML overrides")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help="steps per second of wall or CPU time")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "speed", "throughput.csv"))
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    th.set_num_threads(1)
    env_ids = list(mlsh_envs.ENV_IDS) if args.envs == ["all"] else args.envs
    rows = []
    started = time.time()
    for env_id in env_ids:
        kwargs, ppo_settings = _learner_settings(env_id, args.n_envs, args.n_steps, args.hyperparams)
        # At least two full iterations, so that each method trains.
        timesteps = max(args.timesteps, 2 * kwargs["n_envs"] * kwargs["n_steps"])
        warmup, joint = kwargs.get("warmup_iterations", 0), kwargs.get("joint_iterations", 1)
        all_warmup = {**kwargs, "warmup_iterations": 1, "joint_iterations": 0}
        all_joint = {**kwargs, "warmup_iterations": 0, "joint_iterations": 1}
        rates: dict[str, list[float]] = {"env": [], "ppo": [], "mlsh_warmup": [], "mlsh_all_joint": []}
        for _ in range(args.rounds):
            rates["env"].append(raw_env_rate(env_id, kwargs["n_envs"], timesteps))
            rates["ppo"].append(ppo_rate(env_id, kwargs["n_envs"], ppo_settings, timesteps))
            rates["mlsh_warmup"].append(mlsh_rate(env_id, all_warmup, timesteps))
            rates["mlsh_all_joint"].append(mlsh_rate(env_id, all_joint, timesteps))
        median = {key: float(np.median(values)) for key, values in rates.items()}
        median["mlsh"] = (warmup + joint) / (warmup / median["mlsh_warmup"] + joint / median["mlsh_all_joint"])
        row = {
            "env": env_id,
            "n_envs": kwargs["n_envs"],
            "n_steps": kwargs["n_steps"],
            "batch_size": ppo_settings["batch_size"],
            "n_epochs": ppo_settings["n_epochs"],
            "W": warmup,
            "U": joint,
            "timesteps": timesteps,
            "clock": args.clock,
            "env_random_sps": round(median["env"]),
            "ppo_sps": round(median["ppo"]),
            "mlsh_warmup_sps": round(median["mlsh_warmup"]),
            "mlsh_sps": round(median["mlsh"]),
            "mlsh_all_joint_sps": round(median["mlsh_all_joint"]),
            "mlsh_over_ppo": round(median["mlsh"] / median["ppo"], 2),
            "mlsh_all_joint_over_ppo": round(median["mlsh_all_joint"] / median["ppo"], 2),
            "mlsh_over_env": round(median["mlsh"] / median["env"], 3),
        }
        rows.append(row)
        print_row(row)
    finish(rows, args.out, started)


if __name__ == "__main__":
    main()
