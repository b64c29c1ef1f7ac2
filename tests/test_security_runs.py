"""A run of the command line as an attacker or a bad day treats it: two writers, kills at chosen points, full disks,
foreign and corrupt checkpoints, and Ctrl-C in the middle of an iteration."""

import errno
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import pandas as pd
import pytest
import torch as th
from run_folders import checkpoint_steps

from sb3_mlsh import MLSH
from sb3_mlsh.cli.train import main, run
from sb3_mlsh.common.callbacks import IterationCSV
from sb3_mlsh.common.serialization import read_model_zip

ENV_ID = "mlsh/MovementBandits-v0"
QUIET = ["--no-progress", "--verbose", "0"]
SMALL = ["-params", "n_envs:2", "n_steps:50"]  # iterations of 100 steps
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _start(tmp_path, *args: str, params: tuple[str, ...] = ()) -> str:
    """Train a small run of MovementBandits in this process; :return: its folder."""
    main(["--env", ENV_ID, "-f", str(tmp_path), *QUIET, *SMALL, *params, *args])
    return str(tmp_path / "mlsh" / "mlsh-MovementBandits-v0_1")


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sb3_mlsh.train", *QUIET, *args]


def _wait_for(condition, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended first:\n{process.communicate()[0]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------ 4. one writer per run
def test_a_second_writer_of_a_run_is_refused_naming_the_first(tmp_path, capsys):
    folder = _start(tmp_path, "-n", "200", "--save-freq", "100")
    first = subprocess.Popen(
        _command("--resume", folder, "-n", "100000000"), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        owner = pathlib.Path(folder) / ".lock.owner"
        _wait_for(lambda: owner.exists() and f"pid {first.pid} " in owner.read_text(), first)
        with pytest.raises(SystemExit) as exit_info:
            run(["--resume", folder, "-n", "200", *QUIET])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"error: {folder} is in use by another run (pid {first.pid} on ")
        assert "one writer at a time" in err
    finally:
        first.kill()
        first.wait()
    # The lock goes with its process, however it ends: the run resumes now (from wherever the killed one got to).
    assert main(["--resume", folder, "-n", "300", *QUIET]).num_timesteps >= 300


# ------------------------------------------------------------------------------ 5. a kill between checkpoint and row
_KILLED_AFTER_A_CHECKPOINT = """
import os, sys
rename = os.replace

def replace(source, target, *args, **kwargs):
    rename(source, target, *args, **kwargs)
    if str(target).endswith("mlsh_400_steps.zip"):
        os._exit(9)  # the moment a checkpoint is in place, before anything else is written

os.replace = replace
from sb3_mlsh.cli.train import run
run(sys.argv[1:])
"""


def test_a_kill_right_after_a_checkpoint_loses_no_row(tmp_path):
    command = [sys.executable, "-c", _KILLED_AFTER_A_CHECKPOINT, "--env", ENV_ID, "-n", "600", "--save-freq", "200"]
    killed = subprocess.run([*command, "-f", str(tmp_path), *QUIET, *SMALL], env=ENV, capture_output=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    folder = str(tmp_path / "mlsh" / "mlsh-MovementBandits-v0_1")
    assert checkpoint_steps(folder) == [200, 400]
    resumed = main(["--resume", folder, *QUIET])
    assert resumed.num_timesteps == 600
    rows = pd.read_csv(os.path.join(folder, "iterations.csv"))
    assert rows["iteration"].tolist() == [1, 2, 3, 4, 5, 6]
    assert rows["timesteps"].tolist() == [100, 200, 300, 400, 500, 600]


# ------------------------------------------------------------------------------------- 6. partial rows are dropped
def test_rows_that_do_not_read_completely_are_dropped_on_resume(make_mlsh, tmp_path):
    path = str(tmp_path / "iterations.csv")
    model = make_mlsh(n_envs=2, n_steps=8)
    model.learn(4 * 16, callback=IterationCSV(path))
    with open(path) as file:
        header, *rows = file.read().splitlines()
    # A kill mid-write leaves a cut row; a doubled write, a repeated row; the last line has no newline.
    cut = rows[3].split(",")[0] + ",64,,,"
    with open(path, "w") as file:
        file.write("\n".join([header, *rows[:3], cut, rows[0], rows[1][:5]]))
    with pytest.warns(UserWarning, match=r"iterations.csv: dropped 3 row\(s\) that do not read completely"):
        model.learn(2 * 16, callback=IterationCSV(path), reset_num_timesteps=False)
    frame = pd.read_csv(path)
    # Iteration 4's cut row is written again from the model's log; every row is there once, complete.
    assert frame["iteration"].tolist() == [1, 2, 3, 4, 5, 6]
    assert not frame.drop(columns="episode_return_mean").isna().any().any()


# ------------------------------------------------------------------------------------- 7. every write failure
def _failing_fsync(monkeypatch, name_part: str, code: int) -> None:
    """Make the write of any file whose name holds ``name_part`` fail at its fsync, as a full disk makes it."""
    fsync = os.fsync

    def failing(fd: int) -> None:
        if name_part in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names the failing file through /proc")
def test_a_full_disk_at_the_final_save_gets_one_line_and_promises_no_checkpoint(tmp_path, monkeypatch):
    _failing_fsync(monkeypatch, ".model.zip.", errno.ENOSPC)
    with pytest.raises(SystemExit) as exit_info:
        _start(tmp_path, "-n", "200", "--save-freq", "0")
    message = exit_info.value.code
    assert isinstance(message, str) and message.count("\n") == 0
    assert message.startswith("error: a write failed: the disk is full (No space left on device)")
    assert "No checkpoint of the run was written yet, so there is nothing to resume" in message
    folder = tmp_path / "mlsh" / "mlsh-MovementBandits-v0_1"
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names the failing file through /proc")
def test_a_quota_hit_at_a_checkpoint_names_the_newest_one_and_keeps_it(tmp_path, monkeypatch):
    _failing_fsync(monkeypatch, "mlsh_400_steps.zip", errno.EDQUOT)
    with pytest.raises(SystemExit) as exit_info:
        _start(tmp_path, "-n", "600", "--save-freq", "200")
    folder = str(tmp_path / "mlsh" / "mlsh-MovementBandits-v0_1")
    newest = os.path.join(folder, "checkpoints", "mlsh_200_steps.zip")
    assert exit_info.value.code == (
        f"error: a write failed: the disk quota is used up (Disk quota exceeded). Nothing was half-written (saves write "
        f"a temporary file, then rename it): the newest checkpoint, {newest} (200 steps), is intact. Make room, then "
        f"resume with: python -m sb3_mlsh.train --resume {folder}"
    )
    assert checkpoint_steps(folder) == [200]
    assert MLSH.load(newest).num_timesteps == 200


def test_a_file_size_limit_at_the_first_checkpoint_gets_one_line(tmp_path):
    # The kernel's EFBIG: model files (about 400 kB here) pass the limit, the logs stay under it.
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    command = _command("--env", ENV_ID, "-n", "600", "--save-freq", "200", "-f", str(tmp_path), *SMALL)
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: a write failed: a file would pass the file")
    assert "No checkpoint of the run was written yet, so there is nothing to resume" in result.stderr
    assert checkpoint_steps(str(tmp_path / "mlsh" / "mlsh-MovementBandits-v0_1")) == []


# ------------------------------------------------------------------------- 8. checkpoints tied to their run
def test_a_checkpoint_of_another_run_is_skipped_with_a_warning(tmp_path):
    folder = _start(tmp_path / "a", "-n", "200", "--save-freq", "100")
    other = _start(tmp_path / "b", "-n", "400", "--save-freq", "0", params=("n_subpolicies:3",))
    shutil.copy(os.path.join(other, "model.zip"), os.path.join(folder, "checkpoints", "mlsh_400_steps.zip"))
    with pytest.warns(UserWarning, match=r"mlsh_400_steps.zip: it is a checkpoint of another run \(run id [0-9a-f]+, this"):
        resumed = main(["--resume", folder, "-n", "300", *QUIET])
    assert resumed.n_subpolicies == 2 and resumed.num_timesteps == 300


def _corrupt_entry(path: str, entry: str) -> None:
    """Flip one byte in the middle of ``entry``'s stored bytes: the file still opens, its CRC no longer matches."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(entry)
    with open(path, "r+b") as file:
        file.seek(info.header_offset + 26)
        name_length, extra_length = int.from_bytes(file.read(2), "little"), int.from_bytes(file.read(2), "little")
        middle = info.header_offset + 30 + name_length + extra_length + info.compress_size // 2
        file.seek(middle)
        byte = file.read(1)
        file.seek(middle)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    folder = _start(tmp_path, "-n", "300", "--save-freq", "100")
    os.remove(os.path.join(folder, "model.zip"))
    _corrupt_entry(os.path.join(folder, "checkpoints", "mlsh_300_steps.zip"), "subpolicies.pth")
    with pytest.warns(UserWarning, match=r"mlsh_300_steps.zip is truncated or corrupt: .*Bad CRC-32.*falling back"):
        resumed = main(["--resume", folder, "-n", "400", *QUIET])
    assert resumed.num_timesteps == 400
    assert "mlsh_200_steps.zip at 200 steps" in capsys.readouterr().out


# ------------------------------------------------------------------------ 9. Ctrl-C, then --resume, is exact
def _tensors(tree, prefix: str = "") -> dict:
    if th.is_tensor(tree):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _tensors(value, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for index, value in enumerate(tree) for k, v in _tensors(value, f"{prefix}/{index}").items()}
    return {}


def _lines(path: str) -> int:
    with open(path) as file:
        return len(file.read().splitlines())


def test_sigint_mid_iteration_then_resume_is_the_uninterrupted_run(tmp_path):
    # Iterations of 300 steps (6 episodes of 50 steps per env): the signal comes once an episode of iteration 3 ended.
    args = ["--env", ENV_ID, "-n", "1200", "--save-freq", "0", "--seed", "4", "-params", "n_envs:2", "n_steps:150"]
    main([*args, "-f", str(tmp_path / "whole"), *QUIET])
    whole = str(tmp_path / "whole" / "mlsh" / "mlsh-MovementBandits-v0_1")

    folder = str(tmp_path / "cut" / "mlsh" / "mlsh-MovementBandits-v0_1")
    csv, monitor = os.path.join(folder, "iterations.csv"), os.path.join(folder, "0.monitor.csv")
    process = subprocess.Popen(
        _command(*args, "-f", str(tmp_path / "cut")), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(lambda: os.path.exists(csv) and _lines(csv) == 3, process)
        episodes = _lines(monitor)
        _wait_for(lambda: _lines(monitor) > episodes or _lines(csv) > 3, process)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output
    assert _lines(csv) == 3, "the signal came after iteration 3: run the test again on a less busy machine"
    assert main(["--resume", folder, *QUIET]).num_timesteps == 1200

    expected, got = (_tensors(read_model_zip(os.path.join(run, "model.zip"))[1:]) for run in (whole, folder))
    assert expected.keys() == got.keys() and len(expected) > 10
    assert [key for key in expected if not th.equal(expected[key], got[key])] == []
    for name in ("iterations.csv", "0.monitor.csv", "1.monitor.csv"):
        # The episodes that the unfinished iteration logged were cut off, and logged again by the resumed run.
        columns = ["iteration", "timesteps", "episode_return_mean"] if name == "iterations.csv" else ["r", "l"]
        skip = 0 if name == "iterations.csv" else 1
        frames = [pd.read_csv(os.path.join(run, name), skiprows=skip)[columns] for run in (whole, folder)]
        pd.testing.assert_frame_equal(*frames)
