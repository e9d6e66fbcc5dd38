"""Segmentation masks: run-length encoding, STAPLE against SimpleITK, and the mask kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from services.consensus.engine import (
    ConsensusPolicy,
    Decision,
    ItemState,
    LabelObservation,
    ReliabilitySnapshot,
    recount,
)
from services.consensus.engine.masks import decode_mask, encode_mask, staple

from .helpers import fold, label, stream

EMPTY = ReliabilitySnapshot.empty()
STAPLE_TOLERANCE = 1e-9
"""Largest allowed difference from SimpleITK in probability, sensitivity and specificity
(measured: below 1e-12 on these masks; the same EM schedule in a different summation order)."""


def synthetic_raters(seed: int, n_raters: int, shape: tuple[int, ...] = (40, 50)) -> np.ndarray:
    """A rectangle (or box) seen by raters with random sensitivity and specificity."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, dtype=bool)
    corner = rng.integers(2, 12, size=len(shape))
    truth[tuple(slice(int(c), int(c) + 15) for c in corner)] = True
    masks = []
    for _ in range(n_raters):
        sensitivity, specificity = rng.uniform(0.6, 0.99), rng.uniform(0.9, 0.999)
        noise = rng.random(shape)
        masks.append(np.where(truth, noise < sensitivity, noise > specificity))
    return np.stack(masks)


@given(arrays(np.bool_, st.tuples(st.integers(1, 6), st.integers(1, 7))))
def test_run_length_encoding_round_trips_any_mask(mask: np.ndarray) -> None:
    encoded = encode_mask(mask)
    assert encoded.startswith(f"rle:{mask.shape[0]}x{mask.shape[1]}:")
    assert np.array_equal(decode_mask(encoded), mask)


def test_run_length_encoding_starts_with_background_and_reads_rows() -> None:
    assert encode_mask([[1, 1, 0], [0, 1, 1]]) == "rle:2x3:0,2,2,2"
    assert decode_mask(((0, 1), (1, 1))).tolist() == [[False, True], [True, True]]
    for bad in ("rle:2x2:1,1", "rle:2x2:-1,5", "png:xx", ((0, 2),)):
        with pytest.raises(ValueError):
            decode_mask(bad)


@pytest.mark.parametrize(
    ("seed", "n_raters", "shape"),
    [(0, 3, (40, 50)), (1, 5, (40, 50)), (2, 2, (40, 50)), (3, 4, (12, 20, 24))],
)
def test_staple_matches_simpleitk_probability_map_and_rater_skill(
    seed: int, n_raters: int, shape: tuple[int, ...]
) -> None:
    sitk = pytest.importorskip("SimpleITK")
    masks = synthetic_raters(seed, n_raters, shape)
    reference = sitk.STAPLEImageFilter()
    output = reference.Execute(*[sitk.GetImageFromArray(m.astype(np.uint8)) for m in masks])
    expected = sitk.GetArrayFromImage(output).reshape(-1)
    result = staple(masks.reshape(n_raters, -1))
    assert np.abs(result.probability - expected).max() < STAPLE_TOLERANCE
    assert np.abs(result.sensitivity - reference.GetSensitivity()).max() < STAPLE_TOLERANCE
    assert np.abs(result.specificity - reference.GetSpecificity()).max() < STAPLE_TOLERANCE
    # ITK counts the iteration it stops on from 0.
    assert result.iterations == reference.GetElapsedIterations() + 1


def mask_policy(**kwargs: object) -> ConsensusPolicy:
    return ConsensusPolicy(method="staple", kind="mask", **kwargs)  # type: ignore[arg-type]


def test_raters_who_agree_closely_reach_a_staple_consensus() -> None:
    masks = synthetic_raters(4, 4)
    truthish = masks.mean(axis=0) > 0.5
    labels = [label(f"l{i}", f"r{i}", encode_mask(m)) for i, m in enumerate(masks)]
    _, decision = fold(mask_policy(min_labels=3, threshold=0.9), labels, EMPTY)
    assert decision is not None
    assert decision.outcome == "reached"
    consensus = decode_mask(decision.label)
    assert (consensus == truthish).mean() > 0.97
    assert set(decision.details["sensitivity"]) == {"r0", "r1", "r2", "r3"}
    assert 0.0 < decision.agreement < 1.0


def test_raters_who_draw_different_regions_are_not_confident() -> None:
    a = np.zeros((10, 10), dtype=bool)
    b = a.copy()
    a[:5] = True
    b[5:] = True
    labels = [label("a", "r1", encode_mask(a)), label("b", "r2", encode_mask(b))]
    _, decision = fold(mask_policy(min_labels=2, max_labels=3, threshold=0.9), labels, EMPTY)
    assert decision is not None
    assert decision.outcome == "needs_more"
    assert decision.agreement == 0.0


def test_masks_given_as_rows_equal_the_encoded_form_and_survive_json() -> None:
    rows: tuple[tuple[float, ...], ...] = ((0, 1, 1), (0, 1, 0))
    policy = mask_policy(min_labels=1)
    state, as_rows = fold(policy, [label("a", "r1", rows), label("b", "r2", rows)], EMPTY)
    _, as_rle = fold(
        policy, [label("a", "r1", encode_mask(rows)), label("b", "r2", encode_mask(rows))], EMPTY
    )
    assert as_rows is not None and as_rle is not None
    assert as_rows.label == as_rle.label == "rle:2x3:1,2,1,1,1"
    assert as_rows.confidence == 1.0
    assert ItemState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert Decision.from_dict(json.loads(json.dumps(as_rows.to_dict()))) == as_rows


def test_mask_shapes_must_agree() -> None:
    labels = [label("a", "r1", "rle:2x2:4"), label("b", "r2", "rle:2x3:6")]
    with pytest.raises(ValueError, match="same shape"):
        fold(mask_policy(), labels, EMPTY)


@given(st.permutations(list(range(4))), st.integers(0, 3))
def test_mask_decisions_ignore_arrival_order_and_learn_additively(
    order: list[int], duplicate: int
) -> None:
    masks = synthetic_raters(7, 4, (16, 16))
    labels = [LabelObservation(f"l{i}", f"r{i}", encode_mask(m)) for i, m in enumerate(masks)]
    policy = mask_policy(params={"mask_prior_strength": 10.0})
    _, reference = fold(policy, labels, EMPTY)
    shuffled = [labels[i] for i in order] + [labels[duplicate]]
    _, decision = fold(policy, shuffled, EMPTY)
    assert reference is not None and decision is not None
    assert decision.to_dict() == reference.to_dict()
    states, ledger, _ = stream(policy, [("a", o) for o in shuffled] + [("b", labels[0])])
    assert ledger.version == recount(list(states.values())).version


def test_raters_who_all_leave_the_mask_empty_reach_an_empty_consensus() -> None:
    labels = [label("a", "r1", "rle:3x3:9"), label("b", "r2", "rle:3x3:9")]
    _, decision = fold(mask_policy(min_labels=2), labels, EMPTY)
    assert decision is not None
    assert (decision.outcome, decision.label, decision.confidence) == ("reached", "rle:3x3:9", 1.0)
