"""MLSH runs end to end on every task family for a few iterations (tiny budgets)."""

import numpy as np
import pytest
import torch as th
from markers import MUJOCO_IDS, family_params

import mlsh_envs
from sb3_mlsh import MLSH, make_task_sampler


@pytest.mark.parametrize("env_id", family_params(mlsh_envs.ENV_IDS))
def test_mlsh_meta_trains_and_transfers_on_each_family(env_id):
    n_steps = 20 if env_id in MUJOCO_IDS else 40
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
    assert model.iteration == 3 and model.schedule.groups[0].tasks_started == 2
    held_out = make_task_sampler(env_id, split="test", seed=1).sample()[0]
    model.adapt(held_out, total_timesteps=2 * n_steps)
    assert model.env.env_method("get_task")[0] == held_out
    action, _ = model.predict(model.env.reset(), deterministic=True)
    assert model.action_space.contains(np.asarray(action[0], dtype=model.action_space.dtype))


@pytest.mark.mujoco
def test_twowalk_subpolicies_transfer_to_the_obstacle_course(tmp_path):
    # The paper's MuJoCo transfer: sub-policies meta-trained on AntTwowalk, a fresh master on a held-out obstacle course.
    model = MLSH("MlpPolicy", make_task_sampler("mlsh/AntTwowalk-v0", seed=0), macro_duration=5, n_steps=20, n_envs=2, seed=0)
    model.learn(40)
    model.save(tmp_path / "twowalk")
    course = make_task_sampler("mlsh/AntObstacleCourse-v0", split="test", seed=0)
    transfer = MLSH.load(tmp_path / "twowalk", course, task_groups=1, n_envs=2, seed=0)
    subpolicies = transfer.subpolicy_learner.policy.theta.detach().clone()
    th.testing.assert_close(subpolicies, model.subpolicy_learner.policy.theta.detach())
    task = course.sample()[0]
    transfer.adapt(task, total_timesteps=40)
    assert transfer.env.env_method("get_task") == [task, task]
    assert type(transfer.env.envs[0].unwrapped).__name__ == "AntObstacleCourseEnv"
    th.testing.assert_close(transfer.subpolicy_learner.policy.theta.detach(), subpolicies, rtol=0, atol=0)


def test_loading_into_a_family_with_other_spaces_names_the_mismatch(make_mlsh, tmp_path):
    model = make_mlsh(make_task_sampler("mlsh/MovementBandits-v0", seed=0))
    model.save(tmp_path / "bandits")
    with pytest.raises(ValueError, match=r"observation_space Box\(0.0, 1.0, \(6,\), float32\).*same spaces"):
        MLSH.load(tmp_path / "bandits", make_task_sampler("mlsh/FourRooms-v0", seed=0))
