"""python -m sb3_mlsh.plot: learning curves of several runs, sub-policy usage, trajectories coloured by sub-policy."""

import pytest

from sb3_mlsh import MLSH
from sb3_mlsh.cli.plot import main
from sb3_mlsh.cli.train import main as train
from sb3_mlsh.common.plotting import plot_run, plot_trajectories

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    with open(path, "rb") as file:
        assert file.read(8) == PNG_SIGNATURE, path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    args = ["-n", "400", "-f", str(root), "--no-progress", "--verbose", "0", "--save-freq", "0"]
    train(["--env", "mlsh/MovementBandits-v0", *args, "-params", "n_envs:2", "n_steps:50"])
    train(["--env", "mlsh/MovementBandits-v0", *args, "-params", "n_envs:2", "n_steps:50", "n_subpolicies:3"])
    return [root / "mlsh" / f"mlsh-MovementBandits-v0_{i}" for i in (1, 2)]


def test_plot_cli_draws_curves_usage_and_trajectories(two_runs, tmp_path):
    out = tmp_path / "bandits.png"
    written = main([str(run) for run in two_runs] + ["--out", str(out), "--episodes", "2", "--labels", "K=2", "K=3"])
    names = sorted(p.rsplit("/", 1)[-1] for p in written)
    assert names == sorted(
        ["bandits.png"]
        + [f"bandits_{kind}_mlsh-MovementBandits-v0_{i}.png" for kind in ("usage", "trajectories") for i in (1, 2)]
    )
    for path in written:
        assert_png(path)
    assert_png(plot_run(str(two_runs[0])))  # the single-run plot of train.py still works


@pytest.mark.parametrize("env_id", ["mlsh/KeyDoor-v0", "mlsh/FourRooms-v0"])
def test_trajectories_of_the_grid_and_key_families(env_id, tmp_path):
    model = MLSH("MlpPolicy", env_id, n_envs=1, n_steps=8, n_subpolicies=3, seed=0)
    path = plot_trajectories(model, str(tmp_path / "trajectories.png"), n_episodes=2)
    assert_png(path)


def test_trajectories_refuse_families_without_positions(tmp_path):
    from toy_envs import make_toy

    model = MLSH("MlpPolicy", make_toy(), n_envs=1, n_steps=8, seed=0)
    with pytest.raises(TypeError, match="2D and grid families"):
        plot_trajectories(model, str(tmp_path / "x.png"))


def test_plot_cli_rejects_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        main([str(tmp_path / "nope")])
