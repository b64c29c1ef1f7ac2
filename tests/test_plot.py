"""python -m sb3_mlsh.plot: learning curves of several runs, sub-policy usage, trajectories coloured by sub-policy."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from stable_baselines3.common.monitor import load_results

from sb3_mlsh.cli.plot import main
from sb3_mlsh.cli.train import main as train
from sb3_mlsh.common.plotting import plot_learning_curves, plot_run, plot_trajectories, reference_levels

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
def test_trajectories_of_the_grid_and_key_families(make_mlsh, env_id, tmp_path):
    model = make_mlsh(env_id, n_subpolicies=3)
    path = plot_trajectories(model, str(tmp_path / "trajectories.png"), n_episodes=2)
    assert_png(path)


def test_trajectories_refuse_families_without_positions(make_mlsh, tmp_path):
    model = make_mlsh()  # the toy family
    with pytest.raises(TypeError, match="2D and grid families"):
        plot_trajectories(model, str(tmp_path / "x.png"))


def test_plot_cli_rejects_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        main([str(tmp_path / "nope")])


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the plotting functions save, kept open for inspection."""
    figures = []
    save = Figure.savefig

    def keep(figure, *args, **kwargs):
        figures.append(figure)
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def test_the_run_plot_names_its_real_window_marks_reference_levels_and_smooths_usage(two_runs, tmp_path, saved_figures):
    run = two_runs[0]
    assert_png(plot_run(str(run), out_path=str(tmp_path / "run.png")))
    curve, usage = saved_figures[0].axes
    n_episodes = len(load_results(str(run)))
    assert n_episodes < 100
    labels = [text.get_text() for text in curve.get_legend().get_texts()]
    assert labels[0] == f"rolling mean of {n_episodes} episodes"
    # The family's levels (from config.yml's env id), drawn at the values mlsh_envs gives.
    levels = reference_levels("mlsh/MovementBandits-v0")
    assert levels["oracle"] > 30 > 10 > levels["random"]
    drawn = {line.get_label().split(" ")[0]: line.get_ydata()[0] for line in curve.get_lines() if line.get_label()[0] != "_"}
    assert drawn["scripted"] == pytest.approx(levels["oracle"]) and drawn["random"] == pytest.approx(levels["random"])
    assert any(label.startswith("scripted oracle (knows the task): ") for label in labels)
    # Usage: a stacked area of the rolling mean over iterations (here all 4 of them), not per-iteration steps.
    shares = pd.read_csv(run / "iterations.csv")["subpolicy_usage_0"]
    assert usage.get_title() == f"sub-policy usage ({len(shares)}-iteration mean)"
    top = usage.collections[0].get_paths()[0].vertices[:, 1]
    smoothed = shares.rolling(len(shares), min_periods=1).mean()
    assert all(np.isclose(top, value).any() for value in smoothed)


def test_curves_of_runs_with_fewer_episodes_than_the_window_say_so(two_runs, tmp_path, saved_figures):
    plot_learning_curves([str(run) for run in two_runs], str(tmp_path / "curves.png"), labels=["a", "b"], window=1000)
    n_episodes = len(load_results(str(two_runs[0])))
    labels = [text.get_text() for text in saved_figures[0].axes[0].get_legend().get_texts()]
    assert labels[0] == f"a (mean of {n_episodes})"


@pytest.mark.mujoco
def test_reference_levels_come_from_the_package_where_it_has_them():
    assert set(reference_levels("mlsh/AntTwowalk-v0", n_episodes=1)) == {"random"}  # no scripted oracle for the Ant
    assert reference_levels("CartPole-v1") == {}
