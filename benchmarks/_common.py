"""What the benchmark scripts share: printing and writing result rows, and describing the machine."""

import csv
import os
import platform
import time

import torch as th


def write_csv(rows: list[dict], path: str) -> None:
    """
    :param rows: One dict per row, all with the same keys.
    :param path: The CSV to (over)write; its folder is created.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def machine() -> str:
    """:return: Processor, cores and torch version, for the line every result prints beside its numbers."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {th.__version__}, 1 torch thread"


def print_row(row: dict) -> None:
    """Print one result row as ``key=value`` pairs, as it is measured."""
    print(" ".join(f"{key}={value}" for key, value in row.items()), flush=True)


def finish(rows: list[dict], path: str, started: float) -> None:
    """Write the rows to ``path`` and print the machine and the run's wall time beside them."""
    write_csv(rows, path)
    print(f"machine: {machine()}; {time.time() - started:.0f} s in all; wrote {path}")
