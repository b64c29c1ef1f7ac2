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
