"""Marks for tests that need MuJoCo, so that ``pytest -m "not mujoco"`` runs the rest on a machine without it."""

from collections.abc import Iterable

import pytest

#: The task families simulated by MuJoCo.
MUJOCO_IDS = frozenset(
    {"mlsh/AntTwowalk-v0", "mlsh/AntMovement-v0", "mlsh/AntMaze-v0", "mlsh/AntObstacleCourse-v0", "mlsh/HumanoidWalkCrawl-v0"}
)


def family_params(env_ids: Iterable[str]) -> list:
    """
    :param env_ids: Env ids to parametrize a test over.
    :return: One ``pytest.param`` per id, marked ``mujoco`` where MuJoCo simulates the family.
    """
    return [pytest.param(env_id, marks=pytest.mark.mujoco) if env_id in MUJOCO_IDS else env_id for env_id in env_ids]
