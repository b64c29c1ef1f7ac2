"""
One process of the distributed tests, launched by ``torchrun`` from ``test_distributed.py``.

For G = 2, G = 1 and G = 4 task groups over the launched processes, it trains a small MLSH on the toy env and dumps, at
the start of every iteration (after the previous iteration's updates) and at the end, the sub-policy parameters,
each local master's parameters, tasks and phases to ``OUT/G<g>_rank<r>.pt``; then it saves the model to
``OUT/G<g>.zip`` (a collective save, written by rank 0).

    torchrun --nproc_per_node=2 tests/distributed_worker.py OUT ITERATIONS
"""

import os
import sys

import torch as th
from stable_baselines3.common.callbacks import BaseCallback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toy_envs import make_toy

from sb3_mlsh import MLSH

N_ENVS, N_STEPS = 2, 16


class ParameterDump(BaseCallback):
    """Records the parameters after every update (at each rollout start, and at the end of training)."""

    def __init__(self, records: list) -> None:
        super().__init__()
        self.records = records

    def _record(self) -> None:
        model = self.model
        self.records.append(
            {
                "iteration": model.iteration,
                "theta": model.policy.theta.detach().clone(),
                "masters": {
                    group.index: th.nn.utils.parameters_to_vector(group.master.policy.parameters()).detach().clone()
                    for group in model.schedule.groups
                },
                "tasks": {group.index: (group.task, group.tasks_started) for group in model.schedule.groups},
                "phases": {group.index: model.schedule.phase(group) for group in model.schedule.groups},
                "warmup_lengths": {group.index: group.warmup_length for group in model.schedule.groups},
                "sub_updates": model.subpolicy_learner._n_updates,
            }
        )

    def _on_rollout_start(self) -> None:
        self._record()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._record()


def main(out: str, iterations: int) -> None:
    th.set_num_threads(1)
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    for task_groups in (2, 1, 4):
        model = MLSH(
            "MlpPolicy",
            make_toy(),
            n_subpolicies=2,
            macro_duration=4,
            warmup_iterations=1,
            joint_iterations=1,
            n_steps=N_STEPS,
            n_envs=N_ENVS,
            task_groups=task_groups,
            master_kwargs=dict(batch_size=4, n_epochs=2),
            subpolicy_kwargs=dict(batch_size=8, n_epochs=2),
            seed=3,
        )
        records: list = []
        model.learn(iterations * N_ENVS * N_STEPS * world_size, callback=ParameterDump(records))
        th.save(records, os.path.join(out, f"G{task_groups}_rank{rank}.pt"))
        model.save(os.path.join(out, f"G{task_groups}.zip"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
