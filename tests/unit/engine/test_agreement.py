"""Agreement statistics against textbook values and a second implementation."""

from __future__ import annotations

import math

import pytest

from services.consensus.engine.agreement import (
    annotator_confusion,
    fleiss_kappa,
    krippendorff_alpha,
)

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
