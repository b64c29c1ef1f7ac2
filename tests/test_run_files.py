"""What a run folder holds at every moment: per-iteration CSV rows, exact checkpoints, clean stops and resumes."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from run_folders import checkpoint_steps, wait_for_checkpoints
from stable_baselines3.common.callbacks import BaseCallback
from toy_envs import make_toy

from sb3_mlsh import MLSH
from sb3_mlsh.callbacks import IterationCheckpoint, IterationCSV
from sb3_mlsh.train import _latest_checkpoint, main

ENV_ID = "mlsh/MovementBandits-v0"
ITERATION_STEPS = 2 * 50


def _small() -> MLSH:
    return MLSH(
        "MlpPolicy", make_toy(), n_envs=2, n_steps=8, macro_duration=4, warmup_iterations=1, joint_iterations=1, seed=0
    )


class RowsSeen(BaseCallback):
    """At the start of every iteration: how many rows iterations.csv has."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path, self.seen = path, []

    def _on_rollout_start(self) -> None:
        self.seen.append(len(pd.read_csv(self.path)) if os.path.exists(self.path) else 0)

    def _on_step(self) -> bool:
        return True


def test_every_iteration_is_on_disk_before_the_next_one_starts(tmp_path):
    path = str(tmp_path / "iterations.csv")
    seen = RowsSeen(path)
    _small().learn(5 * 16, callback=[IterationCSV(path), seen])
    assert seen.seen == [0, 1, 2, 3, 4]
    frame = pd.read_csv(path)
    assert frame["iteration"].tolist() == [1, 2, 3, 4, 5]
    assert frame["timesteps"].tolist() == [16, 32, 48, 64, 80]


def test_checkpoints_hold_exactly_the_steps_in_their_name(tmp_path):
    _small().learn(10 * 16, callback=IterationCheckpoint(40, str(tmp_path)))
    # The first iteration boundaries at or past 40, 80, 120 and 160 (iterations of 16 steps; the run ends at 160).
    assert sorted(os.listdir(tmp_path)) == [
        "mlsh_128_steps.zip",
        "mlsh_160_steps.zip",
        "mlsh_48_steps.zip",
        "mlsh_80_steps.zip",
    ]
    for name in os.listdir(tmp_path):
        steps = int(name.split("_")[1])
        loaded = MLSH.load(tmp_path / name, make_toy())
        assert loaded.num_timesteps == steps and loaded.iteration == steps // 16


def test_resume_picks_the_most_steps_skips_corrupt_files_and_removes_stale_tmp(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    model = _small()
    model.learn(32)
    model.save(run / "checkpoints" / "mlsh_32_steps.zip")
    model.learn(32, reset_num_timesteps=False)
    model.save(run / "checkpoints" / "mlsh_64_steps.zip")
    # A copy (cp -r) gives the older file the newer modification time: the steps inside decide, not the time.
    now = time.time()
    os.utime(run / "checkpoints" / "mlsh_64_steps.zip", (now - 100, now - 100))
    assert _latest_checkpoint(str(run)).endswith("mlsh_64_steps.zip")
    # A truncated newest checkpoint is skipped with a warning; an interrupted save's temporary file is removed.
    data = (run / "checkpoints" / "mlsh_64_steps.zip").read_bytes()
    (run / "checkpoints" / "mlsh_96_steps.zip").write_bytes(data[: len(data) // 2])
    (run / "checkpoints" / ".mlsh_128_steps.zip.abc.tmp").write_bytes(b"partial")
    with pytest.warns(UserWarning, match=r"mlsh_96_steps.zip is truncated or corrupt"):
        assert _latest_checkpoint(str(run)).endswith("mlsh_64_steps.zip")
    assert not [f for f in os.listdir(run / "checkpoints") if f.endswith(".tmp")]
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(FileNotFoundError, match="nothing to resume from"):
        _latest_checkpoint(str(run))


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sb3_mlsh.train", "--no-progress", "--verbose", "0", *args]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_prints_the_resume_command_and_the_resume_has_no_gaps(tmp_path, signum, code):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = os.path.join(tmp_path, "mlsh", "mlsh-MovementBandits-v0_1")
    target = 60 * ITERATION_STEPS
    command = _command(
        "--env", ENV_ID, "-n", str(target), "--save-freq", str(5 * ITERATION_STEPS), "-f", str(tmp_path),
        "-params", "n_envs:2", "n_steps:50",
    )  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_checkpoints(process, run, 1, 60.0)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, output
    assert "Traceback" not in output
    assert f"Resume with: python -m sb3_mlsh.train --resume {run}" in output
    stopped_at = checkpoint_steps(run)[-1]
    rows = pd.read_csv(os.path.join(run, "iterations.csv"))
    assert rows["timesteps"].iloc[-1] == stopped_at  # every completed iteration, and the checkpoint holds them all

    resumed = subprocess.run(_command("--resume", run), env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    rows = pd.read_csv(os.path.join(run, "iterations.csv"))
    assert rows["iteration"].tolist() == list(range(1, 61))
    assert rows["timesteps"].iloc[-1] == target


def test_resume_of_a_finished_run_keeps_its_log_and_a_larger_n_extends_it(tmp_path, capsys):
    model = main(["--env", ENV_ID, "-n", "400", "-f", str(tmp_path), "--no-progress", "--verbose", "0",
                  "-params", "n_envs:2", "n_steps:50"])  # fmt: skip
    run = os.path.join(tmp_path, "mlsh", "mlsh-MovementBandits-v0_1")
    assert model.num_timesteps == 400
    before = pd.read_csv(os.path.join(run, "iterations.csv"))
    main(["--resume", run, "--no-progress", "--verbose", "0"])
    assert "already has 400 steps: give a larger -n" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(os.path.join(run, "iterations.csv")), before)
    extended = main(["--resume", run, "-n", "600", "--no-progress", "--verbose", "0"])
    assert extended.num_timesteps == 600
    assert pd.read_csv(os.path.join(run, "iterations.csv"))["iteration"].tolist() == list(range(1, 7))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", ENV_ID, "-n", "-5"], "must be a positive number of steps"),
        (["--env", ENV_ID, "--seed", "-1"], "--seed must be >= 0"),
        (["--resume", "no/such/run"], "no run there"),
        (["--env", ENV_ID, "-params", 'master_kwargs.batch_size:"64"'], "master_kwargs.batch_size must be a positive integer"),
        (["--env", ENV_ID, "-params", "master_kwargs.gamma:high"], "master_kwargs.gamma must be a number, got 'high'"),
        (["--env", ENV_ID, "-params", 'master_epsilon:"0.1"'], "master_epsilon must be a number"),
        (["--env", ENV_ID, "-params", "master_kwargs.learning_rat:0.1"], "did you mean 'learning_rate'?"),
        (["--env", "CartPole-v1"], "MLSH trains on task families: envs with sample_tasks(n) and set_task(task)"),
    ],
)
def test_cli_inputs_get_one_error_line_and_exit_2(tmp_path, argv, message):
    result = subprocess.run(_command(*argv, "-f", str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "mlsh")  # nothing written by a failed start


def _tampered(path, tmp_path, entry: str, payload: bytes):
    """A copy of the model at ``path`` with ``entry`` replaced by ``payload``."""
    import zipfile

    out = tmp_path / f"tampered_{entry.replace('.', '_')}.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            target.writestr(name, payload if name == entry else source.read(name))
    return out


@pytest.mark.parametrize("entry", ["data", "subpolicies.pth"])
def test_a_malicious_model_file_runs_nothing(tmp_path, entry):
    import base64
    import json
    import pickle
    import zipfile

    model = MLSH("MlpPolicy", ENV_ID, n_envs=2, n_steps=16, seed=0)
    path = tmp_path / "model.zip"
    model.save(path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    if entry == "data":  # SB3's format for a pickled entry, as an attacker would write it
        data = json.loads(zipfile.ZipFile(path).read("data"))
        data["task_sampler"] = {":type:": "TaskSampler", ":serialized:": base64.b64encode(pickle.dumps(Exploit())).decode()}
        payload = json.dumps(data).encode()
    else:
        payload = pickle.dumps(Exploit())
    tampered = _tampered(path, tmp_path, entry, payload)
    with pytest.raises(ValueError, match=r"run code"):
        MLSH.load(tampered)
    assert not marker.exists()
    # The safe parts still load when the pickled one is given again.
    if entry == "data":
        assert MLSH.load(tampered, task_sampler=ENV_ID).num_timesteps == 0
        assert not marker.exists()
