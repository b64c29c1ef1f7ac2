"""MLSH through rl-baselines3-zoo's own train entry, and the zoo's Optuna search over N, K, W and the learning rates."""

import pandas as pd
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

pytest.importorskip("rl_zoo3")
pytest.importorskip("optuna")

from sb3_mlsh import MLSH
from sb3_mlsh.cli.hyperparams import load_hyperparams
from sb3_mlsh.cli.zoo import ZooMLSH, main, register

ENV_ID = "mlsh/MovementBandits-v0"
TINY = ["-params", "n_envs:2", "n_steps:50", "--verbose", "0"]


def test_register_adds_mlsh_to_the_zoo():
    register()
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER
    from rl_zoo3.utils import ALGOS

    assert ALGOS["mlsh"] is ZooMLSH
    assert "mlsh" in HYPERPARAMS_SAMPLER


def test_train_through_the_zoo_entry_then_continue(tmp_path):
    main(["--env", ENV_ID, "-n", "300", "-f", str(tmp_path), "--eval-freq", "200", "--eval-episodes", "1", *TINY])
    run = tmp_path / "mlsh" / "mlsh-MovementBandits-v0_1"
    model = MLSH.load(run / "mlsh-MovementBandits-v0.zip")
    assert model.num_timesteps == 300 and model.n_envs == 2
    # The hyperparameters come from sb3-mlsh's YAML (the zoo's --conf-file default in sb3_mlsh.cli.zoo).
    assert model.task_sampler.env_id == ENV_ID
    assert model.warmup_iterations == load_hyperparams(ENV_ID)["warmup_iterations"]
    assert (run / "0.monitor.csv").exists() and (run / "evaluations.npz").exists()
    assert (run / "mlsh-MovementBandits-v0" / "config.yml").exists()
    # The zoo's --trained-agent continues training through ZooMLSH.load.
    main(["--env", ENV_ID, "-n", "100", "-f", str(tmp_path), "-i", str(run / "mlsh-MovementBandits-v0.zip"), *TINY])
    assert MLSH.load(tmp_path / "mlsh" / "mlsh-MovementBandits-v0_2" / "mlsh-MovementBandits-v0.zip").num_timesteps == 100


def test_optuna_search_over_n_k_w_and_learning_rates(tmp_path):
    main(
        ["--env", ENV_ID, "-n", "200", "-f", str(tmp_path), "-optimize", "--n-trials", "2", "--n-jobs", "1",
         "--sampler", "random", "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots", *TINY]
    )  # fmt: skip
    reports = list((tmp_path / "mlsh").glob("report_mlsh-MovementBandits-v0_2-trials-200-*.csv"))
    assert len(reports) == 1
    trials = pd.read_csv(reports[0])
    assert len(trials) == 2 and set(trials["state"]) == {"COMPLETE"}
    for name in ("macro_duration", "n_subpolicies", "warmup_iterations", "master_learning_rate", "subpolicy_learning_rate"):
        assert f"params_{name}" in trials.columns
    # The family's ranges: N below MovementBandits' 50-step episodes, K and W near its YAML's (2 and 2).
    assert set(trials["params_macro_duration"]) <= {5, 10, 20}
    assert trials["params_n_subpolicies"].between(2, 4).all() and trials["params_warmup_iterations"].between(1, 4).all()


@pytest.mark.mujoco
def test_search_space_follows_the_family():
    from sb3_mlsh.cli.zoo import search_space

    bandits, ant = search_space("mlsh/MovementBandits-v0"), search_space("mlsh/AntMaze-v0")
    assert max(bandits["macro_duration"]) < 50 and max(ant["macro_duration"]) == 200
    assert ant["n_subpolicies"] == (2, 6)  # the YAML's K = 3
    assert bandits["master_learning_rate"] == pytest.approx((0.003, 0.09))  # around the YAML's 0.03


def test_zoo_model_takes_the_sampled_learning_rates_and_refuses_vec_env_wrappers():
    model = ZooMLSH(
        "MlpPolicy",
        make_vec_env(ENV_ID, n_envs=2),
        n_steps=10,
        master_kwargs="dict(n_epochs=2)",
        master_learning_rate=0.002,
        subpolicy_learning_rate=1e-4,
    )
    assert model.n_envs == 2 and model.master_kwargs["n_epochs"] == 2
    assert model.masters[0].lr_schedule(1.0) == pytest.approx(0.002)
    assert model.subpolicy_learner.lr_schedule(1.0) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="cannot use the zoo's VecNormalize"):
        ZooMLSH("MlpPolicy", VecNormalize(make_vec_env(ENV_ID, n_envs=1)))
