"""Config and model files as an attacker writes them: nothing in them runs code, and none exhausts memory."""

import io
import json
import os
import re
import subprocess
import sys
import zipfile

import pytest
import torch as th
import yaml
from toy_envs import small_model

from sb3_mlsh import MLSH, ModelFileError
from sb3_mlsh.cli.hyperparams import HyperparameterError, parse_hyperparams
from sb3_mlsh.cli.train import main, run

ENV_ID = "mlsh/MovementBandits-v0"
RUN = ["--no-progress", "--verbose", "0"]


# ------------------------------------------------------------------------------------------------- helpers
def _saved(path, **kwargs) -> str:
    """A small model of MovementBandits (its task sampler is an env id: the file loads with no argument)."""
    small_model(ENV_ID, n_envs=2, **kwargs).save(path)  # BOMBS["n_steps"] names n_envs = 2
    return str(path)


def _data(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("data"))


def _rewrite(path, out, data: dict | None = None, entries: dict | None = None, compression: int = zipfile.ZIP_STORED) -> str:
    """A copy of the model at ``path`` with its ``data`` and other entries replaced."""
    replacements = dict(entries or {})
    if data is not None:
        replacements["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w", compression=compression) as target:
        for name in source.namelist():
            target.writestr(name, replacements.get(name, source.read(name)))
    return str(out)


def _write_params(path, out, entry: str, change) -> str:
    """A copy of the model at ``path`` whose tensor file ``entry`` holds ``change(state_dict)``."""
    with zipfile.ZipFile(path) as archive:
        state = th.load(io.BytesIO(archive.read(entry)), weights_only=True)
    change(state)
    buffer = io.BytesIO()
    th.save(state, buffer)
    return _rewrite(path, out, entries={entry: buffer.getvalue()})


# --------------------------------------------------------------------------------- 1. dict(...) strings run nothing
@pytest.mark.parametrize(
    "text",
    [
        "dict(net_arch=[64, 64], x=th.os.system('touch {marker}'))",
        "dict(net_arch=[64, 64], x=__import__('os').system('touch {marker}'))",
        "dict(activation_fn=nn.Module.__subclasses__())",
        "dict(net_arch=[64] * 10**9)",
        "dict(f=lambda: 0)",
        "dict(net_arch=open('{marker}', 'w'))",
    ],
)
def test_a_dict_string_is_read_never_run(tmp_path, text):
    marker = tmp_path / "pwned"
    with pytest.raises(HyperparameterError, match=r"policy_kwargs: .* is not allowed.*it is read, never run"):
        parse_hyperparams({"policy_kwargs": text.format(marker=marker)}, ENV_ID)
    assert not marker.exists()


def test_dict_strings_keep_what_the_zoo_writes_and_nothing_else():
    text = (
        "dict(net_arch=dict(pi=[32, 32], vf=[64]), activation_fn=nn.Tanh, log_std_init=-2, ortho_init=False, "
        "optimizer_class=th.optim.RMSprop, optimizer_kwargs=dict(eps=1e-5, alpha=0.99), features=(1, 2.5), x=None)"
    )
    kwargs, _, _ = parse_hyperparams({"policy_kwargs": text}, ENV_ID)
    assert kwargs["policy_kwargs"] == dict(
        net_arch=dict(pi=[32, 32], vf=[64]), activation_fn=th.nn.Tanh, log_std_init=-2, ortho_init=False,
        optimizer_class=th.optim.RMSprop, optimizer_kwargs=dict(eps=1e-5, alpha=0.99), features=(1, 2.5), x=None,
    )  # fmt: skip
    # A class outside the allow-list is refused, harmless or not: the list is what a model file may store.
    with pytest.raises(HyperparameterError, match=r"'nn.Identity' in .* is not allowed"):
        parse_hyperparams({"policy_kwargs": "dict(activation_fn=nn.Identity)"}, ENV_ID)


def test_a_run_config_runs_nothing_on_resume(tmp_path, capsys):
    main(["--env", ENV_ID, "-n", "200", "-f", str(tmp_path), *RUN, "-params", "n_envs:2", "n_steps:50"])
    folder = tmp_path / "mlsh" / "mlsh-MovementBandits-v0_1"
    marker = tmp_path / "pwned"
    config = yaml.safe_load((folder / "config.yml").read_text())
    config["hyperparams"]["policy_kwargs"] = f"dict(net_arch=[64, 64], x=th.os.system('touch {marker}'))"
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    # The model file is the source of truth: the config's strings are not even read.
    resumed = main(["--resume", str(folder), "-n", "300", *RUN])
    assert resumed.num_timesteps == 300 and resumed.policy_kwargs == {"share_scaled_steps": True, "net_arch": [64, 64]}
    assert not marker.exists()


def test_a_hyperparameter_file_runs_nothing_and_gets_one_line(tmp_path, capsys):
    marker = tmp_path / "pwned"
    yml = tmp_path / "evil.yml"
    yml.write_text(f"{ENV_ID}:\n  policy_kwargs: \"dict(x=th.os.system('touch {marker}'))\"\n")
    with pytest.raises(SystemExit) as exit_info:
        run(["--env", ENV_ID, "-yaml", str(yml), "-f", str(tmp_path)])
    assert exit_info.value.code == 2 and not marker.exists()
    assert capsys.readouterr().err.startswith('error: policy_kwargs: "th.os.system(')


# ------------------------------------------------------------------------ 2. a saved env id imports no module
@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A module ``planted_mlsh`` on the Python path that leaves a marker file when imported."""
    marker = tmp_path / "pwned"
    (tmp_path / "planted_mlsh.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "planted_mlsh", raising=False)
    return marker


def test_a_saved_env_id_with_a_module_is_refused_unless_trusted(tmp_path, planted, monkeypatch):
    path = _saved(tmp_path / "model.zip")
    data = _data(path)
    data["task_sampler"][":task_sampler:"] = f"planted_mlsh:{ENV_ID}"
    tampered = _rewrite(path, tmp_path / "tampered.zip", data)
    with pytest.raises(ModelFileError, match=r"env id 'planted_mlsh:mlsh/.*import the module 'planted_mlsh'.*trusted=True"):
        MLSH.load(tampered)
    assert not planted.exists()
    assert MLSH.load(tampered, task_sampler=ENV_ID).num_timesteps == 0 and not planted.exists()
    assert MLSH.load(tampered, trusted=True).num_timesteps == 0 and planted.exists()


def test_resume_does_not_import_a_module_planted_beside_the_run(tmp_path, planted, monkeypatch, capsys):
    main(["--env", ENV_ID, "-n", "200", "-f", str(tmp_path), *RUN, "-params", "n_envs:2", "n_steps:50"])
    folder = tmp_path / "mlsh" / "mlsh-MovementBandits-v0_1"
    data = _data(folder / "model.zip")
    data["task_sampler"][":task_sampler:"] = f"planted_mlsh:{ENV_ID}"
    (folder / "checkpoints").mkdir(exist_ok=True)
    _rewrite(folder / "model.zip", folder / "checkpoints" / "mlsh_300_steps.zip", {**data, "num_timesteps": 300})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run(["--resume", str(folder), "-n", "400", *RUN])
    assert exit_info.value.code == 2 and not planted.exists()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--trusted" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------- 3. memory bombs
_UNDER_A_MEMORY_LIMIT = """
import json, resource, sys, warnings
from sb3_mlsh import MLSH
from sb3_mlsh.cli.train import _latest_checkpoint
MLSH.load(sys.argv[1])  # a good file, before the limit: the imports and torch's first allocations are done
size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 384 * 2**20, resource.RLIM_INFINITY))
results = {}
for path in sys.argv[1:]:
    try:
        MLSH.load(path)
        results[path] = "loaded"
    except BaseException as error:
        results[path] = f"{type(error).__name__}: {error}"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        results["resume"] = _latest_checkpoint(sys.argv[2].rsplit("/checkpoints/", 1)[0])
    except BaseException as error:
        results["resume"] = f"{type(error).__name__}: {error}"
results["warnings"] = [str(w.message) for w in caught]
print(json.dumps(results))
"""

BOMBS = {
    "zip_bomb": r"would inflate from \d+ to \d+ bytes .* a zip bomb, or not a model file. Refused before reading it",
    "string_dtype": "has the dtype '<U200000000': model files hold arrays of numbers and booleans only",
    "n_steps": "asks for n_steps = 1000000000 and n_envs = 2: its rollout buffers and envs alone need .* GiB, more than",
    "n_subpolicies": r"asks for n_subpolicies = 1000000, but its saved weights are those of 2 sub-policies",
    "net_arch": r"asks for policy_kwargs net_arch = \[200000, 200000\] .* but its saved weights are those of \d+ weights",
}


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """Crafted model files, each loaded (and the first offered to a resume) by one process under a memory limit."""
    folder = tmp_path_factory.mktemp("bombs")
    good = _saved(folder / "good.zip", n_subpolicies=2, macro_duration=4)
    data = _data(good)
    checkpoints = folder / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    paths = {"zip_bomb": str(checkpoints / "mlsh_999_steps.zip")}
    # 512 MiB of JSON whitespace, deflated to about 0.5 MB
    with (
        zipfile.ZipFile(good) as source,
        zipfile.ZipFile(paths["zip_bomb"], "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out,
    ):
        with out.open("data", "w") as entry:
            entry.write(json.dumps(data).encode()[:-1])
            for _ in range(512):
                entry.write(b" " * (2**20 - (1 if _ == 511 else 0)))
            entry.write(b"}")
        for name in source.namelist():
            if name != "data":
                out.writestr(name, source.read(name))
    crafted = json.loads(json.dumps(data))
    crafted["numpy_rng_state"][":tuple:"][1]["dtype"] = "<U200000000"
    paths["string_dtype"] = _rewrite(good, folder / "string_dtype.zip", crafted)
    for name, change in [
        ("n_steps", {"n_steps": 10**9}),
        ("n_subpolicies", {"n_subpolicies": 10**6}),
        ("net_arch", {"policy_kwargs": {"net_arch": [200_000, 200_000]}}),
    ]:
        crafted = {**data, "init_kwargs": {**data["init_kwargs"], **change}}
        paths[name] = _rewrite(good, folder / f"{name}.zip", crafted)
    command = [sys.executable, "-c", _UNDER_A_MEMORY_LIMIT, good, *paths.values()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    return good, paths, results


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_a_file_that_asks_for_gigabytes_is_refused_before_allocating_them(bombs, bomb):
    good, paths, results = bombs
    assert results[good] == "loaded"  # under the same limit, a good file loads
    assert results[paths[bomb]].startswith("ModelFileError: "), results[paths[bomb]]
    assert re.search(BOMBS[bomb], results[paths[bomb]]), results[paths[bomb]]


def test_resume_skips_a_zip_bomb_among_the_checkpoints_with_a_warning(bombs):
    results = bombs[2]
    # The run folder holds the bomb only: it is skipped (not inflated), so nothing is left to resume from.
    assert results["resume"].startswith("FileNotFoundError: No readable checkpoint"), results["resume"]
    assert any("mlsh_999_steps.zip" in w and "zip bomb" in w for w in results["warnings"]), results["warnings"]


# ------------------------------------------------------------------------------ values a file must not hold
def test_unknown_entries_are_refused(tmp_path):
    path = _saved(tmp_path / "model.zip")
    data = _data(path)
    with pytest.raises(ModelFileError, match=r"entries that no sb3-mlsh writes: \['payload'\]"):
        MLSH.load(_rewrite(path, tmp_path / "a.zip", {**data, "payload": [0] * 10}))
    crafted = {**data, "init_kwargs": {**data["init_kwargs"], "monitor_dir": "/etc"}}
    with pytest.raises(ModelFileError, match=r"entries that no sb3-mlsh writes: \['init_kwargs.monitor_dir'\]"):
        MLSH.load(_rewrite(path, tmp_path / "b.zip", crafted))


@pytest.mark.parametrize("value", [float("nan"), -5, 1.5, "100", None])
def test_a_step_count_that_is_not_a_count_is_refused(tmp_path, value):
    path = _saved(tmp_path / "model.zip")
    crafted = _rewrite(path, tmp_path / "crafted.zip", {**_data(path), "num_timesteps": value})
    with pytest.raises(ModelFileError, match=r"records num_timesteps = .*, not a count of steps"):
        MLSH.load(crafted)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("entry", ["subpolicies.pth", "master0.pth"])
def test_nan_or_inf_weights_are_refused(tmp_path, value, entry):
    path = _saved(tmp_path / "model.zip")

    def spoil(state: dict) -> None:
        first = next(iter(state))
        state[first].view(-1)[0] = value

    with pytest.raises(
        ModelFileError, match=r"holds NaN or inf weights \(parameters\.(subpolicies|master0)\..*earlier checkpoint"
    ):
        MLSH.load(_write_params(path, tmp_path / "spoilt.zip", entry, spoil))


def test_a_tensor_file_whose_records_inflate_is_refused(tmp_path):
    path = _saved(tmp_path / "model.zip")
    # A file zipped again with deflate expands a little: it loads.
    assert MLSH.load(_rewrite(path, tmp_path / "again.zip", compression=zipfile.ZIP_DEFLATED)).num_timesteps == 0
    with zipfile.ZipFile(path) as archive:
        inner = zipfile.ZipFile(io.BytesIO(archive.read("subpolicies.pth")))
    # torch reads deflated records too, inflating each in one piece to the size its header declares.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for info in inner.infolist():
            payload = inner.read(info.filename)
            if info.filename.endswith("data.pkl"):
                out.writestr(info.filename, payload)
            else:
                out.writestr(info.filename, payload + bytes(2**22), compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(ModelFileError, match=r"subpolicies.pth.* would inflate .* a zip bomb"):
        MLSH.load(_rewrite(path, tmp_path / "inner.zip", entries={"subpolicies.pth": buffer.getvalue()}))
