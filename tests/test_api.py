"""The SB3 surface of MLSH: arguments, envs, logging, callbacks, threads, the MacroActionWrapper, and clear errors."""

import gymnasium as gym
import pandas as pd
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback
from stable_baselines3.common.logger import configure
from toy_envs import MultiDiscreteActionEnv, NaNRewardEnv, NoProtocolEnv, SpaceShiftEnv, ToyTaskEnv, make_toy, small_model

from sb3_mlsh import MLSH, MacroActionWrapper, NonFiniteError, TaskProtocolError, TaskSampler


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_subpolicies=0), "n_subpolicies"),
        (dict(macro_duration=0), "macro_duration"),
        (dict(warmup_iterations=-1), "warmup_iterations"),
        (dict(joint_iterations=-2), "joint_iterations"),
        (dict(task_groups=3, n_envs=2), "task_groups"),
        (dict(master_epsilon=1.5), "master_epsilon"),
        (dict(macro_duration=4, max_macro_duration=3), "max_macro_duration"),
        (dict(max_macro_duration=2.5), "max_macro_duration"),
        (dict(master_kwargs=dict(n_steps=5)), "MLSH sets these itself"),
    ],
)
def test_bad_arguments_raise_before_any_training(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_model(**kwargs)


def test_bad_envs_raise_clear_errors():
    with pytest.raises(TaskProtocolError, match="sample_tasks"):
        small_model(factory=NoProtocolEnv)
    with pytest.raises(TaskProtocolError, match="share one observation and action space"):
        small_model(factory=lambda: SpaceShiftEnv(n_tasks=5))
    with pytest.raises(TypeError, match="Discrete and Box actions"):
        small_model(factory=MultiDiscreteActionEnv)
    with pytest.raises(TypeError, match="MultiInputPolicy"):
        small_model(factory=make_toy(dict_obs=True))
    with pytest.raises(gym.error.Error, match="Check the id"):
        small_model(factory="mlsh/NoSuchEnv-v0")
    model = small_model(factory=lambda: gym.wrappers.TimeLimit(NaNRewardEnv(), 10))
    with pytest.raises(NonFiniteError, match="non-finite reward"):
        model.learn(64)


def test_task_sampler_draws_reproducibly_from_its_split():
    import mlsh_envs  # noqa: F401

    a = TaskSampler("mlsh/MovementBandits-v0", seed=1).sample(20)
    b = TaskSampler("mlsh/MovementBandits-v0", seed=1).sample(20)
    assert a == b and set(a) == {0, 1}
    with pytest.raises(ValueError, match="Unknown split"):
        TaskSampler("mlsh/MovementBandits-v0", split="validation")
    with pytest.raises(TaskProtocolError, match="no train/held-out split"):
        TaskSampler(NoSplitEnv, split="train").sample()
    assert len(TaskSampler(NoSplitEnv, split=None).sample(3)) == 3


class NoSplitEnv(ToyTaskEnv):
    def sample_tasks(self, n: int) -> list[int]:  # type: ignore[override]
        return [0] * n


def test_logger_has_namespaced_keys_of_both_learners(tmp_path):
    model = small_model(warmup_iterations=1, joint_iterations=1)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(4 * 32)
    columns = set(pd.read_csv(tmp_path / "progress.csv").columns)
    for key in (
        "train/master/policy_gradient_loss",
        "train/sub/policy_gradient_loss",
        "mlsh/subpolicy_usage_0",
        "mlsh/joint_groups",
        "rollout/ep_rew_mean",
        "time/fps",
    ):
        assert key in columns, key


def test_checkpoint_callback_and_progress_bar(tmp_path):
    model = small_model()
    model.learn(
        4 * 32, callback=CheckpointCallback(save_freq=16, save_path=str(tmp_path), name_prefix="mlsh"), progress_bar=True
    )
    checkpoints = sorted(p.name for p in tmp_path.glob("mlsh_*_steps.zip"))
    assert checkpoints == ["mlsh_128_steps.zip", "mlsh_32_steps.zip", "mlsh_64_steps.zip", "mlsh_96_steps.zip"]
    # A checkpoint taken during an iteration holds the end of the last completed one.
    assert MLSH.load(tmp_path / "mlsh_64_steps.zip", make_toy()).num_timesteps == 32
    assert MLSH.load(tmp_path / "mlsh_128_steps.zip", make_toy()).num_timesteps == 96


def test_macro_action_wrapper_runs_a_subpolicy_for_n_steps_and_trains_a_stock_ppo_master():
    model = small_model(n_subpolicies=3, macro_duration=4)
    env = MacroActionWrapper(gym.wrappers.TimeLimit(ToyTaskEnv(), 10), model)
    assert env.action_space == gym.spaces.Discrete(3)
    env.reset(seed=0)
    _, _, _, truncated, info = env.step(1)
    assert info["primitive_steps"] == 4 and not truncated
    env.step(2)
    _, _, _, truncated, info = env.step(0)
    assert info["primitive_steps"] == 2 and truncated  # the episode ends before the macro-step does
    calls = []
    scripted = MacroActionWrapper(
        gym.wrappers.TimeLimit(ToyTaskEnv(), 10), lambda obs, k: calls.append(k) or k, macro_duration=3, n_subpolicies=3
    )
    scripted.get_wrapper_attr("set_task")(2)
    scripted.reset(seed=0)
    _, reward, *_ = scripted.step(2)
    assert calls == [2, 2, 2] and reward == pytest.approx(3 * (1.0 + 0.02) + 0.001 * 6)
    master = PPO("MlpPolicy", MacroActionWrapper(gym.wrappers.TimeLimit(ToyTaskEnv(), 12), model), n_steps=32, batch_size=16)
    master.learn(64)
    with pytest.raises(ValueError, match="not a sub-policy index"):
        env.step(7)


def test_env_id_string_is_accepted_as_task_sampler():
    model = MLSH("MlpPolicy", "mlsh/MovementBandits-v0", n_envs=2, n_steps=10, seed=0)
    assert model.task_sampler.split == "train"
    model.learn(20)
    assert model.num_timesteps == 20
    assert th.get_num_threads() >= 1


def test_subprocess_envs_receive_their_tasks():
    from stable_baselines3.common.vec_env import SubprocVecEnv

    model = small_model(n_envs=2, task_groups=2, vec_env_class=SubprocVecEnv, factory="mlsh/MovementBandits-v0")
    try:
        model.learn(3 * 32)
        assert model.env.env_method("get_task") == [group.task for group in model.schedule.groups]
        assert model.iteration == 3
    finally:
        model.env.close()


def test_learn_runs_on_one_torch_thread_and_restores_the_setting():
    seen = []

    class ThreadProbe(BaseCallback):
        def _on_step(self) -> bool:
            seen.append(th.get_num_threads())
            return True

    before = th.get_num_threads()
    th.set_num_threads(2)
    try:
        small_model().learn(32, callback=ThreadProbe())
        assert set(seen) == {1} and th.get_num_threads() == 2
        seen.clear()
        small_model(torch_threads=None).learn(32, callback=ThreadProbe())
        assert set(seen) == {2}
        with pytest.raises(ValueError, match="torch_threads must be a positive integer or None"):
            small_model(torch_threads=0)
        with pytest.raises(ValueError, match="normalize_reward must be True or False"):
            small_model(normalize_reward="yes")
    finally:
        th.set_num_threads(before)


def test_sb3_habits_get_pointed_to_the_right_place():
    with pytest.raises(TypeError, match=r"'learning_rate' is an argument of the two PPO learners: pass master_kwargs="):
        small_model(learning_rate=1e-3)
    with pytest.raises(TypeError, match="did you mean 'n_subpolicies'"):
        small_model(n_subpolicy=3)
    with pytest.raises(ValueError, match=r"master_kwargs\['learning_rat'\] is not an argument of SB3's PPO: did you mean"):
        small_model(master_kwargs=dict(learning_rat=0.1))
