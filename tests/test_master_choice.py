"""benchmarks/master_choice.py: the per-group routing of a run with several task groups, from its iterations.csv."""

import os
import sys

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from master_choice import meta_groups, replay_group_tasks

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
