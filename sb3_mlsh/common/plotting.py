"""Learning curves and sub-policy usage from training runs' logs, and trajectories coloured by the active sub-policy."""

import os
from typing import Any, cast

import gymnasium as gym
import numpy as np
import pandas as pd

from sb3_mlsh.common.tasks import ensure_registered

__all__ = ["plot_learning_curves", "plot_run", "plot_subpolicy_usage", "plot_trajectories", "reference_levels"]


def _rolling(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) == 0:
        return values
    return pd.Series(values).rolling(min(window, len(values)), min_periods=1).mean().to_numpy()


def reference_levels(env_id: str, n_episodes: int = 10, seed: int = 0, split: str | None = "train") -> dict[str, float]:
    """
    Mean returns that put a task family's learning curve in scale, for the families of ``mlsh_envs``: its scripted
    oracle, which knows the task (the families with ``oracle_action``), and uniformly random actions.

    :param env_id: An env id.
    :param n_episodes: Episodes per level, each on a newly drawn task.
    :param seed: Seed of the envs and the task draws.
    :param split: The tasks' split (``"train"``: those of meta-training).
    :return: ``{"oracle": mean, "random": mean}``, without the oracle where the family has none; empty for an env that is
        not one of ``mlsh_envs``' families.
    """
    try:
        family = ensure_registered(env_id)
    except ImportError:  # pragma: no cover
        return {}
    if family is None or env_id not in gym.registry:
        return {}
    probe = gym.make(env_id)
    has_oracle = callable(getattr(probe.unwrapped, "oracle_action", None))
    probe.close()
    policies: dict[str, Any] = {"random": lambda env, obs: env.action_space.sample()}
    if has_oracle:
        policies = {"oracle": lambda env, obs: env.get_wrapper_attr("oracle_action")(obs), **policies}
    return {
        name: family.evaluate_policy_fn(env_id, policy, n_episodes=n_episodes, seed=seed, split=split)[0]
        for name, policy in policies.items()
    }


def _run_env_id(log_dir: str) -> str | None:
    """:return: The env id in a run folder's ``config.yml`` (None: no such file or key)."""
    import yaml

    try:
        with open(os.path.join(log_dir, "config.yml")) as file:
            config = yaml.safe_load(file)
    except (OSError, yaml.YAMLError):
        return None
    env_id = config.get("env") if isinstance(config, dict) else None
    return env_id if isinstance(env_id, str) else None


def _draw_usage(ax: Any, iterations: pd.DataFrame, window: int) -> bool:
    """
    Stack each sub-policy's share of the primitive steps per iteration, smoothed over ``window`` iterations (per-iteration
    shares jump as tasks change).

    :return: Whether ``iterations`` had usage columns to draw.
    """
    shares = iterations.filter(regex=r"^subpolicy_usage_\d+$")
    if len(shares) == 0 or shares.shape[1] == 0:
        return False
    window = min(window, len(shares))
    usage = shares.rolling(window, min_periods=1).mean().to_numpy()
    ax.stackplot(iterations["timesteps"], usage.T, labels=[f"sub-policy {k}" for k in range(usage.shape[1])], alpha=0.85)
    ax.set_xlabel("primitive env steps")
    ax.set_ylabel("share of steps")
    ax.set_ylim(0, 1)
    ax.set_title(f"sub-policy usage ({window}-iteration mean)", fontsize="medium")
    ax.legend(loc="upper right", fontsize="small")
    return True


def plot_run(
    log_dir: str,
    out_path: str | None = None,
    title: str | None = None,
    window: int = 100,
    env_id: str | None = None,
    usage_window: int = 10,
    reference: bool = True,
) -> str:
    """
    Draw the episode return against primitive steps (from the Monitor CSVs), with the family's oracle and random levels
    where ``mlsh_envs`` has them, and, when ``iterations.csv`` is there, the share of steps each sub-policy took.

    :param log_dir: A run folder written by ``python -m sb3_mlsh.train``.
    :param out_path: Where to save the PNG (default: ``<log_dir>/learning_curve.png``).
    :param title: Figure title (default: the folder name).
    :param window: Episodes in the rolling mean (fewer when the run has fewer; the legend gives the number used).
    :param env_id: The run's env id, for the reference levels (default: the one in ``<log_dir>/config.yml``).
    :param usage_window: Iterations in the rolling mean of the sub-policy usage.
    :param reference: Draw the reference levels (:func:`reference_levels`, on the training split's tasks).
    :return: The path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_path = out_path or os.path.join(log_dir, "learning_curve.png")
    iterations_csv = os.path.join(log_dir, "iterations.csv")
    iterations = pd.read_csv(iterations_csv) if os.path.exists(iterations_csv) else None
    has_usage = iterations is not None and iterations.filter(regex=r"^subpolicy_usage_\d+$").shape[1] > 0
    n_panels = 2 if has_usage and iterations is not None and len(iterations) else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 4), squeeze=False)
    steps, returns = _episodes(log_dir)
    ax = axes[0, 0]
    ax.plot(steps, returns, color="tab:blue", alpha=0.15, linewidth=0.5)
    ax.plot(steps, _rolling(returns, window), color="tab:blue", label=f"rolling mean of {min(window, len(returns))} episodes")
    env_id = env_id or _run_env_id(log_dir)
    levels = reference_levels(env_id) if reference and env_id is not None else {}
    styles = {"oracle": ("tab:green", "--", "scripted oracle (knows the task)"), "random": ("tab:gray", ":", "random actions")}
    for name, level in levels.items():
        color, linestyle, text = styles[name]
        ax.axhline(level, color=color, linestyle=linestyle, linewidth=1.2, label=f"{text}: {level:.1f}")
    ax.set_xlabel("primitive env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title or os.path.basename(os.path.normpath(log_dir)))
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    if n_panels == 2:
        assert iterations is not None  # the second panel exists only with iterations.csv
        _draw_usage(axes[0, 1], iterations, usage_window)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def _episodes(log_dir: str) -> tuple[np.ndarray, np.ndarray]:
    from stable_baselines3.common.monitor import load_results

    episodes = load_results(log_dir).sort_values("t")
    return np.cumsum(episodes["l"].to_numpy()), episodes["r"].to_numpy()


def plot_learning_curves(
    log_dirs: list[str], out_path: str, labels: list[str] | None = None, window: int = 100, title: str | None = None
) -> str:
    """
    Draw the episode return against primitive steps of several runs on one figure (e.g. MLSH and its baselines).

    :param log_dirs: Run folders with Monitor CSVs (as written by ``python -m sb3_mlsh.train`` or any SB3 run).
    :param out_path: Where to save the PNG.
    :param labels: Legend of each run (default: the folder names).
    :param window: Episodes in the rolling mean.
    :param title: Figure title.
    :return: ``out_path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or [os.path.basename(os.path.normpath(log_dir)) for log_dir in log_dirs]
    fig, ax = plt.subplots(figsize=(7, 4))
    for index, (log_dir, label) in enumerate(zip(log_dirs, labels)):
        steps, returns = _episodes(log_dir)
        color = f"C{index}"
        ax.plot(steps, returns, color=color, alpha=0.1, linewidth=0.5)
        shorter = f" (mean of {len(returns)})" if len(returns) < window else ""  # a run with fewer episodes than the window
        ax.plot(steps, _rolling(returns, window), color=color, label=label + shorter)
    ax.set_xlabel("primitive env steps")
    ax.set_ylabel(f"episode return (rolling mean of {window} episodes)")
    ax.set_title(title or "learning curves")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_subpolicy_usage(log_dir: str, out_path: str, window: int = 10) -> str | None:
    """
    Draw the share of primitive steps each sub-policy took, per iteration, from ``<log_dir>/iterations.csv``, as a
    stacked area smoothed over ``window`` iterations (per-iteration shares jump as tasks change).

    :param log_dir: A run folder written by ``python -m sb3_mlsh.train``.
    :param out_path: Where to save the PNG.
    :param window: Iterations in the rolling mean.
    :return: ``out_path``, or None when the run has no ``iterations.csv`` (e.g. a baseline).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = os.path.join(log_dir, "iterations.csv")
    if not os.path.exists(path):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if not _draw_usage(ax, pd.read_csv(path), window):
        plt.close(fig)
        return None
    ax.set_title(f"{ax.get_title()}: {os.path.basename(os.path.normpath(log_dir))}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


#: Task families whose agent position :func:`plot_trajectories` can read (2D plane or grid).
TRAJECTORY_FAMILIES = ("MovementBanditsEnv", "KeyDoorEnv", "FourRoomsEnv")


def _position(env: Any) -> np.ndarray:
    """:return: The agent's (x, y) in a 2D family, or (column, row) of its cell in FourRooms."""
    if hasattr(env, "cells"):
        row, col = env.cells[env.agent]
        return np.array([col, row], dtype=float)
    return np.asarray(env.agent, dtype=float).copy()


def plot_trajectories(
    model: Any,
    out_path: str,
    n_episodes: int = 4,
    seed: int = 0,
    deterministic: bool = False,
    task: Any = None,
    adapt_steps: int = 0,
) -> str:
    """
    Draw episodes of a trained model in a 2D or grid task family, each step coloured by the active sub-policy,
    so that one sees what each skill does.

    :param model: An :class:`~sb3_mlsh.MLSH` model trained on MovementBandits, KeyDoor or FourRooms (load a saved one
        with :meth:`MLSH.load <sb3_mlsh.MLSH.load>` first).
    :param out_path: Where to save the PNG.
    :param n_episodes: Episodes to draw (one panel each).
    :param adapt_steps: Before each episode, train a fresh master for this many steps on its task over the frozen
        sub-policies (0: the model's current master, which learned some other task), so that each panel shows what
        MLSH does on that task.
    :param seed: Seed of the env resets and the task draws.
    :param deterministic: Act with the mode of the master's and the sub-policies' distributions.
    :param task: The task of every episode (default: drawn from the model's task sampler).
    :return: ``out_path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(model, (str, os.PathLike)):
        raise TypeError(f"plot_trajectories takes a model, not the path {model}: load it first, MLSH.load(path).")
    env = model.task_sampler.make_env()
    base: Any = env.unwrapped
    if not _is_trajectory_family(base):
        raise TypeError(
            f"plot_trajectories draws the 2D and grid families {TRAJECTORY_FAMILIES}, not {type(base).__name__}: "
            "there is no agent position to draw."
        )
    base = cast(Any, base)  # one of the families above (isinstance against a computed tuple narrows to object)
    rng = np.random.default_rng(seed)
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, n_episodes, figsize=(3.2 * n_episodes, 3.4), squeeze=False)
    for episode, ax in enumerate(axes[0]):
        episode_task = task if task is not None else model.task_sampler.sample(1, rng=rng)[0]
        if adapt_steps > 0:
            model.adapt(episode_task, adapt_steps)
        path, subpolicies = _run_episode(model, env, base, episode_task, seed + episode, deterministic)
        if hasattr(base, "walls"):
            path = path + rng.normal(0.0, 0.08, size=path.shape)  # jitter: grid paths overlap
        _draw_family(ax, base, plt)
        for step, k in enumerate(subpolicies):
            ax.plot(path[step : step + 2, 0], path[step : step + 2, 1], color=colors(k % 10), linewidth=2)
        ax.plot(*path[0], marker="o", color="k", markersize=5)
        ax.set_title(f"task {episode_task}" + (" (fresh master)" if adapt_steps else ""), fontsize="small")
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    handles = _legend(base, model.n_subpolicies, colors, plt)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize="small")
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    env.close()
    return out_path


def _run_episode(model: Any, env: Any, base: Any, task: Any, seed: int, deterministic: bool) -> tuple[np.ndarray, list[int]]:
    """:return: The agent's positions over one episode of ``task``, and the sub-policy active at each step."""
    env.get_wrapper_attr("set_task")(task)
    obs, _ = env.reset(seed=seed)
    positions, subpolicies, state, start, done = [_position(base)], [], None, True, False
    while not done:
        action, state = model.predict(obs, state=state, episode_start=np.array([start]), deterministic=deterministic)
        subpolicies.append(int(np.asarray(state).reshape(-1, 2)[0, 0]))
        obs, _, terminated, truncated, _ = env.step(action)
        positions.append(_position(base))
        start, done = False, terminated or truncated
    return np.array(positions), subpolicies


def _draw_family(ax: Any, base: Any, plt: Any) -> None:
    """The task's layout under the path: walls and goal of a grid, or the goals (and key) of the 2D families."""
    if hasattr(base, "walls"):
        extent = (-0.5, base.walls.shape[1] - 0.5, base.walls.shape[0] - 0.5, -0.5)
        ax.imshow(base.walls, cmap="Greys", origin="upper", extent=extent)
        row, col = base.task
        ax.plot(col, row, marker="*", markersize=14, color="gold", markeredgecolor="k")
        return
    ax.set_xlim(0, base.size)
    ax.set_ylim(0, base.size)
    for index, goal in enumerate(base.goals):
        paying = index == base.task
        ax.add_patch(plt.Circle(goal, base.goal_radius, color="tab:green" if paying else "lightgrey", alpha=0.5))
    if hasattr(base, "key"):
        ax.plot(*base.key, marker="P", markersize=10, color="goldenrod")


def _legend(base: Any, n_subpolicies: int, colors: Any, plt: Any) -> list[Any]:
    from matplotlib.patches import Patch

    handles: list[Any] = [
        plt.Line2D([], [], color=colors(k % 10), linewidth=2, label=f"sub-policy {k}") for k in range(n_subpolicies)
    ]
    handles.append(plt.Line2D([], [], marker="o", color="k", linestyle="none", markersize=5, label="start"))
    if hasattr(base, "walls"):
        handles.append(plt.Line2D([], [], marker="*", color="gold", markeredgecolor="k", linestyle="none", label="goal"))
    else:
        handles.append(Patch(color="tab:green", alpha=0.5, label="goal that pays"))
        handles.append(Patch(color="lightgrey", alpha=0.5, label="goal that does not pay"))
        if hasattr(base, "key"):
            handles.append(plt.Line2D([], [], marker="P", color="goldenrod", linestyle="none", label="key"))
    return handles


def _is_trajectory_family(env: Any) -> bool:
    """:return: Whether ``env`` is an instance of one of the :data:`TRAJECTORY_FAMILIES` of ``mlsh_envs`` (known by name:
    this package does not import ``mlsh_envs``)."""
    return any(
        cls.__name__ in TRAJECTORY_FAMILIES and cls.__module__.partition(".")[0] == "mlsh_envs" for cls in type(env).__mro__
    )
