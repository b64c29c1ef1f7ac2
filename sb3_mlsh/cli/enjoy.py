"""Watch a trained MLSH model: run it on a task, record a GIF or an MP4, or film each sub-policy alone.

Examples::

    python -m sb3_mlsh.enjoy logs/mlsh/mlsh-MovementBandits-v0_1/model.zip --task 1   # a fresh master adapts first
    python -m sb3_mlsh.enjoy MODEL.zip --task 1 --no-adapt            # the saved master, which knows its last task
    python -m sb3_mlsh.enjoy MODEL.zip --split test --record run.mp4  # a held-out task, filmed with captions
    python -m sb3_mlsh.enjoy MODEL.zip --task 0 --skills --record skills.png          # a filmstrip per sub-policy

The saved master learned the task it trained on last, so by default a fresh master first adapts to the task over the
frozen sub-policies, for the W + 1 iterations a fresh master gets to warm up in the model's schedule (``--adapt STEPS``
sets the steps, ``--no-adapt`` watches the saved master). MuJoCo families render offscreen (``MUJOCO_GL=egl`` is set
when no backend is chosen and there is no display) with a camera that follows the torso; where no backend works, the
episodes still run and the recording is skipped with one message.
"""

import argparse
import gc
import importlib.util
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch as th
import yaml

from sb3_mlsh.mlsh import MLSH

__all__ = ["EnjoyError", "Frame", "main", "run_episode"]

#: What ``--record`` writes: a video of the episodes, or with ``--skills`` a filmstrip.
VIDEO_EXTENSIONS = (".gif", ".mp4")
FILMSTRIP_EXTENSIONS = (".png",)
#: Frames are scaled up to at least this many pixels on their shorter side (the 2D families render 100 x 100).
FRAME_PIXELS = 400
#: Height of the caption band under each frame (with FRAME_PIXELS, frame sizes stay multiples of 16, as H.264 wants).
CAPTION_PIXELS = 32
#: Where ``--record`` without a path writes (ignored by git, as SB3's VecVideoRecorder's ``videos/``).
DEFAULT_RECORD_FOLDER = "videos"
#: The values of MUJOCO_GL that load no OpenGL backend.
NO_GL = ("disable", "disabled", "off", "false", "0")


class EnjoyError(Exception):
    """A bad input of ``python -m sb3_mlsh.enjoy``, printed as one ``error:`` line (exit status 2)."""


@dataclass
class Frame:
    """
    One rendered step of an episode, with what its caption says.

    :param image: The env's picture of the step's observation.
    :param step: The step's index in the episode.
    :param subpolicy: The sub-policy that acts from that observation.
    :param return_so_far: The return of the steps before it.
    :param episode: The episode's number (0: not shown).
    """

    image: np.ndarray
    step: int
    subpolicy: int
    return_so_far: float
    episode: int = 0


def run_episode(
    model: MLSH,
    env: gym.Env,
    seed: int,
    subpolicy: int | None = None,
    deterministic: bool = True,
    frames: list[Frame] | None = None,
    render_every: int = 1,
    episode: int = 0,
) -> tuple[float, list[int]]:
    """
    One episode of the model (its master and sub-policies), or of one sub-policy alone.

    :param model: The model.
    :param env: An env with the task set.
    :param seed: Seed of the episode's reset.
    :param subpolicy: Run this sub-policy alone instead of the master's choices.
    :param deterministic: Use the modes of the distributions.
    :param frames: Where rendered frames go, each with the sub-policy about to act and the return so far (None: no
        rendering).
    :param render_every: Render every this many steps (rendering costs more than a MuJoCo step).
    :param episode: The episode's number, for the captions.
    :return: The return and the active sub-policy of every step.
    """
    obs, _ = env.reset(seed=seed)
    state, total, active, done, start, step = None, 0.0, [], False, True, 0
    while not done:
        if subpolicy is None:
            action, state = model.predict(obs, state=state, episode_start=np.array([start]), deterministic=deterministic)
            active.append(int(state[0, 0]))
        else:
            action = model.subpolicy_predict(obs, subpolicy, deterministic=deterministic)
            active.append(subpolicy)
        if frames is not None and step % render_every == 0:
            frames.append(Frame(cast(np.ndarray, env.render()), step, active[-1], total, episode))
        step += 1
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done, start = terminated or truncated, False
    return total, active


def _subpolicy_color(k: int) -> tuple[int, int, int]:
    """:return: Sub-policy k's colour in ``sb3_mlsh.plot``'s pictures (matplotlib's tab10)."""
    import matplotlib

    red, green, blue, _ = matplotlib.colormaps["tab10"](k % 10)
    return int(255 * red), int(255 * green), int(255 * blue)


def caption_frame(frame: Frame, task: Any) -> np.ndarray:
    """
    :param frame: A rendered step.
    :param task: The episode's task.
    :return: The image, scaled up (nearest pixels) to at least ``FRAME_PIXELS`` on its shorter side, over a band that
        names the task, the sub-policy in use (a chip in its colour) and the return so far.
    """
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.fromarray(np.ascontiguousarray(frame.image))
    scale = max(1, math.ceil(FRAME_PIXELS / min(picture.size)))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (picture.width, picture.height + CAPTION_PIXELS), (32, 32, 32))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    chip = CAPTION_PIXELS - 12
    top = picture.height + 6
    draw.rectangle((6, top, 6 + chip, top + chip), fill=_subpolicy_color(frame.subpolicy))
    text = f"task {task} | sub-policy {frame.subpolicy} | return {frame.return_so_far:.1f} | step {frame.step}"
    if frame.episode:
        text = f"episode {frame.episode} | {text}"
    size = 16
    font = ImageFont.load_default(size=size)
    while size > 8 and draw.textlength(text, font=font) > canvas.width - chip - 20:
        size -= 1
        font = ImageFont.load_default(size=size)
    draw.text((chip + 14, top + chip / 2), text, fill=(255, 255, 255), font=font, anchor="lm")
    return np.asarray(canvas)


def _save_video(frames: list[Frame], task: Any, path: str, fps: int, render_every: int) -> None:
    import imageio.v3 as iio

    images = np.stack([caption_frame(frame, task) for frame in frames])
    if path.lower().endswith(".mp4"):
        # One second of video is fps frames, and a frame is every render_every steps: the film runs at fps steps a second.
        iio.imwrite(path, images, plugin="FFMPEG", fps=max(1, round(fps / render_every)))
    else:
        iio.imwrite(path, images, extension=".gif", duration=int(1000 * render_every / fps), loop=0)


def _save_filmstrip(strips: list[list[Frame]], returns: list[float], task: Any, path: str, columns: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(strips), columns, figsize=(3.2 * columns, 3.5 * len(strips)), squeeze=False)
    for row, frames in enumerate(strips):
        picks = np.linspace(0, len(frames) - 1, columns).astype(int)
        for column, index in enumerate(picks):
            ax = axes[row, column]
            ax.imshow(caption_frame(frames[index], task))
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(f"sub-policy {row} alone\nreturn {returns[row]:.1f}")
    fig.suptitle(f"Each sub-policy alone on task {task}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def follow_torso(env: gym.Env, distance: float = 5.0, elevation: float = -25.0) -> bool:
    """
    Film a MuJoCo env with MuJoCo's tracking camera on the torso, over a calmer floor and without shadows: the families'
    own cameras show the whole arena, where the Ant is a few pixels on a high-contrast checkerboard. Call it before the
    first render (the camera, the floor's texture and the lights reach the renderer when it starts). Only what is drawn
    changes, not the physics.

    :param env: An env made with ``render_mode="rgb_array"``.
    :param distance: Camera distance from the torso.
    :param elevation: Camera elevation in degrees (negative: looking down).
    :return: Whether the env is a MuJoCo env with a body named ``torso`` (otherwise nothing changed).
    """
    base: Any = env.unwrapped
    renderer = getattr(base, "mujoco_renderer", None)
    if renderer is None:
        return False
    import mujoco

    model = base.model
    torso = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "torso")
    if torso < 0:
        return False
    floor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    material = model.geom_matid[floor] if floor >= 0 else -1
    if material >= 0:
        for texture in {int(t) for t in np.atleast_1d(model.mat_texid[material]) if t >= 0}:
            start = model.tex_adr[texture]
            stop = start + model.tex_height[texture] * model.tex_width[texture] * model.tex_nchannel[texture]
            pixels = model.tex_data[start:stop].astype(np.float64)
            model.tex_data[start:stop] = (0.25 * pixels + 0.75 * pixels.mean()).astype(np.uint8)  # a quarter of the contrast
        model.mat_reflectance[material] = 0.0  # no mirror image of the body under it
    # A fixed light's shadow map covers the arena's centre only: away from it, shadows turn into stripes and wedges.
    model.light_castshadow[:] = 0
    renderer.default_cam_config = {
        "type": mujoco.mjtCamera.mjCAMERA_TRACKING,
        "trackbodyid": torso,
        "distance": distance,
        "elevation": elevation,
        "azimuth": 90.0,
    }
    renderer.camera_id = None  # gymnasium's -1 would turn the camera back into a free one at every frame
    return True


def _parse_task(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise EnjoyError(
            f"--task {text} is not YAML ({str(error).splitlines()[0]}); e.g. --task 1 or --task '[10, 10]'"
        ) from None
    return tuple(value) if isinstance(value, list) else value


def _model_path(path: str) -> str:
    """:return: ``path``, checked to be a file; for a run folder, the error names the model inside it."""
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        inside = [os.path.join(path, "model.zip")]
        checkpoints = os.path.join(path, "checkpoints")
        if os.path.isdir(checkpoints):
            inside += sorted(
                (os.path.join(checkpoints, name) for name in os.listdir(checkpoints) if name.endswith(".zip")),
                key=lambda name: (len(name), name),
            )[::-1]
        inside += sorted(os.path.join(path, name) for name in os.listdir(path) if name.endswith(".zip"))
        found = [name for name in inside if os.path.isfile(name)]
        if found:
            raise EnjoyError(f"{path} is a folder: give the model zip inside it, e.g. python -m sb3_mlsh.enjoy {found[0]}")
        raise EnjoyError(f"{path} is a folder with no model zip in it: give a model saved by MLSH.save or sb3_mlsh.train")
    raise EnjoyError(f"{path}: no such file; give a model zip, e.g. logs/mlsh/<env>_<n>/model.zip")


def _record_path(args: argparse.Namespace) -> str | None:
    """:return: Where to record (None: nowhere), checked before anything runs."""
    if args.record is None:
        return None
    extensions = FILMSTRIP_EXTENSIONS if args.skills else VIDEO_EXTENSIONS
    path = args.record
    if path == "":
        return ""  # a default name, once the env and the task are known
    extension = os.path.splitext(path)[1].lower()
    if extension not in extensions:
        what = "--skills records a filmstrip" if args.skills else "--record writes a video of the episodes"
        raise EnjoyError(f"{what}: {' or '.join(extensions)}, not {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise EnjoyError(f"--record {path}: the folder {folder} does not exist")
    if extension == ".mp4":
        _check_ffmpeg(path)
    return path


def _check_ffmpeg(path: str) -> None:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as error:
        raise EnjoyError(
            f"--record {path} needs ffmpeg through imageio-ffmpeg ({type(error).__name__}: {error}): "
            "pip install imageio-ffmpeg, or record a .gif"
        ) from None


def _prepare_gl(recording: bool) -> str | None:
    """
    Choose MuJoCo's OpenGL backend before ``mlsh_envs`` imports MuJoCo, which reads ``MUJOCO_GL`` once, at import.

    :param recording: Frames will be rendered.
    :return: Why MuJoCo cannot render here (None: nothing known against it).
    """
    if "mujoco" in sys.modules or importlib.util.find_spec("mujoco") is None:
        return None
    if recording and "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"  # offscreen rendering
    backend = os.environ.get("MUJOCO_GL", "")
    if backend.lower().strip() in ("", *NO_GL):
        return None
    # MuJoCo loads the backend with its package, and a backend that fails to load (MUJOCO_GL=osmesa without OSMesa)
    # fails `import mujoco`, and with it every family. A child process tries it, so that a failure leaves this one clean.
    probe = subprocess.run([sys.executable, "-c", "import mujoco"], capture_output=True, text=True, timeout=120)
    if probe.returncode == 0:
        return None
    os.environ["MUJOCO_GL"] = "disable"
    lines = probe.stderr.strip().splitlines()
    return f"MUJOCO_GL={backend} does not load ({lines[-1] if lines else f'exit status {probe.returncode}'})"


def _render_problem(env: gym.Env, seed: int) -> str | None:
    """:return: Why ``env`` cannot render (None: it rendered a frame)."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _: None  # a viewer that failed to start fails again when freed, saying nothing new
    try:
        env.reset(seed=seed)
        env.render()
        return None
    except Exception as error:  # no offscreen GL backend, whatever the backend's own error
        return f"{type(error).__name__}: {error}"
    finally:
        gc.collect()
        sys.unraisablehook = hook


def _make_env(model: MLSH, render_mode: str | None) -> gym.Env:
    sampler = model.task_sampler
    if not isinstance(sampler.env, str):
        env = sampler.make_env()
        if render_mode is not None:
            raise EnjoyError(f"{sampler.env_id} is an env factory: enjoy records registered env ids only; drop --record")
        return env
    return gym.make(sampler.env, render_mode=render_mode, **sampler.env_kwargs)


def _adapt_steps(model: MLSH, args: argparse.Namespace) -> tuple[int, str]:
    """:return: Steps of the fresh master's adaptation (0: none) and how they were chosen."""
    if args.no_adapt or args.adapt == 0:
        return 0, ""
    if args.adapt is not None:
        return args.adapt, "--adapt"
    iteration = model.n_steps * model.n_envs
    iterations = model.warmup_iterations + 1
    return iterations * iteration, f"W + 1 = {iterations} iterations of {iteration} steps, the model's warmup and one more"


def build_parser() -> argparse.ArgumentParser:
    """:return: The parser of ``python -m sb3_mlsh.enjoy``."""
    parser = argparse.ArgumentParser(prog="python -m sb3_mlsh.enjoy", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="A saved model (.zip), e.g. logs/mlsh/mlsh-MovementBandits-v0_1/model.zip.")
    parser.add_argument("--env", default=None, help="Run on this family (same spaces; default: the model's).")
    parser.add_argument("--task", default=None, help="The task, in YAML (e.g. 1, [10, 10]).")
    parser.add_argument("--split", default="test", choices=("train", "test"), help="Without --task: draw from this split.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the task draw, the adaptation and the episodes.")
    adapt = parser.add_mutually_exclusive_group()
    adapt.add_argument(
        "--adapt",
        type=int,
        default=None,
        metavar="STEPS",
        help="Steps of the fresh master's adaptation to the task (default: the model's W + 1 iterations).",
    )
    adapt.add_argument(
        "--no-adapt", action="store_true", help="Watch the saved master (it knows the task it trained on last)."
    )
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--stochastic", action="store_true", help="Sample actions instead of taking the modes.")
    parser.add_argument("--skills", action="store_true", help="Run each sub-policy alone for one episode.")
    parser.add_argument(
        "--record",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help=f"A .gif or .mp4 of the episodes (--skills: a .png filmstrip); no PATH: in {DEFAULT_RECORD_FOLDER}/.",
    )
    parser.add_argument("--frames", type=int, default=8, help="Frames per sub-policy in the filmstrip.")
    parser.add_argument("--fps", type=int, default=20, help="Steps shown per second of video.")
    parser.add_argument(
        "--trusted", action="store_true", help="Unpickle the model file's pickled values (trusted files only)."
    )
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run ``python -m sb3_mlsh.enjoy``; a bad input prints one ``error:`` line and exits with status 2.

    :param argv: Command-line arguments (default: ``sys.argv[1:]``).
    :return: The task, the returns, the adaptation steps (0: the saved master) and the path of the recording (None
        when there is none or it was skipped).
    """
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except EnjoyError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """
    The body of :func:`main`.

    :param args: The parsed command line.
    :return: See :func:`main`.
    :raises EnjoyError: for a bad input, before any episode runs.
    """
    for name in ("episodes", "frames", "fps"):
        if getattr(args, name) < 1:
            raise EnjoyError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.adapt is not None and args.adapt < 0:
        raise EnjoyError(f"--adapt must be a number of steps >= 0, got {args.adapt}")
    path = _model_path(args.model)
    record = _record_path(args)
    task = None if args.task is None else _parse_task(args.task)
    th.set_num_threads(1)
    gl_problem = _prepare_gl(record is not None)
    from sb3_mlsh.common.serialization import ModelFileError
    from sb3_mlsh.common.tasks import make_task_sampler

    try:
        model = MLSH.load(path, args.env, seed=args.seed, trusted=args.trusted, device="cpu")
    except (ModelFileError, gym.error.Error) as error:
        raise EnjoyError(f"cannot load {path}: {error}") from None
    except (ValueError, TypeError) as error:  # --env of a family with other spaces, or not a task family
        raise EnjoyError(f"cannot run {path} on {args.env or 'its family'}: {error}") from None
    env_id = model.task_sampler.env_id
    env = _make_env(model, "rgb_array" if record is not None else None)
    if task is None:
        task = make_task_sampler(env_id, split=args.split, seed=args.seed).sample(1)[0]
    else:
        try:
            env.get_wrapper_attr("set_task")(task)
        except (ValueError, TypeError, KeyError, IndexError) as error:
            raise EnjoyError(f"--task {args.task}: {error}") from None
    if record == "":
        task_name = re.sub(r"[^\w.]+", "-", str(task)).strip("-")  # e.g. FourRooms' (10, 3): 10-3
        name = f"{env_id.split('/')[-1]}_task{task_name}" + ("_skills.png" if args.skills else ".gif")
        os.makedirs(DEFAULT_RECORD_FOLDER, exist_ok=True)
        record = os.path.join(DEFAULT_RECORD_FOLDER, name)
    recording = record
    if record is not None:
        follow_torso(env)
        problem = _render_problem(env, args.seed)
        if problem is not None:
            print(
                f"Cannot render {env_id} here: {gl_problem or problem}; the episodes run without recording.", file=sys.stderr
            )
            env, recording = _make_env(model, None), None
    env.get_wrapper_attr("set_task")(task)
    deterministic = not args.stochastic
    returns: list[float] = []
    length = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else 1000
    adapt_steps = 0
    if args.skills:
        print(f"Each sub-policy alone on task {task} (the master is not used).")
        strips: list[list[Frame]] = []
        every = max(1, length // max(1, args.frames))  # only the frames the filmstrip shows (and one more)
        for k in range(model.n_subpolicies):
            frames: list[Frame] | None = [] if recording else None
            total, _ = run_episode(
                model, env, args.seed, subpolicy=k, deterministic=deterministic, frames=frames, render_every=every
            )
            returns.append(total)
            strips.append(frames or [])
            print(f"sub-policy {k} alone on task {task}: return {total:.2f}")
        if recording:
            _save_filmstrip(strips, returns, task, recording, args.frames)
    else:
        adapt_steps, how = _adapt_steps(model, args)
        if adapt_steps:
            print(
                f"Adapting a fresh master to task {task} for {adapt_steps} steps ({how}) over the frozen sub-policies; "
                "--no-adapt watches the saved master."
            )
            model.adapt(task, adapt_steps)
        else:
            last = model.schedule.groups[0].task
            learned = "has not trained on a task yet" if last is None else f"last trained on task {last}"
            print(
                f"Watching the saved master, which {learned} (not adapted to task {task}); "
                "without --no-adapt a fresh master adapts first."
            )
        frames = [] if recording else None
        every = max(1, (length * args.episodes) // 300)  # at most about 300 frames in the video
        for episode in range(args.episodes):
            total, active = run_episode(
                model,
                env,
                args.seed + episode,
                deterministic=deterministic,
                frames=frames,
                render_every=every,
                episode=episode + 1 if args.episodes > 1 else 0,
            )
            returns.append(total)
            usage = np.bincount(active, minlength=model.n_subpolicies) / len(active)
            print(f"episode {episode}: return {total:.2f}, sub-policy usage {np.round(usage, 2).tolist()}")
        print(f"task {task}: mean return {np.mean(returns):.2f} over {args.episodes} episodes")
        if recording and frames:
            _save_video(frames, task, recording, args.fps, every)
    if recording:
        print(f"Recording: {recording}")
    return {"task": task, "returns": returns, "adapt_steps": adapt_steps, "recording": recording}


if __name__ == "__main__":
    main()
