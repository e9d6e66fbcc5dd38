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
from services.consensus.engine.fixedpoint import SCALE

from .helpers import binary_policy, fold, label


def skill_snapshot(accuracy: dict[str, float], items: int = 50) -> ReliabilitySnapshot:
    """Confusion counts of annotators seen on `items` items of each class."""
    entries = {}
    for annotator, p in accuracy.items():
        right, wrong = round(items * p * SCALE), round(items * (1 - p) * SCALE)
        entries[("", annotator, 0)] = np.array([right, wrong], dtype=np.int64)
        entries[("", annotator, 1)] = np.array([wrong, right], dtype=np.int64)
    entries[("", "", 0)] = np.array([items * SCALE, items * SCALE], dtype=np.int64)
    return ReliabilitySnapshot.from_entries(entries)


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


def test_preferred_annotators_refuses_kinds_without_a_confusion_matrix() -> None:
    policy = ConsensusPolicy(method="median", kind="numeric")
    state, _ = fold(policy, [label("a", "r1", 1.0)], ReliabilitySnapshot.empty())
    with pytest.raises(ValueError, match="supports"):
        preferred_annotators(policy, state, ["r2"], ReliabilitySnapshot.empty())
