"""Whom to ask next: candidates ranked by expected information, readers on the item excluded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.consensus.engine import (
    ConsensusPolicy,
    ReliabilitySnapshot,
    expected_information,
    preferred_annotators,
)
from services.consensus.engine.categorical import balanced_accuracy
from services.consensus.engine.fixedpoint import SCALE

from .helpers import binary_policy, fold, label


def skill_entries(
    accuracy: dict[str, float], items: int = 50, scope: str = ""
) -> dict[tuple[str, str, int], np.ndarray]:
    """Binary confusion counts, in ledger `scope`, of annotators seen on `items` items of
    each class."""
    entries = {}
    for annotator, p in accuracy.items():
        right, wrong = round(items * p * SCALE), round(items * (1 - p) * SCALE)
        entries[(scope, annotator, 0)] = np.array([right, wrong], dtype=np.int64)
        entries[(scope, annotator, 1)] = np.array([wrong, right], dtype=np.int64)
    entries[(scope, "", 0)] = np.array([items * SCALE, items * SCALE], dtype=np.int64)
    return entries


def skill_snapshot(accuracy: dict[str, float], items: int = 50) -> ReliabilitySnapshot:
    return ReliabilitySnapshot.from_entries(skill_entries(accuracy, items))


@pytest.mark.parametrize("method", ["ds", "weighted"])
def test_the_more_accurate_annotator_is_asked_first(method: str) -> None:
    snapshot = skill_snapshot({"expert": 0.95, "novice": 0.6, "coin": 0.5})
    policy = binary_policy(method)
    state, _ = fold(policy, [label("a", "r1", "1"), label("b", "r2", "0")], snapshot)
    ranked = preferred_annotators(policy, state, ["novice", "coin", "expert"], snapshot)
    assert [a for a, _ in ranked] == ["expert", "novice", "coin"]
    gains = [g for _, g in ranked]
    assert gains == sorted(gains, reverse=True)
    assert gains[-1] < 0.01 * gains[0]  # a coin flip tells (next to) nothing


def test_annotators_already_on_the_item_are_never_proposed() -> None:
    snapshot = skill_snapshot({"expert": 0.95, "novice": 0.6})
    policy = binary_policy("ds")
    state, _ = fold(policy, [label("a", "expert", "1")], snapshot)
    ranked = preferred_annotators(policy, state, ["expert", "novice", "expert"], snapshot)
    assert [a for a, _ in ranked] == ["novice"]


def test_ties_keep_the_callers_order_and_limit_truncates() -> None:
    policy = binary_policy("mv")
    state, _ = fold(policy, [label("a", "r1", "1")], ReliabilitySnapshot.empty())
    ranked = preferred_annotators(policy, state, ["c", "a", "c", "b"], ReliabilitySnapshot.empty())
    assert [a for a, _ in ranked] == ["c", "a", "b"]
    limited = preferred_annotators(
        policy, state, ["b", "a", "c"], ReliabilitySnapshot.empty(), limit=2
    )
    assert [a for a, _ in limited] == ["b", "a"]


def test_a_tie_between_unseen_readers_goes_to_the_first_listed_not_the_lowest_id() -> None:
    # Readers the ledger has never seen share one confusion matrix (the prior), so the
    # expected information cannot tell them apart; the known expert still ranks first.
    snapshot = skill_snapshot({"expert": 0.95})
    policy = binary_policy("ds")
    state, _ = fold(policy, [label("a", "r1", "1")], snapshot)
    ranked = preferred_annotators(policy, state, ["zed", "amy", "expert", "bob"], snapshot)
    assert [a for a, _ in ranked] == ["expert", "zed", "amy", "bob"]


def test_expected_information_is_the_mutual_information_of_a_symmetric_channel() -> None:
    q = np.array([0.5, 0.5])
    p = 0.9
    theta = np.array([[p, 1 - p], [1 - p, p]])
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert expected_information(q, theta) == pytest.approx(math.log(2) - entropy)
    assert expected_information(np.array([1.0, 0.0]), theta) == pytest.approx(0.0)


def per_finding_snapshot(skills: dict[str, dict[str, float]]) -> ReliabilitySnapshot:
    """skills: finding -> annotator -> accuracy on that finding (its own ledger scope)."""
    entries = {}
    for finding, accuracy in skills.items():
        entries.update(skill_entries(accuracy, scope=finding))
    return ReliabilitySnapshot.from_entries(entries)


# Two readers already on the item are sure about nodules and coin flips on pneumothorax,
# so after their labels the nodule finding is decided and pneumothorax is open.
ON_ITEM = {"r1": (0.97, 0.5), "r2": (0.97, 0.5)}


@pytest.mark.parametrize("method", ["ds", "weighted"])
def test_a_multilabel_item_asks_the_reader_skilled_on_the_finding_in_doubt(method: str) -> None:
    skills = {"chest-reader": (0.6, 0.95), "nodule-reader": (0.95, 0.6), **ON_ITEM}
    snapshot = per_finding_snapshot(
        {
            "nodule": {a: nodule for a, (nodule, _) in skills.items()},
            "pneumothorax": {a: pneumo for a, (_, pneumo) in skills.items()},
        }
    )
    policy = ConsensusPolicy(
        method=method,  # type: ignore[arg-type]
        kind="multilabel",
        classes=("nodule", "pneumothorax"),
        min_labels=2,
        threshold=0.99,
    )
    labels = [label("a", "r1", ("nodule", "pneumothorax")), label("b", "r2", ("nodule",))]
    state, decision = fold(policy, labels, snapshot)
    assert decision is not None and decision.outcome == "needs_more"
    findings = decision.details["findings"]
    assert findings["nodule"]["outcome"] == "reached"
    assert findings["pneumothorax"]["outcome"] == "needs_more"
    ranked = preferred_annotators(policy, state, ["nodule-reader", "chest-reader"], snapshot)
    assert [a for a, _ in ranked] == ["chest-reader", "nodule-reader"]
    # On the finding in doubt the nodule expert is a coin flip.
    assert ranked[1][1] < 0.2 * ranked[0][1]


def test_a_multilabel_item_with_every_finding_open_sums_the_gains() -> None:
    skills = {"nodule": {"both": 0.9, "one": 0.9}, "pneumothorax": {"both": 0.9, "one": 0.5}}
    snapshot = per_finding_snapshot(skills)
    policy = ConsensusPolicy(method="ds", kind="multilabel", classes=("nodule", "pneumothorax"))
    state, decision = fold(policy, [label("a", "r1", ("nodule",))], snapshot)
    assert decision is not None
    assert all(f["outcome"] == "needs_more" for f in decision.details["findings"].values())
    ranked = dict(preferred_annotators(policy, state, ["one", "both"], snapshot))
    assert ranked["both"] > 1.5 * ranked["one"]


def test_preferred_annotators_refuses_kinds_without_a_confusion_matrix() -> None:
    policy = ConsensusPolicy(method="median", kind="numeric")
    state, _ = fold(policy, [label("a", "r1", 1.0)], ReliabilitySnapshot.empty())
    with pytest.raises(ValueError, match="supports"):
        preferred_annotators(policy, state, ["r2"], ReliabilitySnapshot.empty())


def _lopsided_snapshot(items: int = 100, share_yes: float = 0.9) -> ReliabilitySnapshot:
    """A consensus that called 90 % of items "1": a reader who always says "1" agrees with
    it 90 % of the time, an honest reader right on 85 % of each class less often."""
    yes, no = items * share_yes, items * (1 - share_yes)
    units = {
        # (annotator, label column) -> counts per consensus class ("0", "1")
        ("yes-man", 0): (0.0, 0.0),
        ("yes-man", 1): (no, yes),
        ("honest", 0): (0.85 * no, 0.15 * yes),
        ("honest", 1): (0.15 * no, 0.85 * yes),
    }
    entries = {
        ("", annotator, column): np.array([round(x * SCALE) for x in counts], dtype=np.int64)
        for (annotator, column), counts in units.items()
    }
    entries[("", "", 0)] = np.array([round(no * SCALE), round(yes * SCALE)], dtype=np.int64)
    return ReliabilitySnapshot.from_entries(entries)


def test_weighted_does_not_prefer_a_reader_who_says_one_class_to_everything() -> None:
    # One-coin agreement ranks the yes-man first (0.90 against 0.85), and asking him makes
    # the consensus lean further his way; per-class recall gives him chance.
    snapshot = _lopsided_snapshot()
    policy = binary_policy("weighted")
    state, _ = fold(policy, [label("a", "r1", "1")], snapshot)
    ranked = preferred_annotators(policy, state, ["yes-man", "honest"], snapshot)
    assert [a for a, _ in ranked] == ["honest", "yes-man"]
    assert ranked[1][1] < 0.05 * ranked[0][1]  # next to nothing


def test_balanced_accuracy_is_the_prior_without_evidence_and_chance_for_a_yes_man() -> None:
    policy = binary_policy("weighted")
    pooled = np.zeros((2, 2), dtype=np.int64)
    p0 = policy.float_param("prior_accuracy")
    assert balanced_accuracy(policy, np.zeros((2, 2), dtype=np.int64), pooled) == pytest.approx(p0)
    yes_man = np.array([[0, 10 * SCALE], [0, 90 * SCALE]], dtype=np.int64)
    assert balanced_accuracy(policy, yes_man, pooled) < 0.56  # chance, but for the prior
    honest = np.array([[17 * SCALE, 3 * SCALE], [3 * SCALE, 17 * SCALE]], dtype=np.int64)
    assert balanced_accuracy(policy, honest, pooled) == pytest.approx(0.85, abs=0.02)
