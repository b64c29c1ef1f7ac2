"""Model files: save and load (predictions, atomic writes, permissions, safe loading, clear errors), and exact resumes."""

import io
import os
import re
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch as th
from run_folders import checkpoint_steps, wait_for_checkpoints
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from toy_envs import make_toy, rollout_actions, small_model

from sb3_mlsh import MLSH, ModelFileError

ENV_ID = "mlsh/MovementBandits-v0"
N_ENVS, N_STEPS = 2, 50
ITERATION_STEPS = N_ENVS * N_STEPS  # primitive steps of one iteration
SAVE_FREQ = 4 * ITERATION_STEPS
TARGET = 40 * ITERATION_STEPS
STARTUP_TIMEOUT = 60.0


def _monitor_steps(run: str) -> int:
    """Primitive steps of the episodes that the Monitor CSVs recorded (a lower bound of the progress)."""
    total = 0
    for name in os.listdir(run):
        if name.endswith(".monitor.csv"):
            total += int(pd.read_csv(os.path.join(run, name), skiprows=1)["l"].sum())
    return total


def _train_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sb3_mlsh.train", "--no-progress", "--verbose", "0", *args]


def test_sigkill_mid_run_then_resume_loses_at_most_one_checkpoint_interval(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = _train_command(
        "--env", ENV_ID, "-n", str(TARGET), "--save-freq", str(SAVE_FREQ), "-f", str(tmp_path), "--seed", "3",
        "-params", f"n_envs:{N_ENVS}", f"n_steps:{N_STEPS}",
    )  # fmt: skip
    run = os.path.join(tmp_path, "mlsh", ENV_ID.replace("/", "-") + "_1")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Wait for the second checkpoint so that the kill lands in the middle of the run, past a completed iteration.
        wait_for_checkpoints(process, run, 2, STARTUP_TIMEOUT)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(run, "model.zip")), "the run finished before the kill"
    last_checkpoint = checkpoint_steps(run)[-1]
    progress_at_kill = _monitor_steps(run)
    assert last_checkpoint < TARGET
    # No partial file: every checkpoint is complete (saves are atomic), so the latest one loads.
    assert not [f for f in os.listdir(os.path.join(run, "checkpoints")) if f.endswith(".tmp")]

    resumed = subprocess.run(
        # --save-freq is a flag of the command, not of the run: give it again.
        _train_command("--resume", run, "--save-freq", str(SAVE_FREQ)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout
    match = re.search(r"at (\d+) steps \(target (\d+)\)", resumed.stdout)
    assert match is not None, resumed.stdout
    resumed_from, target = int(match.group(1)), int(match.group(2))
    assert target == TARGET
    # A checkpoint holds the end of the last completed iteration: at most one iteration before its name.
    assert last_checkpoint - ITERATION_STEPS <= resumed_from <= last_checkpoint
    # The process was killed before the next checkpoint, so it had done less than last_checkpoint + SAVE_FREQ steps:
    # the loss is under one checkpoint interval (plus the unfinished iteration a checkpoint cannot hold).
    assert progress_at_kill - resumed_from <= SAVE_FREQ + ITERATION_STEPS
    assert (last_checkpoint + SAVE_FREQ) - resumed_from <= SAVE_FREQ + ITERATION_STEPS

    final = MLSH.load(os.path.join(run, "model.zip"))
    assert final.num_timesteps == TARGET
    assert final.iteration == TARGET // ITERATION_STEPS
    iterations = pd.read_csv(os.path.join(run, "iterations.csv"))
    assert iterations["timesteps"].iloc[-1] == TARGET
    assert checkpoint_steps(run)[-1] > last_checkpoint  # the resumed run checkpoints too


class ScheduleRecorder(BaseCallback):
    """Records, at the start of every iteration, each task group's task, iteration on it, tasks started and phase."""

    def __init__(self, log: list) -> None:
        super().__init__()
        self.log = log

    def _on_rollout_start(self) -> None:
        model = self.model
        groups = [
            (group.task, group.iteration, group.tasks_started, group.warmup_length, model.schedule.phase(group))
            for group in model.schedule.groups
        ]
        self.log.append((model.iteration, model.num_timesteps, groups))

    def _on_step(self) -> bool:
        return True


def _flatten(tree, prefix: str = "") -> dict:
    if th.is_tensor(tree):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _flatten(value, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in _flatten(value, f"{prefix}/{i}").items()}
    return {prefix: tree}


def test_save_load_then_learn_continues_the_schedule_of_an_uninterrupted_run(make_mlsh, tmp_path):
    settings = dict(n_envs=4, task_groups=2, n_steps=8, warmup_iterations=2, joint_iterations=1)
    iteration_steps = 4 * 8
    uninterrupted: list = []
    make_mlsh(**settings).learn(9 * iteration_steps, callback=ScheduleRecorder(uninterrupted))

    interrupted: list = []
    first = make_mlsh(**settings)
    first.learn(4 * iteration_steps, callback=ScheduleRecorder(interrupted))
    first.save(tmp_path / "half.zip")
    saved_params = _flatten(first.get_parameters())
    saved_counters = (
        first.num_timesteps,
        first.iteration,
        first.subpolicy_learner._n_updates,
        [m._n_updates for m in first.masters],
    )
    saved_rngs = (
        th.get_rng_state(),
        np.random.get_state()[1].copy(),
        first.schedule.rng.bit_generator.state,
        first.exploration_rng.bit_generator.state,
    )
    # Disturb every generator: load must restore them.
    th.manual_seed(123)
    np.random.seed(123)
    second = MLSH.load(tmp_path / "half.zip", make_toy(), device="cpu")

    loaded_params = _flatten(second.get_parameters())  # sub-policies, masters and all their optimizers
    assert loaded_params.keys() == saved_params.keys()
    for key, value in saved_params.items():
        assert th.equal(value, loaded_params[key]) if th.is_tensor(value) else value == loaded_params[key], key
    assert (
        second.num_timesteps, second.iteration, second.subpolicy_learner._n_updates, [m._n_updates for m in second.masters]
    ) == saved_counters  # fmt: skip
    assert th.equal(th.get_rng_state(), saved_rngs[0])
    np.testing.assert_array_equal(np.random.get_state()[1], saved_rngs[1])
    assert second.schedule.rng.bit_generator.state == saved_rngs[2]
    assert second.exploration_rng.bit_generator.state == saved_rngs[3]
    assert second.schedule.state_dict()["groups"] == first.schedule.state_dict()["groups"]

    second.learn(5 * iteration_steps, callback=ScheduleRecorder(interrupted), reset_num_timesteps=False)
    assert second.num_timesteps == 9 * iteration_steps
    # Same iterations, tasks, phases and master resets as without the interruption (tasks change every W + U = 3).
    assert interrupted == uninterrupted
    assert {g[2] for _, _, groups in uninterrupted for g in groups} >= {1, 2, 3}


def _all_tensors(model: MLSH) -> dict:
    return {key: value for key, value in _flatten(model.get_parameters()).items() if th.is_tensor(value)}


@pytest.mark.parametrize(
    ("env_id", "kwargs", "iteration_steps"),
    [
        ("mlsh/MovementBandits-v0", dict(n_envs=2, n_steps=60, macro_duration=10), 120),
        ("mlsh/MovementBandits-v0", dict(n_envs=2, n_steps=60, macro_duration=10, normalize_observation=True), 120),
        ("mlsh/FourRooms-v0", dict(n_envs=2, n_steps=60, macro_duration=25, n_subpolicies=4), 120),
        (
            "mlsh/AntTwowalk-v0",
            dict(n_envs=2, n_steps=300, macro_duration=100, normalize_reward=True, subpolicy_obs_exclude=[0, 1]),
            600,
        ),
    ],
)
def test_save_load_continue_is_the_uninterrupted_run_bit_for_bit(tmp_path, env_id, kwargs, iteration_steps):
    def make() -> MLSH:
        return MLSH("MlpPolicy", env_id, seed=3, warmup_iterations=1, joint_iterations=1, device="cpu", **kwargs)

    uninterrupted = make()
    uninterrupted.learn(4 * iteration_steps)
    first = make()
    first.learn(2 * iteration_steps)
    first.save(tmp_path / "half.zip")
    th.manual_seed(123)  # disturb the generators: load restores them, and the envs' episodes
    np.random.seed(123)
    resumed = MLSH.load(tmp_path / "half.zip", device="cpu")
    resumed.learn(2 * iteration_steps, reset_num_timesteps=False)
    expected, got = _all_tensors(uninterrupted), _all_tensors(resumed)
    assert expected.keys() == got.keys()
    assert [key for key in expected if not th.equal(expected[key], got[key])] == []
    np.testing.assert_equal(resumed.iteration_log[-1], uninterrupted.iteration_log[-1])


def test_save_load_predicts_identically_and_training_continues(tmp_path):
    model = small_model(n_subpolicies=3)
    model.learn(3 * 32)
    path = tmp_path / "mlsh_model"
    model.save(path)
    assert (tmp_path / "mlsh_model.zip").exists()
    loaded = MLSH.load(path, make_toy(), device="cpu")  # an env factory is not stored safely: give it again
    for expected, got in zip(rollout_actions(model), rollout_actions(loaded)):
        np.testing.assert_array_equal(expected, got)
    assert loaded.num_timesteps == model.num_timesteps == 96
    assert loaded.schedule.state_dict()["groups"] == model.schedule.state_dict()["groups"]
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps == 160 and loaded.iteration == 5
    buffer = io.BytesIO()
    loaded.save(buffer)
    buffer.seek(0)
    assert MLSH.load(buffer, make_toy()).num_timesteps == 160


def test_a_weights_only_file_predicts_and_adapts_as_the_complete_one(tmp_path):
    model = small_model(n_subpolicies=3)
    model.learn(3 * 32)
    model.save(tmp_path / "complete.zip")
    model.save(tmp_path / "weights.zip", optimizers=False)
    with zipfile.ZipFile(tmp_path / "weights.zip") as archive:
        names = archive.namelist()
    assert "subpolicies.pth" in names and "master0.pth" in names
    assert [name for name in names if "optimizer" in name] == []
    assert (tmp_path / "weights.zip").stat().st_size < 0.6 * (tmp_path / "complete.zip").stat().st_size
    complete, weights = (MLSH.load(tmp_path / name, make_toy(), device="cpu") for name in ("complete.zip", "weights.zip"))
    for expected, got in zip(rollout_actions(complete), rollout_actions(weights)):
        np.testing.assert_array_equal(expected, got)
    # The optimizers start afresh: their moments are empty until the first update.
    assert weights.policy.optimizer.state_dict()["optimizer"]["state"] == {}
    assert complete.policy.optimizer.state_dict()["optimizer"]["state"] != {}
    weights.learn(64, reset_num_timesteps=False)
    assert weights.num_timesteps == 160 and weights.policy.optimizer.state_dict()["optimizer"]["state"] != {}


def test_save_refuses_exclude_and_include(tmp_path):
    model = small_model()
    for argument in ({"exclude": ["policy"]}, {"include": ["env"]}):
        with pytest.raises(ValueError, match=r"save\(path, optimizers=False\)"):
            model.save(tmp_path / "model.zip", **argument)
    assert not (tmp_path / "model.zip").exists()


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    model = small_model()
    path = tmp_path / "model.zip"
    model.save(path)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]


def test_loading_a_corrupt_or_foreign_file_names_the_fix(tmp_path):
    model = small_model()
    model.save(tmp_path / "good.zip")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes((tmp_path / "good.zip").read_bytes()[:500])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        MLSH.load(truncated)
    # Wherever the file is cut, the error says so (never "another algorithm's file").
    good = (tmp_path / "good.zip").read_bytes()
    for cut in np.linspace(1, len(good) - 1, 40).astype(int):
        truncated.write_bytes(good[:cut])
        with pytest.raises(ModelFileError, match="truncated or corrupt"):
            MLSH.load(truncated, make_toy())
    ppo = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16)
    ppo.save(tmp_path / "ppo.zip")
    with pytest.raises(ModelFileError, match="not an sb3-mlsh model"):
        MLSH.load(tmp_path / "ppo.zip")
    with pytest.raises(FileNotFoundError):
        MLSH.load(tmp_path / "missing.zip")
    assert zipfile.is_zipfile(tmp_path / "good.zip")


def test_loading_parameters_of_another_architecture_names_the_fix(tmp_path):
    small_model(n_subpolicies=2).save(tmp_path / "k2.zip")
    with pytest.raises(ModelFileError, match="do not fit this model"):
        MLSH.load(tmp_path / "k2.zip", make_toy(), n_subpolicies=3)


def test_untrusted_pickled_values_are_not_restored(tmp_path):
    from sb3_mlsh.common.serialization import UntrustedValueError

    model = small_model(subpolicy_kwargs=dict(learning_rate=lambda progress: 1e-3 * progress))
    model.save(tmp_path / "own.zip")
    # The env factory and the learning-rate function have no safe form: each is named, with the fix.
    with pytest.raises(UntrustedValueError, match=r"subpolicy_kwargs.learning_rate .*MLSH.load\(path, subpolicy_kwargs="):
        MLSH.load(tmp_path / "own.zip")
    with pytest.raises(UntrustedValueError, match=r"task_sampler is a pickled .*MLSH.load\(path, task_sampler=...\)"):
        MLSH.load(tmp_path / "own.zip", subpolicy_kwargs=dict(learning_rate=3e-4))
    assert MLSH.load(tmp_path / "own.zip", make_toy(), subpolicy_kwargs=dict(learning_rate=3e-4)).num_timesteps == 0
    trusted = MLSH.load(tmp_path / "own.zip", trusted=True)
    assert trusted.subpolicy_kwargs["learning_rate"](0.5) == pytest.approx(5e-4)
    assert MLSH.load(tmp_path / "own.zip", env=make_toy(), trusted=True).num_timesteps == 0
    # Envs to run on (SB3's env=) do not stand in for the pickled task sampler: the tasks still come from it.
    with pytest.raises(UntrustedValueError, match=r"task_sampler is a pickled"):
        MLSH.load(tmp_path / "own.zip", env=model.env, subpolicy_kwargs=dict(learning_rate=3e-4))
    # Files of 0.3 and earlier are SB3's pickles: refused with the way to convert them.
    from stable_baselines3.common.save_util import save_to_zip_file

    save_to_zip_file(tmp_path / "old.zip", data={"mlsh_format_version": 1, "init_kwargs": {"f": lambda: 0}}, params={})
    with pytest.raises(ModelFileError, match=r"sb3-mlsh 0\.1, whose files hold pickles.*trusted=True"):
        MLSH.load(tmp_path / "old.zip")


def test_saved_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        small_model().save(tmp_path / "model.zip")
    finally:
        os.umask(old)
    assert (tmp_path / "model.zip").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("entry", ["data", "subpolicies.pth"])
def test_a_malicious_model_file_runs_nothing(make_mlsh, tmp_path, entry):
    import base64
    import json
    import pickle
    import zipfile

    model = make_mlsh(ENV_ID)
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


def _tampered(path, tmp_path, entry: str, payload: bytes):
    """A copy of the model at ``path`` with ``entry`` replaced by ``payload``."""
    import zipfile

    out = tmp_path / f"tampered_{entry.replace('.', '_')}.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            target.writestr(name, payload if name == entry else source.read(name))
    return out
