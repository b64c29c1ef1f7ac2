"""
Golden runs: short MLSH runs with fixed seeds whose numbers are pinned in ``tests/data/golden_runs.json``, so that a
refactoring that changes what MLSH computes fails ``tests/test_golden_run.py``.

Regenerate the file only for a change meant to alter the numbers, and say why in the commit::

    python tests/golden_run.py --write
"""

import argparse
import json
import os
import sys
from typing import Any

import numpy as np
import torch as th

sys.path.insert(0, os.path.dirname(__file__))

from toy_envs import make_toy

import mlsh_envs
from sb3_mlsh import MLSH, TaskSampler

GOLDEN_PATH = os.path.join(os.path.dirname(__file__), "data", "golden_runs.json")

#: Each run: the MLSH arguments (the task family under "tasks") and the iterations it learns for.
RUNS: dict[str, dict[str, Any]] = {
    # Box actions, both episode ends (termination and time limits), 2 staggered task groups, epsilon, reward scaling.
    "box_groups_epsilon_scaled": dict(
        tasks=("toy", dict(max_episode_steps=7, terminate_range=(3, 9), box_actions=True)),
        n_subpolicies=3, macro_duration=4, warmup_iterations=1, joint_iterations=2, n_steps=24, n_envs=4, task_groups=2,
        master_epsilon=0.2, normalize_reward=True, seed=3, iterations=6,
    ),
    # Dict observations, a key hidden from the sub-policies, the skill discriminator's reward.
    "dict_diversity_view": dict(
        tasks=("toy", dict(max_episode_steps=9, dict_obs=True)),
        n_subpolicies=2, macro_duration=3, warmup_iterations=1, joint_iterations=1, n_steps=16, n_envs=2,
        skill_diversity=0.5, subpolicy_obs_exclude=["phase"], seed=1, iterations=4, policy="MultiInputPolicy",
    ),
    # A registered family, then transfer with the paper's fine-tuning.
    "movement_bandits_adapt": dict(
        tasks=("id", "mlsh/MovementBandits-v0"),
        n_subpolicies=2, macro_duration=10, warmup_iterations=1, joint_iterations=1, n_steps=50, n_envs=2, seed=0,
        iterations=3, adapt_iterations=3,
    ),
}  # fmt: skip


def _tasks(spec: tuple[str, Any]) -> Any:
    kind, value = spec
    return make_toy(**value) if kind == "toy" else value


def _tensor_summary(state_dict: dict[str, Any]) -> dict[str, list[float]]:
    summary = {}
    for name, value in state_dict.items():
        if isinstance(value, th.Tensor) and value.is_floating_point():
            summary[name] = [float(value.double().sum()), float(value.double().abs().sum())]
    return summary


def _numbers(model: MLSH) -> dict[str, Any]:
    parameters = model.get_parameters()
    buffer = model.rollout_buffer
    return {
        "num_timesteps": model.num_timesteps,
        "iteration_log": [
            {key: float(value) for key, value in row.items() if np.isscalar(value)} for row in model.iteration_log
        ],
        **{
            name: _tensor_summary(values)
            for name, values in parameters.items()
            if name == "subpolicies" or (name.startswith("master") and not name.endswith("_optimizer"))
        },
        "subpolicy_buffer": {
            name: float(np.asarray(getattr(buffer, name), dtype=np.float64).sum())
            for name in ("rewards", "returns", "advantages", "values", "log_probs", "actions", "episode_starts")
        },
    }


def run(name: str) -> dict[str, Any]:
    """:return: The pinned numbers of one golden run."""
    kwargs = dict(RUNS[name])
    tasks, iterations = _tasks(kwargs.pop("tasks")), kwargs.pop("iterations")
    adapt_iterations, policy = kwargs.pop("adapt_iterations", 0), kwargs.pop("policy", "MlpPolicy")
    threads = th.get_num_threads()
    th.set_num_threads(1)
    try:
        model = MLSH(policy, tasks, **kwargs)
        steps_per_iteration = model.n_steps * model.n_envs
        model.learn(iterations * steps_per_iteration)
        numbers = {"meta_training": _numbers(model)}
        if adapt_iterations:
            assert isinstance(tasks, str)
            task = TaskSampler(tasks, split="test", seed=0).sample()[0]
            model.adapt(task, adapt_iterations * steps_per_iteration, update_subpolicies="after_warmup")
            numbers["adapt"] = _numbers(model)
        model.env.close()
    finally:
        th.set_num_threads(threads)
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN_PATH}")
    args = parser.parse_args()
    assert mlsh_envs.ENV_IDS
    numbers = {name: run(name) for name in RUNS}
    text = json.dumps(numbers, indent=1, sort_keys=True)
    if args.write:
        os.makedirs(os.path.dirname(GOLDEN_PATH), exist_ok=True)
        with open(GOLDEN_PATH, "w") as file:
            file.write(text + "\n")
        print(f"wrote {GOLDEN_PATH}")
    else:
        print(text)


if __name__ == "__main__":
    main()
