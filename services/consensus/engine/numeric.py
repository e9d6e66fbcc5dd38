"""Numeric measurements: robust to outliers (median) and to rater bias (robust).

* median: the weighted median of the values (a split repeat weighs 1/m); ties between
  two middle values take their mean.
* robust: each value is first corrected by its annotator's learned additive bias
  b_a = sum(residual) / (count + bias_prior_strength), residual = value - consensus,
  shrunk toward 0 by the prior; annotators are weighted by 1 / (1 + robust spread of
  their residuals), and the weighted median is taken. Bias statistics are additive
  integer units in the ledger (count, sum of residuals), like the confusion counts.

Confidence: the probability that the true value lies within numeric_tolerance of the
consensus under a normal approximation of the median's error, standard error
1.2533 * 1.4826 * MAD / sqrt(n) (asymptotic efficiency of the median); 0 with fewer
than two values.
"""

from __future__ import annotations

import math

import numpy as np

from services.consensus.engine.decision import Decision, Outcome, make_decision, outcome_for
from services.consensus.engine.fixedpoint import SCALE, FloatArray
from services.consensus.engine.policy import ConsensusPolicy
from services.consensus.engine.reliability import ReliabilityView
from services.consensus.engine.state import Contribution, ItemState
from services.consensus.engine.votes import adjudicated, annotator_labels


def weighted_median(values: FloatArray, weights: FloatArray) -> float:
    """Lower/upper weighted median averaged when the half-weight falls between two values."""
    order = np.lexsort((weights, values))
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    half = cum[-1] / 2.0
    i = int(np.searchsorted(cum, half, side="left"))
    if math.isclose(float(cum[i]), float(half)) and i + 1 < len(v):
        return float((v[i] + v[i + 1]) / 2.0)
    return float(v[i])


def _bias(policy: ConsensusPolicy, view: ReliabilityView, annotator: str) -> tuple[float, float]:
    units = view.entry(("", annotator, 0))
    if units is None:
        return 0.0, 0.0
    count, total, absolute = (float(u) / SCALE for u in units)
    strength = policy.float_param("bias_prior_strength")
    return total / (count + strength), absolute / (count + strength)


def evaluate(
    policy: ConsensusPolicy, state: ItemState, view: ReliabilityView
) -> tuple[Decision, Contribution]:
    kept = annotator_labels(policy, state.labels)
    values = np.array([float(o.value) for o, _ in kept], dtype=np.float64)  # type: ignore[arg-type]
    weights = np.array([1.0 / m for _, m in kept], dtype=np.float64)
    corrected = values.copy()
    if policy.method == "robust" and len(kept):
        stats = [_bias(policy, view, o.annotator_id) for o, _ in kept]
        corrected = values - np.array([b for b, _ in stats])
        weights = weights / (1.0 + np.array([s for _, s in stats]))
    adjudication = adjudicated(state.labels)
    estimate = float("nan")
    if adjudication is not None:
        estimate = float(adjudication.value)  # type: ignore[arg-type]
    elif len(kept):
        estimate = weighted_median(corrected, weights)
    n = len({o.annotator_id for o, _ in kept})
    confidence = 0.0
    if n >= 2 and adjudication is None:
        mad = float(np.median(np.abs(corrected - estimate)))
        se = 1.2533 * 1.4826 * mad / math.sqrt(n)
        tol = policy.float_param("numeric_tolerance")
        confidence = 1.0 if se == 0.0 else math.erf(tol / (se * math.sqrt(2.0)))
    if adjudication is not None:
        confidence = 1.0
    confidence = round(confidence, 6)
    outcome: Outcome
    outcome, reason = outcome_for(policy, n, confidence, False, False)
    if adjudication is not None:
        outcome, reason = "reached", "adjudicated"
    contribution: list[tuple[tuple[str, str, int], np.ndarray]] = []
    if len(kept) and not math.isnan(estimate) and bool(policy.param("learn_from_consensus")):
        for (obs, m), value in zip(kept, values, strict=True):
            residual = float(value) - estimate
            units = np.array(
                [SCALE // m, round(residual * SCALE / m), round(abs(residual) * SCALE / m)],
                dtype=np.int64,
            )
            contribution.append((("", obs.annotator_id, 0), units))
    label_ids = [o.label_id for o, _ in kept]
    if adjudication is not None:
        label_ids.append(adjudication.label_id)
    decision = make_decision(
        policy,
        state.item_id,
        outcome,
        reason,
        label=estimate,
        confidence=confidence,
        distribution={},
        votes={},
        n_annotators=n,
        label_ids=label_ids,
        reliability_version=view.version,
        method="adjudication" if adjudication is not None else None,
        details={
            "values": [float(v) for v in values],
            "corrected": [float(v) for v in corrected],
            "spread_mad": float(np.median(np.abs(corrected - estimate))) if len(kept) else 0.0,
        },
    )
    return decision, tuple(contribution)
