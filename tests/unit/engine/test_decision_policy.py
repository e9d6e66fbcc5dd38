"""The decision rule: reached, needs more, contested, with its record."""

from __future__ import annotations

from services.consensus.engine import (
    ENGINE_VERSION,
    ConsensusPolicy,
    CriticalRule,
    Decision,
    ReliabilitySnapshot,
)

from .helpers import binary_policy, fold, label

EMPTY = ReliabilitySnapshot.empty()


def test_three_agreeing_readers_reach_consensus_with_the_default_demo_policy() -> None:
    policy = binary_policy("mv", min_labels=3, max_labels=5, threshold=0.95)
    _, decision = fold(policy, [label(f"l{i}", f"r{i}", "1") for i in range(3)], EMPTY)
    assert decision is not None
    assert (decision.outcome, decision.label) == ("reached", "1")
    assert decision.confidence >= 0.95


def test_fewer_than_min_labels_needs_more_even_when_unanimous() -> None:
    policy = binary_policy("mv", min_labels=3, max_labels=5, threshold=0.5)
    _, decision = fold(policy, [label("a", "r1", "1"), label("b", "r2", "1")], EMPTY)
    assert decision is not None and decision.outcome == "needs_more"
    assert decision.reason == "below min_labels"


def test_a_split_panel_asks_for_one_more_label_then_escalates_at_max_labels() -> None:
    policy = binary_policy("mv", min_labels=3, max_labels=4, threshold=0.95)
    labels = [label("a", "r1", "1"), label("b", "r2", "0"), label("c", "r3", "1")]
    _, decision = fold(policy, labels, EMPTY)
    assert decision is not None and decision.outcome == "needs_more"
    _, decision = fold(policy, [*labels, label("d", "r4", "0")], EMPTY)
    assert decision is not None and decision.outcome == "contested"
    assert decision.reason == "max_labels reached without confidence"


def test_majority_vote_tie_goes_to_the_first_class_and_never_reaches() -> None:
    policy = binary_policy("mv", min_labels=2, max_labels=2, threshold=0.6)
    _, decision = fold(policy, [label("a", "r1", "1"), label("b", "r2", "0")], EMPTY)
    assert decision is not None
    assert decision.label == "0"
    assert decision.confidence == 0.5
    assert decision.outcome == "contested"


def test_any_reader_reporting_a_critical_finding_escalates_the_item() -> None:
    policy = binary_policy("mv", critical=CriticalRule(values=("1",), mode="any"))
    _, decision = fold(policy, [label("a", "r1", "1")], EMPTY)
    assert decision is not None and decision.outcome == "contested"
    assert decision.reason == "critical finding reported"


def test_dissent_mode_escalates_only_when_consensus_disagrees_with_the_critical_report() -> None:
    policy = binary_policy(
        "mv", min_labels=3, threshold=0.9, critical=CriticalRule(("1",), "dissent")
    )
    agreeing = [label(f"l{i}", f"r{i}", "1") for i in range(3)]
    _, decision = fold(policy, agreeing, EMPTY)
    assert decision is not None and decision.outcome == "reached"
    dissent = [label("a", "r1", "0"), label("b", "r2", "0"), label("c", "r3", "1")]
    _, decision = fold(policy, dissent, EMPTY)
    assert decision is not None and decision.outcome == "contested"


def test_an_ordinal_spread_wider_than_allowed_is_contested() -> None:
    policy = ConsensusPolicy(
        method="mv", kind="ordinal", classes=("1", "2", "3", "4", "5"), max_spread=2
    )
    _, decision = fold(policy, [label("a", "r1", "1"), label("b", "r2", "4")], EMPTY)
    assert decision is not None and decision.outcome == "contested"
    assert decision.details["spread"] == 3


def test_an_adjudicator_label_closes_the_item_with_that_value() -> None:
    policy = binary_policy("ds")
    labels = [
        label("a", "r1", "1"),
        label("b", "r2", "0"),
        label("z", "adj", "0", role="adjudicator"),
    ]
    _, decision = fold(policy, labels, EMPTY)
    assert decision is not None
    assert (decision.outcome, decision.label, decision.method) == ("reached", "0", "adjudication")
    assert "z" in decision.contributing_label_ids


def test_every_decision_records_what_is_needed_to_replay_it() -> None:
    policy = binary_policy("ds")
    _, decision = fold(policy, [label("a", "r1", "1")], EMPTY)
    assert decision is not None
    record = decision.to_dict()
    assert record["method_version"] == ENGINE_VERSION
    assert record["parameters"] == policy.to_dict()
    assert record["reliability_version"] == EMPTY.version
    assert record["contributing_label_ids"] == ["a"]
    assert set(record["distribution"]) == {"0", "1"}
    assert Decision.from_dict(record) == decision
    assert ConsensusPolicy.from_dict(record["parameters"]) == policy
