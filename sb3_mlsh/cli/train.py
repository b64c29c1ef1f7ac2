"""Train MLSH from the command line, the way rl-baselines3-zoo trains SB3 algorithms.

Example::

    python -m sb3_mlsh.train --env mlsh/MovementBandits-v0
    torchrun --nproc_per_node=2 -m sb3_mlsh.train --env mlsh/MovementBandits-v0 --task-groups 2
"""

import argparse
import contextlib
import errno
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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from sb3_mlsh.cli.hyperparams import load_hyperparams, override_hyperparams, parse_hyperparams
from sb3_mlsh.common.callbacks import IterationCheckpoint, IterationCSV, StopOnSignal
from sb3_mlsh.common.plotting import plot_run
from sb3_mlsh.common.serialization import ModelFileError
from sb3_mlsh.distributed import launch, world_size
from sb3_mlsh.mlsh import MLSH

__all__ = ["main", "run"]


def _make_run_folder(log_folder: str, env_id: str) -> str:
    """
    Make the next free ``<log_folder>/mlsh/mlsh-<env>_<n>`` folder.

    :param log_folder: The root of all runs.
    :param env_id: The env the run trains on.
    :return: The new folder: another run started at the same moment into the same log folder gets another number.
    """
    name = env_id.replace("/", "-").replace(":", "-")
    root = os.path.join(log_folder, "mlsh")
    os.makedirs(root, exist_ok=True)
    taken = [int(m.group(1)) for d in os.listdir(root) if (m := re.fullmatch(re.escape(name) + r"_(\d+)", d))]
    number = max(taken, default=0) + 1
    while True:
        folder = os.path.join(root, f"{name}_{number}")
        try:
            os.mkdir(folder)  # atomic: of two runs that chose the same number, one gets it and the other moves on
            return folder
        except FileExistsError:
            number += 1


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


@dataclass
class _Run:
    """What a process knows of its run: where it stands in it, and (once made or found) its folder."""

    processes: int
    main_process: bool
    folder: str | None = None

    @property
    def distributed(self) -> bool:
        return self.processes > 1

    def say(self, message: str) -> None:
        if self.main_process:
            print(message)


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
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


def _resume(args: argparse.Namespace, parser: argparse.ArgumentParser, run: _Run) -> tuple[MLSH, str, int]:
    """:return: The model loaded from the run's latest checkpoint, the env id and the run's target steps."""
    run.folder = args.resume
    config: dict[str, Any] = {}
    checkpoint = ""
    if run.main_process:
        with open(os.path.join(run.folder, "config.yml")) as file:
            config = yaml.safe_load(file)
        checkpoint = _latest_checkpoint(run.folder)
    source: Any = checkpoint
    if run.distributed:
        # Only rank 0 needs to see the run folder: the others receive the config and the checkpoint's bytes.
        blob = None
        if run.main_process:
            with open(checkpoint, "rb") as file:
                blob = file.read()
        config, checkpoint, blob = launch.broadcast_from_main((config, checkpoint, blob) if run.main_process else None)
        source = io.BytesIO(blob)
    env_id = config["env"]
    _, n_timesteps, _ = parse_hyperparams(config["hyperparams"], env_id)
    if args.n_timesteps is not None and args.n_timesteps != n_timesteps:
        # Extend (or shorten) the run: its config records the new target.
        n_timesteps = config["hyperparams"]["n_timesteps"] = args.n_timesteps
        if run.main_process:
            with open(os.path.join(run.folder, "config.yml"), "w") as file:
                yaml.safe_dump(config, file, sort_keys=False)
    if args.save_freq == parser.get_default("save_freq"):
        args.save_freq = config.get("save_freq", args.save_freq)
    # Append to the Monitor CSVs: the episodes before the interruption stay in the learning curve.
    model = MLSH.load(
        source,
        trusted=args.trusted,
        verbose=args.verbose,
        tensorboard_log=run.folder,
        monitor_dir=run.folder,
        monitor_kwargs={"override_existing": False},
        device=args.device,
    )
    run.say(f"Resuming {run.folder} from {checkpoint} at {model.num_timesteps} steps (target {n_timesteps}).")
    if model.num_timesteps >= n_timesteps:
        run.say(f"The run already has {model.num_timesteps} steps: give a larger -n to extend it.")
    return model, env_id, n_timesteps


def _start(args: argparse.Namespace, run: _Run) -> tuple[MLSH, str, int]:
    """:return: A new model in a new run folder (which a failed start removes), the env id and the target steps."""
    env_id = args.env
    entry = override_hyperparams(load_hyperparams(env_id, args.hyperparams_file), args.hyperparams)
    if args.task_groups is not None:
        entry["task_groups"] = args.task_groups
    kwargs, n_timesteps, policy = parse_hyperparams(entry, env_id)
    if args.n_timesteps is not None:
        n_timesteps = entry["n_timesteps"] = args.n_timesteps
    if run.main_process:
        run.folder = _make_run_folder(args.log_folder, env_id)
        with open(os.path.join(run.folder, "config.yml"), "w") as file:
            config = {"env": env_id, "seed": args.seed, "save_freq": args.save_freq, "hyperparams": entry}
            if run.distributed:
                config["processes"] = run.processes  # n_envs is per process
            yaml.safe_dump(config, file, sort_keys=False)
    if run.distributed:
        run.folder = launch.broadcast_from_main(run.folder)
    assert run.folder is not None
    try:
        model = MLSH(
            policy, env_id, seed=args.seed, verbose=args.verbose, tensorboard_log=run.folder, monitor_dir=run.folder,
            device=args.device, **kwargs,
        )  # fmt: skip
    except Exception:
        if run.main_process:  # a failed start leaves no run folder behind
            shutil.rmtree(run.folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(run.folder))  # the <log-folder>/mlsh folder, if this run made it
        raise
    layout = f" over {run.processes} processes ({model.n_envs} envs each)" if run.distributed else ""
    run.say(f"Training MLSH on {env_id} for {n_timesteps} steps{layout}; logs in {run.folder}")
    return model, env_id, n_timesteps


def _learn(model: MLSH, args: argparse.Namespace, run: _Run, n_timesteps: int) -> bool:
    """
    :return: Whether the run reached its target (not stopped by a signal).
    :raises SystemExit: when the disk is full, a signal stopped the run, or a distributed run lost a process; each
        names the checkpoint and the resume command.
    """
    assert run.folder is not None
    callbacks: list[BaseCallback] = []
    checkpoints = None
    if args.save_freq > 0:
        # Every process runs it: a save is a collective call, of which rank 0 writes the file.
        checkpoints = IterationCheckpoint(args.save_freq, os.path.join(run.folder, "checkpoints"), "mlsh")
        callbacks.append(checkpoints)
    if run.main_process:
        callbacks.append(IterationCSV(os.path.join(run.folder, "iterations.csv")))
    stopper = None if run.distributed else StopOnSignal()
    callbacks += [stopper] if stopper is not None else []
    remaining = n_timesteps - (model.num_timesteps if args.resume else 0)
    try:
        model.learn(
            max(remaining, 0), callback=callbacks, log_interval=args.log_interval, tb_log_name="MLSH",
            reset_num_timesteps=args.resume is None, progress_bar=not args.no_progress,
        )  # fmt: skip
    except Exception as error:  # a lost peer may surface as any error, an OSError (reset connection) included
        _report_failure(error, args, run)
    if stopper is None or stopper.received is None:
        return True
    # Stopped by SIGINT / SIGTERM: the model holds the last completed iteration; keep it as a checkpoint.
    path = (checkpoints or IterationCheckpoint(1, os.path.join(run.folder, "checkpoints"))).path_for(model.completed_timesteps)
    if not os.path.exists(path):
        model.save(path)
    name = signal.Signals(stopper.received).name
    print(
        f"Stopped by {name} at {model.completed_timesteps} steps; checkpoint: {path}\n"
        f"Resume with: python -m sb3_mlsh.train --resume {run.folder}",
        file=sys.stderr,
    )
    raise SystemExit(128 + stopper.received)


def _report_failure(error: Exception, args: argparse.Namespace, run: _Run) -> None:
    """Turn a full disk, or a lost process of a distributed run, into a message with the resume command."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        raise SystemExit(
            f"error: the disk is full ({error.strerror}); nothing was half-written: the checkpoints in {run.folder} "
            f"and its iterations.csv are intact. Free some space, then resume with: python -m sb3_mlsh.train --resume "
            f"{run.folder}"
        ) from None
    if not run.distributed:
        raise error  # in one process an error keeps its traceback
    first_line = (str(error).strip().splitlines() or [""])[0]
    print(
        f"error: rank {th.distributed.get_rank()} lost the other processes of the run ({type(error).__name__}: "
        f"{first_line}). A process died or stopped answering for --dist-timeout {args.dist_timeout:g} s (the launcher's "
        f"log names it); {_resume_hint(run.folder, run.processes)}",
        file=sys.stderr,
        flush=True,
    )
    # Only once the report is out: the launcher's SIGTERM, which may come while the hint is being built, would otherwise
    # find this process "already reported" and end it silently.
    launch.mark_stopping()
    raise SystemExit(1) from error


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
    _check_args(parser, args)
    run = _Run(processes=world_size(), main_process=True)
    if run.distributed:
        launch.init_process_group(args.dist_timeout)
        run.main_process = th.distributed.get_rank() == 0
        launch.install_stop_handler(lambda: _resume_hint(run.folder, run.processes))
    model, env_id, n_timesteps = _resume(args, parser, run) if args.resume is not None else _start(args, run)
    assert run.folder is not None
    start, start_steps = time.time(), model.num_timesteps
    if _learn(model, args, run, n_timesteps):
        model.save(os.path.join(run.folder, "model.zip"))
    elapsed = time.time() - start
    if run.main_process:
        returns = [info["r"] for info in model.ep_info_buffer or []]
        png = plot_run(run.folder, title=f"MLSH on {env_id}")
        steps = model.num_timesteps - start_steps
        summary = (
            f"Mean return of the last {len(returns)} episodes: {np.mean(returns):.2f}." if returns else "No episode ended."
        )
        print(
            f"Done: {steps} steps in {elapsed:.0f} s ({steps / max(elapsed, 1e-9):.0f} steps/s)"
            + (f", {model.num_timesteps} in all" if args.resume else "")
            + f". {summary}\n"
            f"Model: {os.path.join(run.folder, 'model.zip')}\nLearning curve: {png}"
        )
    if run.distributed:
        # Rank 0 may still be writing the CSV and the plot: leaving now could abort it mid-way.
        launch.destroy_process_group()
    return model


def run(argv: list[str] | None = None) -> None:
    """
    The console entry point: :func:`main`, with a bad argument or file reported as one line and exit status 2
    (``SB3_MLSH_DEBUG=1`` shows the traceback instead).

    :param argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    try:
        main(argv)
    except (ValueError, FileNotFoundError, TypeError) as error:
        if os.environ.get("SB3_MLSH_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
