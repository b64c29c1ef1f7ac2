"""Reading the run folders of ``python -m sb3_mlsh.train`` in the tests."""

import os
import re
import subprocess
import time


def checkpoint_steps(run: str) -> list[int]:
    """:return: The step counts of the checkpoints in ``run``, in increasing order."""
    folder = os.path.join(run, "checkpoints")
    if not os.path.isdir(folder):
        return []
    return sorted(int(m.group(1)) for f in os.listdir(folder) if (m := re.fullmatch(r"mlsh_(\d+)_steps\.zip", f)))


def wait_for_checkpoints(process: subprocess.Popen, run: str, count: int, timeout: float) -> None:
    """Wait until ``run`` holds ``count`` checkpoints, failing if ``process`` ends first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while len(checkpoint_steps(run)) < count:
        assert process.poll() is None, f"training ended before it could be killed:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "no checkpoint appeared in time"
        time.sleep(0.05)
