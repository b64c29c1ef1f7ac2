import os
import sys

import pytest
import torch as th

sys.path.insert(0, os.path.dirname(__file__))
th.set_num_threads(1)


def collect_once(model):
    """Run one rollout of ``model`` without training; returns the collector's result."""
    _, callback = model._setup_learn(10**9, None)
    groups = [(group.env_indices, group.master) for group in model.trainer.groups]
    result, model._last_obs, model._last_episode_starts = model.collector.collect(
        model.n_steps, groups, model._last_obs, model._last_episode_starts, callback, model
    )
    return result


@pytest.fixture
def collect():
    return collect_once
