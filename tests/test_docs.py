"""The Python blocks of README.md and docs/*.md run verbatim (slow: they train with the budgets the docs show)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", *(os.path.join("docs", name) for name in sorted(os.listdir(os.path.join(ROOT, "docs"))))]


def python_blocks() -> list[tuple[str, int, str]]:
    """:return: ``(file, index, code)`` of every fenced python block of the docs."""
    blocks = []
    for name in DOCS:
        if not name.endswith(".md"):
            continue
        with open(os.path.join(ROOT, name)) as file:
            text = file.read()
        for index, code in enumerate(re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)):
            blocks.append((name, index, code))
    return blocks


def test_the_docs_have_python_blocks():
    names = {name for name, _, _ in python_blocks()}
    assert {"README.md", os.path.join("docs", "mlsh.md")} <= names


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("name", "index", "code"), python_blocks(), ids=lambda value: str(value)[:40])
def test_python_block_runs_verbatim(tmp_path, name, index, code):
    if "torchrun" in code or "init_process_group" in code:
        pytest.skip("a block for torchrun processes")
    script = tmp_path / "block.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{name} block {index} failed:\n{result.stderr[-3000:]}"
