"""The summary tables of README.md and RESULTS.md agree with benchmarks/results/headline.csv, and the generator's rules."""

import importlib.util
import os

import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = importlib.util.spec_from_file_location("results_table", os.path.join(ROOT, "benchmarks", "results_table.py"))
assert SPEC is not None and SPEC.loader is not None
results_table = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(results_table)


def test_readme_and_results_tables_agree_with_headline():
    stale = [os.path.relpath(path, ROOT) for path, (text, new) in results_table.render().items() if text != new]
    assert not stale, f"{stale} differ from benchmarks/results/headline.csv: run make results-table"


def test_headline_has_the_documented_columns_and_every_family_a_verdict_window():
    headline = results_table.load_headline()
    assert list(headline.columns) == ["family", "method", "iterations", "mean", "std", "runs", "success"]
    families = pd.read_csv(results_table.FAMILIES)
    assert set(headline["family"]) == set(families["family"])
    for family, iterations in zip(families["family"], families["iterations"]):
        assert results_table.row(headline, family, "mlsh", iterations) is not None, family


def synthetic() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [
        ("Good", "mlsh", 10, 30.0, 2.0, 4),
        ("Good", "shared", 10, 20.0, 1.0, 4),
        ("Good", "ppo_scratch", 10, 10.0, 1.0, 4),
        ("Good", "mlsh", 5, 1.0, 0.0, 4),  # another window: ignored by the verdict
        ("Good", "oracle", 0, 45.0, 0.0, 0),
        ("NoShared", "mlsh", 5, -300.0, 40.0, 6),
        ("NoShared", "ppo_scratch", 5, -500.0, 50.0, 6),
        ("Behind", "mlsh", 20, 6.0, 4.8, 20),
        ("Behind", "shared", 20, 3.4, 4.0, 20),
        ("Behind", "ppo_scratch", 20, 20.9, 2.8, 20),
        ("BehindShared", "mlsh", 10, 5.2, 4.2, 4),
        ("BehindShared", "ppo_scratch", 10, 0.8, 0.4, 4),
        ("BehindShared", "shared", 10, 5.4, 0.7, 4),
        ("PaperAhead", "mlsh", 10, 5.0, 1.0, 6),
        ("PaperAhead", "mlsh_paper", 10, 9.0, 1.0, 6),
        ("PaperAhead", "shared", 10, 8.0, 1.0, 6),
        ("PaperAhead", "ppo_scratch", 10, 1.0, 1.0, 6),
    ]
    headline = pd.DataFrame(rows, columns=["family", "method", "iterations", "mean", "std", "runs"]).assign(success=0.5)
    families = pd.DataFrame(
        dict(
            family=["Good", "NoShared", "Behind", "BehindShared", "PaperAhead"],
            iterations=[10, 5, 20, 10, 10],
            source=["x"] * 5,
        )
    )
    return headline, families


def table_rows(text: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| [")]
    return {cells[0].strip().split("]")[0][1:]: [cell.strip() for cell in cells[1:]] for cells in rows}


def test_verdict_and_cells_of_a_synthetic_headline():
    headline, families = synthetic()
    rows = table_rows(results_table.table(headline, families, "#"))
    assert list(rows) == ["Good", "NoShared", "Behind", "BehindShared", "PaperAhead"]
    assert rows["Good"] == ["**works**", "1-10", "4", "30.0 ± 2.0", "not measured", "20.0 ± 1.0", "10.0 ± 1.0", "45.0"]
    # MLSH ahead of PPO, but no shared-policy row: never "works", and no number is made up
    assert rows["NoShared"] == [
        "not yet (shared policy not measured)",
        "1-5",
        "6",
        "-300.0 ± 40.0",
        "not measured",
        "not measured",
        "-500.0 ± 50.0",
        "-",
    ]
    assert rows["Behind"][0] == "not yet"
    assert rows["BehindShared"][0] == "not yet"
    # the paper's fine-tuning beats the shared policy where the frozen sub-policies do not; a baseline over fewer runs
    # says so
    assert rows["PaperAhead"][0] == "**works**" and rows["PaperAhead"][5] == "8.0 ± 1.0"
    fewer = headline.assign(runs=headline["runs"].where(headline["method"] != "shared", 2))
    assert table_rows(results_table.table(fewer, families, "#"))["PaperAhead"][5] == "8.0 ± 1.0 (2 runs)"
    assert "[Good](#good)" in results_table.table(headline, families, "#")


def test_a_missing_baseline_and_a_lost_comparison_both_say_not_yet():
    mlsh, ppo = pd.Series(dict(mean=1.0, std=0.0)), pd.Series(dict(mean=2.0, std=0.0))
    assert results_table.verdict(mlsh, None, ppo) == "not yet"
    assert results_table.verdict(None, None, ppo) == "not yet (MLSH, shared policy not measured)"
    assert results_table.verdict(ppo, mlsh, None) == "not yet (PPO from scratch not measured)"
    # ahead of a baseline measured on fewer seeds is not yet a result
    ahead, behind = pd.Series(dict(mean=3.0, std=0.0, runs=6)), pd.Series(dict(mean=0.0, std=0.0, runs=2))
    assert (
        results_table.verdict(ahead, behind, pd.Series(dict(mean=1.0, std=0.0, runs=6)))
        == "not yet (shared policy over fewer runs)"
    )


def test_check_detects_a_changed_number_and_rewrite_fixes_it(tmp_path):
    headline, families = synthetic()
    headline_path, families_path = tmp_path / "headline.csv", tmp_path / "families.csv"
    headline.to_csv(headline_path, index=False)
    families.to_csv(families_path, index=False)
    (tmp_path / "benchmarks").mkdir()
    for name in results_table.DOCUMENTS:
        (tmp_path / name).write_text(f"# Title\n\n{results_table.START}\nold\n{results_table.END}\n\nText after.\n")
    documents = results_table.render(str(tmp_path), str(headline_path), str(families_path))
    for path, (text, new) in documents.items():
        assert text != new and new.endswith("\n\nText after.\n") and "| [Good](" in new
        with open(path, "w") as file:
            file.write(new)
    assert all(
        text == new for text, new in results_table.render(str(tmp_path), str(headline_path), str(families_path)).values()
    )
    headline.loc[0, "mean"] = 15.0  # MLSH now behind the shared policy on "Good"
    headline.to_csv(headline_path, index=False)
    documents = results_table.render(str(tmp_path), str(headline_path), str(families_path))
    assert all(text != new for text, new in documents.values())
    assert all("| [Good](" in new and "| not yet |" in new.split("[Good]")[1].splitlines()[0] for _, new in documents.values())


def test_import_replaces_rows_of_the_same_method_and_window(tmp_path):
    headline, _ = synthetic()
    headline_path = tmp_path / "headline.csv"
    headline.to_csv(headline_path, index=False)
    summary = tmp_path / "summary.csv"
    pd.DataFrame(
        dict(
            method=["shared", "mlsh"], iterations=[5, 5], mean=[-450.0, 0.0], std=[30.0, 0.0], runs=[6, 6], distance=[4.0, 1.0]
        )
    ).to_csv(summary, index=False)
    families_path = tmp_path / "families.csv"
    synthetic()[1].to_csv(families_path, index=False)
    new = results_table.import_summary("NoShared", str(summary), ["shared"], str(headline_path), str(families_path))
    assert new.equals(results_table.load_headline(str(headline_path)))
    rows = new[new["family"] == "NoShared"]
    assert sorted(rows["method"]) == ["mlsh", "ppo_scratch", "shared"]
    assert rows[rows["method"] == "mlsh"]["mean"].item() == -300.0  # not imported: --methods shared
    assert rows[rows["method"] == "shared"]["success"].isna().all()
    assert list(new["family"].drop_duplicates()) == ["Good", "NoShared", "Behind", "BehindShared", "PaperAhead"]


def test_a_document_without_markers_is_refused():
    with pytest.raises(ValueError, match="markers"):
        results_table.replace_table("no table here", "| table |")
