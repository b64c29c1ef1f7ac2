"""benchmarks/maze_return_split.py: an AntMaze return split into progress towards the goal and control cost."""

import os
import sys

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import maze_return_split
from maze_return_split import maze_geometry, split_returns


@pytest.mark.mujoco
def test_the_split_recovers_the_control_cost_the_env_paid():
    start_distance, dt = maze_geometry()
    env = gym.make("mlsh/AntMaze-v0")
    env.get_wrapper_attr("set_task")(4)
    env.reset(seed=3)
    env.action_space.seed(3)
    first_distance, ret, paid = None, 0.0, 0.0
    for _ in range(300):
        _, reward, _, _, info = env.step(env.action_space.sample())
        if first_distance is None:
            first_distance = info["distance"] + info["reward_toward"] * dt  # the distance before the first step
        ret, paid = ret + reward, paid - info["reward_ctrl"]
    env.close()
    # The Ant starts at the origin up to the reset noise, so the layout's distance is its start distance.
    assert start_distance[4] == pytest.approx(first_distance, abs=0.2)
    frame = pd.DataFrame({"task": [4], "ret": [ret], "distance": [info["distance"]]})
    split = split_returns(frame, {4: first_distance}, dt)
    assert split["control_cost"].iloc[0] == pytest.approx(paid, rel=0.02), (split["control_cost"].iloc[0], paid)
    assert split["progress"].iloc[0] == pytest.approx(first_distance - info["distance"])
    assert paid > 30  # random torques cost about 0.27 per step: the check is not a near-zero match


def test_the_split_refuses_layouts_that_are_not_antmaze_ones():
    with pytest.raises(ValueError, match=r"layouts \[7\] are not AntMaze layouts"):
        split_returns(pd.DataFrame({"task": [7], "ret": [1.0], "distance": [3.0]}), {4: 8.0, 5: 8 * np.sqrt(2)}, 0.05)


@pytest.mark.mujoco
def test_the_command_writes_each_layout_and_both(tmp_path, monkeypatch):
    rows = [dict(method="mlsh", seed=seed, task=task, iteration=it, ret=ret, distance=7.0) for seed in (0, 1) for task, ret in
            ((4, 10.0), (5, 30.0)) for it in (1, 2)]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "transfer_AntMaze_seed0.csv", index=False)
    out = tmp_path / "split.csv"
    monkeypatch.setattr(sys, "argv", ["maze_return_split.py", str(tmp_path), "--labels", "toy", "--out", str(out)])
    maze_return_split.main()
    split = pd.read_csv(out).set_index("layout")
    assert list(split.index) == ["4", "5", "both"]
    assert split.loc["4", "progress"] == pytest.approx(1.0)  # the layout-4 goal is 8 m from the start
    assert split.loc["4", "control_cost"] == pytest.approx(1.0 / 0.05 - 10.0)
    assert split.loc["both", "ret"] == pytest.approx(20.0)
    assert (split["seeds"] == 2).all()


@pytest.mark.mujoco
def test_the_command_reads_skills_from_another_family_adapted_on_antmaze(tmp_path, monkeypatch):
    rows = [dict(method="mlsh", seed=0, task=task, iteration=1, ret=-40.0, distance=9.0) for task in (4, 5)]
    pd.DataFrame(rows).to_csv(tmp_path / "transfer_AntMovement_to_AntMaze_seed0.csv", index=False)
    own_family = [row | dict(seed=1, ret=100.0, distance=2.0) for row in rows]  # AntMovement on its own tasks: not read
    pd.DataFrame(own_family).to_csv(tmp_path / "transfer_AntMovement_seed1.csv", index=False)
    out = tmp_path / "split.csv"
    monkeypatch.setattr(sys, "argv", ["maze_return_split.py", str(tmp_path), "--out", str(out)])
    maze_return_split.main()
    split = pd.read_csv(out).set_index("layout")
    assert split.loc["4", "progress"] == pytest.approx(-1.0)
    assert split.loc["4", "control_cost"] == pytest.approx(-1.0 / 0.05 + 40.0)
    assert (split["seeds"] == 1).all()


def test_the_command_names_the_script_to_run_for_an_empty_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["maze_return_split.py", str(tmp_path), "--out", str(tmp_path / "split.csv")])
    with pytest.raises(SystemExit):
        maze_return_split.main()
    assert "run benchmarks/transfer.py --env mlsh/AntMaze-v0 first" in capsys.readouterr().err
    assert not (tmp_path / "split.csv").exists()
