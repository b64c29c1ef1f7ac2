"""
Collapse rate and ablations on a two-task family (MovementBandits, KeyDoor): meta-train MLSH with one setting over
several seeds and record, per seed,

- what each sub-policy learned: its mean return acting alone on each task (a K x 2 matrix);
- whether the sub-policies collapsed: every sub-policy is best on the same task (the failure users of the original
  report: the master then has nothing to choose);
- whether they specialised: two different sub-policies each earn at least half the oracle's return alone, one on
  each task (a seed can be neither: one skill learned, the other still weak);
- the return on each task of a fresh master over the frozen sub-policies, per iteration (``MLSH.adapt``).

    python benchmarks/collapse.py --tag default --seeds 0 1 2 3 4 5 6 7 8 9
    python benchmarks/collapse.py --tag no_warmup --seeds 0 1 2 -params warmup_iterations:0
    python benchmarks/collapse.py --tag paper_optimizer --seeds 0 1 2 -params policy_kwargs:"dict(net_arch=[64, 64])"
    python benchmarks/collapse.py --summarise

``-params`` overrides entries of the packaged YAML as ``python -m sb3_mlsh.train`` does (``master_kwargs.clip_range:0.2``
sets one key of a nested mapping). Each (tag, seed) writes benchmarks/results/<family>/collapse/<family>_<tag>_seed<s>.csv,
so seeds can run in separate processes; ``--summarise`` combines the files into
benchmarks/results/<family>/collapse_<family>_summary.csv and collapse_<family>.png. The models go to
benchmarks/results/models/<tag>_<family>_seed<s>.zip (not committed), where ``transfer.py --model-tag <tag>`` finds them.
"""

import argparse
import glob
import json
import os
import time

import numpy as np
import pandas as pd
import torch as th
from _common import machine
from transfer import specialised, subpolicy_task_returns

from sb3_mlsh import MLSH, make_task_sampler
from sb3_mlsh.cli.hyperparams import load_hyperparams, override_hyperparams, parse_hyperparams

TASKS = (0, 1)
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def model_path(models: str, tag: str, env_id: str, seed: int) -> str:
    """:return: Where the meta-trained model of (tag, seed) is kept."""
    return os.path.join(models, f"{tag}_{env_id.replace('/', '-')}_seed{seed}.zip")


def run_seed(args: argparse.Namespace, seed: int) -> pd.DataFrame:
    """Meta-train (or load) one seed, then measure what its sub-policies learned and how fast a fresh master uses them."""
    entry = override_hyperparams(load_hyperparams(args.env), args.hyperparams)
    kwargs, n_timesteps, _ = parse_hyperparams(entry, args.env)
    timesteps = args.timesteps or n_timesteps
    path = model_path(args.models, args.tag, args.env, seed)
    started = time.time()
    if os.path.exists(path) and not args.retrain:
        print(f"{args.tag} seed {seed}: loading {path}", flush=True)
        meta_seconds = float("nan")
    else:
        model = MLSH("MlpPolicy", make_task_sampler(args.env, split="train", seed=seed), seed=seed, device="cpu", **kwargs)
        model.learn(timesteps)
        os.makedirs(args.models, exist_ok=True)
        model.save(path)
        meta_seconds = time.time() - started
        print(f"{args.tag} seed {seed}: meta-trained {timesteps} steps in {meta_seconds:.0f} s", flush=True)
    matrix = subpolicy_task_returns(MLSH.load(path, n_envs=1, task_groups=1, device="cpu"), args.env, list(TASKS))
    collapsed = len(set(matrix.argmax(axis=1).tolist())) < 2
    print(f"{args.tag} seed {seed}: sub-policy x task returns {matrix.round(1).tolist()} collapsed={collapsed}", flush=True)
    rows = []
    for task in TASKS:
        model = MLSH.load(path, n_envs=args.n_envs, n_steps=args.n_steps, task_groups=1, seed=seed, device="cpu")
        model.adapt(task, args.iterations * args.n_envs * args.n_steps)
        for entry_log in model.iteration_log:
            rows.append(dict(task=task, iteration=entry_log["iteration"], ret=entry_log["episode_return_mean"]))
    frame = pd.DataFrame(rows)
    frame["tag"] = args.tag
    frame["seed"] = seed
    frame["overrides"] = " ".join(args.hyperparams)
    frame["meta_timesteps"] = timesteps
    frame["meta_seconds"] = round(meta_seconds, 1)
    frame["subpolicy_task_returns"] = json.dumps(matrix.round(2).tolist())
    frame["collapsed"] = collapsed
    frame["machine"] = machine()
    return frame


def summarise(folder: str, family: str) -> pd.DataFrame:
    """:return: One row per tag: seeds, collapses, transfer return over the first 10 iterations (mean and std over runs)."""
    files = sorted(glob.glob(os.path.join(folder, f"{family}_*_seed*.csv")))
    if not files:
        raise SystemExit(f"No result files in {folder}: run some seeds first.")
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    rows = []
    for tag, data in frame.groupby("tag", sort=False):
        per_seed = data.groupby("seed").first()
        matrices = per_seed["subpolicy_task_returns"].map(lambda text: np.array(json.loads(text)))
        first10 = data[data["iteration"] <= 10].groupby(["seed", "task"])["ret"].mean()
        uncollapsed = first10[~first10.index.get_level_values("seed").isin(per_seed.index[per_seed["collapsed"]])]
        rows.append(
            dict(
                tag=tag,
                overrides=per_seed["overrides"].iloc[0] if isinstance(per_seed["overrides"].iloc[0], str) else "",
                seeds=len(per_seed),
                collapsed=int(per_seed["collapsed"].sum()),
                specialised=int(matrices.map(specialised).sum()),
                first10_mean=round(first10.mean(), 2),
                first10_std=round(first10.std(ddof=0), 2),
                first10_uncollapsed_mean=round(uncollapsed.mean(), 2) if len(uncollapsed) else float("nan"),
                tasks_reaching_35=int((first10 >= 35).sum()),
                runs=len(first10),
                meta_timesteps=int(per_seed["meta_timesteps"].iloc[0]),
                meta_seconds_mean=round(per_seed["meta_seconds"].mean(), 0),
            )
        )
    return pd.DataFrame(rows)


def plot_skills(per_tag: dict[str, list[np.ndarray]], path: str) -> None:
    """
    One panel per setting; in it, every sub-policy of every seed is a point (its return alone when goal 0 pays, when
    goal 1 pays), and a seed's sub-policies are joined by a line: specialised seeds span two corners, collapsed seeds
    sit in one.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(len(per_tag), 4)
    rows = -(-len(per_tag) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(per_tag) :]:
        ax.axis("off")
    for ax, (tag, matrices) in zip(axes.flat, per_tag.items()):
        for matrix in matrices:
            color = "tab:green" if specialised(matrix) else "tab:red"
            ax.plot(matrix[:, 0], matrix[:, 1], "o-", color=color, alpha=0.6, markersize=4)
        n_good = sum(specialised(m) for m in matrices)
        ax.set_title(f"{tag}\n{n_good} of {len(matrices)} seeds specialised", fontsize="small")
        ax.set_xlim(-2, 47)
        ax.set_ylim(-2, 47)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("return alone, goal 1 pays")
    for ax in axes[-1, :]:
        ax.set_xlabel("return alone, goal 0 pays")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mlsh/MovementBandits-v0", choices=["mlsh/MovementBandits-v0", "mlsh/KeyDoor-v0"])
    parser.add_argument("--tag", default="default", help="name of the setting (file names, summary rows)")
    parser.add_argument("--seeds", type=int, nargs="*", default=list(range(10)))
    parser.add_argument("--timesteps", type=int, default=None, help="meta-training budget (default: the YAML's)")
    parser.add_argument("--hyperparams", "-params", nargs="+", default=[], metavar="KEY:VALUE", help="YAML overrides")
    parser.add_argument("--iterations", type=int, default=10, help="iterations of the fresh master on each task")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=250, help="steps per env per iteration of the fresh master")
    parser.add_argument("--models", default=os.path.join(RESULTS, "models"))
    parser.add_argument("--retrain", action="store_true", help="meta-train even if the model exists")
    parser.add_argument("--summarise", action="store_true", help="only combine the result files present")
    args = parser.parse_args()
    th.set_num_threads(1)
    family = args.env.split("/")[-1].replace("-v0", "")
    family_folder = os.path.join(RESULTS, family)
    folder = os.path.join(family_folder, "collapse")
    os.makedirs(folder, exist_ok=True)
    if not args.summarise:
        for seed in args.seeds:
            frame = run_seed(args, seed)
            frame.to_csv(os.path.join(folder, f"{family}_{args.tag}_seed{seed}.csv"), index=False)
    summary = summarise(folder, family)
    out = os.path.join(family_folder, f"collapse_{family}_summary.csv")
    summary.to_csv(out, index=False)
    per_tag: dict[str, list[np.ndarray]] = {}
    before = os.path.join(family_folder, "variants", "release_0.1.0", f"transfer_{family}_subpolicies.csv")
    if os.path.exists(before):  # the settings of release 0.1.0, from transfer.py
        texts = pd.read_csv(before)["subpolicy_task_returns"]
        per_tag["0.1.0 settings, 1.5 M steps"] = [np.array(json.loads(text)) for text in texts]
    for file in sorted(glob.glob(os.path.join(folder, f"{family}_*_seed*.csv"))):
        first = pd.read_csv(file, nrows=1).iloc[0]
        label = f"{first['tag']}, {first['meta_timesteps'] / 1e6:g} M steps"
        per_tag.setdefault(label, []).append(np.array(json.loads(first["subpolicy_task_returns"])))
    plot_skills(per_tag, os.path.join(family_folder, f"collapse_{family}.png"))
    print(summary.to_string(index=False))
    print(f"machine: {machine()}; wrote {out}")


if __name__ == "__main__":
    np.set_printoptions(precision=1)
    main()
