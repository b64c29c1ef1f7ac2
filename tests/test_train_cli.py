"""The command line: zoo-style YAML, run folder contents, resume, and clear errors for bad hyperparameters."""

import os

import pandas as pd
import pytest
import yaml

import mlsh_envs
from sb3_mlsh import MLSH
from sb3_mlsh.train import HyperparameterError, load_hyperparams, main, parse_hyperparams


def test_every_task_family_has_a_yaml_entry_with_the_papers_schedule_or_a_documented_one():
    expected = {  # (K, N, W, U) from the paper's appendix, but for the documented 2-core schedules
        "mlsh/MovementBandits-v0": (2, 10, 2, 1),  # W = 9 in the paper; see the YAML's comment
        "mlsh/FourRooms-v0": (4, 25, 20, 30),
        "mlsh/FourRoomsAllGoals-v0": (4, 25, 20, 30),
        "mlsh/AntTwowalk-v0": (2, 200, 2, 10),  # the paper's W = 20, U = 40 take about a day here (docs/mlsh.md)
        "mlsh/AntMaze-v0": (3, 200, 2, 10),
        "mlsh/HumanoidWalkCrawl-v0": (2, 200, 2, 10),
    }
    for env_id in mlsh_envs.ENV_IDS:
        kwargs, n_timesteps, policy = parse_hyperparams(load_hyperparams(env_id), env_id)
        assert n_timesteps > 0 and policy == "MlpPolicy"
        if env_id in expected:
            got = tuple(kwargs[k] for k in ("n_subpolicies", "macro_duration", "warmup_iterations", "joint_iterations"))
            assert got == expected[env_id], env_id


def test_main_writes_model_config_monitor_tensorboard_and_plot(tmp_path):
    model = main(
        [
            "--env",
            "mlsh/MovementBandits-v0",
            "-n",
            "2000",
            "-f",
            str(tmp_path),
            "--no-progress",
            "--verbose",
            "0",
            "--save-freq",
            "1000",
            "-params",
            "n_envs:2",
            "n_steps:100",
            "warmup_iterations:2",
        ]
    )
    run = tmp_path / "mlsh" / "mlsh-MovementBandits-v0_1"
    assert model.num_timesteps == 2000 and model.warmup_iterations == 2
    names = set(os.listdir(run))
    assert {"model.zip", "config.yml", "0.monitor.csv", "1.monitor.csv", "learning_curve.png", "iterations.csv"} <= names
    assert any(f.startswith("events.out.tfevents") for _, _, files in os.walk(run) for f in files)
    assert sorted(os.listdir(run / "checkpoints")) == ["mlsh_1000_steps.zip", "mlsh_2000_steps.zip"]
    config = yaml.safe_load((run / "config.yml").read_text())
    assert config["env"] == "mlsh/MovementBandits-v0" and config["hyperparams"]["n_envs"] == 2
    iterations = pd.read_csv(run / "iterations.csv")
    assert len(iterations) == 10 and {"subpolicy_usage_0", "subpolicy_usage_1"} <= set(iterations.columns)
    assert MLSH.load(run / "model.zip").num_timesteps == 2000

    (run / "model.zip").unlink()  # as if the run had been killed after its first checkpoint
    os.remove(run / "checkpoints" / "mlsh_2000_steps.zip")
    config["hyperparams"]["n_timesteps"] = 3000
    (run / "config.yml").write_text(yaml.safe_dump(config))
    episodes_before = sum(len(pd.read_csv(run / f"{i}.monitor.csv", skiprows=1)) for i in range(2))
    resumed = main(["--resume", str(run), "--no-progress", "--verbose", "0"])
    assert resumed.num_timesteps == 3000
    episodes_after = sum(len(pd.read_csv(run / f"{i}.monitor.csv", skiprows=1)) for i in range(2))
    assert episodes_after > episodes_before, "a resumed run appends to the Monitor CSVs"
    # The run's --save-freq (1000) is kept from config.yml: new checkpoints every 1000 steps, each holding its steps.
    assert sorted(os.listdir(run / "checkpoints")) == ["mlsh_1000_steps.zip", "mlsh_2000_steps.zip", "mlsh_3000_steps.zip"]
    assert MLSH.load(run / "checkpoints" / "mlsh_2000_steps.zip").num_timesteps == 2000
    iterations = pd.read_csv(run / "iterations.csv")
    # The checkpoint taken at step 1000 holds iteration 5: the rows of iterations 6-10 are dropped and run again.
    assert iterations["iteration"].tolist() == list(range(1, 16))
    assert iterations["timesteps"].tolist()[-1] == 3000


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"n_subpolicy": 2}, "did you mean 'n_subpolicies'"),
        ({"n_envs": "eight"}, "n_envs must be an integer"),
        ({"master_kwargs": "dict(learning_rate="}, "cannot read"),
        ({"subpolicy_kwargs": {"learning_rate": "fast"}}, "lin_<number>"),
        ({"n_timesteps": -5}, "n_timesteps must be a positive"),
    ],
)
def test_bad_hyperparameters_name_the_fix(entry, message):
    with pytest.raises(HyperparameterError, match=message):
        parse_hyperparams(entry, "mlsh/MovementBandits-v0")


def test_linear_schedules_and_dict_strings_are_parsed():
    kwargs, _, _ = parse_hyperparams(
        {"subpolicy_kwargs": {"learning_rate": "lin_1e-3"}, "policy_kwargs": "dict(net_arch=[32, 32], activation_fn=nn.ReLU)"},
        "x",
    )
    assert kwargs["subpolicy_kwargs"]["learning_rate"](0.5) == pytest.approx(5e-4)
    assert kwargs["policy_kwargs"]["net_arch"] == [32, 32]


def test_unknown_env_id_suggests_close_ones(tmp_path):
    with pytest.raises(HyperparameterError, match="Did you mean"):
        load_hyperparams("mlsh/MovementBandit-v0")
    scalar = tmp_path / "scalar.yml"
    scalar.write_text("42\n")
    with pytest.raises(HyperparameterError, match="top level"):
        load_hyperparams("mlsh/MovementBandits-v0", str(scalar))
    bad = tmp_path / "bad.yml"
    bad.write_text("mlsh/MovementBandits-v0: [1, 2\n")
    with pytest.raises(HyperparameterError, match="not valid YAML"):
        load_hyperparams("mlsh/MovementBandits-v0", str(bad))


def test_overrides_reach_one_key_of_a_nested_mapping():
    from sb3_mlsh.train import override_hyperparams

    entry = load_hyperparams("mlsh/MovementBandits-v0")
    changed = override_hyperparams(entry, ["master_kwargs.clip_range:0.3", "warmup_iterations:0"])
    assert changed["master_kwargs"]["clip_range"] == 0.3 and changed["warmup_iterations"] == 0
    assert changed["master_kwargs"]["learning_rate"] == entry["master_kwargs"]["learning_rate"]
    assert entry["master_kwargs"]["clip_range"] != 0.3, "the packaged entry must not change"
    with pytest.raises(HyperparameterError, match="not a mapping"):
        override_hyperparams({**entry, "policy_kwargs": "dict(net_arch=[8])"}, ["policy_kwargs.net_arch:[4]"])
    with pytest.raises(HyperparameterError, match="key:value"):
        override_hyperparams(entry, ["warmup_iterations=3"])
