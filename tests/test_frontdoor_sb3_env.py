"""SB3's ``env`` argument: MLSH("MlpPolicy", env=...) and MLSH.load(path, env=vec_env), then SB3's evaluation and video."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from toy_envs import ToyTaskEnv

import mlsh_envs  # noqa: F401  (registers the task families for gym.make)
from sb3_mlsh import MLSH, TaskSampler

BANDITS = "mlsh/MovementBandits-v0"
SMALL = dict(n_steps=50, warmup_iterations=1, seed=0)


def bandit_envs(n: int, **kwargs) -> DummyVecEnv:
    return DummyVecEnv([lambda: Monitor(gym.make(BANDITS, **kwargs)) for _ in range(n)])


@pytest.mark.parametrize(
    "tasks", [BANDITS, lambda: gym.make(BANDITS), TaskSampler(BANDITS)], ids=["env id", "env factory", "TaskSampler"]
)
def test_env_is_sb3s_name_for_the_tasks(tasks):
    model = MLSH("MlpPolicy", env=tasks, n_envs=2, **SMALL)
    assert model.task_sampler.sample(1)[0] in (0, 1)
    model.learn(100)
    assert model.num_timesteps == 100


def test_the_tasks_are_asked_for_in_one_line():
    with pytest.raises(TypeError, match=r"MLSH\(\) needs the tasks: .*env='mlsh/MovementBandits-v0'"):
        MLSH("MlpPolicy")
    with pytest.raises(TypeError, match="give the tasks once"):
        MLSH("MlpPolicy", BANDITS, env=BANDITS)


def test_a_vec_env_of_the_family_is_trained_on_with_its_tasks_set_through_env_method():
    envs = bandit_envs(3)
    model = MLSH("MlpPolicy", env=envs, **SMALL)
    assert model.get_env() is envs and model.n_envs == 3
    assert model.task_sampler.env_id == BANDITS  # the tasks are drawn from the envs' registered id
    model.learn(300)
    assert envs.env_method("get_task") == [model.schedule.groups[0].task] * 3
    one = MLSH("MlpPolicy", env=gym.make(BANDITS), **SMALL)  # one env is wrapped, as SB3 does
    assert one.n_envs == 1


def test_envs_of_another_family_or_without_tasks_are_refused(tmp_path):
    key_door = DummyVecEnv([lambda: gym.make("mlsh/KeyDoor-v0")])
    with pytest.raises(ValueError, match=r"observation_space .* but the tasks of 'mlsh/MovementBandits-v0' have"):
        MLSH("MlpPolicy", BANDITS, env=key_door, **SMALL)
    MLSH("MlpPolicy", BANDITS, n_envs=1, **SMALL).save(tmp_path / "bandits.zip")
    with pytest.raises(ValueError, match=r"observation_space .* but the tasks of 'mlsh/MovementBandits-v0' have"):
        MLSH.load(tmp_path / "bandits.zip", env=key_door)
    with pytest.raises(TypeError, match="does not implement the task protocol"):
        MLSH("MlpPolicy", env=DummyVecEnv([lambda: gym.make("CartPole-v1")]), **SMALL)
    with pytest.raises(TypeError, match=r"no registered id .*TaskSampler\(your_env_factory\), env=vec_env"):
        MLSH("MlpPolicy", env=DummyVecEnv([ToyTaskEnv]), **SMALL)
    assert MLSH("MlpPolicy", TaskSampler(ToyTaskEnv, split=None), env=DummyVecEnv([ToyTaskEnv]), **SMALL).n_envs == 1
    with pytest.raises(ValueError, match="monitor_dir is for the envs MLSH builds"):
        MLSH("MlpPolicy", env=bandit_envs(1), monitor_dir=str(tmp_path), **SMALL)


def test_load_with_a_vec_env_adapts_on_it_and_sb3_evaluates_it(tmp_path):
    model = MLSH("MlpPolicy", BANDITS, n_envs=2, **SMALL)
    model.learn(200)
    model.save(tmp_path / "bandits.zip")
    envs = bandit_envs(4)
    loaded = MLSH.load(tmp_path / "bandits.zip", env=envs)
    assert loaded.get_env() is envs and loaded.n_envs == 4
    # The sub-policies are the saved ones, whatever the envs.
    for saved, restored in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values()):
        assert np.array_equal(saved.cpu().numpy(), restored.cpu().numpy())
    loaded.adapt(1, 200)
    assert envs.env_method("get_task") == [1, 1, 1, 1]
    mean, std = evaluate_policy(loaded, envs, n_eval_episodes=4)
    assert np.isfinite(mean) and np.isfinite(std)
    # The same envs' episodes are MLSH's: an evaluation through SB3 sees what predict does.
    episode_rewards, lengths = evaluate_policy(loaded, envs, n_eval_episodes=4, return_episode_rewards=True)
    assert len(episode_rewards) == 4 and set(lengths) == {50}


def test_the_adapted_master_is_filmed_through_sb3s_vec_video_recorder(tmp_path):
    pytest.importorskip("moviepy")
    from stable_baselines3.common.vec_env import VecVideoRecorder

    MLSH("MlpPolicy", BANDITS, n_envs=2, **SMALL).save(tmp_path / "bandits.zip")
    model = MLSH.load(tmp_path / "bandits.zip", env=bandit_envs(1, render_mode="rgb_array"))
    model.adapt(0, 100)
    recorder = VecVideoRecorder(
        model.get_env(), str(tmp_path / "videos"), record_video_trigger=lambda step: step == 0, video_length=40
    )
    evaluate_policy(model, recorder, n_eval_episodes=1)
    recorder.close()
    assert [path.suffix for path in (tmp_path / "videos").iterdir()] == [".mp4"]
