"""MLSH runs end to end on every task family for a few iterations (tiny budgets)."""

import numpy as np
import pytest

import mlsh_envs
from mlsh_envs import make_task_sampler
from sb3_mlsh import MLSH

MUJOCO = {"mlsh/AntTwowalk-v0", "mlsh/AntMaze-v0", "mlsh/AntObstacleCourse-v0", "mlsh/HumanoidWalkCrawl-v0"}


@pytest.mark.parametrize("env_id", mlsh_envs.ENV_IDS)
def test_mlsh_meta_trains_and_transfers_on_each_family(env_id):
    n_steps = 20 if env_id in MUJOCO else 40
    model = MLSH(
        "MlpPolicy",
        make_task_sampler(env_id, seed=0),
        n_subpolicies=2,
        macro_duration=5,
        warmup_iterations=1,
        joint_iterations=1,
        n_steps=n_steps,
        n_envs=2,
        seed=0,
    )
    model.learn(3 * 2 * n_steps)
    assert model.iteration == 3 and model.trainer.groups[0].tasks_started == 2
    held_out = make_task_sampler(env_id, split="test", seed=1).sample()[0]
    model.adapt(held_out, total_timesteps=2 * n_steps)
    assert model.env.env_method("get_task")[0] == held_out
    action, _ = model.predict(model.env.reset(), deterministic=True)
    assert model.action_space.contains(np.asarray(action[0], dtype=model.action_space.dtype))
