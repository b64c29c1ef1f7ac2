"""What the benchmark scripts share: writing a results CSV and describing the machine."""

import csv
import os
import platform

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
