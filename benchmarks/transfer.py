"""
Transfer to new tasks, the paper's main comparison. Per seed: meta-train MLSH on the train tasks (or load a model),
train one PPO policy shared across the train tasks on the same budget, then on newly sampled held-out tasks record
the mean episode return per iteration (``iteration_steps`` primitive steps) from the first step of the new task of

- ``mlsh``: MLSH, fresh master, frozen sub-policies (``MLSH.adapt``);
- ``mlsh_mean``: as ``mlsh``, but the frozen sub-policies act on their mean (``adapt(deterministic_subpolicies=True)``):
  what their exploration noise costs on the new task;
- ``mlsh_joint``: MLSH, fresh master, sub-policies still learning (``adapt(update_subpolicies=True)``);
- ``mlsh_paper``: the paper's fine-tuning, its meta-loop on the one new task: fresh master, W iterations with frozen
  sub-policies, then joint iterations (``adapt(update_subpolicies="after_warmup")``);
- ``ppo_scratch``: SB3 PPO from scratch;
- ``shared``: the shared PPO policy, fine-tuned on the task;
- ``oracle``: the family's scripted oracle (a constant), where it has one;
- ``mlsh_untrained`` (only with ``--methods``): MLSH with untrained sub-policies, all learning on the task: what the
  hierarchy does without meta-training, to tell a transfer's effect from the hierarchy's.

    python benchmarks/transfer.py --env mlsh/MovementBandits-v0 --seeds 0 1 2 3 4 --meta-timesteps 1000000

Besides the return, each row holds the mean of what the env reports at the end of an episode under ``info["distance"]``
(the Ant families: the torso's final distance to the target or goal; NaN elsewhere) and the share of episodes with a
positive return (``success``: for the sparse obstacle courses, episodes that reached the goal).

Each seed writes benchmarks/results/<Family>/transfer_<family>_seed<s>.csv (one row per method, task and iteration), so
seeds can run in separate processes (``--seeds 0 1`` beside ``--seeds 2 3``); ``--summarise`` alone combines every
seed file present into transfer_<family>_summary.csv and transfer_<family>.png in the same folder (mean and standard
deviation over seeds and tasks). Without ``--summarise`` the seeds run and then the summary is written.

The shared policy is trained on the train tasks (a new one at every episode) with MLSH's meta-training budget, the
sub-policies' network and PPO settings and the same reward scaling (and observation scaling with ``--ppo-norm-obs``);
its scaling statistics are saved beside it (``shared_<family>_seed<s>_scaling.npz``, plain arrays) and carried into
fine-tuning, so that its inputs keep their scale on the new task.

``--transfer-env-kwargs`` changes the envs adapted on (e.g. ``restand_every:200``) and ``--adapt-kwargs`` MLSH's
settings for the transfer (e.g. ``macro_duration:200 max_macro_duration:null``); both are tried before any training,
and both need their own ``--results`` folder.
"""

import argparse
import ast
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import mlsh_envs
from sb3_mlsh import MLSH, make_task_sampler
from sb3_mlsh.cli.hyperparams import HyperparameterError, load_hyperparams, override_hyperparams, parse_hyperparams
from sb3_mlsh.mlsh.mlsh import SUBPOLICY_DEFAULTS

RESULTS = os.path.join(os.path.dirname(__file__), "results")
METHODS = ("mlsh", "mlsh_joint", "ppo_scratch", "shared", "mlsh_untrained", "mlsh_paper", "mlsh_mean")
ADAPT_MODES = {"mlsh": False, "mlsh_mean": False, "mlsh_joint": True, "mlsh_untrained": True, "mlsh_paper": "after_warmup"}
#: Keys of the sub-policy bank's policy_kwargs that SB3's MlpPolicy takes too (PPO from scratch with the same network).
PPO_POLICY_KEYS = ("net_arch", "activation_fn", "log_std_init", "ortho_init")
TWO_TASK_FAMILIES = ("mlsh/MovementBandits-v0", "mlsh/KeyDoor-v0", "mlsh/AntTwowalk-v0", "mlsh/AntMovement-v0")


class TaskResampling(gym.Wrapper):
    """Draws a new task from ``split`` at every reset: the env of the shared-policy baseline."""

    def __init__(self, env: gym.Env, split: str) -> None:
        super().__init__(env)
        self.split = split

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        task = self.env.get_wrapper_attr("sample_tasks")(1, split=self.split)[0]
        self.env.get_wrapper_attr("set_task")(task)
        return self.env.reset(**kwargs)


class ProgressPrint(BaseCallback):
    """Prints one line per tenth of a long training run, so that a run of an hour shows it is alive."""

    def __init__(self, label: str, total_timesteps: int) -> None:
        super().__init__()
        self.label, self.total_timesteps, self.next_print, self.started = label, total_timesteps, total_timesteps // 10, 0.0

    def _on_training_start(self) -> None:
        self.started = time.time()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_print:
            self.next_print += self.total_timesteps // 10
            rate = self.num_timesteps / max(time.time() - self.started, 1e-9)
            print(f"{self.label}: {self.num_timesteps}/{self.total_timesteps} steps ({rate:.0f} steps/s)", flush=True)
        return True


class IterationReturns(BaseCallback):
    """
    Per rollout of an SB3 on-policy algorithm or of MLSH: the mean return of the episodes that ended in it, their mean
    final ``info["distance"]`` (NaN where the env reports none) and the share of them with a positive return.
    """

    def __init__(self) -> None:
        super().__init__()
        self.per_iteration: list[float] = []
        self.distance: list[float] = []
        self.success: list[float] = []
        self._returns: list[float] = []
        self._distances: list[float] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self._returns.append(float(info["episode"]["r"]))
                self._distances.append(float(info.get("distance", np.nan)))
        return True

    def _on_rollout_end(self) -> None:
        ended = bool(self._returns)
        self.per_iteration.append(float(np.mean(self._returns)) if ended else float("nan"))
        self.distance.append(float(np.mean(self._distances)) if ended else float("nan"))
        self.success.append(float(np.mean(np.array(self._returns) > 0)) if ended else float("nan"))
        self._returns, self._distances = [], []


def fixed_task_env(
    env_id: str,
    task: Any,
    n_envs: int,
    seed: int,
    reward_gamma: float | None = None,
    norm_obs: bool = False,
    statistics: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
):
    """
    :param reward_gamma: Scale rewards as MLSH's ``normalize_reward`` does, with this discount (None: raw rewards).
    :param norm_obs: Also normalise observations (VecNormalize's running mean and std), for PPO on a family whose
        observations are not scaled (HumanoidWalkCrawl).
    :param statistics: Start the scaling from these saved statistics (:func:`save_scaling`) instead of from nothing: the
        shared policy keeps the scale it was trained with, as MLSH keeps its reward scale on a new task.
    :param env_kwargs: Passed on to ``gymnasium.make``.
    """

    def factory() -> gym.Env:
        env = gym.make(env_id, **(env_kwargs or {}))
        env.get_wrapper_attr("set_task")(task)
        return env

    env = make_vec_env(factory, n_envs=n_envs, seed=seed)
    # MLSH's normalize_reward is VecNormalize's reward scaling: PPO from scratch gets the same.
    if reward_gamma is None and not norm_obs:
        return env
    normalized = VecNormalize(env, norm_obs=norm_obs, norm_reward=reward_gamma is not None, gamma=reward_gamma or 0.99)
    if statistics is not None:
        load_scaling(normalized, statistics)
    return normalized


def save_scaling(env: VecNormalize, path: str) -> None:
    """
    Save VecNormalize's running statistics as plain arrays (``.npz``), not as a pickle: a results folder holds no file
    that runs code when read.

    :param env: The scaled env the shared policy was trained in.
    :param path: Where the statistics go.
    """
    arrays = dict(ret_mean=env.ret_rms.mean, ret_var=env.ret_rms.var, ret_count=env.ret_rms.count)
    if env.norm_obs:  # VecNormalize keeps observation statistics only when it scales observations
        arrays.update(obs_mean=env.obs_rms.mean, obs_var=env.obs_rms.var, obs_count=env.obs_rms.count)
    np.savez(path, **arrays)


def load_scaling(env: VecNormalize, path: str) -> None:
    """
    :param env: A scaled env, scaling what the saved one scaled, with the same observation space.
    :param path: What :func:`save_scaling` wrote.
    """
    with np.load(path, allow_pickle=False) as saved:
        if env.norm_obs != ("obs_mean" in saved):
            raise ValueError(f"{path} was saved with norm_obs={not env.norm_obs}: pass --ppo-norm-obs as when it was trained")
        if env.norm_obs:
            if saved["obs_mean"].shape != env.obs_rms.mean.shape:
                shapes = f"{saved['obs_mean'].shape}, not {env.obs_rms.mean.shape}"
                raise ValueError(f"{path} holds the statistics of observations of shape {shapes}: another family's")
            env.obs_rms.mean, env.obs_rms.var = saved["obs_mean"], saved["obs_var"]
            env.obs_rms.count = float(saved["obs_count"])
        env.ret_rms.mean, env.ret_rms.var, env.ret_rms.count = saved["ret_mean"], saved["ret_var"], float(saved["ret_count"])


def ppo_kwargs(n_steps: int, seed: int, hyperparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    :param hyperparams: MLSH constructor arguments: PPO from scratch then takes the sub-policy learner's settings and
        network (``--ppo-settings subpolicy``). None: the fixed settings of the earlier tables.
    """
    if hyperparams is None:
        return dict(n_steps=n_steps, batch_size=250, n_epochs=10, gamma=0.99, gae_lambda=0.98, seed=seed, device="cpu")
    kwargs = {**SUBPOLICY_DEFAULTS, **hyperparams.get("subpolicy_kwargs", {})}
    policy_kwargs = {key: value for key, value in hyperparams.get("policy_kwargs", {}).items() if key in PPO_POLICY_KEYS}
    return dict(kwargs, n_steps=n_steps, seed=seed, device="cpu", policy_kwargs=policy_kwargs)


def subpolicy_task_returns(
    model: MLSH,
    env_id: str,
    tasks: list[Any],
    episodes: int = 10,
    on_step: Callable[[int, gym.Env], None] | None = None,
) -> np.ndarray:
    """
    :param on_step: Called after every step with the acting sub-policy and the env (e.g. to record where it goes).
    :return: Mean return of each sub-policy acting alone (K rows) on each task (columns): what each skill learned.
    """
    env = gym.make(env_id)
    returns = np.zeros((model.n_subpolicies, len(tasks)))
    for k in range(model.n_subpolicies):
        for column, task in enumerate(tasks):
            env.get_wrapper_attr("set_task")(task)
            for episode in range(episodes):
                obs, _ = env.reset(seed=episode)
                done = False
                while not done:
                    obs, reward, terminated, truncated, _ = env.step(model.subpolicy_predict(obs, k))
                    returns[k, column] += float(reward) / episodes
                    done = terminated or truncated
                    if on_step is not None:
                        on_step(k, env)
    return returns


def specialised(matrix: np.ndarray, serves: float = 22.0) -> bool:
    """
    :param matrix: Return of each sub-policy (rows) acting alone on each of the two tasks (columns).
    :param serves: Return from which a sub-policy counts as serving a task (default: half the MovementBandits oracle's).
    :return: Whether two different sub-policies serve the two tasks.
    """
    first, second = np.flatnonzero(matrix[:, 0] >= serves), np.flatnonzero(matrix[:, 1] >= serves)
    return any(i != j for i in first for j in second)


def skill_outcome(matrix: np.ndarray, serves: float) -> str:
    """
    :param matrix: Return of each sub-policy (rows) acting alone on each of the two tasks (columns).
    :param serves: Return from which a sub-policy counts as serving a task.
    :return: ``"specialised"`` (different sub-policies serve the two tasks), ``"collapsed"`` (some sub-policy serves a
        task, and every sub-policy is best on that same task) or ``"neither"`` (e.g. no sub-policy serves any task yet).
    """
    if specialised(matrix, serves):
        return "specialised"
    if (matrix >= serves).any() and len(set(matrix.argmax(axis=1).tolist())) < 2:
        return "collapsed"
    return "neither"


def run_seed(args: argparse.Namespace, seed: int, rows: list[dict[str, Any]], timings: dict[str, float]) -> None:
    """Meta-train (or load) MLSH and the shared policy for ``seed``, then record every method on new tasks."""
    env_id = args.env
    kwargs, n_timesteps, _ = parse_hyperparams(override_hyperparams(load_hyperparams(env_id), args.hyperparams), env_id)
    meta_timesteps = args.meta_timesteps or n_timesteps
    kwargs.update(n_envs=args.n_envs, n_steps=args.n_steps)
    iteration_steps = args.n_envs * args.n_steps
    scratch_settings = kwargs if args.ppo_settings == "subpolicy" else None
    adapt_steps = args.iterations * iteration_steps
    model_path = os.path.join(args.models, f"{args.model_tag}_{env_id.replace('/', '-')}_seed{seed}.zip")
    normalize = scratch_settings is not None and bool(kwargs.get("normalize_reward"))
    reward_gamma = {**SUBPOLICY_DEFAULTS, **kwargs.get("subpolicy_kwargs", {})}["gamma"] if normalize else None
    start = time.time()
    needs_mlsh = any(method in ADAPT_MODES and method != "mlsh_untrained" for method in args.methods)
    if needs_mlsh and os.path.exists(model_path) and not args.retrain:
        print(f"seed {seed}: loading {model_path}", flush=True)
    elif needs_mlsh:
        sampler = make_task_sampler(env_id, split="train", seed=seed)
        meta = MLSH("MlpPolicy", sampler, seed=seed, device="cpu", verbose=args.verbose, **kwargs)
        meta.learn(meta_timesteps, log_interval=args.log_interval)
        os.makedirs(args.models, exist_ok=True)
        meta.save(model_path)
        timings[f"mlsh_meta_train_seed{seed}_s"] = time.time() - start
        print(f"seed {seed}: meta-trained {meta_timesteps} steps in {time.time() - start:.0f} s", flush=True)

    # The shared policy: one PPO across the train tasks, with MLSH's budget, its sub-policies' network and settings,
    # and the same scaling; its scaling statistics are saved with it and carried into fine-tuning.
    start = time.time()
    shared_tag = f"{args.shared_tag}_" if args.shared_tag else ""
    shared_path = os.path.join(args.models, f"shared_{shared_tag}{env_id.replace('/', '-')}_seed{seed}.zip")
    shared_scaling = shared_path.replace(".zip", "_scaling.npz")
    shared_timesteps = args.shared_timesteps or meta_timesteps
    scaled = normalize or args.ppo_norm_obs
    if "shared" in args.methods and (not os.path.exists(shared_path) or args.retrain):
        shared_env = make_vec_env(lambda: TaskResampling(gym.make(env_id), "train"), n_envs=args.n_envs, seed=seed)
        if scaled:
            shared_env = VecNormalize(
                shared_env, norm_obs=args.ppo_norm_obs, norm_reward=normalize, gamma=reward_gamma or 0.99
            )
        shared = PPO("MlpPolicy", shared_env, **ppo_kwargs(args.n_steps, seed, scratch_settings))
        shared.learn(shared_timesteps, callback=ProgressPrint(f"seed {seed}: shared policy", shared_timesteps))
        os.makedirs(args.models, exist_ok=True)
        shared.save(shared_path)
        if scaled:
            save_scaling(shared_env, shared_scaling)  # type: ignore[arg-type]
        timings[f"shared_train_seed{seed}_s"] = time.time() - start
        print(f"seed {seed}: shared policy trained {shared_timesteps} steps in {time.time() - start:.0f} s", flush=True)

    if needs_mlsh and env_id in TWO_TASK_FAMILIES:
        # Did the sub-policies specialise, or collapse onto the same goal (the failure reported for the original)?
        matrix = subpolicy_task_returns(MLSH.load(model_path, n_envs=1, task_groups=1, device="cpu"), env_id, [0, 1])
        timings["subpolicy_task_returns"] = matrix.round(1).tolist()  # type: ignore[assignment]
        print(f"seed {seed}: sub-policy x task returns {matrix.round(1).tolist()}", flush=True)
    target = args.transfer_env or env_id
    if target in TWO_TASK_FAMILIES:
        tasks = [0, 1]  # both: a draw of two could give the same task twice and favour whichever goal a policy prefers
    elif args.tasks == "all":  # every held-out task (for small splits), in a fixed order
        tasks = sorted(set(make_task_sampler(target, split="test", seed=1000).sample(1000)))
    else:
        tasks = make_task_sampler(target, split="test", seed=1000 + seed).sample(int(args.tasks))
    # The sub-policies move to the target family's envs (same spaces), e.g. AntTwowalk's onto the obstacle course.
    target_kwargs = args.transfer_env_kwargs
    target_sampler = make_task_sampler(target, split="test", **target_kwargs) if args.transfer_env or target_kwargs else None
    for task_index, task in enumerate(tasks):
        for method in args.methods:
            callback = IterationReturns()
            if method in ADAPT_MODES:
                if method == "mlsh_untrained":  # the same MLSH with sub-policies that never saw a train task
                    sampler = target_sampler or make_task_sampler(target, split="test")
                    untrained_kwargs = {**kwargs, **args.adapt_kwargs, "task_groups": 1}
                    model = MLSH("MlpPolicy", sampler, seed=seed, device="cpu", **untrained_kwargs)
                else:
                    model = load_for_transfer(model_path, target_sampler, args, seed)
                model.adapt(
                    task,
                    adapt_steps,
                    update_subpolicies=ADAPT_MODES[method],
                    callback=callback,
                    deterministic_subpolicies=method == "mlsh_mean",
                )
            else:
                statistics = shared_scaling if method == "shared" and scaled else None
                env = fixed_task_env(
                    target,
                    task,
                    args.n_envs,
                    seed,
                    reward_gamma=reward_gamma,
                    norm_obs=args.ppo_norm_obs,
                    statistics=statistics,
                    env_kwargs=target_kwargs,
                )
                if method == "shared":
                    learner = PPO.load(shared_path, env=env, device="cpu")
                else:
                    learner = PPO("MlpPolicy", env, **ppo_kwargs(args.n_steps, seed, scratch_settings))
                learner.learn(adapt_steps, callback=callback)
            rows.extend(
                dict(method=method, seed=seed, task=str(task), iteration=i + 1, ret=r, distance=d, success=ok)
                for i, (r, d, ok) in enumerate(zip(callback.per_iteration, callback.distance, callback.success))
            )
        print(f"seed {seed} task {task_index} ({task}) done", flush=True)


def load_for_transfer(path: str, sampler: Any, args: argparse.Namespace, seed: int) -> MLSH:
    """:return: The meta-trained model at ``path``, set up to adapt with ``args``' envs, steps and ``--adapt-kwargs``."""
    return MLSH.load(
        path, sampler, n_envs=args.n_envs, n_steps=args.n_steps, task_groups=1, seed=seed, device="cpu", **args.adapt_kwargs
    )


def key_value(text: str) -> dict[str, Any]:
    """:return: ``{key: value}`` of one ``KEY:VALUE`` argument, the value read as YAML (as ``-params`` reads it)."""
    try:
        return override_hyperparams({}, [text])
    except HyperparameterError as error:
        raise argparse.ArgumentTypeError(str(error).replace("--hyperparams", "it")) from error


class MergeKeyValues(argparse.Action):
    """``--flag a:1 b:2``: the KEY:VALUE pairs, each parsed by the argument's ``type``, merged into one dict."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None):
        setattr(namespace, self.dest, {key: value for pair in values for key, value in pair.items()})


#: MLSH arguments that transfer.py sets itself (its own flags), so that --adapt-kwargs may not.
TRANSFER_SET_KEYS = ("policy", "task_sampler", "env", "n_envs", "n_steps", "task_groups", "seed", "device", "distributed")


def check_adapt_kwargs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse ``--adapt-kwargs`` that MLSH cannot take, by building one small MLSH with them, before any training."""
    taken = sorted(set(args.adapt_kwargs) & set(TRANSFER_SET_KEYS))
    if taken:
        parser.error(f"--adapt-kwargs: {', '.join(taken)} come from transfer.py's own flags (--n-envs, --n-steps, --seeds).")
    kwargs, _, _ = parse_hyperparams(override_hyperparams(load_hyperparams(args.env), args.hyperparams), args.env)
    kwargs.update(args.adapt_kwargs, n_envs=1, n_steps=args.n_steps, task_groups=1)
    try:
        MLSH("MlpPolicy", make_task_sampler(args.transfer_env or args.env, split="test"), device="cpu", **kwargs).env.close()
    except (TypeError, ValueError) as error:
        parser.error(f"--adapt-kwargs: {error}")


def summarise(frame: pd.DataFrame, oracle: float | None) -> pd.DataFrame:
    """
    :return: Per method and horizon (the first 5, 10, 20, 50 and all iterations): mean and std over runs (seed x task)
        of each run's mean return, and the mean final distance and success share where the seed files have them.
    """
    last = int(frame["iteration"].max())
    rows = []
    for first in sorted({n for n in (5, 10, 20, 50) if n <= last} | {last}):
        window = frame[frame["iteration"] <= first]
        means = window.groupby(["method", "seed", "task"]).mean(numeric_only=True).reset_index()
        for method, group in means.groupby("method"):
            row = dict(
                method=method, iterations=first, mean=group["ret"].mean(), std=group["ret"].std(ddof=0), runs=len(group)
            )
            for column in ("distance", "success"):
                if column in group and group[column].notna().any():
                    row[column] = group[column].mean()
            rows.append(row)
    summary = pd.DataFrame(rows)
    if oracle is not None:
        summary = pd.concat([summary, pd.DataFrame([dict(method="oracle", iterations=0, mean=oracle, std=0.0, runs=0)])])
    return summary


def plot(frame: pd.DataFrame, oracle: float | None, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {  # one colour per method in every family's figure
        "mlsh": ("MLSH (frozen sub-policies)", "tab:blue"),
        "mlsh_mean": ("MLSH (frozen sub-policies acting on their mean)", "tab:cyan"),
        "mlsh_joint": ("MLSH (sub-policies keep learning)", "tab:orange"),
        "mlsh_paper": ("MLSH (paper's fine-tuning: W frozen, then learning)", "tab:brown"),
        "mlsh_untrained": ("MLSH without meta-training (learning)", "tab:purple"),
        "ppo_scratch": ("PPO from scratch", "tab:green"),
        "shared": ("shared policy (PPO), fine-tuned", "tab:red"),
    }
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, (label, color) in labels.items():
        data = frame[frame["method"] == method]
        if data.empty:
            continue
        stats = data.groupby("iteration")["ret"].agg(["mean", "std"])
        ax.plot(stats.index, stats["mean"], label=label, color=color)
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.15, color=color)
    if oracle is not None:
        ax.axhline(oracle, color="black", linestyle="--", linewidth=1, label="scripted oracle")
    ax.set_xlabel("iteration on the new task")
    ax.set_ylabel("mean episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mlsh/MovementBandits-v0", choices=mlsh_envs.ENV_IDS)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--meta-timesteps", type=int, default=None, help="MLSH meta-training budget (default: the YAML's)")
    parser.add_argument(
        "--transfer-env",
        default=None,
        choices=mlsh_envs.ENV_IDS,
        help="adapt on this family's held-out tasks (default: --env)",
    )
    key_values = dict(nargs="+", default={}, type=key_value, action=MergeKeyValues, metavar="KEY:VALUE")
    parser.add_argument(
        "--transfer-env-kwargs",
        help="constructor arguments of the envs adapted on, values in YAML (e.g. restand_every:200); give the run its "
        "own --results folder",
        **key_values,
    )
    parser.add_argument(
        "--adapt-kwargs",
        help="MLSH settings for the transfer, over the meta-trained model's, values in YAML (e.g. macro_duration:200 "
        "max_macro_duration:null adapts skills learned with a randomised time commitment at a fixed one); give the run "
        "its own --results folder",
        **key_values,
    )
    parser.add_argument("--verbose", type=int, default=0, help="1: print MLSH's log table during meta-training")
    parser.add_argument("--log-interval", type=int, default=10, help="iterations between log tables (with --verbose 1)")
    parser.add_argument("--hyperparams", "-params", nargs="+", default=[], metavar="KEY:VALUE", help="YAML overrides")
    parser.add_argument(
        "--shared-timesteps",
        type=int,
        default=None,
        help="budget of the shared PPO policy (default: MLSH's meta-training budget, --meta-timesteps or the YAML's)",
    )
    parser.add_argument(
        "--shared-tag", default="", help="shared policies are <models>/shared_<tag>_<family>_seed<s>.zip (default: no tag)"
    )
    parser.add_argument("--iterations", type=int, default=10, help="iterations on each new task")
    parser.add_argument(
        "--tasks", default="2", help="new tasks per seed, or 'all': every held-out task (two-task families: both tasks)"
    )
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=250, help="steps per env per iteration")
    parser.add_argument(
        "--results",
        default=None,
        help="where the seed files, the summary and the plot go (default: benchmarks/results/<family adapted on>/)",
    )
    parser.add_argument("--models", default=os.path.join(RESULTS, "models"), help="where meta-trained models are kept")
    parser.add_argument(
        "--model-tag", default="default", help="models are <models>/<tag>_<family>_seed<s>.zip (collapse.py's --tag)"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS[:4]),
        choices=METHODS,
        help="methods to run; with a subset, the seed file keeps its rows of the other methods",
    )
    parser.add_argument(
        "--ppo-settings",
        choices=("fixed", "subpolicy"),
        default="subpolicy",
        help="PPO from scratch and the shared policy: the YAML's sub-policy learner settings and network, with its reward "
        "scaling where normalize_reward is set (default), or the fixed settings of the 0.1 tables",
    )
    parser.add_argument(
        "--ppo-norm-obs",
        action="store_true",
        help="PPO from scratch (and the shared policy) normalise observations (VecNormalize), as rl-baselines3-zoo does "
        "for Humanoid",
    )
    parser.add_argument("--retrain", action="store_true", help="meta-train even if a model for the seed exists")
    parser.add_argument("--summarise", action="store_true", help="only combine the seed files present")
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.transfer_env_kwargs and args.results is None:
        parser.error(
            "--transfer-env-kwargs changes the envs: give the run its own folder, e.g. --results "
            "benchmarks/results/AntObstacleCourse/variants/restand200, so that it does not replace the default rows."
        )
    if args.adapt_kwargs and args.results is None:
        parser.error(
            "--adapt-kwargs changes MLSH's transfer: give the run its own folder, e.g. --results "
            "benchmarks/results/AntTwowalk/variants/hippo_time_commitment/fixed_n200, so that it does not replace the "
            "default rows."
        )
    if args.transfer_env_kwargs:  # an unknown or bad argument fails now, not after the meta-training
        try:
            gym.make(args.transfer_env or args.env, **args.transfer_env_kwargs).close()
        except (TypeError, ValueError) as error:
            parser.error(f"--transfer-env-kwargs: {error}")
    if args.adapt_kwargs:
        check_adapt_kwargs(parser, args)
    if args.results is None:
        args.results = os.path.join(RESULTS, (args.transfer_env or args.env).split("/")[-1].replace("-v0", ""))
    os.makedirs(args.results, exist_ok=True)
    name = args.env.split("/")[-1].replace("-v0", "")
    if args.transfer_env:
        name = f"{name}_to_{args.transfer_env.split('/')[-1].replace('-v0', '')}"
    if not args.summarise:
        for seed in args.seeds:
            rows: list[dict[str, Any]] = []
            timings: dict[str, float] = {}
            started = time.time()
            run_seed(args, seed, rows, timings)
            frame = pd.DataFrame(rows)
            frame["seconds"] = time.time() - started
            for key, value in timings.items():
                frame[key] = str(value) if isinstance(value, list) else round(value, 1)
            seed_file = os.path.join(args.results, f"transfer_{name}_seed{seed}.csv")
            if os.path.exists(seed_file):
                previous = pd.read_csv(seed_file)
                frame = pd.concat([previous[~previous["method"].isin(args.methods)], frame], ignore_index=True)
            frame.to_csv(seed_file, index=False)
    files = sorted(f for f in os.listdir(args.results) if f.startswith(f"transfer_{name}_seed") and f.endswith(".csv"))
    frame = pd.concat([pd.read_csv(os.path.join(args.results, f)) for f in files], ignore_index=True)
    oracle = None
    target = args.transfer_env or args.env
    if hasattr(gym.make(target).unwrapped, "oracle_action"):
        oracle = mlsh_envs.evaluate_oracle(target, n_episodes=100, seed=0)[0]
    summary = summarise(frame, oracle)
    summary.to_csv(os.path.join(args.results, f"transfer_{name}_summary.csv"), index=False)
    n_seeds, n_tasks = frame["seed"].nunique(), frame.groupby("seed")["task"].nunique().max()
    plot(
        frame,
        oracle,
        f"Transfer to new {name} tasks ({n_seeds} seeds x {n_tasks} tasks)",
        os.path.join(args.results, f"transfer_{name}.png"),
    )
    print(summary.to_string(index=False))
    if "subpolicy_task_returns" in frame.columns and oracle is not None:
        per_seed = frame.groupby("seed")[["subpolicy_task_returns"]].first()
        matrices = per_seed["subpolicy_task_returns"].map(lambda text: np.array(ast.literal_eval(text)))
        per_seed["outcome"] = matrices.map(lambda matrix: skill_outcome(matrix, oracle / 2))
        per_seed.to_csv(os.path.join(args.results, f"transfer_{name}_subpolicies.csv"))
        counts = per_seed["outcome"].value_counts()
        print(
            f"sub-policies (serving = half the oracle's return alone): {counts.get('specialised', 0)} specialised, "
            f"{counts.get('collapsed', 0)} collapsed, {counts.get('neither', 0)} neither, of {len(per_seed)} seeds"
        )
        print(per_seed.to_string())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {th.__version__}; seed files: {files}")


if __name__ == "__main__":
    main()
