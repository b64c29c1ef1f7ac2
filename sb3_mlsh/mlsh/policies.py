"""The policy names MLSH accepts, as SB3 algorithms name theirs (both are the sub-policy bank), and acting with both levels."""

from collections.abc import Callable

import numpy as np
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import is_vectorized_observation

from sb3_mlsh.common.observation import ObservationView, index_obs
from sb3_mlsh.common.type_aliases import Obs
from sb3_mlsh.mlsh.bank import SubPolicyBankPolicy

__all__ = ["MlpPolicy", "MultiInputPolicy", "predict_hierarchical"]

#: Box observations.
MlpPolicy = SubPolicyBankPolicy
#: Dict observations.
MultiInputPolicy = SubPolicyBankPolicy


def predict_hierarchical(
    master: BasePolicy,
    subpolicies: SubPolicyBankPolicy,
    master_view: ObservationView,
    subpolicy_obs: Callable[[Obs, np.ndarray], Obs],
    macro_duration: int,
    observation: np.ndarray | dict[str, np.ndarray],
    state: tuple[np.ndarray, ...] | np.ndarray | None,
    episode_start: np.ndarray | None,
    deterministic: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Act outside a rollout, as ``MLSH.predict``: the master decides where a macro-step begins, the sub-policies act.

    :param master: The master's policy.
    :param subpolicies: The sub-policy bank.
    :param master_view: What the master sees of an env observation.
    :param subpolicy_obs: Turns env observations and the active sub-policies into the bank's observations.
    :param macro_duration: N.
    :param observation: One observation or a batch.
    :param state: ``(n, 2)`` int array of (active sub-policy, primitive steps left in its macro-step); None at the start.
    :param episode_start: Whether each observation starts an episode (forces a new master decision).
    :param deterministic: Use the mode of both levels' distributions.
    :return: The actions and the new state.
    """
    # SB3's check dispatches on the space, Dict ones included; its annotation names arrays only.
    vectorized = is_vectorized_observation(observation, master_view.observation_space)  # type: ignore[arg-type]
    batch: Obs
    if isinstance(observation, dict):
        batch = {key: np.asarray(value) if vectorized else np.asarray(value)[None] for key, value in observation.items()}
        n = len(next(iter(batch.values())))
    else:
        batch = np.asarray(observation) if vectorized else np.asarray(observation)[None]
        n = len(batch)
    state = np.zeros((n, 2), dtype=np.int64) if state is None else np.array(state, dtype=np.int64).reshape(n, 2)
    deciding = state[:, 1] <= 0
    if episode_start is not None:
        deciding |= np.asarray(episode_start, dtype=bool).reshape(n)
    if deciding.any():
        indices = np.flatnonzero(deciding)
        choice, _ = master.predict(master_view(index_obs(batch, indices)), deterministic=deterministic)
        state[indices, 0] = choice
        state[indices, 1] = macro_duration
    actions, _ = subpolicies.predict(subpolicy_obs(batch, state[:, 0]), deterministic=deterministic)
    state[:, 1] -= 1
    return (actions if vectorized else actions[0]), state
