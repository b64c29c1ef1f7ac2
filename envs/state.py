"""Snapshots of an episode in progress (``get_episode_state`` / ``set_episode_state``): a saved MLSH run continues exactly."""

import copy
from typing import Any

import mujoco
import numpy as np

__all__ = ["FieldStateMixin", "MujocoStateMixin"]


class FieldStateMixin:
    """
    ``get_episode_state`` / ``set_episode_state`` for an env whose episode state is a few attributes (``STATE_FIELDS``) and its
    ``np_random``. The snapshot holds numbers, arrays and tuples only (a model file stores it as JSON).
    """

    STATE_FIELDS: tuple[str, ...] = ()
    np_random: np.random.Generator

    def get_episode_state(self) -> dict[str, Any]:
        """:return: The episode in progress: the state fields and the random generator's state."""
        return {"rng": self.np_random.bit_generator.state, **{f: copy.deepcopy(getattr(self, f)) for f in self.STATE_FIELDS}}

    def set_episode_state(self, state: dict[str, Any]) -> None:
        """:param state: What :meth:`get_episode_state` returned: the episode continues from there."""
        self.np_random.bit_generator.state = state["rng"]
        for field in self.STATE_FIELDS:
            setattr(self, field, copy.deepcopy(state[field]))
        self._state_restored()

    def _state_restored(self) -> None:
        """Recompute what derives from the state fields (nothing by default)."""


class MujocoStateMixin:
    """
    ``get_episode_state`` / ``set_episode_state`` for the MuJoCo families: the task, the physics (MuJoCo's integration
    state: time, positions, velocities, actuator state, warm start, mocap bodies) and ``np_random``. Quantities that
    MuJoCo derives from the state during a step are not in it; the Ant families read only the state between steps
    (HumanoidWalkCrawl reads the centre of mass of the step before, so its continuation may differ in the last bits).
    """

    model: mujoco.MjModel
    data: mujoco.MjData
    np_random: np.random.Generator
    task: Any
    _next_task: Any

    def _apply_task(self) -> None:
        raise NotImplementedError

    def get_episode_state(self) -> dict[str, Any]:
        """:return: The task, the physics and the random generator's state."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, physics, spec)
        return {"rng": self.np_random.bit_generator.state, "task": self.task, "next_task": self._next_task, "physics": physics}

    def set_episode_state(self, state: dict[str, Any]) -> None:
        """:param state: What :meth:`get_episode_state` returned: the episode continues from there."""
        self.np_random.bit_generator.state = state["rng"]
        self.task, self._next_task = state["task"], state["next_task"]
        self._apply_task()  # the model's side of the task (goal marker, block positions)
        mujoco.mj_setState(
            self.model, self.data, np.asarray(state["physics"], dtype=np.float64), mujoco.mjtState.mjSTATE_INTEGRATION
        )
