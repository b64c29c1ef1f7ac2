"""benchmarks/master_choice.py: the per-group routing of a run with several task groups, from its iterations.csv."""

import os
import sys

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from master_choice import fresh_master_updates, meta_groups, replay_group_tasks

from sb3_mlsh import MLSH, make_task_sampler
from sb3_mlsh.cli.train import main
from sb3_mlsh.mlsh.schedule import TaskSchedule


@pytest.mark.mujoco
def test_group_tasks_are_replayed_in_the_order_the_groups_started_them(tmp_path, monkeypatch):
    started = []
    original = TaskSchedule.start_task

    def spy(self, group, reset_envs):
        observations = original(self, group, reset_envs)
        started.append((group.index, group.task))
        return observations

    monkeypatch.setattr(TaskSchedule, "start_task", spy)
    model = main(["--env", "mlsh/AntTwowalk-v0", "-n", "3000", "--seed", "3", "-f", str(tmp_path), "--no-progress",
                  "--verbose", "0", "-params", "task_groups:3", "n_envs:3", "n_steps:100", "macro_duration:20",
                  "warmup_iterations:1", "joint_iterations:1"])  # fmt: skip
    run = os.path.join(tmp_path, "mlsh", "mlsh-AntTwowalk-v0_1")
    log = pd.read_csv(os.path.join(run, "iterations.csv"))
    assert len(log) == 10 and {"group2_joint", "group2_tasks_started", "group2_usage_1"} <= set(log.columns)
    replayed = replay_group_tasks(run, log, model)
    assert replayed == {g: [task for index, task in started if index == g] for g in range(3)}
    assert len(set(map(tuple, replayed.values()))) > 1  # the groups drew different tasks

    right = np.array([1, 0])  # sub-policy 1 is right for task 0, sub-policy 0 for task 1
    rows = pd.DataFrame(meta_groups("run", run, model, right, [0, 1]))
    for row in rows.itertuples():
        joint = log[(log[f"group{row.group}_joint"] == 1) & (log[f"group{row.group}_tasks_started"] == row.task_index + 1)]
        assert row.task == replayed[row.group][row.task_index] and row.right_subpolicy == right[row.task]
        assert row.right_share == pytest.approx(joint[f"group{row.group}_usage_{row.right_subpolicy}"].mean())
    assert len(rows) == sum(log[f"group{g}_joint"].sum() for g in range(3))  # one joint iteration per task (U = 1)


@pytest.mark.parametrize("learning_rate", [0.1, 0.01])
def test_probe_reads_the_master_update_that_follows_each_iteration(learning_rate):
    schedule = dict(n_subpolicies=2, macro_duration=5, warmup_iterations=1, joint_iterations=1, n_steps=40, n_envs=2)
    master_kwargs = dict(learning_rate=learning_rate, n_epochs=10, batch_size=16)
    sampler = make_task_sampler("mlsh/MovementBandits-v0", seed=0)
    model = MLSH("MlpPolicy", sampler, seed=0, master_kwargs=master_kwargs, **schedule)
    model.learn(160)
    rows = fresh_master_updates(model, 0, 4 * 80)
    assert [row["iteration"] for row in rows] == [1, 2, 3, 4]
    assert all(abs(sum(row["usage"]) - 1) < 1e-9 for row in rows)
    entropy = np.array([row["master_entropy"] for row in rows])
    approx_kl = np.array([row["master_approx_kl"] for row in rows])
    assert np.isnan(entropy[-1]) and np.isnan(approx_kl[-1])  # adapt stops before the last update is read
    assert np.all((entropy[:-1] >= 0) & (entropy[:-1] <= np.log(2) + 1e-6))  # a two-way choice
    if learning_rate == 0.1:  # the first large step leaves the fresh master all but deterministic
        assert approx_kl[0] > 1 and entropy[0] < 0.3 and entropy[1] < 0.01
    else:  # small steps leave it near uniform
        assert 0 < approx_kl[0] < 0.1 and np.all(entropy[:-1] > 0.5)
