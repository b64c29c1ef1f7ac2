"""Same seed, same numbers: short runs pinned before a refactoring must give the same numbers after it."""

import json
import math
from typing import Any

import pytest
from golden_run import GOLDEN_PATH, RUNS, run

# Float sums may move in their last digits between CPUs (kernels picked per instruction set); anything larger is a change
# of what MLSH computes.
RELATIVE_TOLERANCE = 1e-4


def _differences(expected: Any, actual: Any, path: str) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            return [f"{path}: keys {sorted(expected)} pinned, {sorted(actual) if isinstance(actual, dict) else actual} now"]
        return [line for key in expected for line in _differences(expected[key], actual[key], f"{path}/{key}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            return [f"{path}: {len(expected)} entries pinned, {actual!r} now"]
        return [line for i, (e, a) in enumerate(zip(expected, actual)) for line in _differences(e, a, f"{path}[{i}]")]
    if isinstance(expected, int) and not isinstance(expected, bool):
        return [] if expected == actual else [f"{path}: {expected} pinned, {actual} now"]
    if math.isclose(expected, actual, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-6):
        return []
    return [f"{path}: {expected!r} pinned, {actual!r} now"]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_golden_run(name: str) -> None:
    with open(GOLDEN_PATH) as file:
        expected = json.load(file)[name]
    differences = _differences(expected, run(name), name)
    assert not differences, "\n".join(differences[:20])


def test_golden_comparison_sees_a_change() -> None:
    pinned = {"a": [1.0, {"b": 2}], "c": 3.0}
    assert _differences(pinned, {"a": [1.0, {"b": 2}], "c": 3.0 * (1 + 1e-6)}, "run") == []
    assert _differences(pinned, {"a": [1.0, {"b": 3}], "c": 3.0}, "run") == ["run/a[1]/b: 2 pinned, 3 now"]
    assert _differences(pinned, {"a": [1.0, {"b": 2}], "c": 3.01}, "run") == ["run/c: 3.0 pinned, 3.01 now"]
    assert len(_differences(pinned, {"a": [1.0], "c": 3.0}, "run")) == 1
