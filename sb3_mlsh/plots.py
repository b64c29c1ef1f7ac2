"""Learning curves and sub-policy usage from a training run's logs."""

import os

import numpy as np
import pandas as pd

__all__ = ["plot_run"]


def _rolling(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) == 0:
        return values
    return pd.Series(values).rolling(min(window, len(values)), min_periods=1).mean().to_numpy()


def plot_run(log_dir: str, out_path: str | None = None, title: str | None = None, window: int = 100) -> str:
    """
    Draw the episode return against primitive steps (from the Monitor CSVs) and, when ``iterations.csv`` is there,
    the share of steps each sub-policy took per iteration.

    :param log_dir: A run folder written by ``python -m sb3_mlsh.train``.
    :param out_path: Where to save the PNG (default: ``<log_dir>/learning_curve.png``).
    :param title: Figure title (default: the folder name).
    :param window: Episodes in the rolling mean.
    :return: The path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from stable_baselines3.common.monitor import load_results

    out_path = out_path or os.path.join(log_dir, "learning_curve.png")
    iterations_csv = os.path.join(log_dir, "iterations.csv")
    iterations = pd.read_csv(iterations_csv) if os.path.exists(iterations_csv) else None
    n_panels = 2 if iterations is not None and len(iterations) else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 4), squeeze=False)
    episodes = load_results(log_dir)
    episodes = episodes.sort_values("t")
    steps = np.cumsum(episodes["l"].to_numpy())
    returns = episodes["r"].to_numpy()
    ax = axes[0, 0]
    ax.plot(steps, returns, color="tab:blue", alpha=0.15, linewidth=0.5)
    ax.plot(steps, _rolling(returns, window), color="tab:blue", label=f"mean of {window} episodes")
    ax.set_xlabel("primitive env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title or os.path.basename(os.path.normpath(log_dir)))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    if n_panels == 2:
        ax = axes[0, 1]
        usage = iterations.filter(regex=r"^subpolicy_usage_\d+$").to_numpy()
        bottom = np.zeros(len(usage))
        for k in range(usage.shape[1]):
            ax.fill_between(
                iterations["timesteps"], bottom, bottom + usage[:, k], step="post", label=f"sub-policy {k}", alpha=0.8
            )
            bottom += usage[:, k]
        ax.set_xlabel("primitive env steps")
        ax.set_ylabel("share of steps")
        ax.set_ylim(0, 1)
        ax.set_title("sub-policy usage per iteration")
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
