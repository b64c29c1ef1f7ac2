"""The shared-policy baseline of benchmarks/transfer.py keeps its scaling statistics from training into fine-tuning."""

import argparse
import os
import sys

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import transfer
from transfer import TaskResampling, fixed_task_env, load_for_transfer, save_scaling

from sb3_mlsh import MLSH, make_task_sampler

ENV_ID = "mlsh/MovementBandits-v0"


def _trained_scaling(norm_obs: bool) -> VecNormalize:
    env = VecNormalize(
        make_vec_env(lambda: TaskResampling(gym.make(ENV_ID), "train"), n_envs=2, seed=0), norm_obs=norm_obs, gamma=0.98
    )
    env.reset()
    for _ in range(60):
        env.step(np.array([env.action_space.sample() for _ in range(2)]))
    return env


@pytest.mark.parametrize("norm_obs", [False, True])
def test_fine_tuning_starts_from_the_saved_statistics(tmp_path, norm_obs):
    trained = _trained_scaling(norm_obs)
    path = str(tmp_path / "shared_scaling.npz")
    save_scaling(trained, path)
    fresh = fixed_task_env(ENV_ID, 1, n_envs=2, seed=1, reward_gamma=0.98, norm_obs=norm_obs)
    tuned = fixed_task_env(ENV_ID, 1, n_envs=2, seed=1, reward_gamma=0.98, norm_obs=norm_obs, statistics=path)
    assert tuned.ret_rms.count == trained.ret_rms.count > fresh.ret_rms.count
    np.testing.assert_array_equal(tuned.ret_rms.var, trained.ret_rms.var)
    if norm_obs:
        np.testing.assert_array_equal(tuned.obs_rms.mean, trained.obs_rms.mean)
        assert not np.array_equal(fresh.obs_rms.mean, trained.obs_rms.mean)
    with np.load(path, allow_pickle=False) as saved:  # plain arrays: nothing in a results folder is unpickled
        assert ("obs_mean" in saved) == norm_obs


def test_statistics_saved_without_observation_scaling_are_refused_with_observation_scaling(tmp_path):
    path = str(tmp_path / "shared_scaling.npz")
    save_scaling(_trained_scaling(norm_obs=False), path)
    with pytest.raises(ValueError, match="--ppo-norm-obs"):
        fixed_task_env(ENV_ID, 0, n_envs=2, seed=1, reward_gamma=0.98, norm_obs=True, statistics=path)


@pytest.mark.mujoco
def test_transfer_env_kwargs_reach_the_fine_tuning_envs():
    env = fixed_task_env("mlsh/AntObstacleCourse-v0", 4, n_envs=2, seed=0, env_kwargs={"restand_every": 200})
    assert env.get_attr("restand_every") == [200, 200]
    assert fixed_task_env("mlsh/AntObstacleCourse-v0", 4, n_envs=1, seed=0).get_attr("restand_every") == [None]


@pytest.mark.mujoco
@pytest.mark.parametrize(
    "pairs, with_results, message",
    [
        (["restand_every:200"], False, "--results"),
        (["restand_evry:200"], True, "unexpected keyword argument 'restand_evry'"),
        (["restand_every:0"], True, "restand_every is a number of steps >= 1"),
        (["restand_every"], True, "takes key:value pairs"),
    ],
)
def test_transfer_env_kwargs_that_cannot_run_are_refused_before_any_work(
    tmp_path, monkeypatch, capsys, pairs, with_results, message
):
    arguments = ["--env", "mlsh/AntMaze-v0", "--transfer-env", "mlsh/AntObstacleCourse-v0", "--transfer-env-kwargs", *pairs]
    _assert_refused_before_any_work(tmp_path, monkeypatch, capsys, arguments, with_results, message)


def test_adapt_kwargs_replace_the_saved_settings_for_the_transfer(tmp_path):
    sampler = make_task_sampler(ENV_ID, split="train", seed=0)
    trained = MLSH("MlpPolicy", sampler, macro_duration=10, max_macro_duration=30, n_envs=2, n_steps=40, device="cpu")
    path = str(tmp_path / "model.zip")
    trained.save(path)
    fixed = argparse.Namespace(n_envs=3, n_steps=20, adapt_kwargs={"macro_duration": 20, "max_macro_duration": None})
    model = load_for_transfer(path, None, fixed, seed=1)
    assert (model.macro_duration, model.max_macro_duration, model.n_envs, model.n_steps) == (20, None, 3, 20)
    as_trained = load_for_transfer(path, None, argparse.Namespace(n_envs=3, n_steps=20, adapt_kwargs={}), seed=1)
    assert (as_trained.macro_duration, as_trained.max_macro_duration) == (10, 30)


@pytest.mark.parametrize(
    "pairs, with_results, message",
    [
        (["max_macro_duration:null"], False, "--results"),
        (["macro_duraton:20"], True, "unknown argument 'macro_duraton' (did you mean 'macro_duration'?)"),
        (["max_macro_duration:5"], True, "max_macro_duration must be None or an integer >= macro_duration"),
        (["n_envs:4"], True, "n_envs come from transfer.py's own flags"),
    ],
)
def test_adapt_kwargs_that_cannot_run_are_refused_before_any_work(tmp_path, monkeypatch, capsys, pairs, with_results, message):
    arguments = ["--env", ENV_ID, "--adapt-kwargs", *pairs]
    _assert_refused_before_any_work(tmp_path, monkeypatch, capsys, arguments, with_results, message)


def _assert_refused_before_any_work(tmp_path, monkeypatch, capsys, arguments, with_results, message):
    """transfer.py with ``arguments`` exits 2 with ``message`` and writes no models or results folder."""
    models, results = tmp_path / "models", tmp_path / "results"
    command = ["transfer.py", *arguments, "--models", str(models)] + (["--results", str(results)] if with_results else [])
    monkeypatch.setattr(sys, "argv", command)
    with pytest.raises(SystemExit) as exit_info:
        transfer.main()
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not models.exists() and not results.exists()
