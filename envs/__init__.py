"""
The task families of MLSH (Frans et al., 2018) on Gymnasium, registered as ``mlsh/<Name>-v0``.

This package builds on gymnasium alone and imports nothing of ``sb3_mlsh``, which knows the families by their ids only
(its ``TaskSampler`` imports this package to register an ``mlsh/...`` id): a task sampler of a family is
``sb3_mlsh.make_task_sampler(id, split)``.
"""

from typing import Any

import gymnasium as gym

from mlsh_envs.ant_maze import AntMazeEnv
from mlsh_envs.ant_movement import AntMovementEnv
from mlsh_envs.ant_obstacle_course import AntObstacleCourseEnv
from mlsh_envs.ant_twowalk import AntTwowalkEnv
from mlsh_envs.four_rooms import FourRoomsEnv
from mlsh_envs.humanoid_walk_crawl import HumanoidWalkCrawlEnv
from mlsh_envs.key_door import KeyDoorEnv
from mlsh_envs.movement_bandits import MovementBanditsEnv
from mlsh_envs.reference import evaluate_oracle, evaluate_policy_fn

__all__ = [
    "ENV_IDS",
    "AntMazeEnv",
    "AntMovementEnv",
    "AntObstacleCourseEnv",
    "AntTwowalkEnv",
    "FourRoomsEnv",
    "HumanoidWalkCrawlEnv",
    "KeyDoorEnv",
    "MovementBanditsEnv",
    "evaluate_oracle",
    "evaluate_policy_fn",
]

#: Registered ids with their entry points and episode lengths.
_REGISTRY: dict[str, tuple[str, int]] = {
    "mlsh/MovementBandits-v0": ("mlsh_envs.movement_bandits:MovementBanditsEnv", 50),
    "mlsh/KeyDoor-v0": ("mlsh_envs.key_door:KeyDoorEnv", 100),
    "mlsh/FourRooms-v0": ("mlsh_envs.four_rooms:FourRoomsEnv", 100),
    "mlsh/FourRoomsAllGoals-v0": ("mlsh_envs.four_rooms:FourRoomsEnv", 100),
    "mlsh/AntTwowalk-v0": ("mlsh_envs.ant_twowalk:AntTwowalkEnv", 1000),
    "mlsh/AntMovement-v0": ("mlsh_envs.ant_movement:AntMovementEnv", 1000),
    "mlsh/AntMaze-v0": ("mlsh_envs.ant_maze:AntMazeEnv", 1000),
    "mlsh/AntObstacleCourse-v0": ("mlsh_envs.ant_obstacle_course:AntObstacleCourseEnv", 2000),
    "mlsh/HumanoidWalkCrawl-v0": ("mlsh_envs.humanoid_walk_crawl:HumanoidWalkCrawlEnv", 1000),
}

#: Constructor arguments of the ids that share an env class with another id.
_KWARGS: dict[str, dict[str, Any]] = {"mlsh/FourRoomsAllGoals-v0": {"goals": "all"}}

for _env_id, (_entry_point, _max_steps) in _REGISTRY.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps, kwargs=_KWARGS.get(_env_id, {}))

ENV_IDS = tuple(_REGISTRY)


def __getattr__(name: str) -> Any:
    if name == "make_task_sampler":  # moved, so that this package needs nothing of sb3_mlsh
        raise AttributeError("mlsh_envs.make_task_sampler moved: use `from sb3_mlsh import make_task_sampler`.")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
