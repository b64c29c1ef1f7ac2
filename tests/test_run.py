"""A run from the command line: zoo-style YAML, what its folder holds at every moment, stops, resumes and CLI errors."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from run_folders import checkpoint_steps, wait_for_checkpoints
from stable_baselines3.common.callbacks import BaseCallback
from toy_envs import make_toy

import mlsh_envs
from sb3_mlsh import MLSH
from sb3_mlsh.cli.hyperparams import HyperparameterError, load_hyperparams, parse_hyperparams
from sb3_mlsh.cli.train import _latest_checkpoint, _remove_stale_saves, build_parser, main
from sb3_mlsh.cli.train import run as run_cli
from sb3_mlsh.common.callbacks import IterationCheckpoint, IterationCSV

ENV_ID = "mlsh/MovementBandits-v0"
ITERATION_STEPS = 2 * 50


class RowsSeen(BaseCallback):
    """At the start of every iteration: how many rows iterations.csv has."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path, self.seen = path, []

    def _on_rollout_start(self) -> None:
        self.seen.append(len(pd.read_csv(self.path)) if os.path.exists(self.path) else 0)

    def _on_step(self) -> bool:
        return True


def test_every_iteration_is_on_disk_before_the_next_one_starts(make_mlsh, tmp_path):
    path = str(tmp_path / "iterations.csv")
    seen = RowsSeen(path)
    make_mlsh(n_envs=2, n_steps=8).learn(5 * 16, callback=[IterationCSV(path), seen])
    assert seen.seen == [0, 1, 2, 3, 4]
    frame = pd.read_csv(path)
    assert frame["iteration"].tolist() == [1, 2, 3, 4, 5]
    assert frame["timesteps"].tolist() == [16, 32, 48, 64, 80]


def test_checkpoints_hold_exactly_the_steps_in_their_name(make_mlsh, tmp_path):
    make_mlsh(n_envs=2, n_steps=8).learn(10 * 16, callback=IterationCheckpoint(40, str(tmp_path)))
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


def test_resume_picks_the_most_steps_skips_corrupt_files_and_removes_stale_tmp(make_mlsh, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    model = make_mlsh(n_envs=2, n_steps=8)
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
    # Only the run's one writer removes them (under its lock): another process's save may be in flight.
    assert [f for f in os.listdir(run / "checkpoints") if f.endswith(".tmp")]
    _remove_stale_saves(str(run))
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
        (["--env", ENV_ID, "-params", 'max_macro_duration:"3"'], "max_macro_duration must be an integer or null"),
        (["--env", ENV_ID, "-params", "master_kwargs.learning_rat:0.1"], "did you mean 'learning_rate'?"),
        (["--env", "CartPole-v1"], "MLSH trains on task families: envs with sample_tasks(n) and set_task(task)"),
    ],
)
def test_cli_inputs_get_one_error_line_and_exit_2(tmp_path, argv, message):
    result = subprocess.run(_command(*argv, "-f", str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "mlsh")  # nothing written by a failed start


def test_every_task_family_has_a_yaml_entry_with_the_papers_schedule_or_a_documented_one():
    expected = {  # (K, N, W, U) from the paper's appendix, but for the documented 2-core schedules
        "mlsh/MovementBandits-v0": (2, 10, 2, 1),  # W = 9 in the paper; see the YAML's comment
        "mlsh/FourRooms-v0": (4, 25, 20, 30),
        "mlsh/FourRoomsAllGoals-v0": (4, 25, 20, 30),
        "mlsh/AntTwowalk-v0": (2, 200, 2, 10),  # the paper's W = 20, U = 40 take about a day here (docs/mlsh.md)
        "mlsh/AntMovement-v0": (2, 200, 2, 10),
        "mlsh/AntMaze-v0": (3, 200, 2, 10),
        "mlsh/HumanoidWalkCrawl-v0": (2, 200, 2, 10),
    }
    for env_id in mlsh_envs.ENV_IDS:
        kwargs, n_timesteps, policy = parse_hyperparams(load_hyperparams(env_id), env_id)
        assert n_timesteps > 0 and policy == "MlpPolicy"
        if env_id in expected:
            got = tuple(kwargs[k] for k in ("n_subpolicies", "macro_duration", "warmup_iterations", "joint_iterations"))
            assert got == expected[env_id], env_id


def test_main_writes_model_config_monitor_tensorboard_and_plot(tmp_path):
    model = main(
        [
            "--env",
            "mlsh/MovementBandits-v0",
            "-n",
            "2000",
            "-f",
            str(tmp_path),
            "--no-progress",
            "--verbose",
            "0",
            "--save-freq",
            "1000",
            "-params",
            "n_envs:2",
            "n_steps:100",
            "warmup_iterations:2",
        ]
    )
    run = tmp_path / "mlsh" / "mlsh-MovementBandits-v0_1"
    assert model.num_timesteps == 2000 and model.warmup_iterations == 2
    names = set(os.listdir(run))
    assert {"model.zip", "config.yml", "0.monitor.csv", "1.monitor.csv", "learning_curve.png", "iterations.csv"} <= names
    assert any(f.startswith("events.out.tfevents") for _, _, files in os.walk(run) for f in files)
    assert sorted(os.listdir(run / "checkpoints")) == ["mlsh_1000_steps.zip", "mlsh_2000_steps.zip"]
    config = yaml.safe_load((run / "config.yml").read_text())
    assert config["env"] == "mlsh/MovementBandits-v0" and config["hyperparams"]["n_envs"] == 2
    iterations = pd.read_csv(run / "iterations.csv")
    assert len(iterations) == 10 and {"subpolicy_usage_0", "subpolicy_usage_1"} <= set(iterations.columns)
    assert MLSH.load(run / "model.zip").num_timesteps == 2000

    (run / "model.zip").unlink()  # as if the run had been killed after its first checkpoint
    os.remove(run / "checkpoints" / "mlsh_2000_steps.zip")
    config["hyperparams"]["n_timesteps"] = 3000
    (run / "config.yml").write_text(yaml.safe_dump(config))
    episodes_before = sum(len(pd.read_csv(run / f"{i}.monitor.csv", skiprows=1)) for i in range(2))
    resumed = main(["--resume", str(run), "--no-progress", "--verbose", "0"])
    assert resumed.num_timesteps == 3000
    episodes_after = sum(len(pd.read_csv(run / f"{i}.monitor.csv", skiprows=1)) for i in range(2))
    assert episodes_after > episodes_before, "a resumed run appends to the Monitor CSVs"
    # The run's --save-freq (1000) is kept from config.yml: new checkpoints every 1000 steps, each holding its steps.
    assert sorted(os.listdir(run / "checkpoints")) == ["mlsh_1000_steps.zip", "mlsh_2000_steps.zip", "mlsh_3000_steps.zip"]
    assert MLSH.load(run / "checkpoints" / "mlsh_2000_steps.zip").num_timesteps == 2000
    iterations = pd.read_csv(run / "iterations.csv")
    # The checkpoint taken at step 1000 holds iteration 5: the rows of iterations 6-10 are dropped and run again.
    assert iterations["iteration"].tolist() == list(range(1, 16))
    assert iterations["timesteps"].tolist()[-1] == 3000


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"n_subpolicy": 2}, "did you mean 'n_subpolicies'"),
        ({"n_envs": "eight"}, "n_envs must be an integer"),
        ({"master_kwargs": "dict(learning_rate="}, "cannot read"),
        ({"subpolicy_kwargs": {"learning_rate": "fast"}}, "lin_<number>"),
        ({"n_timesteps": -5}, "n_timesteps must be a positive"),
    ],
)
def test_bad_hyperparameters_name_the_fix(entry, message):
    with pytest.raises(HyperparameterError, match=message):
        parse_hyperparams(entry, "mlsh/MovementBandits-v0")


def test_linear_schedules_and_dict_strings_are_parsed():
    kwargs, _, _ = parse_hyperparams(
        {"subpolicy_kwargs": {"learning_rate": "lin_1e-3"}, "policy_kwargs": "dict(net_arch=[32, 32], activation_fn=nn.ReLU)"},
        "x",
    )
    assert kwargs["subpolicy_kwargs"]["learning_rate"](0.5) == pytest.approx(5e-4)
    assert kwargs["policy_kwargs"]["net_arch"] == [32, 32]


def test_unknown_env_id_suggests_close_ones(tmp_path):
    with pytest.raises(HyperparameterError, match="Did you mean"):
        load_hyperparams("mlsh/MovementBandit-v0")
    scalar = tmp_path / "scalar.yml"
    scalar.write_text("42\n")
    with pytest.raises(HyperparameterError, match="top level"):
        load_hyperparams("mlsh/MovementBandits-v0", str(scalar))
    bad = tmp_path / "bad.yml"
    bad.write_text("mlsh/MovementBandits-v0: [1, 2\n")
    with pytest.raises(HyperparameterError, match="not valid YAML"):
        load_hyperparams("mlsh/MovementBandits-v0", str(bad))


def test_overrides_reach_one_key_of_a_nested_mapping():
    from sb3_mlsh.cli.hyperparams import override_hyperparams

    entry = load_hyperparams("mlsh/MovementBandits-v0")
    changed = override_hyperparams(entry, ["master_kwargs.clip_range:0.3", "warmup_iterations:0"])
    assert changed["master_kwargs"]["clip_range"] == 0.3 and changed["warmup_iterations"] == 0
    assert changed["master_kwargs"]["learning_rate"] == entry["master_kwargs"]["learning_rate"]
    assert entry["master_kwargs"]["clip_range"] != 0.3, "the packaged entry must not change"
    with pytest.raises(HyperparameterError, match="not a mapping"):
        override_hyperparams({**entry, "policy_kwargs": "dict(net_arch=[8])"}, ["policy_kwargs.net_arch:[4]"])
    with pytest.raises(HyperparameterError, match="key:value"):
        override_hyperparams(entry, ["warmup_iterations=3"])


def test_runs_started_together_into_one_log_folder_get_their_own_folders(tmp_path, monkeypatch):
    import sb3_mlsh.cli.train as train_cli

    first = train_cli._make_run_folder(str(tmp_path), "mlsh/AntTwowalk-v0")
    # A second run that listed the log folder before the first made its folder picks the same number.
    monkeypatch.setattr(train_cli.os, "listdir", lambda path: [])
    second = train_cli._make_run_folder(str(tmp_path), "mlsh/AntTwowalk-v0")
    assert first.endswith("mlsh-AntTwowalk-v0_1") and second.endswith("mlsh-AntTwowalk-v0_2")
    assert os.path.isdir(first) and os.path.isdir(second)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", ENV_ID, "--log-interval", "0"], "--log-interval must be >= 1 (iterations between two log tables), got 0"),
        (["--env", ENV_ID, "-params", "n_envs:[1"], "--hyperparams 'n_envs:[1': the value '[1' is not valid YAML"),
        (
            ["--env", ENV_ID, "-f", "/dev/null/x"],
            "-f/--log-folder /dev/null/x: cannot make the run folder there (Not a directory",
        ),
        (["--env", ENV_ID, "-yaml", "{tmp}"], "is a folder: give the YAML file itself"),
        (["--env", ENV_ID, "-yaml", "{tmp}/inf.yml"], "n_timesteps must be a finite positive number, got inf"),
        (
            ["--env", ENV_ID, "--device", "foo"],
            "--device 'foo' is not a torch device: use cpu, cuda, cuda:<index>, mps or auto",
        ),
        (["--env", ENV_ID, "-params", "master_kwargs.batch_size:1"], "master_kwargs['batch_size'] must be an integer >= 2"),
        (["--env", ENV_ID, "-n", "2.5"], "argument --n-timesteps/-n: '2.5' is not a whole number of steps"),
        (["--env", ENV_ID, "--no-such-option"], "unrecognized arguments: --no-such-option"),
        ([], "give --env ENV_ID, e.g. --env mlsh/MovementBandits-v0 (or --resume RUN_FOLDER)"),
    ],
)
def test_cli_mistakes_get_one_line_without_usage_or_traceback(tmp_path, capsys, argv, message):
    (tmp_path / "inf.yml").write_text(f"{ENV_ID}:\n  n_timesteps: .inf\n")
    logs = tmp_path / "logs"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            [*(arg.format(tmp=tmp_path) for arg in argv), *(["-f", str(logs)] if "-f" not in argv else []), "--verbose", "0"]
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and "usage:" not in err and "Traceback" not in err
    assert not os.path.exists(logs / "mlsh")  # nothing written, not even a half-made run folder


def test_a_read_only_log_folder_gets_one_line(tmp_path, capsys, monkeypatch):
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o555)
    mkdir = os.mkdir

    def read_only(path, *args, **kwargs):  # as the permission bits make it for anyone but root
        if str(path).startswith(str(logs)):
            raise PermissionError(13, "Permission denied", str(path))
        mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["--env", ENV_ID, "-f", str(logs), "--verbose", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: -f/--log-folder {logs}: cannot make the run folder there (Permission denied: ")


def test_n_takes_the_yaml_way_of_writing_steps():
    parser = build_parser()
    assert parser.parse_args(["--env", ENV_ID, "-n", "1e5"]).n_timesteps == 100_000
    assert parser.parse_args(["--env", ENV_ID, "-n", "2_000_000"]).n_timesteps == 2_000_000
    for text in ("inf", "nan", "1e5x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--env", ENV_ID, "-n", text])
