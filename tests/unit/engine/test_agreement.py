"""Agreement statistics against textbook values and a second implementation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.consensus.engine import (
    annotator_confusion,
    consensus_reference,
    fleiss_kappa,
    krippendorff_alpha,
)

from .helpers import binary_policy, label, stream

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C:
# 4 observers, 12 units, values 1-5, missing data. Published alphas below.
KRIPPENDORFF_UNITS = [
    [1, 1, 1],
    [2, 2, 3, 2],
    [3, 3, 3, 3],
    [3, 3, 3, 3],
    [2, 2, 2, 2],
    [1, 2, 3, 4],
    [4, 4, 4, 4],
    [1, 1, 2, 1],
    [2, 2, 2, 2],
    [5, 5, 5],
    [1, 1],
    [3],
]


def test_krippendorff_alpha_reproduces_the_published_nominal_value() -> None:
    assert krippendorff_alpha(KRIPPENDORFF_UNITS, "nominal") == pytest.approx(0.743, abs=1e-3)


def test_krippendorff_alpha_reproduces_the_published_interval_value() -> None:
    assert krippendorff_alpha(KRIPPENDORFF_UNITS, "interval") == pytest.approx(0.849, abs=1e-3)


def test_krippendorff_alpha_reproduces_the_published_ordinal_value() -> None:
    assert krippendorff_alpha(KRIPPENDORFF_UNITS, "ordinal") == pytest.approx(0.815, abs=1e-3)


def test_fleiss_kappa_matches_statsmodels_style_hand_computation() -> None:
    # Fleiss (1971) style toy: perfect agreement is 1, systematic split is negative.
    assert fleiss_kappa([["a", "a"], ["b", "b"]], ["a", "b"]) == 1.0
    assert fleiss_kappa([["a", "b"], ["a", "b"]], ["a", "b"]) == pytest.approx(-1.0)
    assert math.isnan(fleiss_kappa([["a"]], ["a", "b"]))


def test_annotator_accuracy_against_a_reference_counts_each_label() -> None:
    labels = [("r1", "i1", "a"), ("r1", "i2", "b"), ("r2", "i1", "b"), ("r2", "x", "a")]
    report = annotator_confusion(labels, {"i1": "a", "i2": "a"}, ["a", "b"])
    assert report["r1"][1] == 0.5
    assert report["r2"][1] == 0.0
    assert report["r1"][0].tolist() == [[1.0, 1.0], [0.0, 0.0]]


# Fleiss (1971) as reproduced in most textbooks (and Wikipedia's "Fleiss' kappa" page):
# 10 subjects, 14 raters each, 5 categories; P_bar = 0.378, P_e = 0.213, kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_reproduces_the_textbook_example() -> None:
    classes = ["1", "2", "3", "4", "5"]
    units = [
        [c for c, n in zip(classes, row, strict=True) for _ in range(n)] for row in FLEISS_TABLE
    ]
    assert fleiss_kappa(units, classes) == pytest.approx(0.2099, abs=1e-4)


def _alpha_by_pairs(units: list[list[float]], metric: str) -> float:
    """A second, deliberately naive implementation: alpha = 1 - (n - 1) * sum over
    pairable values within units (each pair weighted 1 / (m_u - 1)) / sum over all pairs."""
    pairable = [u for u in units if len(u) >= 2]
    values = [v for u in pairable for v in u]
    ranks = sorted(set(values))

    def delta(a: float, b: float) -> float:
        if metric == "nominal":
            return float(a != b)
        if metric == "interval":
            return (a - b) ** 2
        lo, hi = sorted((ranks.index(a), ranks.index(b)))
        counts = [values.count(r) for r in ranks]
        return (sum(counts[lo : hi + 1]) - (counts[lo] + counts[hi]) / 2) ** 2

    n = len(values)
    within = sum(
        delta(u[i], u[j]) / (len(u) - 1)
        for u in pairable
        for i in range(len(u))
        for j in range(len(u))
        if i != j
    )
    total = sum(delta(values[i], values[j]) for i in range(n) for j in range(n) if i != j)
    return 1.0 - (n - 1) * within / total


@given(
    st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=5), min_size=2, max_size=10),
    st.sampled_from(["nominal", "ordinal", "interval"]),
)
def test_krippendorff_alpha_equals_a_naive_pairwise_implementation(
    units: list[list[int]], metric: str
) -> None:
    as_float = [[float(v) for v in u] for u in units]
    naive_values = [v for u in as_float if len(u) >= 2 for v in u]
    if len(set(naive_values)) < 2:
        return  # no disagreement is possible: alpha is undefined (nan) or 1 by convention
    expected = _alpha_by_pairs(as_float, metric)
    assert krippendorff_alpha(as_float, metric) == pytest.approx(expected, abs=1e-9)  # type: ignore[arg-type]


def test_annotators_are_scored_against_the_consensus_and_against_gold() -> None:
    policy = binary_policy("mv", min_labels=2, max_labels=3, threshold=0.6)
    events = [
        ("i1", label("1", "r1", "1")),
        ("i1", label("2", "r2", "1")),
        ("i1", label("3", "r3", "0")),
        ("i2", label("4", "r1", "0")),
        ("i2", label("5", "r2", "0")),
        ("i2", label("6", "r3", "0")),
    ]
    _, _, decisions = stream(policy, events)
    reference = consensus_reference(decisions.values())
    assert reference == {"i1": "1", "i2": "0"}
    labels = [(obs.annotator_id, item, str(obs.value)) for item, obs in events]
    against_consensus = annotator_confusion(labels, reference, ["0", "1"])
    assert against_consensus["r3"][1] == 0.5
    assert against_consensus["r1"][1] == 1.0
    against_gold = annotator_confusion(labels, {"i1": "0"}, ["0", "1"])
    assert against_gold["r3"][1] == 1.0
    assert against_gold["r1"][0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
