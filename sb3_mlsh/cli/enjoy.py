"""Watch a trained MLSH model: run it on a task, record a GIF, or film each sub-policy alone.

Examples::

    python -m sb3_mlsh.enjoy logs/mlsh/mlsh-MovementBandits-v0_1/model.zip --task 1 --episodes 5
    python -m sb3_mlsh.enjoy MODEL.zip --split test --adapt 20000 --record run.gif      # fresh master on a held-out task
    python -m sb3_mlsh.enjoy MODEL.zip --task 0 --skills --record skills.png              # a filmstrip per sub-policy

MuJoCo families render offscreen: ``MUJOCO_GL=egl`` is set when no backend is chosen and there is no display; where
no backend works, the episodes still run and the recording is skipped with a message.
"""

import argparse
import os
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml

from sb3_mlsh.mlsh import MLSH

__all__ = ["main", "run_episode"]


def run_episode(
    model: MLSH,
    env: gym.Env,
    seed: int,
    subpolicy: int | None = None,
    deterministic: bool = True,
    frames: list | None = None,
    render_every: int = 1,
) -> tuple[float, list[int]]:
    """
    One episode of the model (its master and sub-policies), or of one sub-policy alone.

    :param model: The model.
    :param env: An env with the task set.
    :param seed: Seed of the episode's reset.
    :param subpolicy: Run this sub-policy alone instead of the master's choices.
    :param deterministic: Use the modes of the distributions.
    :param frames: Where rendered frames go, as ``(step, image)`` (None: no rendering).
    :param render_every: Render every this many steps (rendering costs more than a MuJoCo step).
    :return: The return and the active sub-policy of every step.
    """
    obs, _ = env.reset(seed=seed)
    state, total, active, done, start, step = None, 0.0, [], False, True, 0
    while not done:
        if frames is not None and step % render_every == 0:
            frames.append((step, env.render()))
        step += 1
        if subpolicy is None:
            action, state = model.predict(obs, state=state, episode_start=np.array([start]), deterministic=deterministic)
            active.append(int(state[0, 0]))
        else:
            action = model.subpolicy_predict(obs, subpolicy, deterministic=deterministic)
            active.append(subpolicy)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done, start = terminated or truncated, False
    return total, active


def _parse_task(text: str) -> Any:
    value = yaml.safe_load(text)
    return tuple(value) if isinstance(value, list) else value


def _save_gif(frames: list[tuple[int, np.ndarray]], path: str, fps: int, render_every: int) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for _, frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 * render_every / fps), loop=0)


def _save_filmstrip(strips: list[list[tuple[int, np.ndarray]]], returns: list[float], path: str, columns: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(strips), columns, figsize=(2.2 * columns, 2.3 * len(strips)), squeeze=False)
    for row, frames in enumerate(strips):
        picks = np.linspace(0, len(frames) - 1, columns).astype(int)
        for column, index in enumerate(picks):
            ax = axes[row, column]
            step, image = frames[index]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(f"sub-policy {row}\nreturn {returns[row]:.1f}", fontsize="small")
            if row == 0:
                ax.set_title(f"step {step}", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sb3_mlsh.enjoy", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="A saved model (.zip).")
    parser.add_argument("--env", default=None, help="Run on this family (same spaces; default: the model's).")
    parser.add_argument("--task", type=_parse_task, default=None, help="The task, in YAML (e.g. 1, [10, 10]).")
    parser.add_argument("--split", default="test", choices=("train", "test"), help="Without --task: draw from this split.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the task draw and of the episodes.")
    parser.add_argument("--adapt", type=int, default=0, metavar="STEPS", help="First train a fresh master on the task.")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--stochastic", action="store_true", help="Sample actions instead of taking the modes.")
    parser.add_argument("--skills", action="store_true", help="Run each sub-policy alone for one episode.")
    parser.add_argument("--record", default=None, metavar="PATH", help="A .gif of the episodes (--skills: a .png filmstrip).")
    parser.add_argument("--frames", type=int, default=8, help="Frames per sub-policy in the filmstrip.")
    parser.add_argument("--fps", type=int, default=20)
    parser.add_argument(
        "--trusted", action="store_true", help="Unpickle the model file's pickled values (trusted files only)."
    )
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """
    Run ``python -m sb3_mlsh.enjoy``.

    :return: The task, the returns and the path of the recording (None when skipped).
    """
    args = build_parser().parse_args(argv)
    th.set_num_threads(1)
    if args.record and "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY") and "mujoco" not in sys.modules:
        os.environ["MUJOCO_GL"] = "egl"  # offscreen rendering; MuJoCo reads it when it is first imported (by mlsh_envs)
    import mlsh_envs

    model = MLSH.load(args.model, args.env, task_groups=1, n_envs=1, seed=args.seed, trusted=args.trusted, device="cpu")
    env_id = model.task_sampler.env_id
    task = args.task
    if task is None:
        task = mlsh_envs.make_task_sampler(env_id, split=args.split, seed=args.seed).sample(1)[0]
    if args.adapt > 0:
        model.adapt(task, args.adapt)
    render_mode = "rgb_array" if args.record else None
    env = gym.make(env_id, render_mode=render_mode)
    env.get_wrapper_attr("set_task")(task)
    recording: str | None = args.record
    try:
        if args.record:
            env.reset(seed=args.seed)
            env.render()
    except Exception as error:  # no offscreen GL backend: run without recording
        print(f"Cannot render {env_id} here ({type(error).__name__}: {error}); recording skipped.", file=sys.stderr)
        env, recording = gym.make(env_id), None
        env.get_wrapper_attr("set_task")(task)
    deterministic = not args.stochastic
    returns: list[float] = []
    length = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else 1000
    if args.skills:
        strips: list[list[tuple[int, np.ndarray]]] = []
        every = max(1, length // max(1, args.frames))  # only the frames the filmstrip shows (and one more)
        for k in range(model.n_subpolicies):
            frames: list[tuple[int, np.ndarray]] | None = [] if recording else None
            total, _ = run_episode(
                model, env, args.seed, subpolicy=k, deterministic=deterministic, frames=frames, render_every=every
            )
            returns.append(total)
            strips.append(frames or [])
            print(f"sub-policy {k} alone on task {task}: return {total:.2f}")
        if recording:
            _save_filmstrip(strips, returns, recording, args.frames)
    else:
        frames = [] if recording else None
        every = max(1, (length * args.episodes) // 300)  # at most about 300 frames in the GIF
        for episode in range(args.episodes):
            total, active = run_episode(
                model, env, args.seed + episode, deterministic=deterministic, frames=frames, render_every=every
            )
            returns.append(total)
            usage = np.bincount(active, minlength=model.n_subpolicies) / len(active)
            print(f"episode {episode}: return {total:.2f}, sub-policy usage {np.round(usage, 2).tolist()}")
        print(f"task {task}: mean return {np.mean(returns):.2f} over {args.episodes} episodes")
        if recording and frames:
            _save_gif(frames, recording, args.fps, every)
    if recording:
        print(f"Recording: {recording}")
    return {"task": task, "returns": returns, "recording": recording}


if __name__ == "__main__":
    main()
