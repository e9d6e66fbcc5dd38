"""The horizon gain: what the labels still to come could add, and the rule that uses it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.consensus.engine import ConsensusPolicy, ItemState, ReliabilitySnapshot, horizon, step
from services.consensus.engine.curtail import flip_risk
from services.consensus.engine.fixedpoint import SCALE
from services.consensus.engine.horizon import horizon_gain
from services.consensus.engine.reliability import ReliabilityLedger

from .helpers import fold, label

CLASSES = ("a", "b", "c")
EMPTY = ReliabilitySnapshot.empty()


def exact_gain(posterior: np.ndarray, theta: np.ndarray, remaining: int) -> float:
    """Brute force over every ordered sequence of future labels (K ** r of them)."""
    k = len(posterior)
    best = 0.0
    for sequence in itertools.product(range(k), repeat=remaining):
        joint = posterior.copy()
        for observed in sequence:
            joint = joint * theta[:, observed]
        best += float(joint.max())
    return best - float(posterior.max())


@st.composite
def problems(draw: st.DrawFn, max_k: int = 4, max_r: int = 4) -> tuple[np.ndarray, ...]:
    k = draw(st.integers(2, max_k))
    weights = st.integers(1, 100)
    posterior = np.array([draw(weights) for _ in range(k)], dtype=np.float64)
    theta = np.array([[draw(weights) for _ in range(k)] for _ in range(k)], dtype=np.float64)
    remaining = np.array(draw(st.integers(0, max_r)))
    return posterior / posterior.sum(), theta / theta.sum(axis=1, keepdims=True), remaining


@given(problems())
def test_the_gain_is_the_exact_expectation_over_every_future_label_sequence(
    problem: tuple[np.ndarray, ...],
) -> None:
    posterior, theta, remaining = problem
    gain = horizon_gain(posterior, theta, int(remaining))
    assert gain == pytest.approx(exact_gain(posterior, theta, int(remaining)), abs=1.0 / SCALE)
    assert 0.0 <= gain <= 1.0 - posterior.max() + 1.0 / SCALE


@given(problems(max_r=5))
def test_a_longer_horizon_never_has_less_to_offer(problem: tuple[np.ndarray, ...]) -> None:
    posterior, theta, remaining = problem
    r = int(remaining)
    assert horizon_gain(posterior, theta, r) <= horizon_gain(posterior, theta, r + 1) + 1e-6


def test_a_label_that_cannot_change_the_answer_is_worth_nothing() -> None:
    posterior = np.array([0.9, 0.1])
    theta = np.array([[0.8, 0.2], [0.2, 0.8]])
    # One label moves 0.9 : 0.1 at most to 0.69 : 0.31, still "a"; two "b"s reach 0.36 : 0.64.
    assert horizon_gain(posterior, theta, 1) == 0.0
    assert horizon_gain(posterior, theta, 2) == pytest.approx(0.1 * 0.64 - 0.9 * 0.04, abs=1e-6)


def test_perfect_readers_can_recover_the_whole_remaining_error() -> None:
    posterior = np.array([0.7, 0.2, 0.1])
    assert horizon_gain(posterior, np.eye(3), 1) == pytest.approx(0.3, abs=1e-6)


@settings(max_examples=30)
@given(problems(max_k=5, max_r=6))
def test_pooling_unlikely_labels_when_outcomes_are_many_understates_the_gain(
    problem: tuple[np.ndarray, ...],
) -> None:
    posterior, theta, remaining = problem
    exact = horizon_gain(posterior, theta, int(remaining))
    original = horizon.MAX_OUTCOMES
    horizon.MAX_OUTCOMES = 8
    try:
        coarse = horizon_gain(posterior, theta, int(remaining))
    finally:
        horizon.MAX_OUTCOMES = original
    assert coarse <= exact + 1.0 / SCALE


def policy(max_labels: int, **params: object) -> ConsensusPolicy:
    return ConsensusPolicy(
        method="mv",
        kind="categorical",
        classes=CLASSES,
        min_labels=2,
        max_labels=max_labels,
        threshold=0.999,
        params={"stop_gain": 0.02, **params},  # type: ignore[dict-item]
    )


def test_a_confident_item_with_a_short_horizon_is_reached_before_the_threshold() -> None:
    # mv at 0.75 on three classes: two agreeing votes give 36/38 = 0.947.
    labels = [label("1", "x", "a"), label("2", "y", "a")]
    _, short = fold(policy(3), labels, EMPTY)
    _, long = fold(policy(12), labels, EMPTY)
    assert short is not None and long is not None
    assert short.confidence == pytest.approx(36 / 38, abs=1e-6)
    assert (short.outcome, short.reason) == ("reached", "more labels would not change it")
    assert long.outcome == "needs_more"


def test_a_decision_records_the_gain_it_was_reached_on() -> None:
    labels = [label("1", "x", "a"), label("2", "y", "a")]
    _, reached = fold(policy(3), labels, EMPTY)
    _, first = fold(policy(3), labels[:1], EMPTY)
    assert reached is not None and first is not None
    mv = np.full((3, 3), 0.125)
    np.fill_diagonal(mv, 0.75)
    posterior = np.array([reached.distribution[c] for c in CLASSES])
    recorded = reached.details["stopping"]["horizon_gain"]
    assert recorded == horizon_gain(posterior, mv, remaining=1)
    assert 0.0 <= recorded <= 0.02
    # Below min_labels the rule is not consulted, so nothing is recorded.
    assert "stopping" not in first.details


def test_curtailment_records_the_flip_risk_it_compared() -> None:
    curtailed = ConsensusPolicy(
        method="mv",
        kind="categorical",
        classes=CLASSES,
        min_labels=2,
        max_labels=9,
        threshold=0.9,
        params={"stop_flip_risk": 0.05, "stop_share_prior": 1.0},
    )
    labels = [label("1", "x", "a"), label("2", "y", "a"), label("3", "z", "a")]
    _, decision = fold(curtailed, labels, EMPTY)
    assert decision is not None
    risk = flip_risk((3.0, 0.0, 0.0), 6, 1.0)
    assert decision.details["stopping"] == {"flip_risk": risk}
    assert decision.outcome == ("reached" if risk <= 0.05 else "needs_more")


def test_the_gain_rule_needs_the_confidence_floor_and_never_replaces_contesting() -> None:
    split = [label("1", "x", "a"), label("2", "y", "a"), label("3", "z", "b")]
    # One label more cannot overturn 2:1, but 0.9 confidence is not there (mv 2:1 is 0.857).
    _, doubtful = fold(policy(4), split, EMPTY)
    assert doubtful is not None and doubtful.outcome == "needs_more"
    _, at_max = fold(policy(3, stop_gain_floor=0.5), split, EMPTY)
    assert at_max is not None and at_max.outcome == "contested"
    _, floor_met = fold(policy(4, stop_gain_floor=0.5), split, EMPTY)
    assert floor_met is not None and floor_met.outcome == "reached"


def test_an_item_the_horizon_could_mostly_fix_waits_for_the_threshold() -> None:
    # Ten labels to come could recover nearly all of a 0.947 item's error: the gain is
    # then just 1 - confidence, and reaching on it would trust the posterior below 0.999.
    labels = [label("1", "x", "a"), label("2", "y", "a")]
    _, waits = fold(policy(12, stop_gain=0.2), labels, EMPTY)
    _, trusting = fold(policy(12, stop_gain=0.2, stop_gain_share=1.0), labels, EMPTY)
    assert waits is not None and trusting is not None
    assert waits.outcome == "needs_more"
    assert (trusting.outcome, trusting.reason) == ("reached", "more labels would not change it")


def test_gain_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="stop_gain"):
        policy(5, stop_gain=1.0)
    with pytest.raises(ValueError, match="stop_gain_floor"):
        policy(5, stop_gain_floor=1.5)
    with pytest.raises(ValueError, match="stop_gain_share"):
        policy(5, stop_gain_share=-0.1)
    with pytest.raises(ValueError, match="max_labels"):
        policy(10_000)


def test_ds_and_weighted_keep_the_crowd_counts_the_future_reader_is_drawn_from() -> None:
    for method in ("ds", "weighted"):
        gains = ConsensusPolicy(
            method=method,
            kind="categorical",
            classes=CLASSES,
            params={"stop_gain": 0.01},
        )
        result = step(gains, ItemState.new("i"), label("1", "x", "a"), ReliabilityLedger())
        assert [k for k in result.delta.entries if k[1] == "" and k[2] > 0]
