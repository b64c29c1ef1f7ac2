"""Per-level observations: the part of the env observation that each level of the hierarchy sees."""

import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from gymnasium import spaces

from sb3_mlsh.common.type_aliases import Obs

__all__ = ["ObsExclude", "ObservationView", "batch_of_one", "concat_obs", "index_obs", "write_env_obs"]

#: What a level (the sub-policies, or the master) does not see: for a Box observation, indices into its flattened form
#: (an index, or a ``"start:stop"`` slice as in Python); for a Dict observation, keys to drop whole, or a mapping from
#: key to indices into that key's flattened Box.
ObsExclude = Sequence[int | str] | Mapping[str, Sequence[int | str]] | None

_SLICE = re.compile(r"^\s*(-?\d*)\s*:\s*(-?\d*)\s*$")


def _expanded(indices: Sequence[Any], size: int, where: str) -> list[Any]:
    """:return: ``indices`` with each ``"start:stop"`` string replaced by the indices of that slice of ``size`` entries."""
    expanded: list[Any] = []
    for index in indices:
        match = _SLICE.match(index) if isinstance(index, str) else None
        if isinstance(index, str) and match is None:
            raise ValueError(
                f"{where}: {index!r} is neither an integer index nor a 'start:stop' slice "
                "(e.g. '47:' for entry 47 to the end)."
            )
        if match is None:
            expanded.append(index)
            continue
        start, stop = (int(bound) if bound else None for bound in match.groups())
        selected = range(size)[slice(start, stop)]
        if len(selected) == 0:
            raise ValueError(f"{where}: the slice {index!r} selects none of the {size} entries.")
        expanded.extend(selected)
    return expanded


def _checked_indices(indices: Any, size: int, where: str, level: str) -> np.ndarray:
    """
    :param indices: Indices to exclude.
    :param size: Length of the flattened observation they index.
    :param where: The argument and what they index, for error messages.
    :param level: Who would not see them, for error messages.
    :return: The sorted indices that remain.
    """
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence | np.ndarray):
        raise ValueError(f"{where} must be a list of indices, got {indices!r}.")
    excluded = []
    for index in _expanded(list(indices), size, where):
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise ValueError(f"{where}: {index!r} is not an integer index.")
        if not -size <= index < size:
            raise ValueError(
                f"{where}: index {index} is out of range for {size} entries "
                f"(valid: 0 to {size - 1}, or negative from the end)."
            )
        excluded.append(int(index) % size)
    if len(set(excluded)) != len(excluded):
        raise ValueError(f"{where} names an index twice: {list(indices)}.")
    kept = np.setdiff1d(np.arange(size), excluded)
    if len(kept) == 0:
        raise ValueError(f"{where} hides all {size} entries: {level} would see nothing.")
    return kept


def _box_subset(space: spaces.Box, kept: np.ndarray) -> spaces.Box:
    return spaces.Box(space.low.reshape(-1)[kept], space.high.reshape(-1)[kept], dtype=space.dtype)  # type: ignore[arg-type]


class ObservationView:
    """
    What one level of the hierarchy sees of the env observation: all of it (the paper's MLSH), or all but some entries.
    Sub-policies that do not see e.g. the torso's x and y of an Ant learn body-centric movement ("walk up") rather than
    places ("go to (5, 0)"); a master that sees only where the agent is has a small input to learn from on a new task.
    The sub-policy learner's observation is its view plus the one-hot master choice.

    :param observation_space: The env's observation space (``Box`` or ``Dict``).
    :param exclude: What the level does not see: for a Box, indices into the flattened observation (e.g. ``[0, 1]``, or
        with ``"start:stop"`` slices, ``[0, 1, "47:"]``); for a Dict, keys to drop (``["goal"]``) or a mapping from key
        to indices into that key's flattened Box (``{"state": [0, 1]}``). None: the level sees everything.
    :param argument: The argument that ``exclude`` came from, for error messages.
    :param level: Who sees the view, for error messages.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        exclude: ObsExclude = None,
        argument: str = "subpolicy_obs_exclude",
        level: str = "the sub-policies",
    ) -> None:
        self.observation_space = observation_space
        self.exclude = exclude
        self.argument, self.level = argument, level
        #: Box: the kept flat indices (None: all). Dict: key -> kept flat indices (None: the key whole).
        self._kept: np.ndarray | None = None
        self._kept_keys: dict[str, np.ndarray | None] = {}
        if isinstance(observation_space, spaces.Dict):
            self.space: spaces.Space = self._dict_view(observation_space, exclude)
        elif exclude is None or (isinstance(exclude, Sequence) and len(exclude) == 0):
            self.space = observation_space
        elif isinstance(observation_space, spaces.Box):
            if isinstance(exclude, Mapping):
                raise ValueError(
                    f"{argument} is a mapping of keys, but the observation is a Box: give a list of indices into its "
                    f"{int(np.prod(observation_space.shape))} flattened entries, e.g. [0, 1]."
                )
            size = int(np.prod(observation_space.shape))
            self._kept = _checked_indices(exclude, size, f"{argument} for the Box observation", level)
            self.space = _box_subset(observation_space, self._kept)
        else:
            raise TypeError(f"{argument} needs a Box or Dict observation space, got {observation_space}.")

    def _dict_view(self, observation_space: spaces.Dict, exclude: ObsExclude) -> spaces.Dict:
        argument = self.argument
        if exclude is None:
            self._kept_keys = dict.fromkeys(observation_space.spaces)
            return observation_space
        per_key: dict[str, Any]
        if isinstance(exclude, Mapping):
            per_key = dict(exclude)
        elif isinstance(exclude, Sequence) and not isinstance(exclude, str) and all(isinstance(k, str) for k in exclude):
            per_key = dict.fromkeys(str(key) for key in exclude)
        else:
            raise ValueError(
                f"{argument} for a Dict observation is a list of keys or a mapping {{key: indices}}, got "
                f"{exclude!r}. Keys: {sorted(observation_space.spaces)}."
            )
        unknown = sorted(set(per_key) - set(observation_space.spaces))
        if unknown:
            raise ValueError(
                f"{argument} names keys {unknown} that the observation does not have; its keys are "
                f"{sorted(observation_space.spaces)}."
            )
        subspaces: dict[str, spaces.Space] = {}
        for key, space in observation_space.spaces.items():
            if key not in per_key:
                self._kept_keys[key] = None
                subspaces[key] = space
            elif per_key[key] is None:
                continue
            elif isinstance(space, spaces.Box):
                size = int(np.prod(space.shape))
                kept = _checked_indices(per_key[key], size, f"{argument} for key {key!r}", self.level)
                self._kept_keys[key] = kept
                subspaces[key] = _box_subset(space, kept)
            else:
                raise ValueError(
                    f"{argument} gives indices for key {key!r}, whose space {space} is not a Box: drop the "
                    "key whole (list it by name) instead."
                )
        if not subspaces:
            raise ValueError(f"{argument} hides every key of the observation: {self.level} would see nothing.")
        return spaces.Dict(subspaces)

    @property
    def is_identity(self) -> bool:
        """Whether the level sees the whole observation."""
        return self.space is self.observation_space

    def __call__(self, obs: Obs) -> Obs:
        """
        :param obs: A batch of env observations (leading axis: the batch).
        :return: The batch as the level sees it (for the sub-policies: before the one-hot choice is appended).
        """
        if self.is_identity:
            return obs
        if isinstance(obs, dict):
            view = {}
            for key, kept in self._kept_keys.items():
                value = np.asarray(obs[key])
                view[key] = value if kept is None else value.reshape(len(value), -1)[:, kept]
            return view
        batch = np.asarray(obs)
        return batch.reshape(len(batch), -1)[:, self._kept]

    def __repr__(self) -> str:
        return f"ObservationView({self.argument}={self.exclude!r})"


def index_obs(obs: Obs, index: np.ndarray | slice) -> Obs:
    """:return: The observations ``index`` of a batch (an array, or a mapping of arrays)."""
    if isinstance(obs, dict):
        return {key: value[index] for key, value in obs.items()}
    return obs[index]


def concat_obs(batches: list[Obs]) -> Obs:
    """:return: The batches, one after the other, as one batch."""
    if isinstance(batches[0], dict):
        return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}  # type: ignore[index]
    return np.concatenate(cast(list[np.ndarray], batches))


def batch_of_one(obs: Any) -> Obs:
    """:return: One observation (an array, or a mapping of arrays) as a batch of one."""
    if isinstance(obs, dict):
        return {key: np.asarray(value)[None] for key, value in obs.items()}
    return np.asarray(obs)[None]


def write_env_obs(last_obs: Obs, episode_starts: np.ndarray, env_indices: np.ndarray, observations: list[Any]) -> None:
    """
    Put freshly reset envs' first observations into the batch of current observations, in place.

    :param last_obs: The current observations of all envs.
    :param episode_starts: Whether each starts an episode (set for ``env_indices``).
    :param env_indices: The envs that were reset.
    :param observations: Their observations, one per env.
    """
    if isinstance(last_obs, dict):
        for key in last_obs:
            last_obs[key][env_indices] = np.stack([obs[key] for obs in observations])
    else:
        last_obs[env_indices] = np.stack(observations)
    episode_starts[env_indices] = True
