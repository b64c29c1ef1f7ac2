"""python -m sb3_mlsh.enjoy: run a saved model on a task, record it, film each sub-policy; bad inputs get one line."""

import os
import shutil
import subprocess
import sys
import textwrap

import imageio.v3 as iio
import numpy as np
import pytest

from sb3_mlsh import MLSH
from sb3_mlsh.cli.enjoy import CAPTION_PIXELS, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("enjoy") / "bandits.zip"
    model = MLSH("MlpPolicy", "mlsh/MovementBandits-v0", n_envs=2, n_steps=50, warmup_iterations=1, seed=0)
    model.learn(200)
    model.save(path)
    return path


@pytest.fixture(scope="module")
def ant_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("enjoy_ant") / "ant.zip"
    MLSH("MlpPolicy", "mlsh/AntTwowalk-v0", n_envs=1, n_steps=16, seed=0).save(path)
    return path


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
    return subprocess.run(
        [sys.executable, "-m", "sb3_mlsh.enjoy", *args], capture_output=True, text=True, env=environment, timeout=300
    )


def assert_one_error_line(capsys, error: pytest.ExceptionInfo, *fragments: str) -> None:
    assert error.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "usage:" not in captured.err
    assert "episode" not in captured.out  # refused before any episode ran
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_fresh_master_adapts_to_the_task_by_default_and_the_gif_is_captioned(model_path, tmp_path, capsys):
    result = main([str(model_path), "--task", "1", "--episodes", "2", "--record", str(tmp_path / "run.gif")])
    assert result["task"] == 1 and len(result["returns"]) == 2
    # The model's schedule: W + 1 = 2 iterations of 2 envs x 50 steps.
    assert result["adapt_steps"] == 200
    out = capsys.readouterr().out
    assert "Adapting a fresh master to task 1 for 200 steps" in out and "--no-adapt" in out
    assert "episode 1: return" in out and "task 1: mean return" in out
    frames = iio.imread(tmp_path / "run.gif", index=None)
    # MovementBandits renders 100 x 100: the frames are scaled up, over a caption band.
    assert frames.shape[1:3] == (400 + CAPTION_PIXELS, 400)
    band = frames[0, -CAPTION_PIXELS:, :, :3]
    assert (band.max(axis=2) > 200).sum() > 100  # the caption's white text
    chip = band[CAPTION_PIXELS // 2, 12].astype(int)
    assert np.abs(chip - 32).max() > 40 and chip.min() < 200  # the sub-policy's colour chip, neither band nor text


def test_no_adapt_watches_the_saved_master_and_says_so(model_path, capsys):
    result = main([str(model_path), "--task", "1", "--episodes", "1", "--no-adapt"])
    assert result["adapt_steps"] == 0
    assert "Watching the saved master, which last trained on task" in capsys.readouterr().out


def test_adapt_sets_the_steps_of_a_drawn_held_out_task(model_path):
    result = main([str(model_path), "--split", "test", "--adapt", "100", "--episodes", "1"])
    assert result["task"] in (0, 1) and result["adapt_steps"] == 100 and result["recording"] is None


def test_skills_mode_films_each_subpolicy(model_path, tmp_path, capsys):
    result = main([str(model_path), "--task", "0", "--skills", "--record", str(tmp_path / "skills.png"), "--frames", "3"])
    assert len(result["returns"]) == 2 and result["adapt_steps"] == 0
    assert (tmp_path / "skills.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sub-policy 1 alone on task 0" in capsys.readouterr().out


def test_mp4_through_imageio_ffmpeg(model_path, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    main([str(model_path), "--task", "0", "--episodes", "1", "--no-adapt", "--record", str(tmp_path / "run.mp4")])
    with open(tmp_path / "run.mp4", "rb") as file:
        assert file.read(12)[4:8] == b"ftyp"


def test_record_without_a_path_writes_in_videos(model_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = main([str(model_path), "--task", "1", "--episodes", "1", "--no-adapt", "--record"])
    assert result["recording"] == os.path.join("videos", "MovementBandits-v0_task1.gif")
    assert (tmp_path / "videos" / "MovementBandits-v0_task1.gif").exists()


def test_a_missing_model_file_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        main([str(tmp_path / "nope.zip"), "--task", "0"])
    assert_one_error_line(capsys, error, "nope.zip: no such file")


def test_a_run_folder_names_the_model_zip_inside_it(model_path, tmp_path, capsys):
    run = tmp_path / "mlsh-MovementBandits-v0_1"
    run.mkdir()
    shutil.copy(model_path, run / "model.zip")
    with pytest.raises(SystemExit) as error:
        main([str(run), "--task", "0"])
    assert_one_error_line(capsys, error, "is a folder", str(run / "model.zip"))


def test_a_task_the_family_does_not_have_is_one_error_line(model_path, capsys):
    with pytest.raises(SystemExit) as error:
        main([str(model_path), "--task", "99"])
    assert_one_error_line(capsys, error, "--task 99", "0 or 1")


@pytest.mark.parametrize(("record", "skills", "fragment"), [("run.avi", False, ".gif or .mp4"), ("s.gif", True, ".png")])
def test_an_unsupported_record_extension_is_refused_before_the_episodes(
    model_path, tmp_path, capsys, record, skills, fragment
):
    with pytest.raises(SystemExit) as error:
        main([str(model_path), "--task", "0", "--record", str(tmp_path / record), *(["--skills"] if skills else [])])
    assert_one_error_line(capsys, error, fragment)
    assert not (tmp_path / record).exists()


def test_mp4_without_imageio_ffmpeg_is_refused_before_the_episodes(model_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if it were not installed
    with pytest.raises(SystemExit) as error:
        main([str(model_path), "--task", "0", "--record", str(tmp_path / "run.mp4")])
    assert_one_error_line(capsys, error, "pip install imageio-ffmpeg", ".gif")


def test_errors_have_no_traceback_from_the_command_line(tmp_path):
    result = run_cli(str(tmp_path / "nope.zip"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.mujoco
def test_a_gl_backend_that_does_not_load_skips_the_recording_with_one_message(ant_model_path, tmp_path):
    # MUJOCO_GL=osmesa without OSMesa fails `import mujoco` itself: the episodes must still run. PyOpenGL's platform is
    # pinned too, since a shell's MUJOCO_GL=egl leaves PYOPENGL_PLATFORM=egl in the environment, a different failure.
    gif = tmp_path / "ant.gif"
    gl = {"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}
    result = run_cli(str(ant_model_path), "--task", "0", "--episodes", "1", "--no-adapt", "--record", str(gif), **gl)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "task 0: mean return" in result.stdout
    if gif.exists():  # OSMesa is installed here
        assert "Recording:" in result.stdout
    else:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "MUJOCO_GL=osmesa does not load" in lines[0] and "without recording" in lines[0], (
            result.stderr
        )


@pytest.mark.mujoco
def test_mujoco_frames_follow_the_torso(tmp_path):
    script = textwrap.dedent(
        """
        import gymnasium as gym, mujoco, numpy as np
        import mlsh_envs
        from sb3_mlsh.cli.enjoy import follow_torso

        env = gym.make("mlsh/AntTwowalk-v0", render_mode="rgb_array")
        assert follow_torso(env)
        env.reset(seed=0)
        try:
            env.render()
        except Exception as error:
            print("no render:", type(error).__name__, error)
            raise SystemExit(0)
        base = env.unwrapped
        qpos = base.data.qpos.copy()
        qpos[:2] += (4.0, 3.0)
        base.set_state(qpos, base.data.qvel)
        image = env.render()
        cam = base.mujoco_renderer.viewer.cam
        print("camera", int(cam.type) == int(mujoco.mjtCamera.mjCAMERA_TRACKING), cam.trackbodyid, image.shape)
        print("offset", float(np.linalg.norm(cam.lookat[:2] - base.data.xpos[cam.trackbodyid][:2])))
        """
    )
    environment = {**os.environ, "PYTHONPATH": ROOT, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    if "no render:" in result.stdout:
        pytest.skip(f"No offscreen GL backend here: {result.stdout.strip()}")
    assert "camera True 1 (480, 480, 3)" in result.stdout
    offset = float(result.stdout.split("offset")[1])
    assert offset < 0.5  # the camera looks at the Ant after it moved 5 m (its body's centre of mass is off the torso)


@pytest.mark.slow  # about 300 frames rendered in software where there is no GPU: a minute
@pytest.mark.mujoco
def test_a_saved_model_records_an_mp4_of_the_ant_with_captions(ant_model_path, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    video = tmp_path / "ant.mp4"
    result = run_cli(
        str(ant_model_path), "--task", "1", "--episodes", "1", "--no-adapt", "--record", str(video),
        MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    if not video.exists():
        pytest.skip(f"No offscreen GL backend here: {result.stderr.strip()}")
    frames = iio.imread(video, plugin="pyav" if _has_pyav() else "FFMPEG", index=None)
    assert frames.shape[1:3] == (480 + CAPTION_PIXELS, 480)
    assert np.asarray(frames[0, -CAPTION_PIXELS:]).mean() < np.asarray(frames[0, :-CAPTION_PIXELS]).mean()


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True
