"""The shared-policy baseline of benchmarks/transfer.py keeps its scaling statistics from training into fine-tuning."""

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from transfer import TaskResampling, fixed_task_env, save_scaling

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
def test_transfer_env_kwargs_that_cannot_run_are_refused_before_any_work(tmp_path, pairs, with_results, message):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "transfer.py")
    command = [sys.executable, script, "--env", "mlsh/AntMaze-v0", "--transfer-env", "mlsh/AntObstacleCourse-v0"]
    models, results = tmp_path / "models", tmp_path / "results"
    command += ["--transfer-env-kwargs", *pairs, "--models", str(models)] + (
        ["--results", str(results)] if with_results else []
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr
    assert not models.exists() and not results.exists()
