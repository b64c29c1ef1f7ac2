"""The task families of ``mlsh_envs``: task protocol, spaces, splits, determinism, rewards, rendering."""

import os
import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from markers import family_params
from stable_baselines3.common.env_checker import check_env

import mlsh_envs
from mlsh_envs import (
    AntMazeEnv,
    AntMovementEnv,
    AntObstacleCourseEnv,
    AntTwowalkEnv,
    FourRoomsEnv,
    HumanoidWalkCrawlEnv,
    KeyDoorEnv,
    evaluate_oracle,
    evaluate_policy_fn,
)
from sb3_mlsh import make_task_sampler

EPISODE_STEPS = {
    "mlsh/KeyDoor-v0": 100,
    "mlsh/FourRooms-v0": 100,
    "mlsh/FourRoomsAllGoals-v0": 100,
    "mlsh/AntTwowalk-v0": 1000,
    "mlsh/AntMovement-v0": 1000,
    "mlsh/AntMaze-v0": 1000,
    "mlsh/AntObstacleCourse-v0": 2000,
    "mlsh/HumanoidWalkCrawl-v0": 1000,
}
ENV_IDS = tuple(EPISODE_STEPS)
GRID_IDS = ("mlsh/KeyDoor-v0", "mlsh/FourRooms-v0", "mlsh/FourRoomsAllGoals-v0")
MUJOCO_IDS = tuple(env_id for env_id in ENV_IDS if env_id not in GRID_IDS)
#: Families whose distribution has more than two tasks, so that train and test are disjoint subsets.
SPLIT_IDS = (
    "mlsh/FourRooms-v0",
    "mlsh/FourRoomsAllGoals-v0",
    "mlsh/AntMaze-v0",
    "mlsh/AntObstacleCourse-v0",
    "mlsh/HumanoidWalkCrawl-v0",
)
#: Something that is not a task of the family.
BAD_TASKS = {
    "mlsh/KeyDoor-v0": [2, -1, "0"],
    "mlsh/FourRooms-v0": [(0, 0), (7, 9, 1), 5, "a", (1.5, 1)],
    "mlsh/FourRoomsAllGoals-v0": [(0, 0), (7, 9, 1), 5, "a", (1.5, 1)],
    "mlsh/AntTwowalk-v0": [2, (5, 0), None],
    "mlsh/AntMovement-v0": [2, -1, True, (1, 0)],
    "mlsh/AntMaze-v0": [6, -1, True, 1.0],
    "mlsh/AntObstacleCourse-v0": [6, -1, "1"],
    "mlsh/HumanoidWalkCrawl-v0": [("walk", "crawl"), ("walk", "jump", "walk"), "walk", 3],
}


def _rollout(env: gym.Env, task, actions, seed: int = 0) -> tuple[float, np.ndarray]:
    env.unwrapped.set_task(task)
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for action in actions:
        obs, reward, terminated, _, _ = env.step(action)
        total += float(reward)
        assert not terminated
    return total, obs


def _actions(env: gym.Env, n: int, seed: int = 0) -> list:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(n)]


@pytest.mark.parametrize("env_id", family_params(ENV_IDS))
def test_registered(env_id):
    assert env_id in mlsh_envs.ENV_IDS
    env = gym.make(env_id)
    assert env.spec.max_episode_steps == EPISODE_STEPS[env_id]
    env.close()


@pytest.mark.parametrize("env_id", family_params(ENV_IDS))
def test_check_env(env_id):
    env = gym.make(env_id).unwrapped
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*symmetric and normalized Box action space.*")
        check_env(env)
    env.close()


@pytest.mark.parametrize("env_id", family_params(ENV_IDS))
def test_task_protocol(env_id):
    env = gym.make(env_id)
    env.reset(seed=0)
    unwrapped = env.unwrapped
    tasks = unwrapped.sample_tasks(50)
    assert len(tasks) == 50
    assert pickle.loads(pickle.dumps(tasks)) == tasks
    distinct = sorted(set(tasks), key=repr)
    assert len(distinct) >= 2
    for task in distinct[:4]:
        unwrapped.set_task(task)
        obs, info = env.reset()
        assert unwrapped.get_task() == task and info["task"] == task
        assert obs in env.observation_space
        obs, *_ = env.step(env.action_space.sample())
        assert obs in env.observation_space
    # set_task takes effect from the next reset only.
    before = unwrapped.get_task()
    unwrapped.set_task(distinct[0] if before != distinct[0] else distinct[1])
    assert unwrapped.get_task() == before
    env.reset()
    assert unwrapped.get_task() != before
    for bad in BAD_TASKS[env_id]:
        with pytest.raises(ValueError, match="task is"):
            unwrapped.set_task(bad)
    with pytest.raises(ValueError, match="split"):
        unwrapped.sample_tasks(1, split="validation")
    env.close()


@pytest.mark.parametrize("env_id", family_params(ENV_IDS))
def test_spaces_do_not_depend_on_task(env_id):
    first = gym.make(env_id)
    first.reset(seed=0)
    for task in sorted(set(first.unwrapped.sample_tasks(40)), key=repr):
        env = gym.make(env_id)
        env.unwrapped.set_task(task)
        obs, _ = env.reset(seed=1)
        assert env.observation_space == first.observation_space and env.action_space == first.action_space
        assert obs.shape == first.observation_space.shape
        env.close()
    first.close()


@pytest.mark.parametrize("env_id", family_params(SPLIT_IDS))
def test_splits_are_disjoint(env_id):
    env = gym.make(env_id)
    env.reset(seed=0)
    sample = env.unwrapped.sample_tasks
    train, test, every = set(sample(400, split="train")), set(sample(400, split="test")), set(sample(800))
    assert train and test
    assert not train & test
    assert train | test == every


@pytest.mark.parametrize("env_id", family_params(ENV_IDS))
def test_seeded_reset_is_deterministic(env_id):
    env = gym.make(env_id)
    env.reset(seed=0)
    task = env.unwrapped.sample_tasks(1)[0]
    actions = _actions(env, 15)
    runs = []
    for _ in range(2):
        env.unwrapped.set_task(task)
        obs, _ = env.reset(seed=7)
        trajectory = [obs]
        for action in actions:
            obs, reward, *_ = env.step(action)
            trajectory.extend([obs, np.array([reward])])
        runs.append(np.concatenate([np.ravel(x) for x in trajectory]))
    np.testing.assert_array_equal(runs[0], runs[1])
    env.close()


def test_keydoor_tasks_differ_and_oracle():
    env = gym.make("mlsh/KeyDoor-v0").unwrapped
    env.set_task(0)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (9,) and obs[-1] == 0.0
    actions, total = [], 0.0
    for _ in range(100):
        actions.append(env.oracle_action(obs))
        obs, reward, *_ = env.step(actions[-1])
        total += reward
    assert obs[-1] == 1.0 and total > 10
    other, _ = _rollout(env, 1, actions, seed=3)
    assert other != total
    # No reward without the key: walk straight to the goal, avoiding the key.
    env.set_task(0)
    env.reset(seed=3)
    env.key = np.array([-1000.0, -1000.0])
    env.agent = env.goals[0].copy()
    assert env.step(0)[1] == 0.0
    env.has_key = True
    assert env.step(0)[1] == 1.0


def test_fourrooms_layout_tasks_differ_and_oracle():
    env = gym.make("mlsh/FourRoomsAllGoals-v0").unwrapped
    assert env.n_cells == 104 and env.observation_space.shape == (104,)
    assert len(env.test_goals) == 20 and not set(env.test_goals) & set(env.train_goals)
    obs, _ = env.reset(seed=0)
    assert obs.sum() == 1.0 and env.cells[int(np.argmax(obs))] == FourRoomsEnv.START
    goal_a, goal_b = (3, 9), (10, 3)
    env.set_task(goal_a)
    obs, _ = env.reset(seed=5)
    actions, total = [], 0.0
    for _ in range(100):
        actions.append(env.oracle_action(obs))
        obs, reward, *_ = env.step(actions[-1])
        total += reward
    other, _ = _rollout(env, goal_b, actions, seed=5)
    assert total > 30 and other < total
    # Slips: with slip_prob=0, moves are exact; into a wall the agent stays.
    exact = FourRoomsEnv(slip_prob=0.0)
    exact.reset(seed=0)
    exact.step(3)  # right, from the hallway (7, 9) into the wall (7, 10)
    assert exact.cells[exact.agent] == (7, 9)
    exact.step(0)
    assert exact.cells[exact.agent] == (6, 9)


def test_oracles_beat_random():
    for env_id in GRID_IDS:
        oracle, _ = evaluate_oracle(env_id, n_episodes=10)
        random, _ = evaluate_policy_fn(env_id, lambda env, obs: env.action_space.sample(), n_episodes=10)
        assert oracle > random + 10, env_id


@pytest.mark.mujoco
def test_ant_twowalk_tasks_differ():
    env = gym.make("mlsh/AntTwowalk-v0")
    actions = _actions(env, 20)
    returns = [_rollout(env, task, actions)[0] for task in (0, 1)]
    assert returns[0] != returns[1] and max(returns) < 0
    unwrapped = env.unwrapped
    np.testing.assert_allclose(unwrapped.data.geom_xpos[unwrapped._marker_id][:2], (0.0, 5.0))
    assert unwrapped.model.geom_contype[unwrapped._marker_id] == 0 == unwrapped.model.geom_conaffinity[unwrapped._marker_id]
    assert env.observation_space.shape == (107,)
    scaled = AntTwowalkEnv(distance_weight=1 / 3000, distance_exponent=0.5)
    scaled.reset(seed=0)
    assert -0.002 < scaled.step(np.zeros(8))[1] < 0


@pytest.mark.mujoco
def test_ant_movement_rewards_direction_and_lateral_position():
    env = AntMovementEnv()
    assert env.observation_space.shape == (107,)

    def first_step(
        task: int, xy: tuple[float, float], velocity: tuple[float, float], action: np.ndarray
    ) -> tuple[float, dict]:
        # One step from the reset's Ant moved to ``xy`` with the torso's velocity set: its reward and info.
        env.set_task(task)
        env.reset(seed=0)
        qpos = env.data.qpos.copy()
        qpos[:2] = xy
        qvel = np.zeros(env.model.nv)
        qvel[:2] = velocity
        env.set_state(qpos, qvel)
        _, reward, terminated, truncated, info = env.step(action)
        assert not terminated and not truncated and info["task"] == task
        # The reward from the torso's move over the step: velocity along the task's direction (+x for 0, +y for 1),
        # minus 0.5 x the distance across it (|y| for 0, |x| for 1), minus 0.1 |a|^2.
        along, across = (0, 1) if task == 0 else (1, 0)
        moved = np.array([info["x_position"], info["y_position"]]) - np.array(xy)
        expected = moved[along] / env.dt - 0.5 * abs(info[("x_position", "y_position")[across]]) - 0.1 * np.sum(action**2)
        assert reward == pytest.approx(expected, abs=1e-9)
        assert info["progress"] == pytest.approx(info[("x_position", "y_position")[along]])
        assert info["lateral"] == pytest.approx(abs(info[("x_position", "y_position")[across]]))
        return reward, info

    zero, unit = np.zeros(8), np.ones(8)
    # Moving along +x at 1 m/s pays about 1 per step under task 0, about nothing under task 1 (and the other way round).
    forward, info = first_step(0, (0.0, 0.0), (1.0, 0.0), zero)
    sideways, _ = first_step(1, (0.0, 0.0), (1.0, 0.0), zero)
    assert info["x_position"] > 0.03 and forward > 0.7 and abs(sideways) < 0.3 and forward > sideways + 0.7
    up, _ = first_step(1, (0.0, 0.0), (0.0, 1.0), zero)
    across, _ = first_step(0, (0.0, 0.0), (0.0, 1.0), zero)
    assert up > 0.7 and abs(across) < 0.3
    backwards, _ = first_step(0, (0.0, 0.0), (-1.0, 0.0), zero)
    assert backwards < -0.7
    # The same move 2 m off the line costs 0.5 * 2 = 1 (the floor is flat: the physics is the same there); 2 m along
    # the line, or off the other task's line, costs nothing.
    for offset in ((0.0, 2.0), (0.0, -2.0)):
        off_line, info = first_step(0, offset, (1.0, 0.0), zero)
        assert info["lateral"] == pytest.approx(2.0, abs=0.05)
        assert forward - off_line == pytest.approx(1.0, abs=0.05)
    on_line, info = first_step(0, (2.0, 0.0), (1.0, 0.0), zero)
    assert info["lateral"] < 0.05 and on_line == pytest.approx(forward, abs=0.05)
    off_line, _ = first_step(1, (2.0, 0.0), (0.0, 1.0), zero)
    assert up - off_line == pytest.approx(1.0, abs=0.05)
    # Zero torques cost nothing, a unit action 0.1 * 8.
    assert first_step(0, (0.0, 0.0), (0.0, 0.0), zero)[1]["control_cost"] == 0.0
    assert first_step(0, (0.0, 0.0), (0.0, 0.0), unit)[1]["control_cost"] == pytest.approx(0.8)
    # The marker stands far along the task's direction and does not collide.
    np.testing.assert_allclose(env.data.geom_xpos[env._marker_id][:2], (10.0, 0.0))
    env.set_task(1)
    env.reset(seed=0)
    np.testing.assert_allclose(env.data.geom_xpos[env._marker_id][:2], (0.0, 10.0))
    assert env.model.geom_contype[env._marker_id] == 0 == env.model.geom_conaffinity[env._marker_id]


@pytest.mark.mujoco
def test_ant_maze_tasks_differ_and_blocks_collide():
    env = gym.make("mlsh/AntMaze-v0")
    actions = _actions(env, 20)
    returns = [_rollout(env, task, actions)[0] for task in (1, 2)]
    assert returns[0] != returns[1]
    assert env.observation_space.shape == (107,)
    maze = AntMazeEnv()
    heights = []
    for layout in (0, 3):  # layout 0 has a block in cell (1, 0), layout 3 not
        maze.set_task(layout)
        maze.reset(seed=0)
        qpos = maze.data.qpos.copy()
        qpos[:3] = (4.0, 0.0, 2.8)  # drop the Ant over cell (1, 0)
        maze.set_state(qpos, np.zeros(maze.model.nv))
        for _ in range(30):
            maze.step(np.zeros(8))
        heights.append(maze.data.qpos[2])
    assert heights[0] > 2.0 > 1.0 > heights[1]


@pytest.mark.mujoco
def test_ant_obstacle_course_tasks_differ():
    env = AntObstacleCourseEnv()
    returns = []
    for course in (0, 1):
        env.set_task(course)
        env.reset(seed=0)
        qpos = env.data.qpos.copy()
        qpos[:2] = (15.0, 15.0)  # 1.4 m from the goal of course 0, far from that of course 1
        env.set_state(qpos, np.zeros(env.model.nv))
        returns.append(sum(env.step(np.zeros(8))[1] for _ in range(10)))
    assert returns == [10.0, 0.0]
    assert env.observation_space.shape == (107,)


@pytest.mark.mujoco
def test_restand_every_stands_a_flipped_ant_up_where_it_is_and_keeps_snapshots_exact():
    heights = []
    for restand_every in (None, 5):
        env = AntObstacleCourseEnv(restand_every=restand_every)
        env.reset(seed=0)
        qpos = env.data.qpos.copy()
        qpos[:3] = (3.0, -2.0, 0.4)
        qpos[3:7] = (0.0, 1.0, 0.0, 0.0)  # on its back: turned by pi about x
        env.set_state(qpos, np.zeros(env.model.nv))
        infos = [env.step(np.zeros(8))[4] for _ in range(5)]
        heights.append(env.data.qpos[2])
        if restand_every is None:
            assert not any("restood" in info for info in infos)
            continue
        assert ["restood" in info for info in infos] == [False] * 4 + [True]
        np.testing.assert_allclose(env.data.qpos[:2], (infos[-1]["x_position"], infos[-1]["y_position"]))
        np.testing.assert_allclose(env.data.qpos[2:], env.init_qpos[2:])
        assert not env.data.qvel.any()
        state = env.get_episode_state()  # the step count lives in the simulated time, which the snapshot holds
        first = [env.step(np.full(8, 0.3))[4].get("restood", False) for _ in range(10)]
        env.set_episode_state(state)
        again = [env.step(np.full(8, 0.3))[4].get("restood", False) for _ in range(10)]
        assert first == again == [False] * 4 + [True] + [False] * 4 + [True]
    assert heights[1] > 0.7 > heights[0] + 0.1
    assert gym.make("mlsh/AntObstacleCourse-v0", restand_every=200).unwrapped.restand_every == 200
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="restand_every"):
            AntObstacleCourseEnv(restand_every=bad)


@pytest.mark.mujoco
def test_humanoid_walk_crawl_tasks_differ_and_ceilings():
    env = gym.make("mlsh/HumanoidWalkCrawl-v0")
    # With zero torques the Humanoid collapses and drifts back: a crawl segment pays (negatively) for that drift
    # while it lies there, a walk segment pays only for the fall's first, upright steps.
    actions = [np.zeros(17)] * 200
    walk, _ = _rollout(env, ("walk", "crawl", "walk"), actions)
    crawl, _ = _rollout(env, ("crawl", "walk", "walk"), actions)
    assert walk != crawl
    unwrapped: HumanoidWalkCrawlEnv = env.unwrapped
    assert env.observation_space.shape == (350,)
    assert unwrapped.segment_at(-5.0) == 0 and unwrapped.segment_at(6.0) == 1 and unwrapped.segment_at(99.0) == 2
    # A standing Humanoid moved under the ceiling of the crawl segment touches it; on an open segment not.
    ceilings = set(unwrapped._ceiling_ids.tolist())
    for x, touches in ((7.0, True), (3.0, False)):
        unwrapped.set_task(("walk", "crawl", "walk"))
        env.reset(seed=0)
        qpos = unwrapped.data.qpos.copy()
        qpos[0] = x
        unwrapped.set_state(qpos, np.zeros(unwrapped.model.nv))
        contacts = unwrapped.data.contact
        bodies = unwrapped.model.geom_bodyid
        touched = any(
            {int(bodies[g1]), int(bodies[g2])} & ceilings for g1, g2 in zip(contacts.geom1, contacts.geom2, strict=True)
        )
        assert touched == touches


@pytest.mark.mujoco
def test_humanoid_walk_crawl_pays_progress_not_standing_or_lying_still():
    env = gym.make("mlsh/HumanoidWalkCrawl-v0")
    unwrapped: HumanoidWalkCrawlEnv = env.unwrapped
    # Lying still (the collapsed Humanoid, zero torques) in a crawl segment earns about nothing, not the alive bonus.
    zero_return, _ = _rollout(env, ("crawl", "walk", "walk"), [np.zeros(17)] * 150)
    lying = unwrapped.data.qpos.copy()
    assert lying[2] < unwrapped.crawl_height
    rest = []
    for _ in range(20):
        _, reward, _, _, info = env.step(np.zeros(17))
        assert info["segment_type"] == "crawl" and info["pays"]
        rest.append(reward)
    assert abs(np.mean(rest)) < 0.5
    assert zero_return < 150 * 0.5
    # The same lying (crawl segment) and the reset's standing (walk segment) Humanoid, at rest or moved forward at
    # 1 m/s through the root's velocity: progress earns about the alive bonus plus the forward reward, rest nothing.
    unwrapped.set_task(("walk", "crawl", "walk"))
    for x, qpos, segment_type in ((3.0, None, "walk"), (7.0, lying, "crawl")):
        rewards = []
        for speed in (0.0, 1.0):
            env.reset(seed=0)
            qpos = unwrapped.data.qpos.copy() if qpos is None else qpos.copy()
            qpos[0] = x
            qvel = np.zeros(unwrapped.model.nv)
            qvel[0] = speed
            unwrapped.set_state(qpos, qvel)
            _, reward, _, _, info = env.step(np.zeros(17))
            assert info["segment_type"] == segment_type and info["pays"]
            rewards.append(reward)
        at_rest, moving = rewards
        assert abs(at_rest) < 0.1
        assert moving > at_rest + 5.0  # 5 (alive bonus, from 0.5 m/s) + 1.25 * v
    # Backing off pays less than standing still: swaying in place earns nothing on average.
    env.reset(seed=0)
    qvel = np.zeros(unwrapped.model.nv)
    qvel[0] = -0.25
    unwrapped.set_state(unwrapped.data.qpos.copy(), qvel)
    assert env.step(np.zeros(17))[1] < -2.0


@pytest.mark.parametrize("env_id", GRID_IDS)
def test_render_grid(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


_RENDER_SCRIPT = """
import gymnasium as gym, mlsh_envs
env = gym.make({env_id!r}, render_mode="rgb_array", width=64, height=64)
env.reset(seed=0)
image = env.render()
assert image.shape == (64, 64, 3) and image.std() > 0, image.shape
print("rendered")
"""


@pytest.mark.mujoco
@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_render_mujoco(env_id):
    # Rendering needs an offscreen GL backend (MUJOCO_GL=egl, or osmesa); it is chosen when mujoco is imported,
    # so try it in a fresh interpreter and skip where none works.
    backends = [os.environ["MUJOCO_GL"]] if os.environ.get("MUJOCO_GL") else ["egl", "osmesa"]
    errors = []
    for backend in backends:
        result = subprocess.run(
            [sys.executable, "-c", _RENDER_SCRIPT.format(env_id=env_id)],
            env={**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode == 0 and "rendered" in result.stdout:
            return
        errors.append(f"MUJOCO_GL={backend}: {result.stderr.strip().splitlines()[-1:] or result.returncode}")
    pytest.skip(f"No offscreen GL backend works here (install libegl1 or libosmesa6): {errors}")


@pytest.mark.parametrize("env_id", family_params(ENV_IDS))
def test_task_sampler(env_id):
    for split in ("train", "test"):
        sampler = make_task_sampler(env_id, split=split, seed=0)
        tasks = sampler.sample(3)
        assert tasks == make_task_sampler(env_id, split=split, seed=0).sample(3)
        env = sampler.make_env()
        env.unwrapped.set_task(tasks[0])
        env.reset(seed=0)
        env.close()
        sampler.close()


@pytest.mark.mujoco
def test_models_are_built_once():
    # Tasks move geoms through model arrays: switching tasks keeps the very same compiled model.
    for cls in (AntMazeEnv, AntObstacleCourseEnv, KeyDoorEnv):
        env = cls()
        model = getattr(env, "model", None)
        for task in range(2):
            env.set_task(task)
            env.reset(seed=task)
        assert getattr(env, "model", None) is model
    assert isinstance(AntMazeEnv().model, mujoco.MjModel)


@pytest.mark.parametrize(
    ("env_id", "n_train", "n_test"), [("mlsh/FourRooms-v0", 17, 4), ("mlsh/FourRoomsAllGoals-v0", 83, 20)]
)
def test_fourrooms_splits_are_disjoint_and_never_the_start(env_id, n_train, n_test):
    env = gym.make(env_id).unwrapped
    train, test = set(env.train_goals), set(env.test_goals)
    assert (len(train), len(test)) == (n_train, n_test) and not train & test
    assert FourRoomsEnv.START not in train | test
    drawn = {split: set(map(tuple, env.sample_tasks(2000, split=split))) for split in ("train", "test", None)}
    assert drawn == {"train": train, "test": test, None: train | test}
    assert all(env.walls[cell] == 0 for cell in train | test)


def test_fourrooms_paper_goals_are_the_south_east_room_and_its_hallway():
    env = gym.make("mlsh/FourRooms-v0").unwrapped
    goals = set(env.train_goals) | set(env.test_goals)
    room = {(row, col) for row in range(8, 12) for col in range(7, 12)}
    assert goals == room | {(10, 6)}
    # The held-out goals lie inside the room itself, not in the hallway.
    assert set(env.test_goals) <= room


def test_fourrooms_slip_rules():
    # "after": the move happens, then the slip; "replace": the slip instead of the move. From the start (7, 9), a move
    # up reaches (6, 9); a slip after it lands on a neighbour of (6, 9), a slip instead on a neighbour of (7, 9).
    for rule, origin in (("after", (6, 9)), ("replace", (7, 9))):
        env = FourRoomsEnv(slip_prob=1.0, slip_rule=rule)
        landed = set()
        for seed in range(40):
            env.reset(seed=seed)
            env.step(0)
            landed.add(env.cells[env.agent])
        assert all(abs(r - origin[0]) + abs(c - origin[1]) == 1 for r, c in landed), (rule, landed)
    with pytest.raises(ValueError, match="slip_rule must be"):
        FourRoomsEnv(slip_rule="before")
    with pytest.raises(ValueError, match="goals must be"):
        FourRoomsEnv(goals="north")
