"""Callbacks for long MLSH runs: per-iteration CSV rows, checkpoints at iteration boundaries, and clean stops on signals."""

import csv
import io
import math
import os
import signal
import warnings
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from sb3_mlsh.common.run_state import monitor_files
from sb3_mlsh.common.serialization import write_atomically

__all__ = ["IterationCSV", "IterationCheckpoint", "StopOnSignal", "complete_rows", "iteration_row"]


def iteration_row(entry: dict[str, Any]) -> dict[str, Any]:
    """
    :return: One ``MLSH.iteration_log`` entry as a flat CSV row: one column per sub-policy's usage and, with several task
        groups, per group ``group<g>_joint``, ``group<g>_tasks_started`` and ``group<g>_usage_<k>``.
    """
    per_group = ("group_usage", "group_joint", "group_tasks_started")
    row = {key: value for key, value in entry.items() if key != "subpolicy_usage" and key not in per_group}
    row.update({f"subpolicy_usage_{index}": usage for index, usage in enumerate(entry["subpolicy_usage"])})
    for group, usage in enumerate(entry.get("group_usage", [])):
        row[f"group{group}_joint"] = entry["group_joint"][group]
        row[f"group{group}_tasks_started"] = entry["group_tasks_started"][group]
        row.update({f"group{group}_usage_{index}": share for index, share in enumerate(usage)})
    return row


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def complete_rows(text: str, completed: int) -> tuple[list[str], list[list[str]], int]:
    """
    The rows of an ``iterations.csv`` that a resumed run keeps.

    :param text: The file's content.
    :param completed: The last iteration of the checkpoint the run resumes from.
    :return: The header (empty if it is not one), the rows kept and how many others were dropped besides those past
        ``completed``: a row is kept only if it ends with a newline (a killed write leaves a partial last line), has a
        number in every column and an iteration after the row before it (a repeated row is dropped).
    """
    *lines, tail = text.split("\n")  # the part after the last newline is a partial line, or nothing
    header = next(csv.reader(lines[:1]), [])
    if not {"iteration", "timesteps"} <= set(header):
        return [], [], len(lines) + bool(tail)
    column = header.index("iteration")
    kept: list[list[str]] = []
    dropped = int(bool(tail))
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        complete = len(row) == len(header) and all(_is_number(field) for field in row)
        iteration = float(row[column]) if complete else math.nan
        previous = int(kept[-1][column]) if kept else 0
        if not (math.isfinite(iteration) and iteration == int(iteration) and previous < iteration):
            dropped += 1
        elif iteration <= completed:
            kept.append(row)
    return header, kept, dropped


class IterationCSV(BaseCallback):
    """
    Appends each iteration's row of ``MLSH.iteration_log`` to a CSV file as soon as the iteration's update is done,
    flushed to disk, so that a killed run keeps every completed iteration. When the file exists (a resumed run), the
    rows after the model's last completed iteration, which the resumed run repeats, are dropped first, and so is
    every row that does not read completely (see :func:`complete_rows`), with a warning.

    Give it before :class:`IterationCheckpoint` in the callback list: a row then reaches the disk before the checkpoint
    that holds its iteration, so that a kill between the two loses nothing (a resume drops rows past its checkpoint).

    :param path: The CSV file.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._written = 0  # the last iteration in the file

    def _on_training_start(self) -> None:
        completed = self.model.iteration  # type: ignore[attr-defined]
        header: list[str] = []
        rows: list[list[str]] = []
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="", errors="replace") as file:
                header, rows, dropped = complete_rows(file.read(), completed)
            if dropped:
                warnings.warn(
                    f"{self.path}: dropped {dropped} row(s) that do not read completely or repeat an iteration (a run "
                    "killed while writing it); the rows of every other completed iteration are kept.",
                    stacklevel=2,
                )
            tmp = f"{self.path}.tmp"
            with open(tmp, "w", newline="") as file:
                if rows:
                    writer = csv.writer(file)
                    writer.writerow(header)
                    writer.writerows(rows)
            os.replace(tmp, self.path)
        self._written = int(rows[-1][header.index("iteration")]) if rows else completed

    def _append_new_rows(self) -> None:
        new = [iteration_row(e) for e in self.model.iteration_log if e["iteration"] > self._written]  # type: ignore[attr-defined]
        if not new:
            return
        header = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        fields = list(new[0])
        if not header:
            with open(self.path, newline="") as file:
                fields = next(csv.reader(file), fields)
        with open(self.path, "a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fields, extrasaction="ignore")
            if header:
                writer.writeheader()
            writer.writerows(new)
            file.flush()
            os.fsync(file.fileno())
        self._written = new[-1]["iteration"]

    def _on_rollout_start(self) -> None:
        self._append_new_rows()

    def _on_training_end(self) -> None:
        self._append_new_rows()

    def _on_step(self) -> bool:
        return True


class IterationCheckpoint(BaseCallback):
    """
    Saves the model every ``save_freq`` primitive steps, at the first iteration boundary past each multiple, so that
    ``<prefix>_<steps>_steps.zip`` holds exactly ``steps`` steps of training (a save inside an iteration would hold
    the state of the iteration before). In distributed mode every process must run it (a save is collective).

    :param save_freq: Primitive steps (of all processes) between checkpoints.
    :param save_path: The folder.
    :param name_prefix: Start of the file names.
    :param verbose: 1: print each save.
    """

    def __init__(self, save_freq: int, save_path: str, name_prefix: str = "mlsh", verbose: int = 0) -> None:
        super().__init__(verbose)
        self.save_freq = save_freq
        self.save_path = save_path
        self.name_prefix = name_prefix
        self._next = save_freq

    def path_for(self, steps: int) -> str:
        """:return: The checkpoint file of ``steps`` steps."""
        return os.path.join(self.save_path, f"{self.name_prefix}_{steps}_steps.zip")

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.save_freq + 1) * self.save_freq

    def _save_if_due(self) -> None:
        completed = self.model.completed_timesteps  # type: ignore[attr-defined]
        # Only at an iteration boundary: a run stopped inside an iteration has collected steps it has not trained on.
        if completed == self.num_timesteps and completed >= self._next:
            path = self.path_for(completed)
            self.model.save(path)
            if self.verbose:
                print(f"Saved checkpoint {path}")
            self._next = (completed // self.save_freq + 1) * self.save_freq

    def _on_rollout_start(self) -> None:
        self._save_if_due()

    def _on_training_end(self) -> None:
        self._save_if_due()

    def _on_step(self) -> bool:
        return True


class StopOnSignal(BaseCallback):
    """
    Turns SIGINT and SIGTERM into a clean stop: training ends at the next primitive step, and :attr:`received` names
    the signal. The previous handlers are put back when training ends.

    A stop inside an iteration leaves the model, its envs and its random streams part-way through a rollout that has
    trained nothing. So that a resume is the uninterrupted run, bit for bit, the callback keeps the model as it was at
    the start of each iteration (:meth:`save_iteration_start` writes it), and the sizes of the Monitor files then, to
    cut off the episodes that the unfinished iteration logged and a resume logs again.

    :param keep_iteration_start: Keep that copy (one in-memory save per iteration).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, keep_iteration_start: bool = True) -> None:
        super().__init__()
        self.received: int | None = None
        self.keep_iteration_start = keep_iteration_start
        self._previous: dict[int, Any] = {}
        self._start: bytes | None = None
        self._start_steps = -1
        self._monitor_sizes: dict[str, int] | None = None

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received = signum

    def _on_training_start(self) -> None:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _on_rollout_start(self) -> None:
        completed = self.model.completed_timesteps  # type: ignore[attr-defined]
        if not self.keep_iteration_start or completed != self.num_timesteps:
            return
        buffer = io.BytesIO()
        self.model.save(buffer)
        self._start, self._start_steps = buffer.getvalue(), completed
        env = self.model.get_env()
        files = None if env is None else monitor_files(env)
        self._monitor_sizes = None if files is None else {name: os.path.getsize(name) for name in files}

    def _on_training_end(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_step(self) -> bool:
        return self.received is None

    def save_iteration_start(self, path: str) -> bool:
        """
        After a stop inside an iteration: write the model as it was at that iteration's start to ``path`` (atomically),
        and cut the Monitor files back to their length then.

        :param path: The checkpoint file.
        :return: False, writing nothing, when there is no such copy (the stop came at an iteration boundary, before the
            first iteration, or the copy was not kept): the caller saves the model itself.
        """
        if self._start is None or self._start_steps != self.model.completed_timesteps:  # type: ignore[attr-defined]
            return False
        write_atomically(path, self._start)
        for name, size in (self._monitor_sizes or {}).items():
            if os.path.exists(name) and os.path.getsize(name) > size:
                os.truncate(name, size)
        return True
