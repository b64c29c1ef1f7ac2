"""The docs site: the catalogue of bad inputs cites tests that exist, the quickstart is run, the API page reads right."""

import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_test_the_bad_inputs_catalogue_cites_exists():
    with open(os.path.join(ROOT, "docs", "bad_inputs.md")) as file:
        citations = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", file.read())
    assert len(citations) > 50
    missing = []
    for path, name in citations:
        full = os.path.join(ROOT, path)
        if not os.path.isfile(full):
            missing.append(f"{path} (no such file)")
            continue
        with open(full) as file:
            tree = ast.parse(file.read())
        if name not in {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}:
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/bad_inputs.md cites tests that do not exist: {missing}"


def test_the_quickstart_trains_saves_adapts_and_evaluates_and_test_docs_runs_it():
    from test_docs import python_blocks

    blocks = [code for name, _, code in python_blocks() if name == os.path.join("docs", "index.md")]
    assert len(blocks) == 1
    quickstart = blocks[0]
    for step in (".learn(", ".save(", "MLSH.load(", ".adapt(", "evaluate_policy(model"):
        assert step in quickstart, step
    assert len(quickstart.strip().splitlines()) <= 16


def test_the_api_page_shows_the_constructor_as_users_call_it(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    source = tmp_path / "source"
    source.mkdir()
    # The docs' own configuration, on a page with the MLSH class alone (the whole site takes longer to build).
    (source / "conf.py").write_text(
        f"import runpy\nglobals().update(runpy.run_path({os.path.join(ROOT, 'docs', 'conf.py')!r}))\nhtml_theme = 'basic'\n"
    )
    (source / "index.rst").write_text("MLSH\n====\n\n.. autoclass:: sb3_mlsh.MLSH\n")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "text", str(source), str(tmp_path / "text")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "text" / "index.txt").read_text()
    assert "class sb3_mlsh.MLSH(policy, task_sampler=None," in page
    assert "_init_setup_model" not in page and "unknown_kwargs" not in page
    # The constructor's types, not SB3's class attributes of the same names (policy: BasePolicy, env: VecEnv).
    fields = {line.split("**")[1]: line for line in page.splitlines() if line.strip().startswith("* **")}
    assert "str" in fields["policy"] and "SubPolicyBankPolicy" in fields["policy"], fields["policy"]
    assert "TaskSampler" in fields["env"] and "str" in fields["env"], fields["env"]
