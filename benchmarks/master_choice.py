"""
Does the master pick the right sub-policy? For a meta-trained model, the "right" sub-policy of a task is the one with
the highest return when it acts alone for a whole episode (deterministic). Two measurements:

``meta RUN_FOLDER ...``: replays the run's task draws (the schedule's generator, seeded as the run was: the replay is
checked against the saved model's generator state) and reads each iteration's sub-policy usage from its
``iterations.csv``: the share of joint-phase steps that went to the task's right sub-policy, per task. Near 0.5 the
sub-policies learn from both tasks alike and cannot specialise. With several task groups, per group and task, from the
per-group columns that ``iterations.csv`` has for such runs (the groups' tasks replayed in the order they started).

``probe MODEL ...``: fresh masters with the given settings over the model's frozen sub-policies (``adapt``), on each
task, several master seeds: the right sub-policy's share of the steps and the mean return, per iteration, and the
entropy and approximate KL of the master's update after it (a master near-deterministic after its first update
settles on what its first iteration's macro-steps happened to favour).

``bound MODEL ...``: what the best possible master could score over a fresh master's first iterations. A scripted
master picks uniformly at random during its first ``c`` iterations (before its first update it has seen no reward, and
the task is latent) and the right sub-policy ever after; the frozen sub-policies act as in ``adapt`` (sampled) or by
their mode. Reports the mean final distance of the episodes that end within the first ``--iterations`` iterations,
each env of the model's ``n_envs`` x ``n_steps`` rollout running its episodes back to back as in training.

    python benchmarks/master_choice.py meta logs/mlsh/mlsh-AntTwowalk-v0_1
    python benchmarks/master_choice.py probe logs/mlsh/mlsh-AntTwowalk-v0_1/model.zip --iterations 6 --repeats 3 \\
        --master yaml: "paper:learning_rate=0.01,clip_range=0.2,batch_size=64"
    python benchmarks/master_choice.py bound seed0:logs/mlsh/mlsh-AntTwowalk-v0_1/model.zip --iterations 5

Writes a CSV next to ``--out`` and prints the table with the command and the machine.
"""

import argparse
import ast
import os
import platform
import sys
import time

import gymnasium as gym
import numpy as np
import pandas as pd
import torch as th
import yaml
from ant_skills import family_tasks, run_subpolicy
from stable_baselines3.common.callbacks import BaseCallback

import mlsh_envs  # noqa: F401  (registers the families)
from sb3_mlsh import MLSH
from sb3_mlsh.cli.hyperparams import parse_hyperparams


def alone_returns(model: MLSH, env_id: str, tasks: list) -> np.ndarray:
    """:return: [sub-policy, task] return of one deterministic episode of the sub-policy alone (ant_skills.py's)."""
    env = gym.make(env_id)
    returns = np.array([[run_subpolicy(model, env, task, k)["ret"] for task in tasks] for k in range(model.n_subpolicies)])
    env.close()
    return returns


def fresh_model(run_folder: str) -> MLSH:
    """:return: A model built with the run's config and seed, one env per task group (draws do not depend on the envs)."""
    with open(os.path.join(run_folder, "config.yml")) as file:
        config = yaml.safe_load(file)
    kwargs, _, policy = parse_hyperparams(dict(config["hyperparams"]), config["env"])
    kwargs["n_envs"] = kwargs.get("task_groups", 1)
    return MLSH(policy, config["env"], seed=config["seed"], verbose=0, **kwargs)


def replay_tasks(run_folder: str, n_tasks: int, model: MLSH) -> list:
    """:return: The run's first ``n_tasks`` tasks, drawn again from a model built with the run's config and seed."""
    if model.task_groups != 1:
        sys.exit(f"{run_folder}: {model.task_groups} task groups; this replay reads runs with one.")
    fresh = fresh_model(run_folder)
    group = fresh.schedule.groups[0]
    tasks = [fresh.schedule.draw_task(group) for _ in range(n_tasks)]
    saved = model.schedule.rngs[model.schedule.groups[0].index].bit_generator.state
    if fresh.schedule.rngs[group.index].bit_generator.state != saved or model.schedule.groups[0].task != tasks[-1]:
        sys.exit(f"{run_folder}: the replayed draws do not end where the saved model's do; is model.zip this run's end?")
    fresh.env.close()
    return tasks


def replay_group_tasks(run_folder: str, log: pd.DataFrame, model: MLSH) -> dict[int, list]:
    """
    :return: Each task group's tasks in the order it started them, drawn again from a model built with the run's config
        and seed. One process draws every group's tasks from one generator, in the order the groups start them: all
        groups at the start, then, iteration by iteration, the groups whose task count went up (in group order).
    """
    fresh = fresh_model(run_folder)
    n_groups = fresh.task_groups
    started = log[[f"group{g}_tasks_started" for g in range(n_groups)]].to_numpy()
    # After the last logged iteration, the groups whose task ended drew their next one (the saved model's counts).
    started = np.vstack([started, [group.tasks_started for group in model.schedule.groups]])
    order = list(range(n_groups))
    for before, after in zip(started[:-1], started[1:]):
        order += [g for g in range(n_groups) for _ in range(int(after[g] - before[g]))]
    tasks: dict[int, list] = {g: [] for g in range(n_groups)}
    for g in order:
        tasks[g].append(fresh.schedule.draw_task(fresh.schedule.groups[g]))
    same_draws = fresh.schedule.rng.bit_generator.state == model.schedule.rng.bit_generator.state
    if not same_draws or any(group.task != tasks[group.index][-1] for group in model.schedule.groups):
        sys.exit(f"{run_folder}: the replayed draws do not end where the saved model's do; is model.zip this run's end?")
    fresh.env.close()
    return tasks


def meta_groups(label: str, run_folder: str, model: MLSH, right: np.ndarray, tasks: list) -> list[dict]:
    """:return: One row per task group and task: the share of its joint-phase steps on the task's right sub-policy."""
    log = pd.read_csv(os.path.join(run_folder, "iterations.csv"))
    drawn = replay_group_tasks(run_folder, log, model)
    rows = []
    for g in range(model.task_groups):
        joint = log[log[f"group{g}_joint"] == 1]
        for number, part in joint.groupby(f"group{g}_tasks_started"):
            task = drawn[g][int(number) - 1]
            right_subpolicy = int(right[tasks.index(task)])
            share = float(part[f"group{g}_usage_{right_subpolicy}"].mean())
            first = int(part.timesteps.min())
            rows.append(
                dict(
                    run=label,
                    group=g,
                    task_index=int(number) - 1,
                    task=task,
                    right_subpolicy=right_subpolicy,
                    right_share=share,
                    first_timestep=first,
                )
            )
    return sorted(rows, key=lambda row: (row["first_timestep"], row["group"]))


def meta(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    labels = args.labels or [os.path.basename(os.path.normpath(run_folder)) for run_folder in args.runs]
    if len(labels) != len(args.runs):
        sys.exit(f"--labels: {len(labels)} labels for {len(args.runs)} runs")
    for label, run_folder in zip(labels, args.runs):
        model = MLSH.load(os.path.join(run_folder, "model.zip"), device="cpu")
        env_id = model.task_sampler.env_id
        tasks = family_tasks(env_id, "train")
        right = alone_returns(model, env_id, tasks).argmax(axis=0)
        if model.task_groups > 1:
            rows += meta_groups(label, run_folder, model, right, tasks)
            continue
        log = pd.read_csv(os.path.join(run_folder, "iterations.csv"))
        period = model.warmup_iterations + model.joint_iterations
        log["task_index"] = (log.iteration - 1) // period
        drawn = replay_tasks(run_folder, int(log.task_index.max()) + 1, model)
        joint = log[(log.iteration - 1) % period >= model.warmup_iterations]
        for index, part in joint.groupby("task_index"):
            task = drawn[index]
            right_subpolicy = int(right[tasks.index(task)])
            rows.append(
                dict(
                    run=label,
                    task_index=index,
                    task=task,
                    right_subpolicy=right_subpolicy,
                    right_share=float(part[f"subpolicy_usage_{right_subpolicy}"].mean()),
                    first_timestep=int(part.timesteps.min()),
                )
            )
    table = pd.DataFrame(rows)
    for run, part in table.groupby("run", sort=False):
        half = len(part) // 2
        print(
            f"{run}: {len(part)} tasks; right sub-policy's share of the joint-phase steps: first half "
            f"{part.right_share[:half].mean():.2f}, second half {part.right_share[half:].mean():.2f}; "
            f"tasks with >= 0.8 on the right one {np.mean(part.right_share >= 0.8):.2f}, on a wrong one "
            f"{np.mean(part.right_share <= 0.2):.2f}"
        )
    return table


def parse_master(text: str) -> tuple[str, dict]:
    """``label:key=value,key=value`` (values as Python literals) -> (label, master_kwargs overrides)."""
    label, _, body = text.partition(":")
    overrides = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        overrides[key.strip()] = ast.literal_eval(value.strip())
    return label, overrides


class MasterUpdates(BaseCallback):
    """Reads the master's update statistics (``train/master/entropy_loss`` and ``approx_kl``) after every update."""

    def __init__(self) -> None:
        super().__init__()
        self.rollouts = 0
        self.entropy: list[float] = []
        self.approx_kl: list[float] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        # From the second rollout on, this follows an update whose values are recorded and not yet dumped.
        self.rollouts += 1
        if self.rollouts > 1:
            recorded = self.logger.name_to_value
            self.entropy.append(-float(recorded.get("train/master/entropy_loss", np.nan)))
            self.approx_kl.append(float(recorded.get("train/master/approx_kl", np.nan)))


def fresh_master_updates(model: MLSH, task, steps: int) -> list[dict]:
    """
    :return: Per iteration of ``model.adapt(task, steps)``: each sub-policy's share of the steps (``usage``), the mean
        episode return, and the entropy and approximate KL of the master's update after that iteration (NaN after the
        last: ``adapt`` stops before it is read).
    """
    updates = MasterUpdates()
    model.adapt(task, steps, callback=updates)
    unread = len(model.iteration_log) - len(updates.entropy)
    readings = list(zip(updates.entropy, updates.approx_kl)) + [(np.nan, np.nan)] * unread
    return [
        dict(
            iteration=entry["iteration"],
            usage=entry["subpolicy_usage"],
            episode_return_mean=entry["episode_return_mean"],
            master_entropy=entropy,
            master_approx_kl=approx_kl,
        )
        for entry, (entropy, approx_kl) in zip(model.iteration_log, readings)
    ]


def probe(args: argparse.Namespace) -> pd.DataFrame:
    base = MLSH.load(args.model, device="cpu")
    env_id = base.task_sampler.env_id
    tasks = family_tasks(env_id, "train")
    right = alone_returns(base, env_id, tasks).argmax(axis=0)
    print(f"right sub-policy per task {dict(zip(tasks, right.tolist()))}")
    rows = []
    steps = args.iterations * base.n_envs * base.n_steps
    for label, overrides in map(parse_master, args.master):
        model = MLSH.load(args.model, device="cpu", verbose=0, master_kwargs={**base.master_kwargs, **overrides})
        for t, task in enumerate(tasks):
            for repeat in range(args.repeats):
                model.set_random_seed(1000 + repeat)
                for entry in fresh_master_updates(model, task, steps):
                    usage = entry.pop("usage")
                    rows.append(dict(master=label, task=task, repeat=repeat, right_share=usage[right[t]], **entry))
        model.env.close()
    table = pd.DataFrame(rows)
    by_iteration = table.groupby(["master", "iteration"], sort=False)
    summary = by_iteration.agg(
        right_share=("right_share", "mean"), ret=("episode_return_mean", "mean"), entropy=("master_entropy", "mean")
    )
    print(summary.unstack("iteration").round(2).to_string())
    return table


def scripted_master_distances(
    model: MLSH, env: gym.Env, task: int, right: int, chance_iterations: int, iterations: int, deterministic: bool, seed: int
) -> list[float]:
    """
    :return: Final distance of each episode that one env ends within ``iterations`` rollouts, under a master that
        picks at random in rollouts 1 to ``chance_iterations`` and ``right`` after; a macro-step is cut at the end of
        a rollout and the master decides again, as in training.
    """
    rng = np.random.default_rng(seed)
    env.get_wrapper_attr("set_task")(task)
    obs, _ = env.reset(seed=seed)
    distances, steps_left, subpolicy = [], 0, right
    for step in range(iterations * model.n_steps):
        if steps_left == 0 or step % model.n_steps == 0:
            at_chance = step // model.n_steps < chance_iterations
            subpolicy = int(rng.integers(model.n_subpolicies)) if at_chance else right
            steps_left = model.macro_duration
        obs, _, terminated, truncated, info = env.step(model.subpolicy_predict(obs, subpolicy, deterministic))
        steps_left -= 1
        if terminated or truncated:
            distances.append(float(info["distance"]))
            obs, _ = env.reset()
            steps_left = 0
    return distances


def bound(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    for item in args.models:
        label, _, path = item.rpartition(":")
        label = label or os.path.basename(path)
        model = MLSH.load(path, device="cpu")
        env_id = model.task_sampler.env_id
        tasks = family_tasks(env_id, "train")
        right = alone_returns(model, env_id, tasks).argmax(axis=0)
        env = gym.make(env_id)
        for deterministic in (False, True):
            for chance in args.chance_iterations:
                for t, task in enumerate(tasks):
                    for env_index in range(model.n_envs):
                        distances = scripted_master_distances(
                            model, env, task, int(right[t]), chance, args.iterations, deterministic, 100 * t + env_index
                        )
                        rows += [
                            dict(
                                model=label,
                                subpolicies="mode" if deterministic else "sampled",
                                chance_iterations=chance,
                                task=task,
                                env=env_index,
                                final_distance=d,
                            )
                            for d in distances
                        ]
        env.close()
    table = pd.DataFrame(rows)
    summary = table.groupby(["subpolicies", "chance_iterations", "model"], sort=False).final_distance.agg(["mean", "count"])
    print(f"final distance over iterations 1-{args.iterations}, scripted master (chance for c iterations, then right):")
    print(summary.unstack("model").round(2).to_string())
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    meta_parser = sub.add_parser("meta", help="the master's choices during a meta-training run")
    meta_parser.add_argument("runs", nargs="+", help="run folders of python -m sb3_mlsh.train")
    meta_parser.add_argument("--labels", nargs="+", default=None, help="a label per run (default: the folder names)")
    probe_parser = sub.add_parser("probe", help="fresh masters over a model's frozen sub-policies")
    probe_parser.add_argument("model", help="a model.zip")
    probe_parser.add_argument("--iterations", type=int, default=6)
    probe_parser.add_argument("--repeats", type=int, default=3, help="master seeds per task")
    probe_parser.add_argument(
        "--master", nargs="+", default=["yaml:"], help="label:key=value,... master_kwargs over the model's own"
    )
    bound_parser = sub.add_parser("bound", help="a scripted master's best case over a fresh master's first iterations")
    bound_parser.add_argument("models", nargs="+", help="model.zip files, each as label:path or path")
    bound_parser.add_argument("--iterations", type=int, default=5)
    bound_parser.add_argument(
        "--chance-iterations",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="iterations the scripted master spends at chance before it picks right",
    )
    for each in (meta_parser, probe_parser, bound_parser):
        each.add_argument("--out", default=None, help="CSV to write (default: none)")
    args = parser.parse_args()
    th.set_num_threads(1)
    start = time.time()
    table = dict(meta=meta, probe=probe, bound=bound)[args.mode](args)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{time.time() - start:.0f} s; {platform.machine()}, {os.cpu_count()} cores, torch {th.__version__}")


if __name__ == "__main__":
    main()
