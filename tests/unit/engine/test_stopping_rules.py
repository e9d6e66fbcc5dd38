"""Pooled annotator prior and Bayesian curtailment: the two opt-in stopping aids."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.consensus.engine import ConsensusPolicy, ItemState, ReliabilitySnapshot, step
from services.consensus.engine.curtail import (
    MAX_ALPHA,
    agreement_units,
    flip_risk,
    learned_share_prior,
)
from services.consensus.engine.fixedpoint import SCALE
from services.consensus.engine.information import annotator_theta
from services.consensus.engine.item_categorical import share_prior_of
from services.consensus.engine.reliability import ReliabilityLedger

from .helpers import fold, label, stream

CLASSES = ("a", "b", "c")
EMPTY = ReliabilitySnapshot.empty()


def categorical(method: str, **params: object) -> ConsensusPolicy:
    return ConsensusPolicy(
        method=method,  # type: ignore[arg-type]
        kind="categorical",
        classes=CLASSES,
        min_labels=2,
        max_labels=6,
        threshold=0.9,
        params=params,  # type: ignore[arg-type]
    )


def crowd_snapshot(crowd: np.ndarray) -> ReliabilitySnapshot:
    """Only the crowd's pooled confusion counts (rows: true class, columns: label)."""
    units = np.rint(crowd * SCALE).astype(np.int64)
    entries = {("", "", 1 + column): units[:, column] for column in range(crowd.shape[1])}
    return ReliabilitySnapshot.from_entries(entries)


def exact_flip_probability(votes: list[float], remaining: int, alpha: float) -> float:
    """Brute force over every way the remaining labels can fall (Dirichlet-multinomial)."""
    counts = np.asarray(votes, dtype=np.float64)
    shape = counts + alpha
    leader = int(np.argmax(counts))
    total = 0.0
    for split in itertools.product(range(remaining + 1), repeat=len(votes)):
        if sum(split) != remaining:
            continue
        log_p = math.lgamma(remaining + 1) + math.lgamma(shape.sum())
        log_p -= math.lgamma(shape.sum() + remaining)
        for a, x in zip(shape, split, strict=True):
            log_p += math.lgamma(a + x) - math.lgamma(a) - math.lgamma(x + 1)
        if int(np.argmax(counts + np.asarray(split))) != leader:
            total += math.exp(log_p)
    return total


def test_a_new_annotator_is_trusted_like_the_crowd_under_the_pooled_prior() -> None:
    crowd = np.array([[90.0, 8.0, 2.0], [30.0, 60.0, 10.0], [1.0, 1.0, 98.0]])
    snapshot = crowd_snapshot(crowd)
    pooled = categorical("ds", pooled_prior=True)
    smoothed = crowd + 4.0 * np.array([[0.7, 0.15, 0.15], [0.15, 0.7, 0.15], [0.15, 0.15, 0.7]])
    expected = smoothed / smoothed.sum(axis=1, keepdims=True)
    theta = annotator_theta(pooled, snapshot, "someone-new")
    assert np.allclose(theta, expected, atol=1e-6)
    symmetric = annotator_theta(categorical("ds"), snapshot, "someone-new")
    assert symmetric[1, 1] == pytest.approx(0.7)


def test_the_pooled_prior_makes_a_label_the_crowd_often_gets_wrong_weaker_evidence() -> None:
    # The crowd says "a" for true "b" a third of the time; "c" is almost never wrong.
    crowd = np.array([[90.0, 5.0, 5.0], [35.0, 60.0, 5.0], [1.0, 1.0, 98.0]])
    snapshot = crowd_snapshot(crowd)
    policy = categorical("ds", pooled_prior=True)
    _, says_a = fold(policy, [label("1", "x", "a"), label("2", "y", "a")], snapshot)
    _, says_c = fold(policy, [label("1", "x", "c"), label("2", "y", "c")], snapshot)
    assert says_a is not None and says_c is not None
    assert (says_a.label, says_c.label) == ("a", "c")
    assert says_a.confidence < says_c.confidence


@pytest.mark.parametrize(("accuracy", "stronger"), [(0.95, True), (0.5, False)])
def test_weighted_votes_of_one_off_annotators_follow_the_crowds_accuracy(
    accuracy: float, stronger: bool
) -> None:
    right, wrong = 100.0 * accuracy, 100.0 * (1.0 - accuracy) / 2
    crowd = np.full((3, 3), wrong)
    np.fill_diagonal(crowd, right)
    snapshot = crowd_snapshot(crowd)
    labels = [label("1", "x", "b"), label("2", "y", "b")]
    _, pooled = fold(categorical("weighted", pooled_prior=True), labels, snapshot)
    _, plain = fold(categorical("weighted"), labels, snapshot)
    assert pooled is not None and plain is not None
    assert (pooled.confidence > plain.confidence) is stronger


def test_pooled_counts_are_the_sum_of_every_annotators_counts() -> None:
    policy = categorical("ds", pooled_prior=True)
    events = [
        ("i1", label("1", "x", "a")),
        ("i1", label("2", "y", "a")),
        ("i2", label("3", "x", "b")),
        ("i2", label("4", "z", "c")),
        ("i2", label("5", "z", "b")),  # z repeats: each of z's labels counts 1/2
    ]
    _, ledger, _ = stream(policy, events)
    entries = ledger.snapshot().entries
    for column in range(len(CLASSES)):
        per_annotator = [
            units
            for (_, annotator, col), units in entries.items()
            if annotator != "" and col == column
        ]
        assert np.array_equal(entries[("", "", 1 + column)], np.sum(per_annotator, axis=0))


@pytest.mark.parametrize(
    ("votes", "remaining"),
    [([2, 0, 0], 3), ([0, 2, 0], 3), ([3, 1], 5), ([0, 0, 3, 1, 0], 3), ([4, 4], 2)],
)
def test_flip_risk_is_exact_when_only_one_rival_can_overtake(
    votes: list[float], remaining: int
) -> None:
    assert flip_risk(votes, remaining, 1.0) == pytest.approx(
        exact_flip_probability(votes, remaining, 1.0), abs=1e-12
    )


@given(
    st.lists(st.integers(0, 4), min_size=2, max_size=4),
    st.integers(0, 4),
    st.sampled_from([0.5, 1.0, 2.0]),
)
def test_flip_risk_bounds_the_exact_probability_and_never_exceeds_one(
    votes: list[int], remaining: int, alpha: float
) -> None:
    risk = flip_risk([float(v) for v in votes], remaining, alpha)
    exact = exact_flip_probability([float(v) for v in votes], remaining, alpha)
    assert exact - 1e-12 <= risk <= 1.0
    assert risk == flip_risk([float(v) for v in votes], remaining, alpha)


@given(st.integers(0, 3), st.integers(1, 6))
def test_a_wider_lead_or_fewer_labels_to_come_never_raises_the_risk(
    lead: int, remaining: int
) -> None:
    base = flip_risk([2.0 + lead, 2.0, 1.0], remaining, 1.0)
    assert flip_risk([3.0 + lead, 2.0, 1.0], remaining, 1.0) <= base + 1e-12
    assert flip_risk([2.0 + lead, 2.0, 1.0], remaining - 1, 1.0) <= base + 1e-12


def test_curtailment_holds_a_confident_item_until_its_majority_is_settled() -> None:
    labels = [label("1", "x", "a"), label("2", "y", "a")]
    plain = categorical("mv")
    curtailed = ConsensusPolicy(
        method="mv",
        kind="categorical",
        classes=CLASSES,
        min_labels=2,
        max_labels=8,
        threshold=0.9,
        params={"stop_flip_risk": 0.05},
    )
    _, free = fold(plain, labels, EMPTY)
    _, held = fold(curtailed, labels, EMPTY)
    assert free is not None and held is not None
    assert free.outcome == "reached"
    assert (held.outcome, held.reason) == ("needs_more", "majority not settled")
    more = [*labels, *(label(str(i), f"r{i}", "a") for i in range(3, 7))]
    _, settled = fold(curtailed, more, EMPTY)
    assert settled is not None and settled.outcome == "reached"


def test_curtailment_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="stop_flip_risk"):
        categorical("mv", stop_flip_risk=1.0)
    with pytest.raises(ValueError, match="max_labels"):
        ConsensusPolicy(
            method="mv",
            kind="binary",
            classes=("0", "1"),
            max_labels=10_000,
            params={"stop_flip_risk": 0.1},
        )


def test_the_new_parameters_only_exist_for_single_label_categorical_kinds() -> None:
    with pytest.raises(ValueError, match="unknown params"):
        ConsensusPolicy(
            method="ds", kind="multilabel", classes=("x",), params={"pooled_prior": True}
        )
    ledger = ReliabilityLedger()
    result = step(categorical("ds"), ItemState.new("i"), label("1", "x", "a"), ledger)
    pooled_keys = [k for k in result.delta.entries if k[1] == "" and k[2] > 0]
    assert pooled_keys == []  # policies without the pooled prior keep no crowd counts


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0, 3.0])
def test_the_learned_share_prior_inverts_the_expected_agreement_of_a_dirichlet(
    k: int, alpha: float
) -> None:
    # E[sum p_c^2] under Dirichlet(alpha, ..., alpha), from its moments (not the formula).
    second_moment = alpha * (alpha + 1.0) / ((k * alpha) * (k * alpha + 1.0))
    agreement = k * second_moment
    units = np.array([round(agreement * 10**9), 10**9], dtype=np.int64)
    assert learned_share_prior(units, k) == pytest.approx(alpha, rel=1e-6)


def test_the_learned_share_prior_is_uniform_before_any_pair_and_clamped_without_agreement() -> None:
    assert learned_share_prior(None, 3) == 1.0
    assert learned_share_prior(np.array([0, 0], dtype=np.int64), 3) == 1.0
    chance = np.array([SCALE, 2 * SCALE], dtype=np.int64)  # binary votes agreeing at chance
    assert learned_share_prior(chance, 2) == MAX_ALPHA


def test_agreement_units_count_ordered_pairs_and_split_repeats() -> None:
    assert list(agreement_units([3.0, 1.0, 0.0])) == [6 * SCALE, 12 * SCALE]
    assert list(agreement_units([1.5, 0.5])) == [round(0.75 * SCALE), 2 * SCALE]


def test_a_curtailing_item_keeps_its_agreement_in_the_ledger_and_learns_alpha() -> None:
    policy = ConsensusPolicy(
        method="mv",
        kind="categorical",
        classes=CLASSES,
        min_labels=2,
        max_labels=6,
        threshold=0.6,
        params={"stop_flip_risk": 0.05},
    )
    events = [("i1", label("1", "x", "a")), ("i1", label("2", "y", "a"))]
    events += [("i2", label("3", "x", "b")), ("i2", label("4", "y", "c"))]
    _, ledger, _ = stream(policy, events)
    agreement = ledger.entry(("", "", -1))
    assert agreement is not None and list(agreement) == [2 * SCALE, 4 * SCALE]
    assert share_prior_of(policy, ledger) == pytest.approx(0.5 / (3 * 0.5 - 1.0))
