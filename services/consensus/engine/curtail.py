"""Bayesian curtailment: could the labels still to come change the item's majority?

Confidence in the true class is not the only reason to stop. The fixed design would
collect up to `max_labels` labels and take their majority; stopping early is safe when
that majority is already settled. With v_c votes so far and r = max_labels - n labels
still possible, the item's vote shares get a Dirichlet(v + alpha) posterior
(alpha = `stop_share_prior` per class) and the r labels to come are Dirichlet-multinomial.
The *flip risk* is the predictive probability that the final majority is not today's
leader L (a final tie goes to the class listed first, as in the engine's tie rule).

It is bounded by a union over challengers j: the pair event "j ends ahead of L" depends
only on the labels going to L, to j and elsewhere, a three-way Dirichlet-multinomial that
is summed exactly over its O(r^2) outcomes. Cost O(K r^2) per decision, independent of the
number of items; the result is deterministic (fixed summation order, no sampling).
As stop_flip_risk -> 0 this becomes classic curtailment: stop only when no way the
remaining labels can fall would change the majority.

alpha is either fixed or learned (stop_share_prior = 0): the symmetric Dirichlet whose
expected pairwise agreement equals the crowd's observed agreement, from two additive
sums every curtailing item keeps in the ledger. A crowd that agrees (few, clear items)
gets a small alpha and stops early; one that splits gets a large alpha and a long look.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import lgamma

import numpy as np

from services.consensus.engine.fixedpoint import SCALE, FloatArray, IntArray

MIN_ALPHA = 0.01
MAX_ALPHA = 100.0


def _log_terms(shape: float, counts: FloatArray) -> FloatArray:
    """log Gamma(shape + x) - log Gamma(shape) - log x! for x in counts.

    shape 0 (no other class exists) is the point mass at x = 0.
    """
    if shape <= 0.0:
        return np.where(counts == 0.0, 0.0, -np.inf)
    return np.array(
        [lgamma(shape + x) - lgamma(shape) - lgamma(x + 1.0) for x in counts], dtype=np.float64
    )


def flip_risk(votes: Sequence[float], remaining: int, share_prior: float) -> float:
    """Upper bound on P(the majority after `remaining` more labels is not the leader)."""
    if remaining <= 0 or len(votes) < 2:
        return 0.0
    counts = np.asarray(votes, dtype=np.float64)
    leader = int(np.argmax(counts))  # first maximum: the engine's tie rule
    shape = counts + share_prior
    risk = 0.0
    for rival in range(len(counts)):
        if rival == leader:
            continue
        rest = float(shape.sum() - shape[leader] - shape[rival])
        deficit = counts[leader] - counts[rival]
        risk += _rival_overtakes(
            float(shape[leader]),
            float(shape[rival]),
            rest,
            remaining,
            float(deficit),
            rival < leader,
        )
    return min(risk, 1.0)


def _rival_overtakes(
    lead: float, rival: float, rest: float, remaining: int, deficit: float, rival_first: bool
) -> float:
    """P(rival + x_rival beats lead + x_lead); ties count for the class listed first."""
    x = np.arange(remaining + 1, dtype=np.float64)
    total = lead + rival + rest
    norm = lgamma(remaining + 1.0) + lgamma(total) - lgamma(total + remaining)
    to_lead = x[:, None]
    to_rival = x[None, :]
    spent = to_lead + to_rival
    margin = to_rival - to_lead - deficit
    wins = (margin > 1e-9) | ((np.abs(margin) <= 1e-9) & rival_first)
    outcome = (spent <= remaining) & wins
    if not outcome.any():
        return 0.0
    rest_terms = _log_terms(rest, x)  # indexed by labels going elsewhere
    elsewhere = np.clip(remaining - spent, 0, remaining).astype(np.int64)
    log_pmf = (
        norm + _log_terms(lead, x)[:, None] + _log_terms(rival, x)[None, :] + rest_terms[elsewhere]
    )
    return float(np.where(outcome, np.exp(np.where(outcome, log_pmf, 0.0)), 0.0).sum())


def agreement_units(votes: Sequence[float]) -> IntArray:
    """[agreeing ordered pairs, all ordered pairs] of one item's votes, in SCALE units."""
    counts = np.asarray(votes, dtype=np.float64)
    n = float(counts.sum())
    agreeing = float((counts * np.maximum(counts - 1.0, 0.0)).sum())
    pairs = n * max(n - 1.0, 0.0)
    return np.array([round(agreeing * SCALE), round(pairs * SCALE)], dtype=np.int64)


def learned_share_prior(agreement: IntArray | None, k: int) -> float:
    """Symmetric Dirichlet alpha whose expected agreement matches the crowd's.

    Under shares p ~ Dirichlet(alpha, ..., alpha), two votes on an item agree with
    probability E[sum p_c^2] = (alpha + 1) / (k alpha + 1); solving for the observed
    pairwise agreement P gives alpha = (1 - P) / (k P - 1) (method of moments, as in
    Mosimann 1962). Clamped to [MIN_ALPHA, MAX_ALPHA]; 1 (uniform) before any pair.
    """
    if agreement is None or agreement[1] <= 0:
        return 1.0
    observed = float(agreement[0]) / float(agreement[1])
    if k * observed - 1.0 <= (1.0 - observed) / MAX_ALPHA:
        return MAX_ALPHA
    return float(min(max((1.0 - observed) / (k * observed - 1.0), MIN_ALPHA), MAX_ALPHA))
