"""The meta-loop: who learns when, master resets, exact W and U, task groups, determinism."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from toy_envs import make_toy

from sb3_mlsh import MLSH
from sb3_mlsh.common.callbacks import iteration_row
from sb3_mlsh.mlsh import mlsh as mlsh_module
from sb3_mlsh.mlsh.buffers import select_envs


def subpolicy_vectors(model: MLSH) -> list[th.Tensor]:
    policy = model.policy
    return [th.cat([p.detach().flatten() for p in policy.subpolicy_parameters(k)]).clone() for k in range(model.n_subpolicies)]


def master_vector(master) -> th.Tensor:
    return th.cat([p.detach().flatten() for p in master.policy.parameters()]).clone()


# The toy family of these tests: episodes of 8 steps, two to each env's 16-step rollout of the make_mlsh model.
EIGHT_STEP_TOY = make_toy(max_episode_steps=8)


@pytest.mark.parametrize("box_actions", [False, True])
def test_subpolicies_without_data_are_bit_for_bit_unchanged(make_mlsh, box_actions):
    model = make_mlsh(make_toy(box_actions=box_actions), n_subpolicies=3, warmup_iterations=0, joint_iterations=5)
    model._setup_learn(10**6)
    # Make the master always choose sub-policy 0: the other two get no data.
    with th.no_grad():
        model.master.policy.action_net.bias.copy_(th.tensor([50.0, -50.0, -50.0]))
    before = subpolicy_vectors(model)
    model.learn(model.n_envs * model.n_steps, reset_num_timesteps=False)
    after = subpolicy_vectors(model)
    assert not th.equal(before[0], after[0]), "the sub-policy with data must learn"
    assert th.equal(before[1], after[1]) and th.equal(before[2], after[2])
    assert model.policy.optimizer.subpolicy_state(1) == {}
    assert model.policy.optimizer.subpolicy_state(0) != {}


def test_warmup_changes_no_subpolicy_parameter_but_trains_the_master(make_mlsh):
    model = make_mlsh(EIGHT_STEP_TOY, warmup_iterations=3, joint_iterations=1)
    model._setup_learn(10**6)
    subpolicies, master = subpolicy_vectors(model), master_vector(model.master)
    model.learn(3 * model.n_envs * model.n_steps, reset_num_timesteps=False)
    assert all(th.equal(a, b) for a, b in zip(subpolicies, subpolicy_vectors(model)))
    assert not th.equal(master, master_vector(model.master))
    model.learn(model.n_envs * model.n_steps, reset_num_timesteps=False)  # the joint iteration
    assert not all(th.equal(a, b) for a, b in zip(subpolicies, subpolicy_vectors(model)))


def test_master_is_reinitialised_at_every_new_task(make_mlsh, monkeypatch):
    model = make_mlsh(EIGHT_STEP_TOY, warmup_iterations=1, joint_iterations=1)
    trained = []
    reset = model._reset_master

    def spy(master):
        trained.append(master_vector(master))
        reset(master)
        assert len(master.policy.optimizer.state) == 0, "a fresh master has a fresh optimizer"
        trained.append(master_vector(master))

    monkeypatch.setattr(model, "_reset_master", spy)
    model.learn(6 * model.n_envs * model.n_steps)
    assert len(trained) == 2 * 3  # a new task after iterations 2, 4 and 6
    for before, after in zip(trained[::2], trained[1::2]):
        assert not th.allclose(before, after)
    assert model.schedule.groups[0].tasks_started == 4


@pytest.mark.parametrize("warmup,joint", [(2, 3), (0, 2), (3, 0), (1, 1)])
def test_warmup_and_joint_iteration_counts_are_exact(make_mlsh, warmup, joint):
    model = make_mlsh(EIGHT_STEP_TOY, warmup_iterations=warmup, joint_iterations=joint)
    iterations = 2 * (warmup + joint)
    model.learn(iterations * model.n_envs * model.n_steps)
    phases = [entry["joint_groups"] for entry in model.iteration_log]
    assert phases == ([0] * warmup + [1] * joint) * 2
    assert model.schedule.groups[0].tasks_started == 3
    assert model.subpolicy_learner._n_updates == 2 * joint * model.subpolicy_learner.n_epochs


def test_invalid_schedule_is_refused(make_mlsh):
    with pytest.raises(ValueError, match="at least one iteration"):
        make_mlsh(EIGHT_STEP_TOY, warmup_iterations=0, joint_iterations=0)


def test_task_groups_have_own_tasks_masters_staggered_phases_and_pool_joint_data(make_mlsh, monkeypatch):
    model = make_mlsh(make_toy(n_tasks=50), n_envs=4, task_groups=2, warmup_iterations=1, joint_iterations=1)
    groups = model.schedule.groups
    assert [g.env_indices.tolist() for g in groups] == [[0, 1], [2, 3]]
    assert [g.warmup_length for g in groups] == [1, 2]  # group 1 starts one iteration later in its cycle
    pooled = []

    def spy(buffer, env_indices):  # the sub-policies' update takes the joint-phase envs' columns of the buffer
        pooled.append(env_indices.tolist())
        return select_envs(buffer, env_indices)

    monkeypatch.setattr(mlsh_module, "select_envs", spy)
    model.learn(5 * model.n_envs * model.n_steps)
    # Joint phases alternate between the groups: every iteration after the first trains the sub-policies.
    assert pooled == [[0, 1], [2, 3], [0, 1], [2, 3]]
    assert groups[0].task != groups[1].task
    assert not th.equal(master_vector(groups[0].master), master_vector(groups[1].master))
    tasks = model.env.env_method("get_task")
    assert tasks[:2] == [groups[0].task] * 2 and tasks[2:] == [groups[1].task] * 2


def test_task_groups_log_each_masters_choices_phase_and_task_count(make_mlsh):
    model = make_mlsh(make_toy(n_tasks=50), n_envs=4, task_groups=2, warmup_iterations=1, joint_iterations=1)
    model.learn(5 * model.n_envs * model.n_steps)
    log = model.iteration_log
    assert [entry["group_joint"] for entry in log] == [[0, 0], [1, 0], [0, 1], [1, 0], [0, 1]]
    assert [entry["group_tasks_started"] for entry in log] == [[1, 1], [1, 1], [2, 1], [2, 2], [3, 2]]
    for entry in log:  # both groups have two envs: the run's usage is the mean of the groups'
        usage = np.array(entry["group_usage"])
        np.testing.assert_allclose(usage.sum(axis=1), 1.0)
        np.testing.assert_allclose(usage.mean(axis=0), entry["subpolicy_usage"], atol=1e-4)
    assert any(len(set(map(tuple, entry["group_usage"]))) == 2 for entry in log)  # the masters choose apart
    row = iteration_row(log[-1])
    assert (row["group1_joint"], row["group0_tasks_started"], row["group1_usage_1"]) == (1, 3, log[-1]["group_usage"][1][1])
    assert "group_usage" not in row
    single = make_mlsh(make_toy(n_tasks=50), n_envs=4)
    single.learn(single.n_envs * single.n_steps)
    assert "group_usage" not in single.iteration_log[0]


def test_same_seed_same_results(make_mlsh):
    runs = []
    for _ in range(2):
        model = make_mlsh(EIGHT_STEP_TOY, seed=3, n_subpolicies=3)
        model.learn(4 * model.n_envs * model.n_steps)
        runs.append(
            (subpolicy_vectors(model), master_vector(model.master), model.iteration_log, model.schedule.groups[0].task)
        )
    (sub_a, master_a, log_a, task_a), (sub_b, master_b, log_b, task_b) = runs
    assert all(th.equal(a, b) for a, b in zip(sub_a, sub_b))
    assert th.equal(master_a, master_b)
    assert log_a == log_b and task_a == task_b
    other = make_mlsh(EIGHT_STEP_TOY, seed=4, n_subpolicies=3)
    other.learn(4 * other.n_envs * other.n_steps)
    assert not th.equal(subpolicy_vectors(other)[0], sub_a[0])


def test_adapt_freezes_subpolicies_and_learns_a_fresh_master_on_the_task(make_mlsh):
    model = make_mlsh(EIGHT_STEP_TOY, n_envs=2)
    model.learn(4 * model.n_envs * model.n_steps)
    subpolicies = subpolicy_vectors(model)
    old_master = master_vector(model.master)
    model.adapt(2, total_timesteps=3 * model.n_envs * model.n_steps)
    assert all(th.equal(a, b) for a, b in zip(subpolicies, subpolicy_vectors(model)))
    assert not th.equal(old_master, master_vector(model.master))
    assert model.env.env_method("get_task") == [2, 2]
    assert len(model.iteration_log) == 3 and all(entry["joint_groups"] == 0 for entry in model.iteration_log)
    model.adapt(1, total_timesteps=model.n_envs * model.n_steps, update_subpolicies=True)
    assert not all(th.equal(a, b) for a, b in zip(subpolicies, subpolicy_vectors(model)))
    model.resume_meta_training()
    model.learn(model.n_envs * model.n_steps)
    assert model.iteration_log[-1]["iteration"] == 1


class RolloutOnMean(BaseCallback):
    """Records, for each rollout, whether every sub-policy action in it was the mean of its distribution."""

    def __init__(self) -> None:
        super().__init__()
        self.on_mean: list[bool] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        obs = th.as_tensor(buffer.observations.reshape(buffer.buffer_size * buffer.n_envs, -1))
        with th.no_grad():
            mean = self.model.policy.get_distribution(obs).mode().numpy()
        self.on_mean.append(bool(np.allclose(buffer.actions.reshape(mean.shape), mean, atol=1e-6)))


def test_frozen_subpolicies_act_on_their_mean_only_when_asked_and_sample_once_they_learn(make_mlsh):
    model = make_mlsh(make_toy(max_episode_steps=8, box_actions=True), n_envs=2, n_steps=16, warmup_iterations=1)
    steps = model.n_envs * model.n_steps
    model.learn(2 * steps)
    record = RolloutOnMean()
    model.adapt(2, total_timesteps=2 * steps, callback=record, deterministic_subpolicies=True)
    model.adapt(2, total_timesteps=steps, callback=record)
    # The paper's fine-tuning: W = 1 frozen iteration on the mean, then the learning sub-policies sample.
    model.adapt(
        2, total_timesteps=2 * steps, update_subpolicies="after_warmup", callback=record, deterministic_subpolicies=True
    )
    model.resume_meta_training()
    model.learn(steps, callback=record)
    assert record.on_mean == [True, True, False, True, False, False]


def test_subpolicy_usage_is_logged_per_iteration(make_mlsh):
    model = make_mlsh(EIGHT_STEP_TOY, n_subpolicies=3)
    model.learn(2 * model.n_envs * model.n_steps)
    usage = np.array(model.iteration_log[-1]["subpolicy_usage"])
    assert usage.shape == (3,) and usage.sum() == pytest.approx(1.0)


def test_paper_fine_tuning_freezes_w_iterations_then_learns(make_mlsh):
    model = make_mlsh(EIGHT_STEP_TOY, n_envs=2, warmup_iterations=2, joint_iterations=1)
    model.learn(3 * model.n_envs * model.n_steps)
    frozen = subpolicy_vectors(model)
    steps = model.n_envs * model.n_steps
    model.adapt(2, total_timesteps=2 * steps, update_subpolicies="after_warmup")
    assert all(th.equal(a, b) for a, b in zip(frozen, subpolicy_vectors(model)))  # W = 2 warmup iterations
    assert [entry["joint_groups"] for entry in model.iteration_log] == [0, 0]
    model.adapt(2, total_timesteps=6 * steps, update_subpolicies="after_warmup")
    # The task never ends in transfer: after W warmup iterations every later one is joint (beyond W + U = 3).
    assert [entry["joint_groups"] for entry in model.iteration_log] == [0, 0, 1, 1, 1, 1]
    assert model.env.env_method("get_task") == [2, 2]
    assert not all(th.equal(a, b) for a, b in zip(frozen, subpolicy_vectors(model)))
    with pytest.raises(ValueError, match="False, True or 'after_warmup'"):
        model.adapt(2, total_timesteps=steps, update_subpolicies="later")


def test_the_old_name_of_the_task_schedule_still_builds_one_with_a_deprecation_warning(make_mlsh):
    from sb3_mlsh import MLSHMetaTrainer, TaskSchedule

    model = make_mlsh(EIGHT_STEP_TOY, warmup_iterations=1, joint_iterations=1)
    arguments = (model.task_sampler, model.env, [group.master for group in model.schedule.groups])
    with pytest.warns(DeprecationWarning, match="use TaskSchedule"):
        old = MLSHMetaTrainer(*arguments, reset_master=model._reset_master, warmup_iterations=1, joint_iterations=1, seed=0)
    assert isinstance(old, TaskSchedule) and isinstance(model.schedule, TaskSchedule)
    assert [old.phase(group) for group in old.groups] == [model.schedule.phase(group) for group in model.schedule.groups]
