"""Multi-label, ordinal and numeric kinds through the same step facade."""

from __future__ import annotations

from services.consensus.engine import ConsensusPolicy, CriticalRule, ReliabilitySnapshot

from .helpers import fold, label

EMPTY = ReliabilitySnapshot.empty()
FINDINGS = ("effusion", "pneumothorax", "edema")


def multilabel(**kwargs: object) -> ConsensusPolicy:
    return ConsensusPolicy(method="ds", kind="multilabel", classes=FINDINGS, **kwargs)  # type: ignore[arg-type]


def test_multilabel_decides_each_finding_and_reports_the_present_ones() -> None:
    labels = [
        label("a", "r1", ("effusion",)),
        label("b", "r2", ("effusion", "edema")),
        label("c", "r3", ("effusion",)),
    ]
    _, decision = fold(multilabel(threshold=0.8), labels, EMPTY)
    assert decision is not None
    assert decision.label == ("effusion",)
    assert decision.details["findings"]["effusion"]["present"] is True
    assert decision.details["findings"]["edema"]["present"] is False


def test_multilabel_critical_finding_escalates_when_any_reader_reports_it() -> None:
    policy = multilabel(critical=CriticalRule(("pneumothorax",)))
    _, decision = fold(policy, [label("a", "r1", ("pneumothorax",))], EMPTY)
    assert decision is not None and decision.outcome == "contested"
    assert decision.reason.startswith("pneumothorax")


def test_ordinal_near_misses_earn_partial_credit_when_configured() -> None:
    classes = ("1", "2", "3", "4", "5")
    near = ConsensusPolicy(
        method="mv", kind="ordinal", classes=classes, params={"ordinal_near_credit": 0.5}
    )
    labels = [label("a", "r1", "3"), label("b", "r2", "4"), label("c", "r3", "2")]
    _, decision = fold(near, labels, EMPTY)
    assert decision is not None and decision.label == "3"
    assert decision.distribution["3"] > decision.distribution["4"]


def test_numeric_median_ignores_a_single_outlier() -> None:
    policy = ConsensusPolicy(method="median", kind="numeric", params={"numeric_tolerance": 2.0})
    labels = [label("a", "r1", 10.0), label("b", "r2", 11.0), label("c", "r3", 95.0)]
    _, decision = fold(policy, labels, EMPTY)
    assert decision is not None and decision.label == 11.0


def test_numeric_robust_corrects_an_annotator_with_a_learned_bias() -> None:
    from .helpers import stream

    policy = ConsensusPolicy(
        method="robust",
        kind="numeric",
        min_labels=1,
        max_labels=99,
        params={"numeric_bias": True},
    )
    events = []
    for item in range(30):
        truth = float(item)
        events += [
            (f"i{item}", label(f"{item}a", "fair1", truth)),
            (f"i{item}", label(f"{item}b", "fair2", truth)),
            (f"i{item}", label(f"{item}c", "high", truth + 9.0)),
        ]
    _, ledger, _ = stream(policy, events)
    _, decision = fold(policy, [label("x", "high", 109.0), label("y", "fair1", 101.0)], ledger)
    assert decision is not None
    assert abs(float(decision.label) - 100.5) < 1.0


def test_numeric_robust_learns_to_trust_precise_readers_more_than_noisy_ones() -> None:
    import numpy as np

    from .helpers import stream

    rng = np.random.default_rng(0)
    policy = ConsensusPolicy(method="robust", kind="numeric", min_labels=1, max_labels=99)
    events = []
    for item in range(60):
        truth = float(item)
        for reader, sd in (("precise1", 0.5), ("precise2", 0.5), ("noisy", 8.0)):
            value = truth + float(rng.normal(0.0, sd))
            events.append((f"i{item}", label(f"{item}{reader}", reader, value)))
    _, ledger, _ = stream(policy, events)
    _, decision = fold(policy, [label("x", "precise1", 50.0), label("y", "noisy", 60.0)], ledger)
    assert decision is not None
    # The plain mean says 55; the variance prior (50 pseudo-labels) still shrinks the weights.
    assert 50.0 <= float(decision.label) < 53.0
