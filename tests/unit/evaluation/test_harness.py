"""The `consilium eval` harness on a small real subset (tests/data, see PROVENANCE.md)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from services.consensus.evaluation.cli import eval_command
from services.consensus.evaluation.dataset import load_dataset

DATA = Path(__file__).resolve().parents[2] / "data"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(eval_command)
    return app


def test_eval_prints_one_json_object_with_every_method_and_writes_the_plot(tmp_path: Path) -> None:
    plot = tmp_path / "accuracy.png"
    result = CliRunner().invoke(
        _app(),
        [str(DATA / "zhang_rte_subset"), "--json", "--policy", "dynamic", "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["dataset"] == "zhang_rte_subset"
    assert document["labels"] == 2000
    methods = set(document["results"])
    assert {"consilium-mv", "consilium-weighted", "consilium-ds"} <= methods
    assert {f"crowdkit-{m}" for m in ("MV", "DS", "GLAD", "MACE", "OneCoinDS")} <= methods
    for row in document["results"].values():
        assert {"accuracy", "labels_used", "seconds"} <= set(row)
    dynamic = document["results"]["consilium-ds-dynamic"]
    assert dynamic["labels_used"] < 2000
    # The baseline the policy must beat: a fixed overlap spending the same labels.
    assert document["results"]["consilium-ds-same-budget"]["labels_used"] == dynamic["labels_used"]
    assert all(check["ledger_equals_recount"] for check in document["checks"].values())
    assert plot.stat().st_size > 0


def test_the_same_seed_gives_the_same_engine_results(tmp_path: Path) -> None:
    args = [str(DATA / "chexpert_subset"), "--json", "--no-crowdkit", "--seed", "7"]
    first = json.loads(CliRunner().invoke(_app(), args).output)
    second = json.loads(CliRunner().invoke(_app(), args).output)
    for name in first["results"]:
        a, b = dict(first["results"][name]), dict(second["results"][name])
        for volatile in ("seconds", "update_cost"):
            a.pop(volatile, None)
            b.pop(volatile, None)
        assert a == b


def test_a_worker_labelling_the_same_task_twice_is_counted_and_split(tmp_path: Path) -> None:
    (tmp_path / "answers.csv").write_text(
        "worker,task,label\nw1,t1,a\nw1,t1,b\nw2,t1,a\nw3,t1,a\n", encoding="utf-8"
    )
    (tmp_path / "truth.csv").write_text("task,truth\nt1,a\n", encoding="utf-8")
    dataset = load_dataset(tmp_path)
    assert dataset.repeats == 1
    result = CliRunner().invoke(_app(), [str(tmp_path), "--json", "--no-crowdkit"])
    document = json.loads(result.output)
    assert document["repeated_worker_task_answers"] == 1
    assert document["results"]["consilium-mv"]["accuracy"] == 1.0


def _write_synthetic(folder: Path, items: int = 40, readers: int = 6) -> None:
    """Readers 0-3 are right, 4-5 wrong on every third item: enough to reach early."""
    answers = ["worker,task,label"]
    truth = ["task,truth"]
    for item in range(items):
        value = "ab"[item % 2]
        truth.append(f"t{item},{value}")
        for reader in range(readers):
            wrong = reader >= 4 and item % 3 == 0
            answers.append(f"w{reader},t{item},{'ba'[item % 2] if wrong else value}")
    (folder / "answers.csv").write_text("\n".join(answers) + "\n", encoding="utf-8")
    (folder / "truth.csv").write_text("\n".join(truth) + "\n", encoding="utf-8")


def test_curtailment_and_the_pooled_prior_are_dynamic_options_that_hold_items_longer(
    tmp_path: Path,
) -> None:
    _write_synthetic(tmp_path)
    base = [str(tmp_path), "--json", "--no-crowdkit", "--policy", "dynamic", "--threshold", "0.9"]
    plain = json.loads(CliRunner().invoke(_app(), base).output)
    result = CliRunner().invoke(_app(), [*base, "--pooled-prior", "--flip-risk", "0.01"])
    assert result.exit_code == 0, result.output
    curtailed = json.loads(result.output)
    assert curtailed["dynamic"]["pooled_prior"] is True
    assert curtailed["dynamic"]["flip_risk"] == 0.01
    # mv's posterior ignores reliability, so curtailment can only ask for more labels.
    used = curtailed["results"]["consilium-mv-dynamic"]["labels_used"]
    assert used > plain["results"]["consilium-mv-dynamic"]["labels_used"]
    assert curtailed["results"]["consilium-mv"]["accuracy"] == 1.0


def test_the_horizon_gain_is_on_by_default_and_saves_labels_on_a_short_horizon(
    tmp_path: Path,
) -> None:
    _write_synthetic(tmp_path)
    base = [str(tmp_path), "--json", "--no-crowdkit", "--policy", "dynamic"]
    default = json.loads(CliRunner().invoke(_app(), base).output)
    off = json.loads(CliRunner().invoke(_app(), [*base, "--stop-gain", "0"]).output)
    assert default["dynamic"]["stop_gain"] == 0.01
    assert default["dynamic"]["max_labels"] == 0  # the horizon: the dataset's overlap
    assert off["dynamic"]["stop_gain"] == 0.0
    for method in ("mv", "ds"):
        with_gain = default["results"][f"consilium-{method}-dynamic"]
        without = off["results"][f"consilium-{method}-dynamic"]
        assert with_gain["labels_used"] < without["labels_used"]
        assert with_gain["accuracy"] == 1.0
        assert with_gain["reasons"]["more labels would not change it"] > 0
        assert "more labels would not change it" not in without["reasons"]
        assert sum(with_gain["reasons"].values()) == default["tasks"]


def test_the_gain_rules_floor_is_a_dynamic_option_and_bad_values_are_refused(
    tmp_path: Path,
) -> None:
    _write_synthetic(tmp_path)
    base = [str(tmp_path), "--json", "--no-crowdkit", "--policy", "dynamic"]
    default = json.loads(CliRunner().invoke(_app(), base).output)
    strict = json.loads(CliRunner().invoke(_app(), [*base, "--stop-gain-floor", "1"]).output)
    assert (default["dynamic"]["stop_gain_floor"], strict["dynamic"]["stop_gain_floor"]) == (
        0.9,
        1.0,
    )
    gain_reason = "more labels would not change it"
    # A floor of 1 leaves only the threshold: nothing is reached by the gain rule.
    assert default["results"]["consilium-mv-dynamic"]["reasons"].get(gain_reason, 0) > 0
    assert gain_reason not in strict["results"]["consilium-mv-dynamic"]["reasons"]
    refused = CliRunner().invoke(_app(), [*base, "--stop-gain-share", "2"])
    assert refused.exit_code == 2
    assert "stop_gain_share must be in [0, 1]" in refused.output


def test_a_folder_that_is_not_a_dataset_is_refused_with_the_reason(tmp_path: Path) -> None:
    empty, semicolons = tmp_path / "empty", tmp_path / "semicolons"
    for folder, header in ((empty, "worker,task,label"), (semicolons, "worker;task;label")):
        folder.mkdir()
        (folder / "answers.csv").write_text(header + "\n", encoding="utf-8")
    cases = {
        tmp_path / "missing": "No such file or directory",
        empty: "holds no answers",
        semicolons: "lacks columns",
    }
    for folder, reason in cases.items():
        result = CliRunner().invoke(_app(), [str(folder), "--no-crowdkit"])
        assert result.exit_code == 2, result.output
        assert reason in " ".join(result.output.split())


def test_truth_for_tasks_nobody_labelled_is_counted_and_scored_wrong(tmp_path: Path) -> None:
    _write_synthetic(tmp_path, items=4)
    with (tmp_path / "truth.csv").open("a", encoding="utf-8") as truth:
        truth.write("unlabelled,a\n")
    result = CliRunner().invoke(_app(), [str(tmp_path), "--json", "--no-crowdkit"])
    document = json.loads(result.output)
    assert document["truth_tasks_without_answers"] == 1
    assert document["results"]["consilium-mv"]["accuracy"] == 0.8  # 4 of the 5 truth tasks


def test_the_dissent_hold_is_a_dynamic_option_that_spends_labels_on_split_items() -> None:
    base = [str(DATA / "zhang_rte_subset"), "--json", "--no-crowdkit", "--policy", "dynamic"]
    plain = json.loads(CliRunner().invoke(_app(), base).output)
    held = json.loads(CliRunner().invoke(_app(), [*base, "--hold-dissent", "0.2"]).output)
    assert (plain["dynamic"]["hold_dissent_share"], held["dynamic"]["hold_dissent_share"]) == (
        0.0,
        0.2,
    )
    for method in ("mv", "ds"):
        more = held["results"][f"consilium-{method}-dynamic"]["labels_used"]
        assert more > plain["results"][f"consilium-{method}-dynamic"]["labels_used"]
    refused = CliRunner().invoke(_app(), [*base, "--hold-dissent-until", "2"])
    assert refused.exit_code == 2
    assert "hold_dissent_until must be in (0, 1]" in refused.output


def test_gold_items_are_counted_and_left_out_of_every_score() -> None:
    base = [str(DATA / "zhang_rte_subset"), "--json", "--no-crowdkit", "--policy", "dynamic"]
    document = json.loads(CliRunner().invoke(_app(), [*base, "--gold-share", "0.25"]).output)
    truth = load_dataset(DATA / "zhang_rte_subset").truth
    assert (document["gold_share"], document["gold_tasks"]) == (0.25, round(0.25 * len(truth)))
    assert document["scored_tasks"] == len(truth) - document["gold_tasks"]
    # Scores are over the scored tasks: a whole number of hits out of them.
    for row in document["results"].values():
        hits = row["accuracy"] * document["scored_tasks"]
        assert abs(hits - round(hits)) < 0.01
    refused = CliRunner().invoke(_app(), [*base, "--gold-share", "1"])
    assert refused.exit_code == 2
    assert "gold share must be in [0, 1)" in refused.output
