"""``MacroActionWrapper``: the master's view of an env, so that any SB3 algorithm can be a master."""

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["MacroActionWrapper"]


class MacroActionWrapper(gym.Wrapper):
    """
    One action of the wrapped env runs sub-policy ``k`` for ``macro_duration`` primitive steps (or until the
    episode ends); the reward is the sum of the primitive rewards. With frozen sub-policies this is the master's
    MDP, so any Stable-Baselines3 algorithm can learn a master on it::

        from stable_baselines3 import PPO
        master_env = MacroActionWrapper(env, mlsh_model, macro_duration=10)
        PPO("MlpPolicy", master_env).learn(20_000)

    :param env: The primitive env.
    :param subpolicies: An :class:`~sb3_mlsh.MLSH` model, or a callable ``(obs, k) -> action``.
    :param macro_duration: Primitive steps per macro-action N (default: the model's).
    :param n_subpolicies: Number of sub-policies K (default: the model's).
    :param deterministic: Let an MLSH model's sub-policies act deterministically.
    """

    def __init__(
        self,
        env: gym.Env,
        subpolicies: Any,
        macro_duration: int | None = None,
        n_subpolicies: int | None = None,
        deterministic: bool = False,
    ) -> None:
        super().__init__(env)
        if hasattr(subpolicies, "subpolicy_predict"):
            model = subpolicies
            self._act: Callable[[Any, int], Any] = lambda obs, k: model.subpolicy_predict(obs, k, deterministic=deterministic)
            macro_duration = model.macro_duration if macro_duration is None else macro_duration
            n_subpolicies = model.n_subpolicies if n_subpolicies is None else n_subpolicies
        elif callable(subpolicies):
            self._act = subpolicies
        else:
            raise TypeError("subpolicies must be an MLSH model or a callable (obs, k) -> action.")
        if macro_duration is None or n_subpolicies is None:
            raise ValueError("Pass macro_duration and n_subpolicies when the sub-policies are a plain callable.")
        if macro_duration < 1 or n_subpolicies < 1:
            raise ValueError(f"macro_duration and n_subpolicies must be >= 1, got {macro_duration} and {n_subpolicies}.")
        self.macro_duration = macro_duration
        self.action_space = spaces.Discrete(n_subpolicies)
        self._obs: Any = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the primitive env; the sub-policies see its observation from here on."""
        self._obs, info = self.env.reset(**kwargs)
        return self._obs, info

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """
        :param action: The index k of the sub-policy to run for up to ``macro_duration`` primitive steps.
        :return: The last observation, the summed reward, termination, truncation, and the last info with
            ``"primitive_steps"`` (how many steps ran).
        """
        if not self.action_space.contains(action) and not self.action_space.contains(int(np.asarray(action).item())):
            raise ValueError(f"Macro-action {action!r} is not a sub-policy index in {self.action_space}.")
        k = int(np.asarray(action).item())
        total_reward = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        steps = 0
        while steps < self.macro_duration and not (terminated or truncated):
            self._obs, reward, terminated, truncated, info = self.env.step(self._act(self._obs, k))
            total_reward += float(reward)
            steps += 1
        info = {**info, "primitive_steps": steps}
        return self._obs, total_reward, terminated, truncated, info
