"""Train MLSH from the command line, the way rl-baselines3-zoo trains SB3 algorithms.

Example::

    python -m sb3_mlsh.train --env mlsh/MovementBandits-v0
    torchrun --nproc_per_node=2 -m sb3_mlsh.train --env mlsh/MovementBandits-v0 --task-groups 2
"""

import argparse
import contextlib
import errno
import io
import math
import os
import re
import shutil
import signal
import socket
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch as th
import yaml
from filelock import FileLock, Timeout
from stable_baselines3.common.callbacks import BaseCallback

from sb3_mlsh.cli.hyperparams import load_hyperparams, override_hyperparams, parse_hyperparams, target_timesteps
from sb3_mlsh.common.callbacks import IterationCheckpoint, IterationCSV, StopOnSignal
from sb3_mlsh.common.plotting import plot_run
from sb3_mlsh.common.serialization import ModelFileError, read_model_data, verify_model_zip, write_atomically
from sb3_mlsh.distributed import launch, world_size
from sb3_mlsh.mlsh import MLSH

__all__ = ["CommandLineError", "RunInUseError", "main", "run"]

#: Write failures that end a run with one line naming the newest checkpoint (any other error keeps its traceback).
WRITE_FAILURES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "a file would pass the file size limit (ulimit -f) or the file system's largest file",
    errno.EROFS: "the file system is read-only",
}


class CommandLineError(ValueError):
    """A bad argument, file or folder given to the command line: reported as one ``error:`` line, exit status 2."""


class RunInUseError(CommandLineError):
    """Another process is writing to the run folder: a run has one writer at a time."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as every other error of the command: the usage block would bury it.
        self.exit(2, f"error: {message} (python -m sb3_mlsh.train --help lists the options)\n")


def _step_count(text: str) -> int:
    """``-n`` takes ``100000`` or ``1e5``, as the YAML files write it; a fraction or ``inf`` is not a number of steps."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of steps (e.g. 100000 or 1e5)") from None
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of steps (e.g. 100000 or 1e5)")
    return int(value)


def _make_run_folder(log_folder: str, env_id: str) -> str:
    """
    Make the next free ``<log_folder>/mlsh/mlsh-<env>_<n>`` folder.

    :param log_folder: The root of all runs.
    :param env_id: The env the run trains on.
    :return: The new folder: another run started at the same moment into the same log folder gets another number.
    """
    name = env_id.replace("/", "-").replace(":", "-")
    root = os.path.join(log_folder, "mlsh")
    try:
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
    except OSError as error:
        raise CommandLineError(
            f"-f/--log-folder {log_folder}: cannot make the run folder there ({error.strerror}: {error.filename}). "
            "Give a folder you can write to."
        ) from error


def _lock_run(folder: str) -> FileLock:
    """
    Make this process the run folder's one writer, for as long as it holds the returned lock (the operating system
    releases it when the process ends, however it ends).

    :raises RunInUseError: naming the process that writes to the folder.
    """
    lock = FileLock(os.path.join(folder, ".lock"), timeout=0)
    owner = os.path.join(folder, ".lock.owner")
    try:
        lock.acquire()
    except Timeout:
        try:
            with open(owner) as file:
                who = file.read(500).strip()
        except OSError:
            who = "a process that has not written its name yet"
        raise RunInUseError(
            f"{folder} is in use by another run ({who}): a run folder has one writer at a time. Wait for that run to "
            "end, or stop it (kill <pid>), then resume."
        ) from None
    except OSError as error:
        raise CommandLineError(
            f"{folder}: cannot lock the run folder ({error.strerror}); a run writes its checkpoints and logs there, so it "
            "needs a folder it can write to."
        ) from error
    with open(owner, "w") as file:
        file.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return lock


def _recorded(path: str) -> tuple[int, str | None]:
    """
    :param path: A saved model.
    :return: The primitive steps it holds and the run id it was saved with, as recorded inside it (read without
        loading the model, and without inflating it past the limits of a model file).
    :raises ModelFileError: if the file is truncated, corrupt or over those limits.
    """
    data = read_model_data(path)
    steps, run_id = data.get("num_timesteps"), data.get("run_id")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ModelFileError(f"{path} is truncated or corrupt (it records {steps!r} steps)")
    return steps, run_id if isinstance(run_id, str) else None


def _remove_stale_saves(run_folder: str) -> None:
    """Remove the temporary files of interrupted saves (a save writes one, then renames it): only the run's writer may."""
    for folder in (run_folder, os.path.join(run_folder, "checkpoints")):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(folder, name))


def _checkpoints(run_folder: str, run_id: str | None) -> list[tuple[int, str]]:
    """
    :param run_folder: A run folder.
    :param run_id: The run's id (None: a run of sb3-mlsh 0.2, whose files have none).
    :return: ``(steps, path)`` of its saved models, most steps first (at equal steps, the final model first); files
        that do not read, and checkpoints of another run (a run id other than ``run_id``), are skipped with a warning.
    """
    ranked = []
    for folder in (run_folder, os.path.join(run_folder, "checkpoints")):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not (name.endswith(".zip") and (folder != run_folder or name == "model.zip")):
                continue
            try:
                steps, saved_id = _recorded(path)
            except ModelFileError as error:
                warnings.warn(f"Skipping {error}.", stacklevel=3)
                continue
            if run_id is not None and saved_id is not None and saved_id != run_id:
                warnings.warn(
                    f"Skipping {path}: it is a checkpoint of another run (run id {saved_id}, this run's is {run_id}); "
                    "move it out of the run folder.",
                    stacklevel=3,
                )
                continue
            ranked.append((steps, name == "model.zip", path))
    return [(steps, path) for steps, _, path in sorted(ranked, reverse=True)]


def _latest_checkpoint(run_folder: str, run_id: str | None = None) -> str:
    """
    :param run_folder: A run folder.
    :param run_id: The run's id, as its config.yml records it.
    :return: Its saved model with the most steps (as recorded in the files, not by modification time, which a copy
        changes) that reads completely: a truncated or corrupt file (a bad CRC included) is skipped with a warning,
        and so is a checkpoint of another run.
    :raises FileNotFoundError: when there is no such file.
    """
    for _, path in _checkpoints(run_folder, run_id):
        try:
            verify_model_zip(path)
            return path
        except ModelFileError as error:
            warnings.warn(f"Skipping {error}; falling back to the checkpoint before it.", stacklevel=2)
    raise FileNotFoundError(f"No readable checkpoint or model.zip of this run in {run_folder}: nothing to resume from.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    parser.add_argument(
        "--n-timesteps",
        "-n",
        type=_step_count,
        default=None,
        help="Primitive env steps, e.g. 100000 or 1e5 (overrides the YAML).",
    )
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
        "(or -n, to extend it: schedules such as lin_3e-4 then run to the new -n, so a rate that had decayed rises "
        "again).",
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


def _resume_command(run_folder: str, processes: int) -> str:
    launcher = f"torchrun --nproc_per_node={processes} -m" if processes > 1 else "python -m"
    return f"{launcher} sb3_mlsh.train --resume {run_folder}"


def _newest_checkpoint(run_folder: str, run_id: str | None) -> tuple[int, str] | None:
    """The newest saved model of the run, as recorded in the files (quietly: this only names it in a message)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = _checkpoints(run_folder, run_id)
    return ranked[0] if ranked else None


def _resume_hint(run_folder: str | None, processes: int, run_id: str | None = None) -> str:
    if run_folder is None:
        return "the run had not created its folder yet: start it again."
    newest = _newest_checkpoint(run_folder, run_id)
    if newest is None:
        return f"no checkpoint was written in {run_folder} yet: start the run again."
    return f"the last checkpoint is {newest[1]}; resume with: {_resume_command(run_folder, processes)}"


@dataclass
class _Run:
    """What a process knows of its run: where it stands in it, and (once made or found) its folder, id and lock."""

    processes: int
    main_process: bool
    folder: str | None = None
    run_id: str | None = None
    lock: FileLock | None = None

    @property
    def distributed(self) -> bool:
        return self.processes > 1

    def say(self, message: str) -> None:
        if self.main_process:
            print(message)

    def release(self) -> None:
        if self.lock is not None:
            assert self.folder is not None
            with contextlib.suppress(OSError):
                os.remove(os.path.join(self.folder, ".lock.owner"))
            self.lock.release()
            self.lock = None


def _check_args(args: argparse.Namespace) -> None:
    """:raises CommandLineError: for an argument out of range, before anything is written."""
    if args.resume is None and args.env is None:
        raise CommandLineError("give --env ENV_ID, e.g. --env mlsh/MovementBandits-v0 (or --resume RUN_FOLDER)")
    if args.n_timesteps is not None and args.n_timesteps <= 0:
        raise CommandLineError(f"-n/--n-timesteps must be a positive number of steps, got {args.n_timesteps}")
    if args.seed < 0:
        raise CommandLineError(f"--seed must be >= 0 (numpy and gymnasium refuse negative seeds), got {args.seed}")
    if args.save_freq < 0:
        raise CommandLineError(f"--save-freq must be >= 0 (0: no checkpoints), got {args.save_freq}")
    if args.log_interval < 1:
        raise CommandLineError(f"--log-interval must be >= 1 (iterations between two log tables), got {args.log_interval}")
    if args.device != "auto":
        try:
            th.device(args.device)
        except (RuntimeError, ValueError):
            raise CommandLineError(
                f"--device {args.device!r} is not a torch device: use cpu, cuda, cuda:<index>, mps or auto"
            ) from None
    # Only rank 0 reads the run folder (the other processes receive its config and checkpoint): the other machines of
    # a distributed run need not have it.
    reads_run_folder = os.environ.get("RANK", "0") == "0"
    if args.resume is not None and reads_run_folder and not os.path.isfile(os.path.join(args.resume, "config.yml")):
        raise CommandLineError(
            f"--resume {args.resume}: no run there (a run folder holds config.yml), e.g. logs/mlsh/mlsh-<env>_<n>"
            if not os.path.isdir(args.resume)
            else f"--resume {args.resume}: the folder has no config.yml, so it is not an sb3-mlsh run folder"
        )


def _read_config(folder: str) -> dict[str, Any]:
    """
    :return: The run's config.yml, checked: nothing in it is run (the model file is the source of truth for the model;
        the config gives the env id for messages, the target steps, the checkpoint interval and the run id).
    :raises CommandLineError: for a config.yml that does not read or lacks what a resume needs.
    """
    path = os.path.join(folder, "config.yml")
    try:
        with open(path) as file:
            config = yaml.safe_load(file)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise CommandLineError(f"--resume {folder}: its config.yml does not read ({error})") from error
    readable = isinstance(config, dict) and isinstance(config.get("env"), str) and isinstance(config.get("hyperparams"), dict)
    if not readable:
        raise CommandLineError(
            f"--resume {folder}: its config.yml lacks the env id or the hyperparameters that python -m sb3_mlsh.train "
            "writes there: not a run folder, or an edited config"
        )
    save_freq = config.get("save_freq", 0)
    if isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 0:
        raise CommandLineError(f"--resume {folder}: its config.yml has save_freq {save_freq!r}, not a count of steps >= 0")
    if config.get("run_id") is not None and not isinstance(config["run_id"], str):
        raise CommandLineError(f"--resume {folder}: its config.yml has run_id {config['run_id']!r}, not a string")
    return config


def _write_config(folder: str, config: dict[str, Any]) -> None:
    # Atomically: a run killed while it rewrites its config (a resume with -n) must keep a config to resume from.
    write_atomically(os.path.join(folder, "config.yml"), yaml.safe_dump(config, sort_keys=False).encode())


def _resume(args: argparse.Namespace, parser: argparse.ArgumentParser, run: _Run) -> tuple[MLSH, str, int]:
    """:return: The model loaded from the run's latest checkpoint, the env id and the run's target steps."""
    run.folder = args.resume
    config: dict[str, Any] = {}
    checkpoint = ""
    if run.main_process:
        config = _read_config(run.folder)
        run.lock = _lock_run(run.folder)
        _remove_stale_saves(run.folder)
        if config.get("run_id") is None:  # a run of sb3-mlsh 0.2: from now on its checkpoints carry an id
            config["run_id"] = uuid.uuid4().hex
            _write_config(run.folder, config)
        checkpoint = _latest_checkpoint(run.folder, config["run_id"])
    source: Any = checkpoint
    if run.distributed:
        # Only rank 0 needs to see the run folder: the others receive the config and the checkpoint's bytes.
        blob = None
        if run.main_process:
            with open(checkpoint, "rb") as file:
                blob = file.read()
        config, checkpoint, blob = launch.broadcast_from_main((config, checkpoint, blob) if run.main_process else None)
        source = io.BytesIO(blob)
    env_id, run.run_id = config["env"], config["run_id"]
    n_timesteps = target_timesteps(config["hyperparams"])
    if args.n_timesteps is not None and args.n_timesteps != n_timesteps:
        # Extend (or shorten) the run: its config records the new target.
        n_timesteps = config["hyperparams"]["n_timesteps"] = args.n_timesteps
        if run.main_process:
            _write_config(run.folder, config)
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
    model.run_id = run.run_id
    run.say(f"Resuming {run.folder} from {checkpoint} at {model.num_timesteps} steps (target {n_timesteps}).")
    if model.num_timesteps >= n_timesteps:
        run.say(f"The run already has {model.num_timesteps} steps: give a larger -n to extend it.")
    return model, env_id, n_timesteps


def _remove_failed_start(run: _Run) -> None:
    """A failed start leaves no run folder behind (nor the <log-folder>/mlsh folder, if this run made it)."""
    if run.main_process and run.folder is not None:
        run.release()
        shutil.rmtree(run.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(run.folder))
        run.folder = None


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
        run.run_id = uuid.uuid4().hex
        try:
            run.lock = _lock_run(run.folder)
            config = {
                "env": env_id, "seed": args.seed, "save_freq": args.save_freq, "run_id": run.run_id, "hyperparams": entry,
            }  # fmt: skip
            if run.distributed:
                config["processes"] = run.processes  # n_envs is per process
            _write_config(run.folder, config)
        except BaseException:
            _remove_failed_start(run)
            raise
    if run.distributed:
        run.folder, run.run_id = launch.broadcast_from_main((run.folder, run.run_id))
    assert run.folder is not None
    try:
        model = MLSH(
            policy, env_id, seed=args.seed, verbose=args.verbose, tensorboard_log=run.folder, monitor_dir=run.folder,
            device=args.device, **kwargs,
        )  # fmt: skip
    except Exception:
        _remove_failed_start(run)
        raise
    model.run_id = run.run_id
    layout = f" over {run.processes} processes ({model.n_envs} envs each)" if run.distributed else ""
    run.say(f"Training MLSH on {env_id} for {n_timesteps} steps{layout}; logs in {run.folder}")
    return model, env_id, n_timesteps


def _learn(model: MLSH, args: argparse.Namespace, run: _Run, n_timesteps: int) -> bool:
    """
    :return: Whether the run reached its target (not stopped by a signal).
    :raises SystemExit: when a write fails, a signal stopped the run, or a distributed run lost a process; each names
        the checkpoint and the resume command.
    """
    assert run.folder is not None
    callbacks: list[BaseCallback] = []
    if run.main_process:
        # Before the checkpoints: a kill between a checkpoint and its row would lose the row for good, while rows
        # past the checkpoint a run resumes from are dropped (and written again).
        callbacks.append(IterationCSV(os.path.join(run.folder, "iterations.csv")))
    checkpoints = None
    if args.save_freq > 0:
        # Every process runs it: a save is a collective call, of which rank 0 writes the file.
        checkpoints = IterationCheckpoint(args.save_freq, os.path.join(run.folder, "checkpoints"), "mlsh")
        callbacks.append(checkpoints)
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
    # Stopped by SIGINT / SIGTERM: keep the start of the unfinished iteration (or the model, at an iteration boundary)
    # as a checkpoint, from which a resume is the uninterrupted run.
    path = (checkpoints or IterationCheckpoint(1, os.path.join(run.folder, "checkpoints"))).path_for(model.completed_timesteps)
    if not stopper.save_iteration_start(path) and not os.path.exists(path):
        model.save(path)
    name = signal.Signals(stopper.received).name
    print(
        f"Stopped by {name} at {model.completed_timesteps} steps; checkpoint: {path}\n"
        f"Resume with: python -m sb3_mlsh.train --resume {run.folder}",
        file=sys.stderr,
    )
    raise SystemExit(128 + stopper.received)


def _write_failure(error: OSError, run: _Run) -> str:
    """:return: The one line that reports a failed write: what failed, and the newest checkpoint (only if there is one)."""
    where = f": {error.filename}" if error.filename else ""
    message = f"error: a write failed: {WRITE_FAILURES[error.errno or 0]} ({error.strerror}{where})."
    if run.folder is None:
        return f"{message} No run folder was made: start the run again once there is room."
    newest = _newest_checkpoint(run.folder, run.run_id)
    if newest is None:
        return (
            f"{message} No checkpoint of the run was written yet, so there is nothing to resume: make room, then start "
            f"the run again (its logs so far are in {run.folder})."
        )
    return (
        f"{message} Nothing was half-written (saves write a temporary file, then rename it): the newest checkpoint, "
        f"{newest[1]} ({newest[0]} steps), is intact. Make room, then resume with: "
        f"{_resume_command(run.folder, run.processes)}"
    )


def _report_failure(error: Exception, args: argparse.Namespace, run: _Run) -> None:
    """Turn a failed write, or a lost process of a distributed run, into a message with the resume command."""
    if isinstance(error, OSError) and error.errno in WRITE_FAILURES:
        raise SystemExit(_write_failure(error, run)) from None
    if not run.distributed:
        raise error  # in one process an error keeps its traceback
    first_line = (str(error).strip().splitlines() or [""])[0]
    print(
        f"error: rank {th.distributed.get_rank()} lost the other processes of the run ({type(error).__name__}: "
        f"{first_line}). A process died or stopped answering for --dist-timeout {args.dist_timeout:g} s (the launcher's "
        f"log names it); {_resume_hint(run.folder, run.processes, run.run_id)}",
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
    _check_args(args)
    run = _Run(processes=world_size(), main_process=True)
    if run.distributed:
        launch.init_process_group(args.dist_timeout)
        run.main_process = th.distributed.get_rank() == 0
        launch.install_stop_handler(lambda: _resume_hint(run.folder, run.processes, run.run_id))
    try:
        return _run(args, parser, run)
    except OSError as error:
        if error.errno not in WRITE_FAILURES:
            raise
        raise SystemExit(_write_failure(error, run)) from None
    finally:
        run.release()


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser, run: _Run) -> MLSH:
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
