"""HumanoidWalkCrawl: walk where the way is open, crawl under ceilings (Frans et al., 2018)."""

import itertools
import os
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv

from mlsh_envs.mujoco_utils import (
    GYMNASIUM_ASSETS,
    TaskResetMixin,
    add_box_pool,
    check_split,
    compile_model,
    place_boxes,
)

__all__ = ["SEGMENT_TYPES", "HumanoidWalkCrawlEnv"]

SEGMENT_TYPES = ("walk", "crawl")


class HumanoidWalkCrawlEnv(TaskResetMixin, HumanoidEnv):
    """
    Gymnasium's Humanoid (``Humanoid-v5`` model and dynamics) on a course split along x into ``n_segments``
    segments of ``segment_length`` metres, starting at ``x = course_start``. A task is the sequence of segment
    types, e.g. ``("walk", "crawl", "walk")``. Over each crawl segment a ceiling (a 6 m wide, colliding box whose
    underside is ``ceiling_height`` above the floor) forces the Humanoid down; walk segments are open.

    Reward on every step, with the segment read from the torso's x (before the course counts as the first
    segment, after it as the last), ``v`` the forward (x) velocity of the Humanoid's centre of mass over the step
    (as Humanoid-v5's ``x_velocity``, the ceilings excluded) and ``a`` the action::

        reward = pays * (healthy_reward * min(v / bonus_velocity, 1) + forward_reward_weight * v)
                 - ctrl_cost_weight * |a|^2

    ``pays`` is 1 when the torso height suits the segment (walk: torso z >= ``walk_height``, 1.0 as Humanoid-v5's
    healthy range; crawl: torso z <= ``crawl_height``, 0.8, low enough for the head to pass under the ceiling) and 0
    otherwise. The alive bonus is earned by progress: the full ``healthy_reward`` at ``v >= bonus_velocity``, less
    in proportion below, none standing or lying still, and negative moving backwards, so that standing still on a
    walk segment or lying still on a crawl segment earns nothing, and (the bonus being concave in ``v``) neither
    does swaying back and forth in place. Defaults: ``healthy_reward`` 5.0, ``forward_reward_weight`` 1.25 and
    ``ctrl_cost_weight`` 0.1 are Humanoid-v5's, ``bonus_velocity`` 0.5 m/s. No early termination; 1000 steps
    (registered ``TimeLimit``). The task is latent: the agent meets the ceilings (and feels them in its contact
    forces) but is not told the sequence.

    Split: of the ``2 ** n_segments`` sequences (in binary order, walk = 0), every fourth starting with the
    second is held out: for 3 segments ``("walk", "walk", "crawl")`` and ``("crawl", "walk", "crawl")``; the
    6 others are for training.

    Observation: Humanoid-v5's with the torso's x and y kept (350 numbers). Action: Humanoid-v5's (17 torques
    in [-0.4, 0.4]).

    :param n_segments: Number of segments of the course.
    :param segment_length: Length of a segment along x, in metres.
    :param course_start: x at which the first segment (and its ceiling, if any) begins.
    :param ceiling_height: Height of the underside of the ceilings.
    :param crawl_height: A crawl-segment step pays only with the torso at or below this height.
    :param walk_height: A walk-segment step pays only with the torso at or above this height.
    :param healthy_reward: The alive bonus of a paying step at ``bonus_velocity`` or faster.
    :param bonus_velocity: Forward velocity (m/s) of the centre of mass from which a paying step earns the whole
        alive bonus; below it the bonus is ``healthy_reward * v / bonus_velocity``.
    :param forward_reward_weight: Weight of the forward velocity in a paying step.
    :param ctrl_cost_weight: Weight of the squared-action penalty (always paid).
    :param render_mode: ``"rgb_array"`` (needs an offscreen GL backend, e.g. ``MUJOCO_GL=egl``), or ``None``.
    :param humanoid_kwargs: Passed on to :class:`gymnasium.envs.mujoco.humanoid_v5.HumanoidEnv`.
    """

    def __init__(
        self,
        n_segments: int = 3,
        segment_length: float = 4.0,
        course_start: float = 1.0,
        ceiling_height: float = 1.0,
        crawl_height: float = 0.8,
        walk_height: float = 1.0,
        healthy_reward: float = 5.0,
        bonus_velocity: float = 0.5,
        forward_reward_weight: float = 1.25,
        ctrl_cost_weight: float = 0.1,
        render_mode: str | None = None,
        **humanoid_kwargs: Any,
    ):
        if n_segments < 1:
            raise ValueError(f"n_segments must be at least 1, got {n_segments}.")
        if bonus_velocity <= 0:
            raise ValueError(f"bonus_velocity must be positive, got {bonus_velocity}.")
        self.bonus_velocity = bonus_velocity
        self.n_segments = n_segments
        self.segment_length = segment_length
        self.course_start = course_start
        self.ceiling_height = ceiling_height
        self.crawl_height = crawl_height
        self.walk_height = walk_height
        self.all_tasks: tuple[tuple[str, ...], ...] = tuple(itertools.product(SEGMENT_TYPES, repeat=n_segments))
        self.test_tasks = self.all_tasks[1::4]
        self.train_tasks = tuple(task for task in self.all_tasks if task not in self.test_tasks)
        self.task: tuple[str, ...] = self.train_tasks[0]
        self._next_task = self.task
        humanoid_kwargs.setdefault("exclude_current_positions_from_observation", False)
        humanoid_kwargs.setdefault("terminate_when_unhealthy", False)
        humanoid_kwargs.setdefault(
            "default_camera_config",
            {"trackbodyid": 1, "distance": 8.0, "lookat": np.array((2.0, 0.0, 1.0)), "elevation": -20.0},
        )
        super().__init__(
            xml_file=os.path.join(GYMNASIUM_ASSETS, "humanoid.xml"),
            healthy_reward=healthy_reward,
            forward_reward_weight=forward_reward_weight,
            ctrl_cost_weight=ctrl_cost_weight,
            render_mode=render_mode,
            **humanoid_kwargs,
        )
        self._ezpickle_args = ()
        self._ezpickle_kwargs = {
            "n_segments": n_segments,
            "segment_length": segment_length,
            "course_start": course_start,
            "ceiling_height": ceiling_height,
            "crawl_height": crawl_height,
            "walk_height": walk_height,
            "healthy_reward": healthy_reward,
            "bonus_velocity": bonus_velocity,
            "forward_reward_weight": forward_reward_weight,
            "ctrl_cost_weight": ctrl_cost_weight,
            "render_mode": render_mode,
            **humanoid_kwargs,
        }
        self._ceiling_ids = np.array([self.model.body(f"ceiling{i}").id for i in range(n_segments)], dtype=np.int64)
        self._parked_pos = self.model.body_pos[self._ceiling_ids].copy()
        # The ceilings' mocap bodies come after the Humanoid's: the observation keeps Humanoid-v5's bodies only.
        self._robot_bodies = slice(1, self.model.nbody - n_segments)
        self._step_dt = self.dt
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=self._get_obs().shape, dtype=np.float64)
        self._apply_task()

    def _get_obs(self) -> np.ndarray:
        # Views of MjData (ravel of contiguous rows copies nothing), copied once by the concatenation.
        data, bodies = self.data, self._robot_bodies
        parts = [data.qpos[2:] if self._exclude_current_positions_from_observation else data.qpos, data.qvel]
        if self._include_cinert_in_observation:
            parts.append(data.cinert[bodies].ravel())
        if self._include_cvel_in_observation:
            parts.append(data.cvel[bodies].ravel())
        if self._include_qfrc_actuator_in_observation:
            parts.append(data.qfrc_actuator[6:])
        if self._include_cfrc_ext_in_observation:
            parts.append(data.cfrc_ext[bodies].ravel())
        return np.concatenate(parts)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        spec = mujoco.MjSpec.from_file(self.fullpath)
        add_box_pool(spec, "ceiling", self.n_segments, (self.segment_length / 2.0, 3.0, 0.1), (0.45, 0.35, 0.3, 1.0))
        return compile_model(spec, self.fullpath, self.width, self.height)

    # Task protocol
    def sample_tasks(self, n: int, split: str | None = None) -> list[tuple[str, ...]]:
        """
        :param n: Number of tasks.
        :param split: ``"train"``, ``"test"`` (the held-out sequences) or ``None`` (all ``2 ** n_segments``).
        :return: ``n`` segment sequences drawn uniformly from the split.
        """
        check_split(split)
        tasks = {None: self.all_tasks, "train": self.train_tasks, "test": self.test_tasks}[split]
        return [tasks[int(index)] for index in self.np_random.integers(len(tasks), size=n)]

    def set_task(self, task: tuple[str, ...]) -> None:
        """
        :param task: A sequence of ``n_segments`` segment types, each ``"walk"`` or ``"crawl"``, from the next reset on.
        """
        if isinstance(task, str) or not isinstance(task, (tuple, list)) or tuple(task) not in self.all_tasks:
            raise ValueError(
                f"A HumanoidWalkCrawl task is a tuple of {self.n_segments} segment types, each 'walk' or 'crawl' "
                f"(e.g. {self.all_tasks[2]!r}), got {task!r}."
            )
        self._next_task = tuple(task)

    def _apply_task(self) -> None:
        # Segment types as plain ints (0 walk, 1 crawl): the step reads one per call, faster than from an array.
        self._crawl_list = [SEGMENT_TYPES.index(kind) for kind in self.task]
        positions = self._parked_pos.copy()
        for index in np.flatnonzero(self._crawl_list):
            positions[index] = (self.course_start + (index + 0.5) * self.segment_length, 0.0, self.ceiling_height + 0.1)
        place_boxes(self.model, self.data, self._ceiling_ids, positions)

    def segment_at(self, x: float) -> int:
        """
        :param x: A position along the course.
        :return: Index of the segment there (before the course: 0; after it: the last).
        """
        return min(max(int((x - self.course_start) // self.segment_length), 0), self.n_segments - 1)

    # As AntNavigationEnv.step: gymnasium's MujocoEnv.step annotation is narrower than gymnasium.Env.step's contract.
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:  # type: ignore[override]
        data = self.data
        # The centre of mass of the Humanoid: MuJoCo's subtree centre of mass of its root body, i.e. Humanoid-v5's
        # mass_center (mass-weighted body positions) without the ceilings, whose 4.8 t mocap boxes would swamp it.
        x_before = float(data.subtree_com[1, 0])
        self.do_simulation(action, self.frame_skip)
        x_velocity = (float(data.subtree_com[1, 0]) - x_before) / self._step_dt
        x, height = float(data.qpos[0]), float(data.qpos[2])
        segment = min(max(int((x - self.course_start) // self.segment_length), 0), self.n_segments - 1)
        crawl = self._crawl_list[segment]
        pays = height <= self.crawl_height if crawl else height >= self.walk_height
        ctrl = data.ctrl
        ctrl_cost = self._ctrl_cost_weight * float(np.dot(ctrl, ctrl))
        if pays:
            bonus = self._healthy_reward * min(x_velocity / self.bonus_velocity, 1.0)
            forward = self._forward_reward_weight * x_velocity
        else:
            bonus = forward = 0.0
        reward = bonus + forward - ctrl_cost
        info = {
            "task": self.task,
            "segment": segment,
            "segment_type": SEGMENT_TYPES[crawl],
            "pays": pays,
            "x_position": x,
            "x_velocity": x_velocity,
            "height": height,
            "reward_bonus": bonus,
            "reward_forward": forward,
            "reward_ctrl": -ctrl_cost,
        }
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), reward, False, False, info
