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
    "DATA_KEYS",
    "FORMAT_VERSION",
    "INIT_KWARGS_KEYS",
    "MAX_DATA_BYTES",
    "MAX_EXPANSION",
    "MAX_TENSOR_BYTES",
    "ModelFileError",
    "UntrustedValueError",
    "decode",
    "encode",
    "read_mlsh_model",
    "read_model_data",
    "read_model_zip",
    "verify_model_zip",
    "write_atomically",
    "write_mlsh_model",
]

#: Written into every saved model; a zip without it is not an sb3-mlsh model.
#: 2: every entry JSON or a weights-only tensor file; 1 (sb3-mlsh 0.1): SB3's pickles.
FORMAT_VERSION = 2

#: Classes a model file may name: the values of ``MLSH(...)`` arguments that are classes.
ALLOWED_CLASSES: dict[str, tuple[str, str]] = {
    **{name: ("torch.nn", name) for name in ("ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Softplus")},
    **{name: ("torch.optim", name) for name in ("Adam", "AdamW", "RMSprop", "SGD")},
    "DummyVecEnv": ("stable_baselines3.common.vec_env", "DummyVecEnv"),
    "SubprocVecEnv": ("stable_baselines3.common.vec_env", "SubprocVecEnv"),
}

#: Largest ``data`` entry (JSON) a model file may have, uncompressed: the largest saves of the shipped families (a
#: HumanoidWalkCrawl run with its envs' episodes in progress) hold about 250 kB.
MAX_DATA_BYTES = 32 * 2**20
#: Largest tensor file a model file may have, uncompressed.
MAX_TENSOR_BYTES = 4 * 2**30
#: How much a compressed entry may expand. SB3 and torch write entries uncompressed; a file zipped again with deflate
#: expands a little (weights barely compress), a zip bomb a thousandfold.
MAX_EXPANSION = 20
#: The entries of a model file's ``data`` (``distributed``: a distributed run's; ``run_id``: a run of the command line's).
DATA_KEYS = frozenset(
    {
        "mlsh_format_version", "policy_name", "task_sampler", "init_kwargs", "observation_space", "action_space",
        "num_timesteps", "iteration", "trainer", "collector_rng", "reward_scaler", "learner_updates", "numpy_rng_state",
        "python_rng_state", "torch_rng_state", "run_state", "distributed", "run_id", "observation_normalizer",
    }
)  # fmt: skip
#: The constructor arguments a model file may record.
INIT_KWARGS_KEYS = frozenset(
    {
        "n_subpolicies", "macro_duration", "warmup_iterations", "joint_iterations", "n_steps", "n_envs", "task_groups",
        "master_kwargs", "subpolicy_kwargs", "policy_kwargs", "master_epsilon", "skill_diversity", "discriminator_kwargs",
        "subpolicy_obs_exclude", "master_obs_exclude", "normalize_reward", "torch_threads", "stagger_groups",
        "vec_env_class", "seed", "stats_window_size", "max_macro_duration", "normalize_observation",
    }
)  # fmt: skip
#: NumPy dtypes a model file's arrays may have: numbers and booleans (a string dtype may ask for gigabytes per item).
_NUMERIC_KINDS = "biuf"


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
        return spaces.Box(decode(value["low"]), decode(value["high"]), dtype=_numeric_dtype(value["dtype"], "a Box space"))
    if kind == "Discrete":
        return spaces.Discrete(value["n"], start=value["start"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(decode(value["nvec"]))
    if kind == "MultiBinary":
        return spaces.MultiBinary(decode(value["n"]))
    if kind == "Dict":
        return spaces.Dict({key: _decode_space(space) for key, space in value["spaces"].items()})
    raise ModelFileError(f"unknown space {kind!r} in the model file")


def _numeric_dtype(name: Any, where: str) -> np.dtype:
    """:raises ModelFileError: for a dtype other than a number or a boolean of at most 8 bytes."""
    try:
        dtype = np.dtype(name) if isinstance(name, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in _NUMERIC_KINDS or dtype.itemsize > 8:
        raise ModelFileError(
            f"The model file's {where} has the dtype {name!r}: model files hold arrays of numbers and booleans only "
            "(a string or object dtype may ask for gigabytes, or run code). The file is corrupt or crafted: refused."
        )
    return dtype


def _decode_array(value: dict[str, Any], where: str) -> np.ndarray:
    dtype = _numeric_dtype(value.get("dtype"), where)
    shape = value.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ModelFileError(f"The model file's {where} has the array shape {shape!r}: not a list of sizes. Refused.")
    try:
        array = np.array(value[":ndarray:"], dtype=dtype)
        return array.reshape(shape)
    except (ValueError, TypeError, OverflowError) as error:
        raise ModelFileError(f"The model file's {where} is not an array of shape {shape} ({error}): refused.") from error


def _env_id(value: Any, where: str, trusted: bool) -> str:
    """
    :raises ModelFileError: for an env id that is not a string, or that names a module to import (``module:Env-v0``:
        ``gymnasium.make`` imports the module, which runs its code) in a file that is not trusted.
    """
    if not isinstance(value, str):
        raise ModelFileError(f"The model file's {where} has the env id {value!r}, not a string: refused.")
    if ":" in value and not trusted:
        module = value.split(":", 1)[0]
        raise ModelFileError(
            f"The model file's {where} has the env id {value!r}: gymnasium.make would import the module {module!r} "
            "(whatever a file of that name on the Python path holds) and run its code. Pass the task sampler again "
            "(MLSH.load(path, task_sampler=...), or import the module yourself and give the id without 'module:'), or, "
            "only for a file you trust, load it with trusted=True (python -m sb3_mlsh.train --resume RUN --trusted)."
        )
    return value


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
        return _decode_array(value, where)
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
            _env_id(value[":task_sampler:"], where, trusted),
            split=value["split"],
            env_kwargs=decode(value["env_kwargs"], where, trusted),
        )
        sampler.rng.bit_generator.state = decode(value["rng"], where, trusted)
        return sampler
    return {key: decode(item, f"{where}.{key}", trusted) for key, item in value.items()}


def _check_entry(info: zipfile.ZipInfo, source: Any, limit: int) -> None:
    """:raises ModelFileError: for an entry that would inflate past ``limit`` bytes, or far past its compressed size."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelFileError(
            f"{source}: its entry {info.filename!r} is compressed with zip method {info.compress_type}; model files are "
            "stored or deflated: refused (not an sb3-mlsh file)."
        )
    expands = info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > max(2**20, MAX_EXPANSION * info.compress_size)
    if info.file_size > limit or expands:
        raise ModelFileError(
            f"{source}: its entry {info.filename!r} would inflate from {info.compress_size} to {info.file_size} bytes "
            f"(at most {limit} bytes, and {MAX_EXPANSION} times its compressed size, are read): a zip bomb, or not a "
            "model file. Refused before reading it."
        )


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: Any, limit: int, keep: bool = True) -> bytes:
    """
    :return: The entry's bytes (empty when not ``keep``: the read then only checks the CRC), read in pieces so that an
        entry whose header understates its size is stopped at ``limit`` bytes, never inflated in one piece.
    :raises ModelFileError: as :func:`_check_entry`, or when the entry inflates past ``limit`` all the same.
    """
    _check_entry(info, source, limit)
    pieces, size = [], 0
    with archive.open(info) as entry:
        while piece := entry.read(2**20):
            size += len(piece)
            if size > limit:
                raise ModelFileError(f"{source}: its entry {info.filename!r} inflates past {limit} bytes: refused.")
            if keep:
                pieces.append(piece)
    return b"".join(pieces)


def _check_tensor_file(blob: bytes, source: Any, name: str) -> None:
    """
    A tensor file is a zip itself, whose records torch inflates in one piece to the size their header declares: check
    those headers as the outer file's (torch writes them stored, each inside the file).
    """
    if not zipfile.is_zipfile(io.BytesIO(blob)):
        return  # torch refuses it with its own error (a legacy tensor file is read in pieces)
    with zipfile.ZipFile(io.BytesIO(blob)) as inner:
        for info in inner.infolist():
            _check_entry(info, f"{source} ({name})", MAX_TENSOR_BYTES)
            stored_size_wrong = info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size
            if stored_size_wrong or info.header_offset + info.compress_size > len(blob):
                raise ModelFileError(
                    f"{source}: the record {info.filename!r} of {name} declares {info.file_size} bytes that the file "
                    "does not hold: truncated or crafted, refused."
                )


def _non_finite(tree: Any, where: str) -> str | None:
    """:return: The place of the first floating-point tensor in ``tree`` with a NaN or an inf, None if there is none."""
    if th.is_tensor(tree):
        return None if not tree.is_floating_point() or bool(th.isfinite(tree).all()) else where
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)  # type: ignore[assignment]
    else:
        return None
    for key, value in items:
        found = _non_finite(value, f"{where}.{key}")
        if found is not None:
            return found
    return None


def _open_zip(source: Any) -> zipfile.ZipFile:
    if isinstance(source, (str, os.PathLike)) and not os.path.exists(source) and os.path.exists(f"{source}.zip"):
        source = f"{source}.zip"  # as SB3's load: the suffix may be left out
    return zipfile.ZipFile(source)


def _read_data(archive: zipfile.ZipFile, source: Any) -> dict[str, Any]:
    names = archive.namelist()
    if "data" not in names:
        if _starts_with_data_entry(source):
            # The tensor files are zips themselves: a cut file can end in one of their directories.
            raise ModelFileError(f"{source} is truncated or corrupt: its own zip directory is missing")
        raise ModelFileError(f"{source} has no 'data' entry: it is not a Stable-Baselines3 or sb3-mlsh model file.")
    try:
        data = json.loads(_read_entry(archive, archive.getinfo("data"), source, MAX_DATA_BYTES))
    except RecursionError as error:  # nesting deeper than the interpreter's stack: no model file nests so
        raise ModelFileError(f"{source} is truncated or corrupt: its data nests too deeply") from error
    if not isinstance(data, dict):
        raise ModelFileError(f"{source} is truncated or corrupt: its data is a {type(data).__name__}, not a mapping")
    return data


def read_model_data(source: Any) -> dict[str, Any]:
    """
    Read only the ``data`` entry of a model zip, as plain JSON (nothing decoded), with the size limits of
    :func:`read_model_zip`.

    :param source: A path or a file object.
    :return: The raw JSON data.
    :raises ModelFileError: for a file that is not a zip, is truncated or corrupt, or has no ``data``.
    """
    try:
        with _open_zip(source) as archive:
            return _read_data(archive, source)
    except (zipfile.BadZipFile, EOFError, ValueError, zipfile.LargeZipFile, OSError) as error:
        if isinstance(error, (ModelFileError, FileNotFoundError)):
            raise
        raise ModelFileError(f"{source} is truncated or corrupt: {type(error).__name__}: {error}") from error


def verify_model_zip(source: Any) -> None:
    """
    Read every entry of a model zip with the limits of :func:`read_model_zip`, checking each CRC, without keeping the
    tensors (a quick test of a checkpoint before a run resumes from it).

    :param source: A path.
    :raises ModelFileError: for a truncated or corrupt file (e.g. a bad CRC), or an entry over the limits.
    """
    try:
        with _open_zip(source) as archive:
            _read_data(archive, source)
            for info in archive.infolist():
                if info.filename.endswith(".pth"):
                    _read_entry(archive, info, source, MAX_TENSOR_BYTES, keep=False)
    except (zipfile.BadZipFile, EOFError, ValueError, zipfile.LargeZipFile, OSError) as error:
        if isinstance(error, (ModelFileError, FileNotFoundError)):
            raise
        raise ModelFileError(f"{source} is truncated or corrupt: {type(error).__name__}: {error}") from error


def read_model_zip(source: Any, device: th.device | str = "cpu") -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """
    Read a model zip in SB3's layout without running code from it and without inflating it past fixed limits: ``data``
    (at most :data:`MAX_DATA_BYTES`) is parsed as plain JSON (nothing decoded), tensor files (at most
    :data:`MAX_TENSOR_BYTES` each) are read by torch with ``weights_only=True``; an entry that expands more than
    :data:`MAX_EXPANSION` times is refused unread.

    :param source: A path or a file object.
    :param device: Where tensors go.
    :return: The raw JSON data, the parameters and the PyTorch variables.
    :raises ModelFileError: for a file that is not a zip, is truncated or corrupt, has no ``data``, has an entry over
        the limits, or holds weights that are not finite (NaN or inf).
    """
    device = get_device(device)
    try:
        with _open_zip(source) as archive:
            data = _read_data(archive, source)
            tensors: dict[str, Any] = {}
            for info in archive.infolist():
                if info.filename.endswith(".pth"):
                    blob = _read_entry(archive, info, source, MAX_TENSOR_BYTES)
                    _check_tensor_file(blob, source, info.filename)
                    name = info.filename[: -len(".pth")]
                    tensors[name] = th.load(io.BytesIO(blob), map_location=device, weights_only=True)
    except th.serialization.pickle.UnpicklingError as error:  # type: ignore[attr-defined]
        raise ModelFileError(
            f"{source} holds a tensor file with objects other than tensors, which would run code to load: refused ({error})"
        ) from error
    except (zipfile.BadZipFile, EOFError, ValueError, zipfile.LargeZipFile, RuntimeError, OSError) as error:
        if isinstance(error, (ModelFileError, FileNotFoundError)):
            raise
        if isinstance(error, RuntimeError):
            raise ModelFileError(f"{source} is truncated or corrupt: a tensor file does not read ({error})") from error
        raise ModelFileError(f"{source} is truncated or corrupt: {type(error).__name__}: {error}") from error
    variables = tensors.pop("pytorch_variables", {})
    bad = _non_finite(tensors, "parameters")
    if bad is not None:
        raise ModelFileError(
            f"{source} holds NaN or inf weights ({bad}): a run that diverged, or a corrupt file. Use an earlier checkpoint."
        )
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
    archive = io.BytesIO()
    save_to_zip_file(archive, data=data, params=params, pytorch_variables=pytorch_variables)
    write_atomically(path, archive.getvalue())


def write_atomically(path: str | pathlib.Path, payload: bytes) -> None:
    """
    Write ``payload`` to ``path`` so that the file appears complete or not at all (a failed write, e.g. on a full disk,
    leaves the previous file and no temporary one), with the mode any other new file gets.

    :param path: File path (``.zip`` is added when it has no suffix).
    :param payload: The file's bytes.
    """
    path = pathlib.Path(path)
    if path.suffix == "":
        path = path.with_suffix(".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename over it: a crash never leaves a half-written file in its place.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        try:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            os.unlink(tmp.name)  # closing may fail as the write did: the file is gone by then
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
    :return: The decoded data (``init_kwargs`` without the overridden arguments, ``saved_task_groups`` and
        ``saved_master_obs_exclude``), the parameters and the PyTorch variables.
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
    version = raw["mlsh_format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path} has the format version {version!r}: corrupt or crafted, refused.")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was saved by a newer sb3-mlsh (format {version}); upgrade sb3-mlsh.")
    if version >= 2:
        _check_keys(path, raw)
    try:
        data = {key: decode(value, key, trusted) for key, value in raw.items() if key not in ("init_kwargs", "task_sampler")}
        saved_kwargs = raw["init_kwargs"]
        if ":serialized:" in saved_kwargs:  # format 1: the whole mapping pickled by SB3
            saved_kwargs = decode(saved_kwargs, "init_kwargs", trusted)
        data["saved_task_groups"] = saved_kwargs["task_groups"]
        data["saved_n_envs"] = saved_kwargs.get("n_envs")
        # What the saved masters saw, even when the caller gives master_obs_exclude anew: other masters start afresh.
        data["saved_master_obs_exclude"] = decode(
            saved_kwargs.get("master_obs_exclude"), "init_kwargs.master_obs_exclude", trusted
        )
        data["init_kwargs"] = {
            key: decode(value, f"init_kwargs.{key}", trusted) for key, value in saved_kwargs.items() if key not in overridden
        }
        data["task_sampler"] = None if task_sampler_given else decode(raw["task_sampler"], "task_sampler", trusted)
    except UntrustedValueError:
        if version < 2:
            raise ModelFileError(
                f"{path} was saved by sb3-mlsh 0.1, whose files hold pickles that run code when loaded. "
                "Load it once with MLSH.load(path, trusted=True), only if you trust the file, and save it again."
            ) from None
        raise
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, AssertionError) as error:
        raise ModelFileError(
            f"{path} is corrupt or crafted: a value in it does not decode ({type(error).__name__}: {error}). "
            "Use an earlier checkpoint."
        ) from error
    return data, params, pytorch_variables


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_keys(path: Any, raw: dict[str, Any]) -> None:
    """:raises ModelFileError: for entries that no sb3-mlsh writes, or counters that are not counts."""
    unknown = sorted(set(raw) - DATA_KEYS)
    if not isinstance(raw.get("init_kwargs"), dict):
        raise ModelFileError(f"{path} has no init_kwargs mapping: corrupt or crafted, refused.")
    unknown += sorted(f"init_kwargs.{key}" for key in set(raw["init_kwargs"]) - INIT_KWARGS_KEYS)
    if unknown:
        raise ModelFileError(
            f"{path} holds entries that no sb3-mlsh writes: {unknown}. The file is crafted or of another program: refused."
        )
    for key in ("num_timesteps", "iteration"):
        if not _count(raw.get(key)):
            raise ModelFileError(
                f"{path} records {key} = {raw.get(key)!r}, not a count of steps (an integer >= 0; NaN, negative and "
                "fractional values are refused): the file is corrupt or crafted. Use an earlier checkpoint."
            )
