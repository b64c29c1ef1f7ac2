"""Bad inputs that get a clear error or warning (see docs/bad_inputs.md), beyond those of test_api.py / test_run.py."""

import re
import subprocess
import sys
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from toy_envs import ToyTaskEnv, make_toy, small_model

from sb3_mlsh import MLSH, NonFiniteError, TaskProtocolError
from sb3_mlsh.cli.hyperparams import HyperparameterError, load_hyperparams, parse_hyperparams


class BrokenSamplerEnv(ToyTaskEnv):
    def sample_tasks(self, n: int, split: str | None = None) -> list[int]:
        raise RuntimeError("task database unreachable")


class RejectingSetTaskEnv(ToyTaskEnv):
    def set_task(self, task: int) -> None:
        raise KeyError(task)


class UnboundedToyEnv(ToyTaskEnv):
    """The toy env with an unbounded observation space, so that only a finiteness check can catch inf."""

    def __init__(self, inf_at_reset: bool = False, inf_at_step: int | None = None) -> None:
        super().__init__()
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
        self.inf_at_reset = inf_at_reset
        self.inf_at_step = inf_at_step

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        obs, info = super().reset(seed=seed, options=options)
        if self.inf_at_reset:
            obs[0] = np.inf
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        if self.t == self.inf_at_step:
            obs[1] = -np.inf
        return obs, reward, terminated, truncated, info


def test_task_sampler_that_raises_names_the_env_and_chains_the_original():
    with pytest.raises(TaskProtocolError, match=r"BrokenSamplerEnv.*sample_tasks\(\) raised RuntimeError") as info:
        small_model(lambda: gym.wrappers.TimeLimit(BrokenSamplerEnv(), 10))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "task database unreachable" in str(info.value)


def test_set_task_that_rejects_sampled_tasks_is_named():
    with pytest.raises(TaskProtocolError, match=r"set_task\(.*\) then reset\(\).*raised KeyError") as info:
        small_model(lambda: gym.wrappers.TimeLimit(RejectingSetTaskEnv(), 10))
    assert isinstance(info.value.__cause__, KeyError)


def test_inf_observation_at_reset_is_caught_before_training():
    with pytest.raises(NonFiniteError, match="NaN or inf"):
        small_model(lambda: gym.wrappers.TimeLimit(UnboundedToyEnv(inf_at_reset=True), 10))


def test_inf_observation_during_a_rollout_is_caught():
    model = small_model(lambda: gym.wrappers.TimeLimit(UnboundedToyEnv(inf_at_step=3), 10))
    with pytest.raises(NonFiniteError, match="non-finite observation"):
        model.learn(64)
    assert model.num_timesteps <= 2 * 3  # stopped at the step that returned inf, before any update


def _warnings_of(build) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build()
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_macro_duration_longer_than_the_episode_warns():
    messages = _warnings_of(lambda: small_model(make_toy(max_episode_steps=7), macro_duration=12))
    assert any(re.search(r"macro_duration \(N=12\) is larger than the episode length .*7 steps", m) for m in messages), (
        messages
    )
    messages = _warnings_of(lambda: MLSH("MlpPolicy", "mlsh/MovementBandits-v0", n_envs=1, n_steps=8, macro_duration=60))
    assert any("episode length of 'mlsh/MovementBandits-v0' (50 steps)" in m for m in messages), messages


def test_too_many_subpolicies_warns():
    with pytest.warns(UserWarning, match=r"n_subpolicies \(K=65\) is larger than 64"):
        small_model(make_toy(), n_subpolicies=65, n_envs=1, n_steps=4)


def test_sensible_arguments_do_not_warn(recwarn):
    small_model(make_toy(max_episode_steps=7), macro_duration=7, n_subpolicies=4)
    assert not [w for w in recwarn.list if issubclass(w.category, UserWarning) and "macro_duration" in str(w.message)]
    assert not [w for w in recwarn.list if issubclass(w.category, UserWarning) and "n_subpolicies" in str(w.message)]


@pytest.mark.parametrize("entry", ["[1, 2]", "just a string", "42"])
def test_yaml_entry_that_is_not_a_mapping(tmp_path, entry):
    path = tmp_path / "bad.yml"
    path.write_text(f"mlsh/MovementBandits-v0: {entry}\n")
    with pytest.raises(HyperparameterError, match="must be a mapping"):
        load_hyperparams("mlsh/MovementBandits-v0", str(path))


@pytest.mark.parametrize("key", ["master_kwargs", "subpolicy_kwargs", "policy_kwargs"])
def test_nested_kwargs_that_are_not_a_mapping(key):
    with pytest.raises(HyperparameterError, match=f"{key} must be a mapping"):
        parse_hyperparams({key: 5}, "mlsh/MovementBandits-v0")


def test_cli_prints_one_clear_line_instead_of_a_traceback(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("mlsh/MovementBandits-v0: [1, 2]\n")
    result = subprocess.run(
        [sys.executable, "-m", "sb3_mlsh.train", "--env", "mlsh/MovementBandits-v0", "-yaml", str(bad), "-f", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "must be a mapping" in result.stderr


class DiscreteObsEnv(ToyTaskEnv):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Discrete(4)

    def _obs(self) -> int:
        return self.t % 4


class ImageObsEnv(ToyTaskEnv):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0, 255, shape=(36, 36, 3), dtype=np.uint8)

    def _obs(self) -> np.ndarray:
        return np.zeros((36, 36, 3), dtype=np.uint8)


@pytest.mark.parametrize("env_class, message", [(DiscreteObsEnv, "FlattenObservation"), (ImageObsEnv, "Image observations")])
def test_unsupported_observation_spaces_name_the_fix(env_class, message):
    with pytest.raises(TypeError, match=message):
        small_model(lambda: gym.wrappers.TimeLimit(env_class(), 10))


class HugeRewardEnv(ToyTaskEnv):
    """Finite rewards too large for float32 losses."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, 1e30 * (1 + reward), terminated, truncated, info


class NaNTerminalObservationEnv(ToyTaskEnv):
    """NaN only in the last observation of an episode (which SB3 keeps in the info, not in the next observation)."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, _, truncated, info = super().step(action)
        if self.t == 5:
            obs = np.full_like(obs, np.nan)
        return obs, reward, self.t == 5, truncated, info


def test_a_finite_but_huge_reward_is_refused_before_it_reaches_the_parameters():
    model = small_model(lambda: gym.wrappers.TimeLimit(HugeRewardEnv(), 7), warmup_iterations=0)
    before = [p.detach().clone() for p in model.policy.parameters()]
    with pytest.raises(
        NonFiniteError, match=r"gradient is not finite .* iteration 1: the update was refused.*normalize_reward"
    ):
        model.learn(32)
    assert all(th.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    assert all(th.isfinite(p).all() for master in model.masters for p in master.policy.parameters())


def test_nan_in_a_final_observation_names_the_env():
    model = small_model(lambda: gym.wrappers.TimeLimit(NaNTerminalObservationEnv(), 7), n_envs=3, task_groups=1)
    with pytest.raises(
        NonFiniteError, match=r"Env 0 returned a non-finite final observation of an episode .*TransformObservation"
    ):
        model.learn(64)


class LateSpaceShiftEnv(ToyTaskEnv):
    """Tasks 0-1 keep the spaces; task 2, drawn only later, changes the observation shape."""

    def sample_tasks(self, n: int, split: str | None = None) -> list[int]:
        return [2] * n if getattr(self, "_late", False) else [0] * n

    def set_task(self, task: int) -> None:
        super().set_task(task)
        if task == 2:
            self.observation_space = spaces.Box(-10.0, 10.0, shape=(5,), dtype=np.float32)


def test_a_later_task_that_changes_the_spaces_is_refused_when_it_starts():
    model = small_model(lambda: gym.wrappers.TimeLimit(LateSpaceShiftEnv(), 7), warmup_iterations=1, joint_iterations=0)
    model.learn(32)
    model.task_sampler.probe_env.unwrapped._late = True  # the sampler's env draws the tasks
    with pytest.raises(TaskProtocolError, match=r"Task 2 changed the observation_space of env 0 to Box.*fix set_task"):
        model.learn(64, reset_num_timesteps=False)


class ArrayRewardEnv(ToyTaskEnv):
    """Returns its reward as a one-element array, as a vectorised env's code often does."""

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, np.array([reward]), terminated, truncated, info


def test_a_reward_that_is_not_one_number_names_the_env_before_training():
    with pytest.raises(
        TaskProtocolError, match=r"step\(\) of '.*ArrayRewardEnv.*' returned a reward of shape \(1,\).*reward.item\(\)"
    ):
        small_model(lambda: gym.wrappers.TimeLimit(ArrayRewardEnv(), 10))


@pytest.mark.parametrize("learner", ["master_kwargs", "subpolicy_kwargs"])
def test_a_minibatch_of_one_is_refused_with_the_reason(learner):
    with pytest.raises(ValueError, match=rf"{learner}\['batch_size'\] must be an integer >= 2 \(PPO normalises advantages"):
        small_model(make_toy(), **{learner: dict(batch_size=1)})
