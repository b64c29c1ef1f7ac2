"""Shared MuJoCo pieces of the Ant task families: a Gymnasium Ant with a goal marker and a pool of movable blocks."""

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import gymnasium.envs.mujoco
import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.ant_v5 import AntEnv

from mlsh_envs.state import MujocoStateMixin

__all__ = [
    "GYMNASIUM_ASSETS",
    "AntNavigationEnv",
    "TaskResetMixin",
    "add_box_pool",
    "check_split",
    "compile_model",
    "place_boxes",
]

#: Folder of Gymnasium's MuJoCo models (ant.xml, humanoid.xml), which the families build on.
GYMNASIUM_ASSETS = os.path.join(os.path.dirname(gymnasium.envs.mujoco.__file__), "assets")

#: Where inactive blocks are parked: far outside any arena, so they never touch the robot.
PARKED = 1000.0


def check_split(split: str | None) -> None:
    """
    :param split: A task split.
    :raises ValueError: if it is not ``"train"``, ``"test"`` or ``None``.
    """
    if split not in (None, "train", "test"):
        raise ValueError(f"Unknown split {split!r}: use 'train', 'test' or None.")


def add_box_pool(
    spec: mujoco.MjSpec, prefix: str, n: int, half_size: Sequence[float], rgba: Sequence[float], collide: bool = True
) -> None:
    """
    Add ``n`` boxes, each the geom of its own mocap body ``f"{prefix}{i}"``, parked far away. Tasks move them
    with :func:`place_boxes` (no recompilation), so the compiled model, and so every space, is the same for
    every task. Mocap bodies, unlike geoms of the world body, are moved without stale bounding volumes: the
    collision broadphase follows them.

    :param spec: The model specification to extend.
    :param prefix: Body and geom names are ``f"{prefix}{i}"``.
    :param n: Number of boxes.
    :param half_size: Half extents of each box.
    :param rgba: Colour.
    :param collide: Whether the boxes collide with the robot (contype = conaffinity = 1) or are only drawn.
    """
    for index in range(n):
        body = spec.worldbody.add_body(name=f"{prefix}{index}", mocap=True, pos=[PARKED + 10.0 * index, PARKED, half_size[2]])
        body.add_geom(
            name=f"{prefix}{index}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=list(half_size),
            rgba=list(rgba),
            contype=int(collide),
            conaffinity=int(collide),
            condim=3,
            margin=0.0,
        )


def compile_model(spec: mujoco.MjSpec, base_path: str, width: int, height: int) -> tuple[mujoco.MjModel, mujoco.MjData]:
    """
    Compile an extended model, keeping the view statistics (extent, centre) of the model it extends: parked
    boxes far away would otherwise inflate the extent, and with it the camera's near clipping plane.

    :param spec: The extended specification.
    :param base_path: Path of the XML model it extends.
    :param width: Width of offscreen renders.
    :param height: Height of offscreen renders.
    :return: The model and its data.
    """
    base = mujoco.MjModel.from_xml_path(base_path)
    model = spec.compile()
    model.stat.extent = base.stat.extent
    model.stat.center[:] = base.stat.center
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    return model, mujoco.MjData(model)


def place_boxes(model: mujoco.MjModel, data: mujoco.MjData, body_ids: np.ndarray, positions: np.ndarray) -> None:
    """
    Move the boxes of :func:`add_box_pool`, now (``data.mocap_pos``) and from every later reset on
    (``model.body_pos``, which ``mj_resetData`` copies into ``data.mocap_pos``).

    :param model: The compiled model.
    :param data: Its data.
    :param body_ids: Ids of the boxes' mocap bodies.
    :param positions: One ``(x, y, z)`` centre per box.
    """
    model.body_pos[body_ids] = positions
    data.mocap_pos[model.body_mocapid[body_ids]] = positions


class TaskResetMixin(MujocoStateMixin):
    """
    The task protocol's reset for MuJoCo families: seed first (so that the task may be applied with ``np_random``),
    switch to the task given by ``set_task`` and apply it (``_apply_task``), then let the base env reset.
    """

    task: Any
    _next_task: Any

    def _apply_task(self) -> None:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            gym.Env.reset(self, seed=seed)  # seeds np_random before the task is applied, as the base reset would
        self.task = self._next_task
        self._apply_task()
        obs, info = super().reset(options=options)  # type: ignore[misc]
        info["task"] = self.task
        return obs, info

    def get_task(self) -> Any:
        """:return: The task of the current episode."""
        return self.task


class AntNavigationEnv(TaskResetMixin, AntEnv):
    """
    Gymnasium's Ant (``Ant-v5``) made a navigation robot: its observation keeps the torso's x and y
    (``exclude_current_positions_from_observation=False``: 107 numbers with the clipped contact forces),
    nothing ends the episode early, and the world holds a non-colliding goal marker plus a fixed pool of
    ``n_blocks`` box obstacles (mocap bodies). Subclasses place the marker (``model.geom_pos``) and the blocks
    (:func:`place_boxes`) for a task at reset, without recompiling, and define :meth:`_task_reward`.

    :param n_blocks: Size of the block pool (the most blocks any task uses).
    :param block_half_size: Half extents of each block.
    :param render_mode: ``"rgb_array"`` (needs an offscreen GL backend, e.g. ``MUJOCO_GL=egl``), or ``None``.
    :param restand_every: Stand the Ant up again every this many steps, as the original code's obstacle courses did
        (every 200): the joints go back to the upright starting pose and the velocities to zero, the torso's x and y
        stay. An Ant that fell on its back gets up, so long sparse episodes stay solvable. ``None``: never.
    :param ant_kwargs: Passed on to :class:`gymnasium.envs.mujoco.ant_v5.AntEnv` (``frame_skip``,
        ``include_cfrc_ext_in_observation``, ``reset_noise_scale``, ``width``, ``height``, ...).
    """

    def __init__(
        self,
        n_blocks: int = 0,
        block_half_size: Sequence[float] = (2.0, 2.0, 1.0),
        render_mode: str | None = None,
        restand_every: int | None = None,
        **ant_kwargs: Any,
    ):
        if restand_every is not None and (
            isinstance(restand_every, bool) or not isinstance(restand_every, int) or restand_every < 1
        ):
            raise ValueError(
                f"restand_every is a number of steps >= 1, or None to never re-stand the Ant; got {restand_every!r}."
            )
        self.restand_every = restand_every
        self._n_blocks = n_blocks
        self._block_half_size = tuple(float(x) for x in block_half_size)
        ant_kwargs.setdefault("exclude_current_positions_from_observation", False)
        ant_kwargs.setdefault("terminate_when_unhealthy", False)
        ant_kwargs.setdefault(
            "default_camera_config",
            {"distance": 22.0, "elevation": -60.0, "azimuth": 90.0, "lookat": np.array((4.0, 2.0, 0.0))},
        )
        super().__init__(xml_file=os.path.join(GYMNASIUM_ASSETS, "ant.xml"), render_mode=render_mode, **ant_kwargs)
        self._marker_id = self.model.geom("goal_marker").id
        self._block_ids = np.array([self.model.body(f"block{i}").id for i in range(n_blocks)], dtype=np.int64)
        self._parked_pos = self.model.body_pos[self._block_ids].copy()
        # The blocks' mocap bodies come after the Ant's: the observation keeps Ant-v5's bodies only.
        self._robot_bodies = slice(1, self.model.nbody - n_blocks)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=self._get_obs().shape, dtype=np.float64)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        spec = mujoco.MjSpec.from_file(self.fullpath)
        spec.worldbody.add_geom(
            name="goal_marker",
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[0.5, 0.0, 0.0],
            pos=[PARKED, -PARKED, 0.5],
            rgba=[0.2, 0.8, 0.2, 0.6],
            contype=0,
            conaffinity=0,
        )
        add_box_pool(spec, "block", self._n_blocks, self._block_half_size, (0.35, 0.35, 0.55, 1.0))
        return compile_model(spec, self.fullpath, self.width, self.height)

    def _place(self, goal: Sequence[float], blocks: Sequence[Sequence[float]] = ()) -> None:
        """
        Move the goal marker and the blocks (``(x, y)`` centres; unused ones are parked far away).

        :param goal: The ``(x, y)`` of the goal marker.
        :param blocks: Block centres, at most ``n_blocks``.
        """
        if len(blocks) > self._n_blocks:
            raise ValueError(f"{len(blocks)} blocks do not fit a pool of {self._n_blocks}.")
        self.model.geom_pos[self._marker_id, :2] = goal
        positions = self._parked_pos.copy()
        if len(blocks):
            positions[: len(blocks), :2] = np.asarray(blocks, dtype=np.float64)
        place_boxes(self.model, self.data, self._block_ids, positions)

    @property
    def goal_position(self) -> np.ndarray:
        """The ``(x, y)`` of the current task's target or goal (its marker)."""
        return self.model.geom_pos[self._marker_id, :2].copy()

    @property
    def obstacles(self) -> list[tuple[float, float, float, float]]:
        """The placed blocks of the current task: ``(x, y, half width, half depth)`` each (parked ones left out)."""
        half_x, half_y, _ = self._block_half_size
        centres = self.data.mocap_pos[self.model.body_mocapid[self._block_ids]] if len(self._block_ids) else np.zeros((0, 3))
        return [(float(x), float(y), half_x, half_y) for x, y, _ in centres if abs(x) < PARKED / 2]

    def restand(self) -> None:
        """Stand the Ant up where it is: the starting pose (height, orientation, joints) at the torso's x and y, at rest."""
        qpos = self.init_qpos.copy()
        qpos[:2] = self.data.qpos[:2]
        self.set_state(qpos, np.zeros(self.model.nv))

    def _get_obs(self) -> np.ndarray:
        position = self.data.qpos.flatten()
        if self._exclude_current_positions_from_observation:
            position = position[2:]
        parts = [position, self.data.qvel.flatten()]
        if self._include_cfrc_ext_in_observation:
            low, high = self._contact_force_range
            parts.append(np.clip(self.data.cfrc_ext[self._robot_bodies], low, high).flatten())
        return np.concatenate(parts)

    def _apply_task(self) -> None:
        """Place the current task's marker and blocks; called at every reset before the robot is reset."""
        raise NotImplementedError

    def _task_reward(self, xy: np.ndarray, xy_velocity: np.ndarray, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        """
        :param xy: Torso position after the step.
        :param xy_velocity: Torso velocity over the step.
        :param action: The action taken.
        :return: The reward and the extra info of the step.
        """
        raise NotImplementedError

    # gymnasium annotates MujocoEnv.step's reward as np.float64 and its info as dict[str, np.float64], narrower than
    # gymnasium.Env.step's contract (SupportsFloat, dict[str, Any]) that this step keeps.
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:  # type: ignore[override]
        xy_before = self.data.qpos[:2].copy()
        self.do_simulation(action, self.frame_skip)
        xy = self.data.qpos[:2].copy()
        reward, info = self._task_reward(xy, (xy - xy_before) / self.dt, action)
        info["task"] = self.task
        info["x_position"], info["y_position"] = xy
        # The step count comes from the simulated time, so that an episode snapshot (which holds the time) keeps it.
        if self.restand_every is not None and round(self.data.time / self.dt) % self.restand_every == 0:
            self.restand()
            info["restood"] = True
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), float(reward), False, False, info
