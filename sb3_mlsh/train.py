"""Train MLSH from the command line, the way rl-baselines3-zoo trains SB3 algorithms.

Example::

    python -m sb3_mlsh.train --env mlsh/MovementBandits-v0
    torchrun --nproc_per_node=2 -m sb3_mlsh.train --env mlsh/MovementBandits-v0 --task-groups 2
"""

import argparse
import contextlib
import difflib
import errno
import importlib.resources
import io
import json
import os
import re
import shutil
import signal
import sys
import time
import warnings
import zipfile
from typing import Any

import numpy as np
import torch as th
import yaml
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import ConstantSchedule, LinearSchedule

from sb3_mlsh.callbacks import IterationCheckpoint, IterationCSV, StopOnSignal
from sb3_mlsh.mlsh import MLSH, ModelFileError
from sb3_mlsh.plots import plot_run

__all__ = ["load_hyperparams", "main", "override_hyperparams", "parse_hyperparams"]

#: Keys a YAML entry may have besides the MLSH constructor arguments.
EXTRA_KEYS = {"n_timesteps", "policy"}
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")
CONSTRUCTOR_KEYS = {
    "n_subpolicies", "macro_duration", "warmup_iterations", "joint_iterations", "n_steps", "n_envs", "task_groups",
    "master_kwargs", "subpolicy_kwargs", "policy_kwargs", "master_epsilon", "stagger_groups", "skill_diversity",
    "discriminator_kwargs", "subpolicy_obs_exclude", "normalize_reward",
}  # fmt: skip


class HyperparameterError(ValueError):
    """Raised for an unknown env id, key or badly typed value in a hyperparameter file."""


def default_hyperparams_file() -> str:
    return str(importlib.resources.files("sb3_mlsh") / "hyperparams" / "mlsh.yml")


def _evaluate_dict_string(text: str, key: str) -> dict[str, Any]:
    # The zoo writes policy_kwargs as "dict(...)"; evaluate it with torch's nn available for activation_fn.
    try:
        value = eval(text, {"__builtins__": {}}, {"dict": dict, "nn": th.nn, "th": th})
    except Exception as error:
        raise HyperparameterError(f"{key}: cannot read {text!r} as a dict(...) expression ({error}).") from error
    if not isinstance(value, dict):
        raise HyperparameterError(f"{key} must be a mapping or a 'dict(...)' string, got {text!r}.")
    return value


def _schedules(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    kwargs = dict(kwargs)
    for key in SCHEDULE_KEYS:
        value = kwargs.get(key)
        if isinstance(value, str):
            match = re.fullmatch(r"lin_([0-9.eE+-]+)", value)
            if match is None:
                raise HyperparameterError(f"{where}.{key}: {value!r} is not a number nor a 'lin_<number>' schedule.")
            kwargs[key] = LinearSchedule(float(match.group(1)), 0.0, 1.0)
        elif value is not None and not isinstance(value, (int, float)):
            raise HyperparameterError(f"{where}.{key} must be a number or 'lin_<number>', got {value!r}.")
        elif isinstance(value, (int, float)) and key != "clip_range_vf":
            kwargs[key] = ConstantSchedule(float(value))
    return kwargs


#: Expected types of the values that the YAML or -params may set (schedulable ones are checked by _schedules).
_NUMBER_KEYS = ("master_epsilon", "skill_diversity")
_BOOL_KEYS = ("normalize_reward", "stagger_groups")
_LEARNER_INT_KEYS = ("batch_size", "n_epochs")
_LEARNER_NUMBER_KEYS = ("gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm", "target_kl")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value_types(kwargs: dict[str, Any]) -> None:
    """Refuse values of the wrong type (e.g. ``batch_size: "64"``) before they reach a comparison deep in SB3."""
    for key in _NUMBER_KEYS:
        if key in kwargs and not _is_number(kwargs[key]):
            raise HyperparameterError(f"{key} must be a number, got {kwargs[key]!r} ({type(kwargs[key]).__name__}).")
    for key in _BOOL_KEYS:
        if key in kwargs and not isinstance(kwargs[key], bool):
            raise HyperparameterError(f"{key} must be true or false, got {kwargs[key]!r}.")
    for learner in ("master_kwargs", "subpolicy_kwargs"):
        for key, value in kwargs.get(learner, {}).items():
            if key in _LEARNER_INT_KEYS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise HyperparameterError(f"{learner}.{key} must be a positive integer, got {value!r}.")
            if key in _LEARNER_NUMBER_KEYS and value is not None and not _is_number(value):
                raise HyperparameterError(f"{learner}.{key} must be a number, got {value!r} ({type(value).__name__}).")


def parse_hyperparams(entry: dict[str, Any], env_id: str) -> tuple[dict[str, Any], int, str]:
    """
    Turn one YAML entry into MLSH constructor arguments.

    :param entry: The entry of ``env_id``.
    :param env_id: Its env id (for error messages).
    :return: Constructor kwargs, ``n_timesteps`` and the policy name.
    """
    unknown = set(entry) - CONSTRUCTOR_KEYS - EXTRA_KEYS
    if unknown:
        hints = {key: difflib.get_close_matches(key, CONSTRUCTOR_KEYS | EXTRA_KEYS, n=1) for key in unknown}
        text = ", ".join(f"{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") for key, hint in hints.items())
        raise HyperparameterError(
            f"Unknown hyperparameter(s) for {env_id}: {text}. Allowed: {sorted(CONSTRUCTOR_KEYS | EXTRA_KEYS)}."
        )
    kwargs = {key: value for key, value in entry.items() if key in CONSTRUCTOR_KEYS}
    for key in ("master_kwargs", "subpolicy_kwargs", "policy_kwargs", "discriminator_kwargs"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = _evaluate_dict_string(kwargs[key], key)
        elif key in kwargs and not isinstance(kwargs[key], dict):
            raise HyperparameterError(f"{key} must be a mapping or a 'dict(...)' string, got {kwargs[key]!r}.")
    for key in ("master_kwargs", "subpolicy_kwargs"):
        if key in kwargs:
            kwargs[key] = _schedules(kwargs[key], key)
    for key in (
        "n_subpolicies",
        "macro_duration",
        "warmup_iterations",
        "joint_iterations",
        "n_steps",
        "n_envs",
        "task_groups",
    ):
        if key in kwargs and (isinstance(kwargs[key], bool) or not isinstance(kwargs[key], int)):
            raise HyperparameterError(f"{key} must be an integer, got {kwargs[key]!r} ({type(kwargs[key]).__name__}).")
    _check_value_types(kwargs)
    n_timesteps = entry.get("n_timesteps", 1_000_000)
    if not isinstance(n_timesteps, (int, float)) or n_timesteps <= 0:
        raise HyperparameterError(f"n_timesteps must be a positive number, got {n_timesteps!r}.")
    return kwargs, int(n_timesteps), entry.get("policy", "MlpPolicy")


def load_hyperparams(env_id: str, path: str | None = None) -> dict[str, Any]:
    """
    :param env_id: The env id whose entry to read.
    :param path: The YAML file (default: the one shipped with sb3-mlsh).
    :return: The raw entry.
    """
    path = path or default_hyperparams_file()
    with open(path) as file:
        try:
            table = yaml.safe_load(file) or {}
        except yaml.YAMLError as error:
            raise HyperparameterError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(table, dict):
        raise HyperparameterError(f"{path} must map env ids to hyperparameters at its top level, got {type(table).__name__}.")
    if env_id not in table:
        close = difflib.get_close_matches(env_id, list(table), n=3)
        raise HyperparameterError(
            f"No hyperparameters for {env_id!r} in {path}. "
            + (f"Did you mean {close}? " if close else "")
            + f"Known ids: {sorted(table)}. MLSH trains on task families: envs with sample_tasks(n) and set_task(task), "
            "as the mlsh/* ids; for a family of your own, add an entry to a YAML file and pass --hyperparams-file."
        )
    entry = table[env_id]
    if not isinstance(entry, dict):
        raise HyperparameterError(f"The entry of {env_id!r} in {path} must be a mapping, got {entry!r}.")
    return dict(entry)


def override_hyperparams(entry: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """
    :param entry: A YAML entry.
    :param overrides: ``key:value`` pairs (values in YAML syntax); ``master_kwargs.clip_range:0.3`` sets one key of a
        nested mapping.
    :return: A copy of the entry with the overrides applied.
    """
    entry = dict(entry)
    for item in overrides:
        if ":" not in item:
            raise HyperparameterError(f"--hyperparams takes key:value pairs, got {item!r}.")
        key, value = item.split(":", 1)
        if "." in key:
            outer, inner = key.split(".", 1)
            nested = entry.get(outer, {})
            if not isinstance(nested, dict):
                raise HyperparameterError(
                    f"Cannot set {key!r}: {outer!r} is {nested!r}, not a mapping; "
                    "write it as a YAML mapping to override one key."
                )
            entry[outer] = {**nested, inner: yaml.safe_load(value)}
        else:
            entry[key] = yaml.safe_load(value)
    return entry


def _run_folder(log_folder: str, env_id: str) -> str:
    name = env_id.replace("/", "-").replace(":", "-")
    root = os.path.join(log_folder, "mlsh")
    os.makedirs(root, exist_ok=True)
    taken = [int(m.group(1)) for d in os.listdir(root) if (m := re.fullmatch(re.escape(name) + r"_(\d+)", d))]
    return os.path.join(root, f"{name}_{max(taken, default=0) + 1}")


def _recorded_steps(path: str) -> int:
    """
    :param path: A saved model.
    :return: The primitive steps it holds, as recorded inside it (read without loading the model).
    :raises ModelFileError: if the file is truncated or corrupt.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return int(json.loads(archive.read("data"))["num_timesteps"])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError, EOFError) as error:
        raise ModelFileError(f"{path} is truncated or corrupt ({type(error).__name__}: {error})") from error


def _latest_checkpoint(run_folder: str) -> str:
    """
    :param run_folder: A run folder.
    :return: Its saved model with the most steps (as recorded in the files, not by modification time, which a copy
        changes); truncated or corrupt files are skipped with a warning, and stale ``.tmp`` files of interrupted saves
        are removed.
    """
    folders = [run_folder, os.path.join(run_folder, "checkpoints")]
    candidates = []
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith(".tmp") and name.startswith("."):
                os.remove(path)  # an interrupted save (saves write a temporary file, then rename it)
            elif name.endswith(".zip") and (folder != run_folder or name == "model.zip"):
                candidates.append(path)
    ranked = []
    for path in candidates:
        try:
            ranked.append((_recorded_steps(path), path))
        except ModelFileError as error:
            warnings.warn(f"Skipping {error}.", stacklevel=2)
    if not ranked:
        raise FileNotFoundError(f"No readable checkpoint or model.zip in {run_folder}: nothing to resume from.")
    # At equal steps, prefer the final model over a checkpoint.
    return max(ranked, key=lambda item: (item[0], os.path.basename(item[1]) == "model.zip"))[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_mlsh.train",
        description="Meta-train MLSH on a task family with the hyperparameters of a zoo-style YAML file.",
    )
    parser.add_argument("--env", type=str, help="Env id of a task family, e.g. mlsh/MovementBandits-v0.")
    parser.add_argument("--hyperparams-file", "-yaml", type=str, default=None, help="YAML file (default: the packaged one).")
    parser.add_argument(
        "--hyperparams",
        "-params",
        nargs="+",
        default=[],
        metavar="KEY:VALUE",
        help="Override entries of the YAML, e.g. n_envs:4 warmup_iterations:5 master_kwargs.clip_range:0.3.",
    )
    parser.add_argument("--n-timesteps", "-n", type=int, default=None, help="Primitive env steps (overrides the YAML).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed.")
    parser.add_argument("--log-folder", "-f", type=str, default="logs", help="Runs go to <log-folder>/mlsh/mlsh-<env>_<n>/.")
    parser.add_argument(
        "--save-freq", type=int, default=100_000, help="Checkpoint every this many primitive steps (0: never)."
    )
    parser.add_argument("--log-interval", type=int, default=10, help="Print the log table every this many iterations.")
    parser.add_argument(
        "--resume",
        type=str,
        default=None,
        metavar="RUN_FOLDER",
        help="Continue the run in this folder from its checkpoint with the most steps, up to its n_timesteps "
        "(or -n, to extend it).",
    )
    parser.add_argument(
        "--task-groups",
        type=int,
        default=None,
        metavar="G",
        help="Task groups G (overrides the YAML). Under torchrun with P processes, G must divide P or be a multiple of it.",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="Under torchrun: how long a process waits for the others in a collective before the run fails.",
    )
    parser.add_argument(
        "--device",
        type=str,
        default="cpu",
        help="Torch device (MLP policies are fastest on the CPU). Under torchrun, 'auto' puts each process on the GPU of "
        "its LOCAL_RANK when every process has one (NCCL), else on the CPU (gloo).",
    )
    parser.add_argument("--no-progress", action="store_true", help="Do not show the progress bar.")
    parser.add_argument(
        "--trusted",
        action="store_true",
        help="With --resume: unpickle what the checkpoint stores pickled (checkpoints of sb3-mlsh 0.1); only for files "
        "you trust, since unpickling runs code from the file.",
    )
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1], help="0: quiet, 1: log tables.")
    return parser


def _resume_hint(run_folder: str | None, processes: int) -> str:
    if run_folder is None:
        return "the run had not created its folder yet: start it again."
    try:
        checkpoint = _latest_checkpoint(run_folder)
    except FileNotFoundError:
        return f"no checkpoint was written in {run_folder} yet: start the run again."
    return (
        f"the last checkpoint is {checkpoint}; resume with: "
        f"torchrun --nproc_per_node={processes} -m sb3_mlsh.train --resume {run_folder}"
    )


def main(argv: list[str] | None = None) -> MLSH:
    """
    Run ``python -m sb3_mlsh.train``, or under ``torchrun`` one process of a distributed run (rank 0 creates the run
    folder, logs and writes the checkpoints; every process takes part in each save).

    :param argv: Command-line arguments (default: ``sys.argv[1:]``).
    :return: The trained model.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    if args.resume is None and args.env is None:
        parser.error("give --env (or --resume RUN_FOLDER)")
    if args.n_timesteps is not None and args.n_timesteps <= 0:
        parser.error(f"-n/--n-timesteps must be a positive number of steps, got {args.n_timesteps}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0 (numpy and gymnasium refuse negative seeds), got {args.seed}")
    if args.save_freq < 0:
        parser.error(f"--save-freq must be >= 0 (0: no checkpoints), got {args.save_freq}")
    if args.resume is not None and not os.path.isfile(os.path.join(args.resume, "config.yml")):
        parser.error(
            f"--resume {args.resume}: no run there (a run folder holds config.yml), e.g. logs/mlsh/mlsh-<env>_<n>"
            if not os.path.isdir(args.resume)
            else f"--resume {args.resume}: the folder has no config.yml, so it is not an sb3-mlsh run folder"
        )
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = processes > 1
    run_folder: str | None = None
    if distributed:
        # Lazy: a single-process run never imports the distributed code.
        from sb3_mlsh import distributed as mlsh_distributed

        mlsh_distributed.init_process_group(args.dist_timeout)
        main_process = th.distributed.get_rank() == 0
        mlsh_distributed.install_stop_handler(lambda: _resume_hint(run_folder, processes))
    else:
        main_process = True
    say = print if main_process else (lambda *_args, **_kwargs: None)
    if args.resume is not None:
        run_folder = args.resume
        if main_process:
            with open(os.path.join(run_folder, "config.yml")) as file:
                config = yaml.safe_load(file)
            checkpoint = _latest_checkpoint(run_folder)
        source: Any = checkpoint if main_process else None
        if distributed:
            # Only rank 0 needs to see the run folder: the others receive the config and the checkpoint's bytes.
            blob = None
            if main_process:
                with open(checkpoint, "rb") as file:
                    blob = file.read()
            shared = (config, checkpoint, blob) if main_process else None
            config, checkpoint, blob = mlsh_distributed.broadcast_from_main(shared)
            source = io.BytesIO(blob)
        env_id = config["env"]
        kwargs, n_timesteps, _ = parse_hyperparams(config["hyperparams"], env_id)
        if args.n_timesteps is not None and args.n_timesteps != n_timesteps:
            # Extend (or shorten) the run: its config records the new target.
            n_timesteps = config["hyperparams"]["n_timesteps"] = args.n_timesteps
            if main_process:
                with open(os.path.join(run_folder, "config.yml"), "w") as file:
                    yaml.safe_dump(config, file, sort_keys=False)
        if args.save_freq == parser.get_default("save_freq"):
            args.save_freq = config.get("save_freq", args.save_freq)
        # Append to the Monitor CSVs: the episodes before the interruption stay in the learning curve.
        model = MLSH.load(
            source,
            trusted=args.trusted,
            verbose=args.verbose,
            tensorboard_log=run_folder,
            monitor_dir=run_folder,
            monitor_kwargs={"override_existing": False},
            device=args.device,
        )
        say(f"Resuming {run_folder} from {checkpoint} at {model.num_timesteps} steps (target {n_timesteps}).")
        if model.num_timesteps >= n_timesteps:
            say(f"The run already has {model.num_timesteps} steps: give a larger -n to extend it.")
    else:
        env_id = args.env
        entry = override_hyperparams(load_hyperparams(env_id, args.hyperparams_file), args.hyperparams)
        if args.task_groups is not None:
            entry["task_groups"] = args.task_groups
        kwargs, n_timesteps, policy = parse_hyperparams(entry, env_id)
        if args.n_timesteps is not None:
            n_timesteps = args.n_timesteps
            entry["n_timesteps"] = n_timesteps
        if main_process:
            run_folder = _run_folder(args.log_folder, env_id)
            os.makedirs(run_folder)
            with open(os.path.join(run_folder, "config.yml"), "w") as file:
                config = {"env": env_id, "seed": args.seed, "save_freq": args.save_freq, "hyperparams": entry}
                if distributed:
                    config["processes"] = processes  # n_envs is per process
                yaml.safe_dump(config, file, sort_keys=False)
        if distributed:
            run_folder = mlsh_distributed.broadcast_from_main(run_folder)
        assert run_folder is not None
        try:
            model = MLSH(
                policy,
                env_id,
                seed=args.seed,
                verbose=args.verbose,
                tensorboard_log=run_folder,
                monitor_dir=run_folder,
                device=args.device,
                **kwargs,
            )
        except Exception:
            if main_process:  # a failed start leaves no run folder behind
                shutil.rmtree(run_folder, ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.dirname(run_folder))  # the <log-folder>/mlsh folder, if this run made it
            raise
        say(
            f"Training MLSH on {env_id} for {n_timesteps} steps"
            + (f" over {processes} processes ({model.n_envs} envs each)" if distributed else "")
            + f"; logs in {run_folder}"
        )
    callbacks: list[BaseCallback] = []
    checkpoints = None
    if args.save_freq > 0:
        # Every process runs it: a save is a collective call, of which rank 0 writes the file.
        checkpoints = IterationCheckpoint(args.save_freq, os.path.join(run_folder, "checkpoints"), "mlsh")
        callbacks.append(checkpoints)
    if main_process:
        callbacks.append(IterationCSV(os.path.join(run_folder, "iterations.csv")))
    stopper = None
    if not distributed:
        stopper = StopOnSignal()
        callbacks.append(stopper)
    start, start_steps = time.time(), model.num_timesteps
    remaining = n_timesteps - (model.num_timesteps if args.resume else 0)
    finished = False
    try:
        model.learn(
            max(remaining, 0),
            callback=callbacks,
            log_interval=args.log_interval,
            tb_log_name="MLSH",
            reset_num_timesteps=args.resume is None,
            progress_bar=not args.no_progress,
        )
        finished = stopper is None or stopper.received is None
    except Exception as error:  # a lost peer may surface as any error, an OSError (reset connection) included
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise SystemExit(
                f"error: the disk is full ({error.strerror}); nothing was half-written: the checkpoints in {run_folder} "
                f"and its iterations.csv are intact. Free some space, then resume with: python -m sb3_mlsh.train --resume "
                f"{run_folder}"
            ) from None
        if not distributed:
            raise  # in one process an error keeps its traceback
        mlsh_distributed.mark_stopping()
        rank = th.distributed.get_rank()
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(
            f"error: rank {rank} lost the other processes of the run ({type(error).__name__}: {first_line}). A process "
            f"died or stopped answering for --dist-timeout {args.dist_timeout:g} s (the launcher's log names it); "
            f"{_resume_hint(run_folder, processes)}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1) from error
    if stopper is not None and stopper.received is not None:
        # Stopped by SIGINT / SIGTERM: the model holds the last completed iteration; keep it as a checkpoint.
        path = (checkpoints or IterationCheckpoint(1, os.path.join(run_folder, "checkpoints"))).path_for(
            model.completed_timesteps
        )
        if not os.path.exists(path):
            model.save(path)
        name = signal.Signals(stopper.received).name
        print(
            f"Stopped by {name} at {model.completed_timesteps} steps; checkpoint: {path}\n"
            f"Resume with: python -m sb3_mlsh.train --resume {run_folder}",
            file=sys.stderr,
        )
        raise SystemExit(128 + stopper.received)
    if finished:
        model.save(os.path.join(run_folder, "model.zip"))
    elapsed = time.time() - start
    if main_process:
        returns = [info["r"] for info in model.ep_info_buffer or []]
        png = plot_run(run_folder, title=f"MLSH on {env_id}")
        steps = model.num_timesteps - start_steps
        summary = (
            f"Mean return of the last {len(returns)} episodes: {np.mean(returns):.2f}." if returns else "No episode ended."
        )
        print(
            f"Done: {steps} steps in {elapsed:.0f} s ({steps / max(elapsed, 1e-9):.0f} steps/s)"
            + (f", {model.num_timesteps} in all" if args.resume else "")
            + f". {summary}\n"
            f"Model: {os.path.join(run_folder, 'model.zip')}\nLearning curve: {png}"
        )
    if distributed:
        # Rank 0 may still be writing the CSV and the plot: leaving now could abort it mid-way.
        mlsh_distributed.destroy_process_group()
    return model


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, TypeError) as error:
        if os.environ.get("SB3_MLSH_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
