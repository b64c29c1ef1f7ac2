"""benchmarks/update_health.py: the returns come from every iteration of a run, not only the iterations TensorBoard got."""

import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from update_health import TAGS, read_scalars

from sb3_mlsh.cli.train import main


def test_returns_are_read_for_every_iteration_and_the_kl_from_tensorboard(tmp_path):
    main(["--env", "mlsh/MovementBandits-v0", "-n", "900", "-f", str(tmp_path), "--no-progress", "--verbose", "0",
          "--log-interval", "3", "--seed", "0", "-params", "n_envs:2", "n_steps:50"])  # fmt: skip
    run = os.path.join(tmp_path, "mlsh", "mlsh-MovementBandits-v0_1")
    scalars = read_scalars(run)
    iterations = pd.read_csv(os.path.join(run, "iterations.csv"))
    ended = iterations[iterations["episodes"] > 0]
    assert len(iterations) == 9 and len(ended) >= 6
    steps, returns = scalars["return"]
    np.testing.assert_array_equal(steps, ended["timesteps"])
    np.testing.assert_allclose(returns, ended["episode_return_mean"])
    # TensorBoard has the sub-policies' update statistics of the dumped iterations only (every third).
    kl_steps, kl = scalars["approx_kl"]
    assert 1 <= len(kl_steps) <= 3 and np.isfinite(kl).all()
    assert set(TAGS) == set(scalars)
