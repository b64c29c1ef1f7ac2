import os
import sys

import gymnasium
import gymnasium.envs.registration
import gymnasium.wrappers.common
import pytest
import torch as th

sys.path.insert(0, os.path.dirname(__file__))
th.set_num_threads(1)

# rl_zoo3 replaces gymnasium's TimeLimit with a subclass when it is imported (test_zoo.py imports it at collection).
# Other tests must see gymnasium as users have it, so the originals are put back after collection and after every test.
_TIME_LIMIT_HOMES = (gymnasium.wrappers, gymnasium.wrappers.common, gymnasium.envs.registration)
_ORIGINAL_TIME_LIMIT = gymnasium.wrappers.common.TimeLimit


def _restore_time_limit() -> None:
    for module in _TIME_LIMIT_HOMES:
        module.TimeLimit = _ORIGINAL_TIME_LIMIT


def pytest_collection_finish(session) -> None:
    _restore_time_limit()


@pytest.fixture(autouse=True)
def _gymnasium_as_installed():
    yield
    _restore_time_limit()


def collect_once(model):
    """Run one rollout of ``model`` without training; returns what it collected."""
    _, callback = model._setup_learn(10**9, None)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    return model._rollout


@pytest.fixture
def collect():
    return collect_once


@pytest.fixture
def make_mlsh():
    """
    A factory of small MLSH models, ``make_mlsh(tasks=None, policy="MlpPolicy", **overrides)``:

    - ``tasks``: the task sampler (a factory, env id or TaskSampler); None: the toy family ``toy_envs.make_toy()``
      (7-step episodes of 3 tasks), unless ``env=`` among the overrides gives SB3-style envs;
    - defaults ``toy_envs.SMALL_MLSH`` (shared with ``toy_envs.small_model``): ``n_envs=2, n_steps=16,
      macro_duration=4, warmup_iterations=1, joint_iterations=1, seed=0, device="cpu"``, K = MLSH's default 2;
    - ``overrides``: any other MLSH argument, or a replacement for a default. A test whose assertions depend on a number
      (n_envs, n_steps, macro_duration, seed ...) passes it explicitly, even when it equals the default.

    The factory keeps the models it built and closes their envs at teardown.
    """
    from toy_envs import small_model

    models = []

    def make(tasks=None, policy="MlpPolicy", **overrides):
        model = small_model(tasks, policy, **overrides)
        models.append(model)
        return model

    yield make
    for model in models:
        env = model.get_env()
        if env is not None:
            env.close()
