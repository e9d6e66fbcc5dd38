"""Several seeded replays summarised: the seeds' syntax, the summary's arithmetic, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.consensus.evaluation.seeds import parse_seeds, summarise

from .test_harness import _app, _write_synthetic


def test_seeds_are_ranges_or_lists_without_repeats() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,1, 3") == [3, 1]
    assert parse_seeds("0-2,7,1") == [0, 1, 2, 7]
    for bad in ("", "a", "3-1", "1-b"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


def _run(
    seed: int, fixed: float, dynamic: float, share: float, same_budget: float = 0.85
) -> dict[str, Any]:
    return {
        "seed": seed,
        "results": {
            "consilium-ds": {"accuracy": fixed},
            "consilium-ds-dynamic": {"accuracy": dynamic, "label_share": share},
            "consilium-ds-same-budget": {"accuracy": same_budget, "label_share": share},
            "crowdkit-DS": {"accuracy": None},  # a dataset without truth
        },
    }


def test_the_summary_compares_each_dynamic_run_with_its_own_fixed_run() -> None:
    runs = [
        _run(0, 0.90, 0.895, 0.55),  # -0.5 points: meets
        _run(1, 0.90, 0.91, 0.61),  # better, but over the label budget
        _run(2, 0.88, 0.87, 0.40, same_budget=0.88),  # -1 point
    ]
    summary = summarise(runs)
    assert set(summary) == {"consilium-ds", "consilium-ds-dynamic", "consilium-ds-same-budget"}
    assert summary["consilium-ds"] == {
        "accuracy_mean": 0.8933,
        "accuracy_min": 0.88,
        "accuracy_max": 0.9,
    }
    dynamic = summary["consilium-ds-dynamic"]
    assert dynamic["points_vs_fixed"] == [-0.5, 1.0, -1.0]
    assert dynamic["points_vs_fixed_mean"] == -0.17
    assert dynamic["points_vs_fixed_stderr"] == 0.6  # sd 1.04 over three seeds
    assert summarise(runs[:1])["consilium-ds-dynamic"]["points_vs_fixed_stderr"] is None
    assert dynamic["label_share_mean"] == 0.52
    assert dynamic["seeds_meeting_target"] == 1
    # The means (-0.17 points, 52 % of the labels) meet the target though two seeds miss.
    assert dynamic["mean_meets_target"] is True
    assert summarise(runs[2:])["consilium-ds-dynamic"]["mean_meets_target"] is False
    # Against the fixed overlap of the same labels: +4.5, +6, -1 points.
    assert dynamic["points_vs_same_budget_mean"] == 3.17
    assert (
        "points_vs_same_budget_mean"
        not in summarise([_without_same_budget(runs[0])])["consilium-ds-dynamic"]
    )


def _without_same_budget(run: dict[str, Any]) -> dict[str, Any]:
    results = {k: v for k, v in run["results"].items() if not k.endswith("-same-budget")}
    return {**run, "results": results}


def test_eval_with_seeds_reports_every_run_and_their_summary(tmp_path: Path) -> None:
    _write_synthetic(tmp_path)
    base = [str(tmp_path), "--no-crowdkit", "--policy", "dynamic"]
    result = CliRunner().invoke(_app(), [*base, "--json", "--seeds", "0-2"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["seeds"] == [run["seed"] for run in document["runs"]] == [0, 1, 2]
    assert document["summary"] == summarise(document["runs"])
    single = json.loads(CliRunner().invoke(_app(), [*base, "--json", "--seed", "1"]).output)
    assert single["results"] == _without_timings(document["runs"][1]["results"], single)
    table = CliRunner().invoke(_app(), [*base, "--seeds", "0,1"])
    assert table.exit_code == 0 and "consilium-ds-dynamic" in table.output
    assert "±" in table.output  # two seeds: the mean's standard error


def _without_timings(results: dict[str, Any], like: dict[str, Any]) -> dict[str, Any]:
    """`results` with the wall-clock fields taken from `like`'s, which no seed fixes."""
    copied: dict[str, Any] = json.loads(json.dumps(results))
    for method, row in copied.items():
        for volatile in ("seconds", "update_cost"):
            if volatile in row:
                row[volatile] = like["results"][method][volatile]
    return copied


def test_seeds_with_a_plot_or_a_bad_range_are_refused(tmp_path: Path) -> None:
    _write_synthetic(tmp_path)
    plotted = CliRunner().invoke(
        _app(), [str(tmp_path), "--seeds", "0-1", "--plot", str(tmp_path / "p.png")]
    )
    assert plotted.exit_code == 2 and "--plot draws one replay" in plotted.output
    backwards = CliRunner().invoke(_app(), [str(tmp_path), "--seeds", "4-1"])
    assert backwards.exit_code == 2 and "is empty" in backwards.output
