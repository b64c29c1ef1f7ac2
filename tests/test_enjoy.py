"""python -m sb3_mlsh.enjoy: run a saved model on a task, record it, film each sub-policy."""

import pytest

from sb3_mlsh import MLSH
from sb3_mlsh.cli.enjoy import main


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("enjoy") / "bandits.zip"
    model = MLSH("MlpPolicy", "mlsh/MovementBandits-v0", n_envs=2, n_steps=50, warmup_iterations=1, seed=0)
    model.learn(200)
    model.save(path)
    return path


def test_runs_episodes_on_the_chosen_task_and_records_a_gif(model_path, tmp_path, capsys):
    result = main([str(model_path), "--task", "1", "--episodes", "2", "--record", str(tmp_path / "run.gif")])
    assert result["task"] == 1 and len(result["returns"]) == 2
    assert (tmp_path / "run.gif").read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    out = capsys.readouterr().out
    assert "episode 1: return" in out and "task 1: mean return" in out


def test_a_fresh_master_adapts_on_a_drawn_held_out_task_first(model_path):
    result = main([str(model_path), "--split", "test", "--adapt", "200", "--episodes", "1"])
    assert result["task"] in (0, 1) and result["recording"] is None


def test_skills_mode_films_each_subpolicy(model_path, tmp_path, capsys):
    result = main([str(model_path), "--task", "0", "--skills", "--record", str(tmp_path / "skills.png"), "--frames", "3"])
    assert len(result["returns"]) == 2
    assert (tmp_path / "skills.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sub-policy 1 alone on task 0" in capsys.readouterr().out
