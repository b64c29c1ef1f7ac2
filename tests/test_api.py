"""The SB3 surface of MLSH: save/load, predict, logging, callbacks, the MacroActionWrapper, and clear errors."""

import io
import os
import zipfile

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback
from stable_baselines3.common.logger import configure
from toy_envs import MultiDiscreteActionEnv, NaNRewardEnv, NoProtocolEnv, SpaceShiftEnv, ToyTaskEnv, make_toy

from sb3_mlsh import MLSH, MacroActionWrapper, ModelFileError, NonFiniteError, TaskProtocolError, TaskSampler


def small_model(**kwargs) -> MLSH:
    defaults = dict(n_envs=2, n_steps=16, macro_duration=4, warmup_iterations=1, joint_iterations=1, seed=0)
    defaults.update(kwargs)
    return MLSH("MlpPolicy", defaults.pop("factory", make_toy()), **defaults)


def rollout_actions(model: MLSH, n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    env = ToyTaskEnv()
    obs, _ = env.reset(seed=5)
    state, actions, states = None, [], []
    for step in range(n):
        action, state = model.predict(obs, state=state, episode_start=np.array([step == 0]), deterministic=True)
        actions.append(action)
        states.append(state.copy())
        obs, *_ = env.step(action)
    return np.array(actions), np.array(states)


def test_save_load_predicts_identically_and_training_continues(tmp_path):
    model = small_model(n_subpolicies=3)
    model.learn(3 * 32)
    path = tmp_path / "mlsh_model"
    model.save(path)
    assert (tmp_path / "mlsh_model.zip").exists()
    loaded = MLSH.load(path, make_toy())  # an env factory is not stored safely: give it again
    for expected, got in zip(rollout_actions(model), rollout_actions(loaded)):
        np.testing.assert_array_equal(expected, got)
    assert loaded.num_timesteps == model.num_timesteps == 96
    assert loaded.trainer.state_dict()["groups"] == model.trainer.state_dict()["groups"]
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps == 160 and loaded.iteration == 5
    buffer = io.BytesIO()
    loaded.save(buffer)
    buffer.seek(0)
    assert MLSH.load(buffer, make_toy()).num_timesteps == 160


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    model = small_model()
    path = tmp_path / "model.zip"
    model.save(path)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]


def test_predict_state_carries_subpolicy_and_steps_left():
    model = small_model(macro_duration=4)
    _, states = rollout_actions(model, n=12)
    np.testing.assert_array_equal(states[:, 0, 1], [3, 2, 1, 0] * 3)
    for start in (0, 4, 8):
        assert len(set(states[start : start + 4, 0, 0].tolist())) == 1  # k fixed within a macro-step
    batch = np.stack([ToyTaskEnv().reset(seed=s)[0] for s in range(3)])
    batch_actions, state = model.predict(batch)
    assert batch_actions.shape == (3,) and state.shape == (3, 2)
    _, state = model.predict(batch, state=state, episode_start=np.array([True, False, False]))
    np.testing.assert_array_equal(state[:, 1], [3, 2, 2])


def test_loading_a_corrupt_or_foreign_file_names_the_fix(tmp_path):
    model = small_model()
    model.save(tmp_path / "good.zip")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes((tmp_path / "good.zip").read_bytes()[:500])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        MLSH.load(truncated)
    # Wherever the file is cut, the error says so (never "another algorithm's file").
    good = (tmp_path / "good.zip").read_bytes()
    for cut in np.linspace(1, len(good) - 1, 40).astype(int):
        truncated.write_bytes(good[:cut])
        with pytest.raises(ModelFileError, match="truncated or corrupt"):
            MLSH.load(truncated, make_toy())
    ppo = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16)
    ppo.save(tmp_path / "ppo.zip")
    with pytest.raises(ModelFileError, match="not an sb3-mlsh model"):
        MLSH.load(tmp_path / "ppo.zip")
    with pytest.raises(FileNotFoundError):
        MLSH.load(tmp_path / "missing.zip")
    assert zipfile.is_zipfile(tmp_path / "good.zip")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_subpolicies=0), "n_subpolicies"),
        (dict(macro_duration=0), "macro_duration"),
        (dict(warmup_iterations=-1), "warmup_iterations"),
        (dict(joint_iterations=-2), "joint_iterations"),
        (dict(task_groups=3, n_envs=2), "task_groups"),
        (dict(master_epsilon=1.5), "master_epsilon"),
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


def test_loading_parameters_of_another_architecture_names_the_fix(tmp_path):
    small_model(n_subpolicies=2).save(tmp_path / "k2.zip")
    with pytest.raises(ModelFileError, match="do not fit this model"):
        MLSH.load(tmp_path / "k2.zip", make_toy(), n_subpolicies=3)


def test_subprocess_envs_receive_their_tasks():
    from stable_baselines3.common.vec_env import SubprocVecEnv

    model = small_model(n_envs=2, task_groups=2, vec_env_class=SubprocVecEnv, factory="mlsh/MovementBandits-v0")
    try:
        model.learn(3 * 32)
        assert model.env.env_method("get_task") == [group.task for group in model.trainer.groups]
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


def test_untrusted_pickled_values_are_not_restored(tmp_path):
    from sb3_mlsh.serialization import UntrustedValueError

    model = small_model(subpolicy_kwargs=dict(learning_rate=lambda progress: 1e-3 * progress))
    model.save(tmp_path / "own.zip")
    # The env factory and the learning-rate function have no safe form: each is named, with the fix.
    with pytest.raises(UntrustedValueError, match=r"subpolicy_kwargs.learning_rate .*MLSH.load\(path, subpolicy_kwargs="):
        MLSH.load(tmp_path / "own.zip")
    with pytest.raises(UntrustedValueError, match=r"task_sampler is a pickled .*MLSH.load\(path, task_sampler=...\)"):
        MLSH.load(tmp_path / "own.zip", subpolicy_kwargs=dict(learning_rate=3e-4))
    assert MLSH.load(tmp_path / "own.zip", make_toy(), subpolicy_kwargs=dict(learning_rate=3e-4)).num_timesteps == 0
    trusted = MLSH.load(tmp_path / "own.zip", trusted=True)
    assert trusted.subpolicy_kwargs["learning_rate"](0.5) == pytest.approx(5e-4)
    assert MLSH.load(tmp_path / "own.zip", env=make_toy(), trusted=True).num_timesteps == 0
    with pytest.raises(TypeError, match="MLSH builds its own VecEnv"):
        MLSH.load(tmp_path / "own.zip", env=model.env)
    # Files of 0.3 and earlier are SB3's pickles: refused with the way to convert them.
    from stable_baselines3.common.save_util import save_to_zip_file

    save_to_zip_file(tmp_path / "old.zip", data={"mlsh_format_version": 1, "init_kwargs": {"f": lambda: 0}}, params={})
    with pytest.raises(ModelFileError, match=r"sb3-mlsh 0\.1, whose files hold pickles.*trusted=True"):
        MLSH.load(tmp_path / "old.zip")


def test_sb3_habits_get_pointed_to_the_right_place():
    with pytest.raises(TypeError, match=r"'learning_rate' is an argument of the two PPO learners: pass master_kwargs="):
        small_model(learning_rate=1e-3)
    with pytest.raises(TypeError, match="did you mean 'n_subpolicies'"):
        small_model(n_subpolicy=3)
    with pytest.raises(ValueError, match=r"master_kwargs\['learning_rat'\] is not an argument of SB3's PPO: did you mean"):
        small_model(master_kwargs=dict(learning_rat=0.1))


def test_saved_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        small_model().save(tmp_path / "model.zip")
    finally:
        os.umask(old)
    assert (tmp_path / "model.zip").stat().st_mode & 0o777 == 0o644
