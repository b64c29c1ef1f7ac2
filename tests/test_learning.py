"""Learning quality on small budgets (fixed seeds): run with ``pytest -m slow``."""

import gymnasium as gym
import numpy as np
import pytest

from sb3_mlsh import MLSH, make_task_sampler
from sb3_mlsh.cli.hyperparams import load_hyperparams, parse_hyperparams

pytestmark = pytest.mark.slow


def subpolicy_goal_returns(model: MLSH, episodes: int = 10) -> np.ndarray:
    """Mean return of each sub-policy acting alone (rows) when goal 0 or goal 1 pays (columns)."""
    env = gym.make("mlsh/MovementBandits-v0")
    returns = np.zeros((model.n_subpolicies, 2))
    for k in range(model.n_subpolicies):
        for task in (0, 1):
            env.unwrapped.set_task(task)
            for episode in range(episodes):
                obs, _ = env.reset(seed=episode)
                done = False
                while not done:
                    obs, reward, terminated, truncated, _ = env.step(model.subpolicy_predict(obs, k))
                    returns[k, task] += reward / episodes
                    done = terminated or truncated
    return returns


def test_subpolicies_specialise_and_a_fresh_master_transfers_on_movement_bandits(tmp_path):
    # The packaged hyperparameters, on 40% of their meta-training budget.
    kwargs, _, _ = parse_hyperparams(load_hyperparams("mlsh/MovementBandits-v0"), "mlsh/MovementBandits-v0")
    model = MLSH("MlpPolicy", make_task_sampler("mlsh/MovementBandits-v0", seed=0), seed=0, **kwargs)
    model.learn(400_000)
    returns = subpolicy_goal_returns(model)
    # Each goal has its own sub-policy: the better pairing of sub-policies and goals earns far more than the other
    # (collapse onto one goal would make both pairings alike).
    pairings = sorted([returns[0, 0] + returns[1, 1], returns[0, 1] + returns[1, 0]])
    assert pairings[1] > 40 and pairings[1] > 3 * pairings[0], returns

    model.save(tmp_path / "bandits")
    for task in (0, 1):
        transfer = MLSH.load(tmp_path / "bandits", task_groups=1, seed=1)
        transfer.adapt(task, total_timesteps=20_000)
        late = [entry["episode_return_mean"] for entry in transfer.iteration_log[-5:]]
        # Random: 2.4; PPO from scratch after 20k steps: about 2 to 6; the oracle: 44.
        assert np.mean(late) > 25, (task, transfer.iteration_log)


@pytest.mark.mujoco
def test_ant_twowalk_subpolicies_learn_to_walk_on_a_ci_budget():
    # The packaged AntTwowalk settings (continuous-control sub-policies, reward scaling, the 2-core task cycle) on
    # 200 k meta-training steps, a few minutes on 2 cores.
    env_id = "mlsh/AntTwowalk-v0"
    kwargs, _, _ = parse_hyperparams(load_hyperparams(env_id), env_id)
    model = MLSH("MlpPolicy", make_task_sampler(env_id, seed=0), seed=0, **kwargs)
    model.learn(200_000)
    env = gym.make(env_id)
    returns = np.zeros((model.n_subpolicies, 2))
    for k in range(model.n_subpolicies):
        for task in (0, 1):
            env.unwrapped.set_task(task)
            obs, _ = env.reset(seed=0)
            done = False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(model.subpolicy_predict(obs, k, deterministic=True))
                returns[k, task] += reward
                done = terminated or truncated
    # Zero torques: -506 ± 18 (envs/README.md); untrained sub-policies: -490 to -580. Measured here (2 cores): the best
    # sub-policy and target -372 with seed 0, -416 with seed 1. A real improvement for some sub-policy on some target:
    # it walks towards it.
    assert returns.max() > -455, returns
