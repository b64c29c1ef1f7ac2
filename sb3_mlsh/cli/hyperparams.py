"""Zoo-style hyperparameter files: read an env's YAML entry, apply ``-params`` overrides, and turn it into MLSH arguments."""

import ast
import difflib
import importlib.resources
import math
import os
import re
from typing import Any

import torch as th
import yaml
from stable_baselines3.common.utils import ConstantSchedule, LinearSchedule

__all__ = [
    "CONSTRUCTOR_KEYS",
    "HyperparameterError",
    "default_hyperparams_file",
    "load_hyperparams",
    "override_hyperparams",
    "parse_hyperparams",
    "target_timesteps",
]

#: Keys a YAML entry may have besides the MLSH constructor arguments.
EXTRA_KEYS = {"n_timesteps", "policy"}
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")
CONSTRUCTOR_KEYS = {
    "n_subpolicies", "macro_duration", "warmup_iterations", "joint_iterations", "n_steps", "n_envs", "task_groups",
    "master_kwargs", "subpolicy_kwargs", "policy_kwargs", "master_epsilon", "stagger_groups", "skill_diversity",
    "discriminator_kwargs", "subpolicy_obs_exclude", "master_obs_exclude", "normalize_reward", "max_macro_duration",
    "normalize_observation",
}  # fmt: skip


class HyperparameterError(ValueError):
    """Raised for an unknown env id, key or badly typed value in a hyperparameter file."""


def default_hyperparams_file() -> str:
    return str(importlib.resources.files("sb3_mlsh") / "hyperparams" / "mlsh.yml")


#: The names a ``dict(...)`` string may use: activation functions and optimizers, under the names the zoo writes.
ALLOWED_NAMES: dict[str, Any] = {
    **{
        f"{prefix}{name}": getattr(th.nn, name)
        for prefix in ("nn.", "th.nn.", "torch.nn.")
        for name in ("ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Softplus")
    },
    **{
        f"{prefix}{name}": getattr(th.optim, name)
        for prefix in ("th.optim.", "torch.optim.")
        for name in ("Adam", "AdamW", "RMSprop", "SGD")
    },
}


def _dotted_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted_name(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _literal(node: ast.expr, key: str, text: str) -> Any:
    """
    The value of one node of a ``dict(...)`` string: literals, lists, tuples, mappings, nested ``dict(...)`` and the
    names of :data:`ALLOWED_NAMES`; anything else (calls, other names, operators, subscripts) is refused unevaluated.
    """
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand, key, text)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    elif isinstance(node, ast.List):
        return [_literal(item, key, text) for item in node.elts]
    elif isinstance(node, ast.Tuple):
        return tuple(_literal(item, key, text) for item in node.elts)
    elif isinstance(node, ast.Dict) and all(item is not None for item in node.keys):
        return {_literal(k, key, text): _literal(v, key, text) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    elif isinstance(node, ast.Call) and _dotted_name(node.func) == "dict" and not node.args:
        if all(keyword.arg is not None for keyword in node.keywords):
            return {keyword.arg: _literal(keyword.value, key, text) for keyword in node.keywords}
    elif _dotted_name(node) in ALLOWED_NAMES:
        return ALLOWED_NAMES[str(_dotted_name(node))]
    names = sorted({name.split(".")[-1] for name in ALLOWED_NAMES})
    raise HyperparameterError(
        f"{key}: {ast.unparse(node)!r} in {text!r} is not allowed. A 'dict(...)' string holds only numbers, strings, "
        f"True/False/None, lists, tuples, nested dict(...) and the classes nn.<name> / th.optim.<name> with name in "
        f"{names}: it is read, never run."
    )


def _evaluate_dict_string(text: str, key: str) -> dict[str, Any]:
    # The zoo writes policy_kwargs as "dict(...)". It is read by walking its syntax tree, never evaluated: a
    # hyperparameter file or a run's config.yml must not be able to run code.
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise HyperparameterError(f"{key}: cannot read {text!r} as a dict(...) expression ({error}).") from error
    value = _literal(tree.body, key, text)
    if not isinstance(value, dict):
        raise HyperparameterError(f"{key} must be a mapping or a 'dict(...)' string, got {text!r}.")
    return value


def _schedules(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    kwargs = dict(kwargs)
    for key in SCHEDULE_KEYS:
        value = kwargs.get(key)
        if isinstance(value, str):
            match = re.fullmatch(r"lin_([0-9.eE+-]+)", value)
            if match is None:
                raise HyperparameterError(f"{where}.{key}: {value!r} is not a number nor a 'lin_<number>' schedule.")
            kwargs[key] = LinearSchedule(float(match.group(1)), 0.0, 1.0)
        elif value is not None and not isinstance(value, (int, float)):
            raise HyperparameterError(f"{where}.{key} must be a number or 'lin_<number>', got {value!r}.")
        elif isinstance(value, (int, float)) and key != "clip_range_vf":
            kwargs[key] = ConstantSchedule(float(value))
    return kwargs


#: Expected types of the values that the YAML or -params may set (schedulable ones are checked by _schedules).
_NUMBER_KEYS = ("master_epsilon", "skill_diversity")
_BOOL_KEYS = ("normalize_reward", "normalize_observation", "stagger_groups")
_OPTIONAL_INT_KEYS = ("max_macro_duration",)
_LEARNER_INT_KEYS = ("batch_size", "n_epochs")
_LEARNER_NUMBER_KEYS = ("gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm", "target_kl")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value_types(kwargs: dict[str, Any]) -> None:
    """Refuse values of the wrong type (e.g. ``batch_size: "64"``) before they reach a comparison deep in SB3."""
    for key in _NUMBER_KEYS:
        if key in kwargs and not _is_number(kwargs[key]):
            raise HyperparameterError(f"{key} must be a number, got {kwargs[key]!r} ({type(kwargs[key]).__name__}).")
    for key in _BOOL_KEYS:
        if key in kwargs and not isinstance(kwargs[key], bool):
            raise HyperparameterError(f"{key} must be true or false, got {kwargs[key]!r}.")
    for key in _OPTIONAL_INT_KEYS:
        if kwargs.get(key) is not None and (isinstance(kwargs[key], bool) or not isinstance(kwargs[key], int)):
            raise HyperparameterError(f"{key} must be an integer or null, got {kwargs[key]!r}.")
    for learner in ("master_kwargs", "subpolicy_kwargs"):
        for key, value in kwargs.get(learner, {}).items():
            if key in _LEARNER_INT_KEYS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise HyperparameterError(f"{learner}.{key} must be a positive integer, got {value!r}.")
            if key in _LEARNER_NUMBER_KEYS and value is not None and not _is_number(value):
                raise HyperparameterError(f"{learner}.{key} must be a number, got {value!r} ({type(value).__name__}).")


def parse_hyperparams(entry: dict[str, Any], env_id: str) -> tuple[dict[str, Any], int, str]:
    """
    Turn one YAML entry into MLSH constructor arguments.

    :param entry: The entry of ``env_id``.
    :param env_id: Its env id (for error messages).
    :return: Constructor kwargs, ``n_timesteps`` and the policy name.
    """
    unknown = set(entry) - CONSTRUCTOR_KEYS - EXTRA_KEYS
    if unknown:
        hints = {key: difflib.get_close_matches(key, CONSTRUCTOR_KEYS | EXTRA_KEYS, n=1) for key in unknown}
        text = ", ".join(f"{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") for key, hint in hints.items())
        raise HyperparameterError(
            f"Unknown hyperparameter(s) for {env_id}: {text}. Allowed: {sorted(CONSTRUCTOR_KEYS | EXTRA_KEYS)}."
        )
    kwargs = {key: value for key, value in entry.items() if key in CONSTRUCTOR_KEYS}
    for key in ("master_kwargs", "subpolicy_kwargs", "policy_kwargs", "discriminator_kwargs"):
        if isinstance(kwargs.get(key), str):
            kwargs[key] = _evaluate_dict_string(kwargs[key], key)
        elif key in kwargs and not isinstance(kwargs[key], dict):
            raise HyperparameterError(f"{key} must be a mapping or a 'dict(...)' string, got {kwargs[key]!r}.")
    for key in ("master_kwargs", "subpolicy_kwargs"):
        if key in kwargs:
            kwargs[key] = _schedules(kwargs[key], key)
    for key in (
        "n_subpolicies",
        "macro_duration",
        "warmup_iterations",
        "joint_iterations",
        "n_steps",
        "n_envs",
        "task_groups",
    ):
        if key in kwargs and (isinstance(kwargs[key], bool) or not isinstance(kwargs[key], int)):
            raise HyperparameterError(f"{key} must be an integer, got {kwargs[key]!r} ({type(kwargs[key]).__name__}).")
    _check_value_types(kwargs)
    return kwargs, target_timesteps(entry), entry.get("policy", "MlpPolicy")


def target_timesteps(entry: dict[str, Any]) -> int:
    """
    :param entry: A YAML entry (or a run's recorded one).
    :return: Its ``n_timesteps`` (default 1e6), a whole number of steps.
    :raises HyperparameterError: for a value that is not a finite positive number (YAML's ``.inf`` and ``.nan`` included).
    """
    n_timesteps = entry.get("n_timesteps", 1_000_000)
    if isinstance(n_timesteps, bool) or not isinstance(n_timesteps, (int, float)) or not math.isfinite(n_timesteps):
        raise HyperparameterError(f"n_timesteps must be a finite positive number, got {n_timesteps!r}.")
    if n_timesteps < 1:
        raise HyperparameterError(f"n_timesteps must be a positive number, got {n_timesteps!r}.")
    return int(n_timesteps)


def load_hyperparams(env_id: str, path: str | None = None) -> dict[str, Any]:
    """
    :param env_id: The env id whose entry to read.
    :param path: The YAML file (default: the one shipped with sb3-mlsh).
    :return: The raw entry.
    """
    path = path or default_hyperparams_file()
    if os.path.isdir(path):
        raise HyperparameterError(f"--hyperparams-file {path} is a folder: give the YAML file itself.")
    try:
        with open(path) as file:
            table = yaml.safe_load(file) or {}
    except yaml.YAMLError as error:
        raise HyperparameterError(f"{path} is not valid YAML: {error}") from error
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as error:
        raise HyperparameterError(f"Cannot read the hyperparameter file {path}: {error}.") from error
    if not isinstance(table, dict):
        raise HyperparameterError(f"{path} must map env ids to hyperparameters at its top level, got {type(table).__name__}.")
    if env_id not in table:
        close = difflib.get_close_matches(env_id, list(table), n=3)
        raise HyperparameterError(
            f"No hyperparameters for {env_id!r} in {path}. "
            + (f"Did you mean {close}? " if close else "")
            + f"Known ids: {sorted(table)}. MLSH trains on task families: envs with sample_tasks(n) and set_task(task), "
            "as the mlsh/* ids; for a family of your own, add an entry to a YAML file and pass --hyperparams-file."
        )
    entry = table[env_id]
    if not isinstance(entry, dict):
        raise HyperparameterError(f"The entry of {env_id!r} in {path} must be a mapping, got {entry!r}.")
    return dict(entry)


def override_hyperparams(entry: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """
    :param entry: A YAML entry.
    :param overrides: ``key:value`` pairs (values in YAML syntax); ``master_kwargs.clip_range:0.3`` sets one key of a
        nested mapping.
    :return: A copy of the entry with the overrides applied.
    """
    entry = dict(entry)
    for item in overrides:
        if ":" not in item:
            raise HyperparameterError(f"--hyperparams takes key:value pairs, got {item!r}.")
        key, text = item.split(":", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problem = str(error).splitlines()[0]
            raise HyperparameterError(
                f"--hyperparams {item!r}: the value {text!r} is not valid YAML ({problem}); e.g. n_envs:8, "
                'policy_kwargs:"dict(net_arch=[64, 64])", master_kwargs.clip_range:0.3.'
            ) from error
        if "." in key:
            outer, inner = key.split(".", 1)
            nested = entry.get(outer, {})
            if not isinstance(nested, dict):
                raise HyperparameterError(
                    f"Cannot set {key!r}: {outer!r} is {nested!r}, not a mapping; "
                    "write it as a YAML mapping to override one key."
                )
            entry[outer] = {**nested, inner: value}
        else:
            entry[key] = value
    return entry
