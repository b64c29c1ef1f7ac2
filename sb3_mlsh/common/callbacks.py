"""Callbacks for long MLSH runs: per-iteration CSV rows, checkpoints at iteration boundaries, and clean stops on signals."""

import csv
import os
import signal
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["IterationCSV", "IterationCheckpoint", "StopOnSignal", "iteration_row"]


def iteration_row(entry: dict[str, Any]) -> dict[str, Any]:
    """:return: One ``MLSH.iteration_log`` entry as a flat CSV row (one column per sub-policy's usage)."""
    row = {key: value for key, value in entry.items() if key != "subpolicy_usage"}
    row.update({f"subpolicy_usage_{index}": usage for index, usage in enumerate(entry["subpolicy_usage"])})
    return row


class IterationCSV(BaseCallback):
    """
    Appends each iteration's row of ``MLSH.iteration_log`` to a CSV file as soon as the iteration's update is done,
    flushed to disk, so that a killed run keeps every completed iteration. When the file exists (a resumed run), the
    rows after the model's last completed iteration, which the resumed run repeats, are dropped first.

    :param path: The CSV file.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._written = 0  # the last iteration in the file

    def _on_training_start(self) -> None:
        completed = self.model.iteration  # type: ignore[attr-defined]
        rows: list[dict[str, str]] = []
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="") as file:
                rows = [row for row in csv.DictReader(file) if row.get("iteration", "").isdigit()]
            rows = [row for row in rows if int(row["iteration"]) <= completed]
            tmp = f"{self.path}.tmp"
            with open(tmp, "w", newline="") as file:
                if rows:
                    writer = csv.DictWriter(file, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)
            os.replace(tmp, self.path)
        self._written = max((int(row["iteration"]) for row in rows), default=completed)

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
    Turns SIGINT and SIGTERM into a clean stop: training ends at the next primitive step (the unfinished iteration
    has trained nothing, so nothing is lost that a checkpoint would hold), and :attr:`received` names the signal.
    The previous handlers are put back when training ends.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        super().__init__()
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received = signum

    def _on_training_start(self) -> None:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _on_training_end(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_step(self) -> bool:
        return self.received is None
