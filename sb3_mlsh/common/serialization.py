"""
Model files that run no code when loaded: every entry of a saved MLSH model is JSON (spaces, schedules, RNG states and
classes written as tagged values, classes only from an allow-list) or a tensor file that torch reads with
``weights_only=True``. Only values that have no such form (a user's own env factory or learning-rate function) are
stored pickled, under a ``":pickled:"`` tag, and :func:`decode` restores them only when the caller trusts the file.
"""

import base64
import importlib
import io
import json
import os
import pathlib
import tempfile
import zipfile
from typing import Any

import cloudpickle
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.save_util import save_to_zip_file
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule, get_device

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "UntrustedValueError",
    "decode",
    "encode",
    "read_mlsh_model",
    "read_model_zip",
    "write_mlsh_model",
]

#: Written into every saved model; a zip without it is not an sb3-mlsh model.
#: 2: every entry JSON or a weights-only tensor file; 1 (sb3-mlsh 0.1): SB3's pickles.
FORMAT_VERSION = 2

#: Classes a model file may name: the values of ``MLSH(...)`` arguments that are classes.
ALLOWED_CLASSES: dict[str, tuple[str, str]] = {
    **{name: ("torch.nn", name) for name in ("ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Softplus")},
    "DummyVecEnv": ("stable_baselines3.common.vec_env", "DummyVecEnv"),
    "SubprocVecEnv": ("stable_baselines3.common.vec_env", "SubprocVecEnv"),
}


class ModelFileError(ValueError):
    """Raised for a file that is not a loadable sb3-mlsh model, with the reason and the fix."""


class UntrustedValueError(ModelFileError):
    """
    Raised when a model file holds a pickled value (one with no safe form) and the caller did not trust the file.

    :param where: The value's place in the file, e.g. ``"task_sampler"`` or ``"init_kwargs.subpolicy_kwargs"``.
    :param type_name: The pickled value's type.
    """

    def __init__(self, where: str, type_name: str) -> None:
        self.where = where
        super().__init__(
            f"The model file's {where} is a pickled {type_name}: restoring it would run code from the file. Pass the "
            f"value again instead ({_hint(where)}), or, only for a file you trust, load it with trusted=True."
        )


def _hint(where: str) -> str:
    top = where.split(".")[0]
    if top == "task_sampler":
        return "MLSH.load(path, task_sampler=...)"
    if top == "init_kwargs":
        argument = where.split(".")[1] if "." in where else "..."
        return f"MLSH.load(path, {argument}=...)"
    return f"it is {where}"


def _class_name(value: type) -> str | None:
    for name, (module, attribute) in ALLOWED_CLASSES.items():
        if getattr(importlib.import_module(module), attribute) is value:
            return name
    return None


def _encode_space(space: spaces.Space, where: str) -> dict[str, Any]:
    if isinstance(space, spaces.Box):
        return {
            ":space:": "Box",
            "low": encode(space.low, where),
            "high": encode(space.high, where),
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.Discrete):
        return {":space:": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {":space:": "MultiDiscrete", "nvec": encode(space.nvec, where)}
    if isinstance(space, spaces.MultiBinary):
        return {":space:": "MultiBinary", "n": encode(space.n, where)}
    if isinstance(space, spaces.Dict):
        return {":space:": "Dict", "spaces": {key: _encode_space(value, where) for key, value in space.spaces.items()}}
    raise TypeError(f"no safe form for the space {space}")


def _decode_space(value: dict[str, Any]) -> spaces.Space:
    kind = value[":space:"]
    if kind == "Box":
        return spaces.Box(decode(value["low"]), decode(value["high"]), dtype=np.dtype(value["dtype"]))
    if kind == "Discrete":
        return spaces.Discrete(value["n"], start=value["start"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(decode(value["nvec"]))
    if kind == "MultiBinary":
        return spaces.MultiBinary(decode(value["n"]))
    if kind == "Dict":
        return spaces.Dict({key: _decode_space(space) for key, space in value["spaces"].items()})
    raise ModelFileError(f"unknown space {kind!r} in the model file")


def encode(value: Any, where: str = "data") -> Any:
    """
    :param value: A value to store.
    :param where: Its place in the file, for messages.
    :return: A JSON value; values with no safe form are pickled under a ``":pickled:"`` tag.
    """
    from sb3_mlsh.common.tasks import TaskSampler

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if isinstance(value, list):
        return [encode(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, tuple):
        return {":tuple:": [encode(item, f"{where}[{index}]") for index, item in enumerate(value)]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: encode(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return {":ndarray:": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, spaces.Space):
        try:
            return _encode_space(value, where)
        except TypeError:
            pass
    if isinstance(value, ConstantSchedule):
        return {":schedule:": "constant", "value": value.val}
    if isinstance(value, LinearSchedule):
        return {":schedule:": "linear", "start": value.start, "end": value.end, "end_fraction": value.end_fraction}
    if isinstance(value, FloatSchedule):
        inner = encode(value.value_schedule, where)
        if not (isinstance(inner, dict) and ":pickled:" in inner):
            return {":schedule:": "float", "inner": inner}
    if isinstance(value, type) and _class_name(value) is not None:
        return {":class:": _class_name(value)}
    if isinstance(value, TaskSampler) and isinstance(value.env, str):
        return {
            ":task_sampler:": value.env,
            "split": value.split,
            "env_kwargs": encode(value.env_kwargs, f"{where}.env_kwargs"),
            "rng": encode(value.rng.bit_generator.state, f"{where}.rng"),
        }
    return {":pickled:": base64.b64encode(cloudpickle.dumps(value)).decode(), ":type:": type(value).__qualname__}


def decode(value: Any, where: str = "data", trusted: bool = False) -> Any:
    """
    Inverse of :func:`encode`.

    :param value: A JSON value read from a model file.
    :param where: Its place in the file, for messages.
    :param trusted: Unpickle ``":pickled:"`` values (this runs code from the file).
    :raises UntrustedValueError: for a pickled value when ``trusted`` is False.
    """
    if isinstance(value, list):
        return [decode(item, f"{where}[{index}]", trusted) for index, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if ":pickled:" in value or ":serialized:" in value:  # ":serialized:": SB3's own pickles (files of sb3-mlsh 0.1)
        if not trusted:
            raise UntrustedValueError(where, str(value.get(":type:", "object")))
        return cloudpickle.loads(base64.b64decode(value.get(":pickled:") or value[":serialized:"]))
    if ":tuple:" in value:
        return tuple(decode(item, f"{where}[{index}]", trusted) for index, item in enumerate(value[":tuple:"]))
    if ":ndarray:" in value:
        return np.array(value[":ndarray:"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    if ":space:" in value:
        return _decode_space(value)
    if ":schedule:" in value:
        kind = value[":schedule:"]
        if kind == "constant":
            return ConstantSchedule(value["value"])
        if kind == "linear":
            return LinearSchedule(value["start"], value["end"], value["end_fraction"])
        return FloatSchedule(decode(value["inner"], where, trusted))
    if ":class:" in value:
        if value[":class:"] not in ALLOWED_CLASSES:
            raise ModelFileError(f"The model file's {where} names the class {value[':class:']!r}, which is not allowed.")
        module, attribute = ALLOWED_CLASSES[value[":class:"]]
        return getattr(importlib.import_module(module), attribute)
    if ":task_sampler:" in value:
        from sb3_mlsh.common.tasks import TaskSampler

        sampler = TaskSampler(
            value[":task_sampler:"], split=value["split"], env_kwargs=decode(value["env_kwargs"], where, trusted)
        )
        sampler.rng.bit_generator.state = decode(value["rng"], where, trusted)
        return sampler
    return {key: decode(item, f"{where}.{key}", trusted) for key, item in value.items()}


def read_model_zip(source: Any, device: th.device | str = "cpu") -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """
    Read a model zip in SB3's layout without running code from it: ``data`` is parsed as plain JSON (nothing decoded),
    tensor files are read by torch with ``weights_only=True``.

    :param source: A path or a file object.
    :param device: Where tensors go.
    :return: The raw JSON data, the parameters and the PyTorch variables.
    :raises ModelFileError: for a file that is not a zip, is truncated or corrupt, or has no ``data``.
    """
    device = get_device(device)
    if isinstance(source, (str, os.PathLike)) and not os.path.exists(source) and os.path.exists(f"{source}.zip"):
        source = f"{source}.zip"  # as SB3's load: the suffix may be left out
    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
            if "data" not in names:
                if _starts_with_data_entry(source):
                    # The tensor files are zips themselves: a cut file can end in one of their directories.
                    raise ModelFileError(f"{source} is truncated or corrupt: its own zip directory is missing")
                raise ModelFileError(f"{source} has no 'data' entry: it is not a Stable-Baselines3 or sb3-mlsh model file.")
            data = json.loads(archive.read("data"))
            tensors: dict[str, Any] = {}
            for name in names:
                if name.endswith(".pth"):
                    buffer = io.BytesIO(archive.read(name))
                    tensors[name[: -len(".pth")]] = th.load(buffer, map_location=device, weights_only=True)
    except (zipfile.BadZipFile, EOFError, json.JSONDecodeError, zipfile.LargeZipFile) as error:
        raise ModelFileError(f"{source} is truncated or corrupt: {type(error).__name__}: {error}") from error
    except RuntimeError as error:
        raise ModelFileError(f"{source} is truncated or corrupt: a tensor file does not read ({error})") from error
    except th.serialization.pickle.UnpicklingError as error:  # type: ignore[attr-defined]
        raise ModelFileError(
            f"{source} holds a tensor file with objects other than tensors, which would run code to load: refused ({error})"
        ) from error
    variables = tensors.pop("pytorch_variables", {})
    return data, tensors, variables


def _starts_with_data_entry(source: Any) -> bool:
    """:return: Whether the file's first zip entry is named ``data``, as in every file SB3's ``save_to_zip_file`` writes."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            head = file.read(64)
    else:
        source.seek(0)
        head = source.read(64)
    if len(head) < 34 or head[:4] != b"PK\x03\x04":
        return False
    name_length = int.from_bytes(head[26:28], "little")
    return head[30 : 30 + name_length] == b"data"


def pickled_fallbacks(data: Any, where: str = "data") -> list[str]:
    """:return: The places in encoded ``data`` that hold pickled values."""
    if isinstance(data, list):
        return [found for index, item in enumerate(data) for found in pickled_fallbacks(item, f"{where}[{index}]")]
    if not isinstance(data, dict):
        return []
    if ":pickled:" in data or ":serialized:" in data:
        return [where]
    return [found for key, item in data.items() for found in pickled_fallbacks(item, f"{where}.{key}")]


def write_mlsh_model(
    path: str | pathlib.Path | io.BufferedIOBase, data: dict[str, Any], params: dict[str, Any], pytorch_variables: dict
) -> None:
    """
    Write a model file: ``data`` encoded as JSON (:func:`encode`), tensors as SB3 writes them. A path is written
    atomically: the file appears complete or not at all, with the mode any other new file gets.

    :param path: File path (``.zip`` is added when missing) or a writable file object.
    :param data: The model's data, with ``mlsh_format_version``.
    :param params: State dicts.
    :param pytorch_variables: Tensors such as the torch generator state.
    """
    data = {key: encode(value, key) for key, value in data.items()}
    if isinstance(path, io.BufferedIOBase):
        save_to_zip_file(path, data=data, params=params, pytorch_variables=pytorch_variables)
        return
    path = pathlib.Path(path)
    if path.suffix == "":
        path = path.with_suffix(".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    archive = io.BytesIO()
    save_to_zip_file(archive, data=data, params=params, pytorch_variables=pytorch_variables)
    # Write beside the target, then rename over it: a crash never leaves a half-written file in its place.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        try:
            tmp.write(archive.getvalue())
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            os.unlink(tmp.name)
            raise
    # NamedTemporaryFile creates the file private (0600): give it the mode any other file gets here.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp.name, 0o666 & ~umask)
    os.replace(tmp.name, path)


def read_mlsh_model(
    path: Any, device: th.device | str, trusted: bool, overridden: set[str], task_sampler_given: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """
    Read and decode a model file written by :func:`write_mlsh_model` (or by sb3-mlsh 0.1, with ``trusted``).

    :param path: The zip file.
    :param device: Where tensors go.
    :param trusted: Unpickle the values stored pickled (this runs code from the file).
    :param overridden: Constructor arguments the caller gives anew: they are not decoded (a pickled value that is
        replaced never loads).
    :param task_sampler_given: The caller gives a task sampler: the saved one is not decoded (``data["task_sampler"]``
        is None).
    :return: The decoded data (``init_kwargs`` without the overridden arguments, and ``saved_task_groups``), the
        parameters and the PyTorch variables.
    :raises ModelFileError: for a file that is not an sb3-mlsh model, is corrupt, is newer than this version, or holds
        pickles that it may not load.
    """
    try:
        raw, params, pytorch_variables = read_model_zip(path, device=device)
    except FileNotFoundError:
        raise
    except ModelFileError as error:
        raise ModelFileError(f"{error}; use an earlier checkpoint, or save the model again.") from error
    if raw.get("mlsh_format_version") is None:
        raise ModelFileError(
            f"{path} is not an sb3-mlsh model (no mlsh_format_version in it): it is a model of another algorithm, "
            "which its own class loads (e.g. stable_baselines3.PPO.load)."
        )
    if raw["mlsh_format_version"] > FORMAT_VERSION:
        raise ModelFileError(f"{path} was saved by a newer sb3-mlsh (format {raw['mlsh_format_version']}); upgrade sb3-mlsh.")
    try:
        data = {key: decode(value, key, trusted) for key, value in raw.items() if key not in ("init_kwargs", "task_sampler")}
        saved_kwargs = raw["init_kwargs"]
        if ":serialized:" in saved_kwargs:  # format 1: the whole mapping pickled by SB3
            saved_kwargs = decode(saved_kwargs, "init_kwargs", trusted)
        data["saved_task_groups"] = saved_kwargs["task_groups"]
        data["saved_n_envs"] = saved_kwargs.get("n_envs")
        data["init_kwargs"] = {
            key: decode(value, f"init_kwargs.{key}", trusted) for key, value in saved_kwargs.items() if key not in overridden
        }
        data["task_sampler"] = None if task_sampler_given else decode(raw["task_sampler"], "task_sampler", trusted)
    except UntrustedValueError:
        if raw["mlsh_format_version"] < 2:
            raise ModelFileError(
                f"{path} was saved by sb3-mlsh 0.1, whose files hold pickles that run code when loaded. "
                "Load it once with MLSH.load(path, trusted=True), only if you trust the file, and save it again."
            ) from None
        raise
    return data, params, pytorch_variables
