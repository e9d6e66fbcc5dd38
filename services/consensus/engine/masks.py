"""Segmentation masks: STAPLE (Warfield, Zou & Wells 2004) on binary masks, in numpy.

Value: a binary mask, either as rows of 0/1 (a 2-D nested list) or, for any shape, the
run-length string "rle:<d1>x<d2>[x...]:<r0>,<r1>,..." : the mask flattened in C (row-major)
order as alternating runs of 0s and 1s, starting with a run of 0s (r0 may be 0), the runs
summing to the number of voxels (`encode_mask` / `decode_mask`). All readers of an item must
use the same shape.

STAPLE: each rater j has sensitivity p_j = P(D_j = 1 | T = 1) and specificity
q_j = P(D_j = 0 | T = 0); the foreground prior g is the mean of all raters' masks times
staple_confidence_weight. Starting from W = the mean of the masks, repeat
  M-step  p_j = sum_i W_i D_ij / sum_i W_i,  q_j = sum_i (1-W_i)(1-D_ij) / sum_i (1-W_i)
  E-step  W_i = g a_i / (g a_i + (1-g) b_i),  a_i = prod_j p_j^D_ij (1-p_j)^(1-D_ij),
          b_i = prod_j q_j^(1-D_ij) (1-q_j)^D_ij
until every p_j and q_j moves by at most staple_tolerance: the schedule of ITK's
STAPLEImageFilter, whose output this reproduces (tests compare with SimpleITK). With
mask_prior_strength s > 0 the M-step is the MAP estimate under Beta priors of strength s
voxels centred on the rater's learned global sensitivity and specificity.

Decision: the consensus mask is W > 1/2. Confidence is the mean of max(W, 1 - W) over the
voxels that are foreground or uncertain: those some rater marked or with W > 1/2 (voxels
no rater marked are settled background and would swamp the mean); 1.0 when that set is
empty. Reached when raters >= min_labels and confidence >= threshold; needs_more below
max_labels; else contested. Agreement is the mean pairwise Dice coefficient.

Reliability: per rater, scope "mask", the additive statistics [sum W D, sum W,
sum (1-W)(1-D), sum (1-W)] in units of 1/1000 voxel (integers, so instances add them in
any order). Repeats: a rater's latest annotation (greatest label_id) is their mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from services.consensus.engine.decision import Decision, make_decision, outcome_for
from services.consensus.engine.fixedpoint import FloatArray, IntArray
from services.consensus.engine.policy import ConsensusPolicy
from services.consensus.engine.reliability import ReliabilityView
from services.consensus.engine.state import Contribution, ItemState
from services.consensus.engine.votes import adjudicated, latest_per_annotator

MASK_SCOPE = "mask"
VOXEL_UNITS = 1000
"""Integer units per voxel in the reliability statistics."""
_PREFIX = "rle:"

BoolArray = npt.NDArray[np.bool_]


def encode_mask(mask: npt.ArrayLike) -> str:
    """Run-length string of a binary mask (C order, runs start with background)."""
    array = np.asarray(mask)
    if array.ndim == 0 or array.size == 0:
        raise ValueError("a mask needs at least one voxel")
    flat = array.reshape(-1).astype(bool)
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    shape = "x".join(str(d) for d in array.shape)
    return f"{_PREFIX}{shape}:{','.join(str(r) for r in runs)}"


def decode_mask(value: Any) -> BoolArray:
    """A mask value (run-length string or rows of 0/1) as a boolean array."""
    if isinstance(value, str):
        if not value.startswith(_PREFIX):
            raise ValueError("a mask string starts with 'rle:'")
        try:
            shape_text, runs_text = value[len(_PREFIX) :].split(":")
            shape = tuple(int(d) for d in shape_text.split("x"))
            runs = [int(r) for r in runs_text.split(",")] if runs_text else []
        except ValueError:
            raise ValueError(f"malformed mask encoding {value[:40]!r}") from None
        size = math.prod(shape)
        if any(d <= 0 for d in shape) or any(r < 0 for r in runs) or sum(runs) != size:
            raise ValueError("mask runs must be non-negative and cover the shape exactly")
        values = np.arange(len(runs)) % 2 == 1
        return np.repeat(values, runs).reshape(shape)
    if isinstance(value, tuple) and value:
        array = np.asarray(value)
        if array.dtype.kind not in "iub" or not np.isin(array, (0, 1)).all():
            raise ValueError("mask rows hold only 0 and 1")
        return array.astype(bool)
    raise ValueError("a mask value is an 'rle:' string or rows of 0/1")


@dataclass(frozen=True)
class StapleResult:
    """Posterior foreground probability per voxel and each rater's estimated skill."""

    probability: FloatArray
    sensitivity: FloatArray
    specificity: FloatArray
    prior: float
    iterations: int


def staple(
    masks: BoolArray,
    *,
    tolerance: float = 1e-7,
    max_iterations: int = 1000,
    confidence_weight: float = 1.0,
    prior_strength: float = 0.0,
    prior_sensitivity: FloatArray | None = None,
    prior_specificity: FloatArray | None = None,
) -> StapleResult:
    """STAPLE on (raters, voxels) binary decisions; see the module docstring for the rule."""
    d = np.asarray(masks, dtype=bool).reshape(masks.shape[0], -1)
    df = d.astype(np.float64)
    w = df.mean(axis=0)
    g = float(w.mean()) * confidence_weight
    raters = d.shape[0]
    p0 = np.full(raters, 0.5) if prior_sensitivity is None else prior_sensitivity
    q0 = np.full(raters, 0.5) if prior_specificity is None else prior_specificity
    last_p = np.full(raters, -10.0)
    last_q = np.full(raters, -10.0)
    p, q = last_p, last_q
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # reported after the loop
        fg, bg = float(w.sum()), float((1.0 - w).sum())
        # No foreground (or no background) mass at all: the skill is unidentified, keep
        # the prior mean (ITK would divide 0 by 0).
        p = (df @ w + prior_strength * p0) / (fg + prior_strength) if fg + prior_strength else p0
        q = (
            ((1.0 - df) @ (1.0 - w) + prior_strength * q0) / (bg + prior_strength)
            if bg + prior_strength
            else q0
        )
        alpha = np.where(d, p[:, None], 1.0 - p[:, None]).prod(axis=0)
        beta = np.where(d, 1.0 - q[:, None], q[:, None]).prod(axis=0)
        w = g * alpha / (g * alpha + (1.0 - g) * beta)
        moved = max(float(np.abs(p - last_p).max()), float(np.abs(q - last_q).max()))
        last_p, last_q = p, q
        if iterations > 1 and moved <= tolerance:
            break
    return StapleResult(w, p, q, g, iterations)


def dice(a: BoolArray, b: BoolArray) -> float:
    """Dice coefficient of two masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def _priors(
    policy: ConsensusPolicy, view: ReliabilityView, raters: Sequence[str]
) -> tuple[FloatArray, FloatArray]:
    sens, spec = [], []
    for rater in raters:
        units = view.entry((MASK_SCOPE, rater, 0))
        if units is None:
            sens.append(0.5)
            spec.append(0.5)
            continue
        wd, wsum, nd, nsum = (float(u) / VOXEL_UNITS for u in units)
        sens.append((wd + 1.0) / (wsum + 2.0))
        spec.append((nd + 1.0) / (nsum + 2.0))
    return np.array(sens), np.array(spec)


def evaluate(
    policy: ConsensusPolicy, state: ItemState, view: ReliabilityView
) -> tuple[Decision, Contribution]:
    """STAPLE over the item's raters, the decision, and the raters' skill statistics."""
    readers = latest_per_annotator(state.labels)
    arrays = [decode_mask(obs.value) for obs in readers]
    if len({a.shape for a in arrays}) > 1:
        raise ValueError("every mask of an item must have the same shape")
    names = [obs.annotator_id for obs in readers]
    label: Any = None
    confidence = 0.0
    details: dict[str, Any] = {}
    contribution: Contribution = ()
    if arrays:
        stack = np.stack(arrays).reshape(len(arrays), -1)
        strength = policy.float_param("mask_prior_strength")
        prior_p, prior_q = _priors(policy, view, names)
        result = staple(
            stack,
            tolerance=policy.float_param("staple_tolerance"),
            max_iterations=int(policy.float_param("staple_max_iterations")),
            confidence_weight=policy.float_param("staple_confidence_weight"),
            prior_strength=strength,
            prior_sensitivity=prior_p,
            prior_specificity=prior_q,
        )
        consensus = result.probability > 0.5
        region = stack.any(axis=0) | consensus
        certainty = np.maximum(result.probability, 1.0 - result.probability)
        confidence = round(float(certainty[region].mean()) if region.any() else 1.0, 6)
        label = encode_mask(consensus.reshape(arrays[0].shape))
        details = {
            "sensitivity": dict(zip(names, map(float, result.sensitivity), strict=True)),
            "specificity": dict(zip(names, map(float, result.specificity), strict=True)),
            "foreground_prior": result.prior,
            "iterations": result.iterations,
            "voxels_considered": int(region.sum()),
            "volume": int(consensus.sum()),
        }
        if bool(policy.param("learn_from_consensus")):
            contribution = _contribution(names, stack, result.probability)
    n = len(readers)
    outcome, reason = outcome_for(policy, n, confidence, False, False)
    label_ids = [obs.label_id for obs in readers]
    method = None
    adjudication = adjudicated(state.labels)
    if adjudication is not None:
        label = encode_mask(decode_mask(adjudication.value))
        confidence, outcome, reason, method = 1.0, "reached", "adjudicated", "adjudication"
        label_ids.append(adjudication.label_id)
    decision = make_decision(
        policy,
        state.item_id,
        outcome,
        reason,
        label=label,
        confidence=confidence,
        distribution={},
        votes={a: float(m.sum()) for a, m in zip(names, arrays, strict=True)},
        n_annotators=n,
        label_ids=label_ids,
        reliability_version=view.version,
        method=method,
        details=details,
    )
    pairs = [dice(arrays[i], arrays[j]) for i in range(n) for j in range(i + 1, n)]
    return replace(decision, agreement=float(np.mean(pairs)) if pairs else 1.0), contribution


def _contribution(names: Sequence[str], stack: BoolArray, w: FloatArray) -> Contribution:
    d = stack.astype(np.float64)
    entries = []
    for rater, row in zip(names, d, strict=True):
        stats = (row @ w, w.sum(), (1.0 - row) @ (1.0 - w), (1.0 - w).sum())
        units: IntArray = np.array([round(float(s) * VOXEL_UNITS) for s in stats], dtype=np.int64)
        entries.append(((MASK_SCOPE, rater, 0), units))
    return tuple(entries)
