"""Posteriors for binary, categorical and ordinal labels: one code path for one item or many.

All three methods are the same computation with different vote terms: the log posterior
of true class c for an item is  log prior(c) + sum over votes v of w_v * term_v(c),
where w_v = 1/m for a split repeat (see votes.py), followed by a softmax.

* mv: term(c) = log(p0 (K-1) / (1 - p0)) * [c == l]: plain majority vote, whose margins
  become a posterior under a symmetric annotator of accuracy p0 ("mv_accuracy"). Uniform
  prior. Ordinal scales may give a vote one step away a fraction of credit.
* weighted: the same with an annotator-specific p_a, the posterior mean of a Beta prior
  (prior_strength pseudo-labels at prior_accuracy) updated with the annotator's correct
  and total mass (from gold items, and from consensus unless learn_from_consensus is off).
  The log-odds weight is the optimal weight for independent voters (Nitzan & Paroush
  1982); with consensus-learned skill it is the one-coin model (crowd-kit OneCoinDS).
* ds: term(c) = log theta_a[c, l], the annotator's confusion matrix (Dawid & Skene 1979),
  the posterior mean of a Dirichlet prior per row plus the annotator's soft counts;
  class prior from the class counts with a Dirichlet(class_prior) prior.

With `pooled_prior` (weighted, ds) the annotator prior is centred on the crowd: the
pooled confusion matrix (everyone's consensus counts, kept under the reserved class key
in columns 1..K, plus the symmetric prior) for ds, the pooled accuracy for weighted.
The prior keeps `prior_strength` pseudo-labels; only its centre moves (a hierarchical
Dawid-Skene with one community, cf. Venanzi et al. 2014).

Summation runs in the canonical vote order through np.add.at (sequential), so an item's
scores are bit-identical whether it is scored alone (incremental) or in a batch.
Ties go to the first class in policy order (np.argmax on the integer units).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.consensus.engine.fixedpoint import SCALE, FloatArray, IntArray, quantize
from services.consensus.engine.policy import ConsensusPolicy
from services.consensus.engine.reliability import (
    CLASS_KEY,
    POOLED_COLUMN_OFFSET,
    ReliabilityView,
)
from services.consensus.engine.votes import Vote

_P_MIN = 1e-6


def confusion_counts(view: ReliabilityView, scope: str, annotator: str, k: int) -> IntArray:
    """Annotator's K x K soft confusion counts (rows: consensus class, columns: label)."""
    counts = np.zeros((k, k), dtype=np.int64)
    for column in range(k):
        units = view.entry((scope, annotator, column))
        if units is not None:
            counts[:, column] = units
    return counts


def pooled_counts(view: ReliabilityView, scope: str, k: int) -> IntArray:
    """The crowd's K x K soft confusion counts (every annotator's, summed)."""
    counts = np.zeros((k, k), dtype=np.int64)
    for column in range(k):
        units = view.entry((scope, CLASS_KEY, POOLED_COLUMN_OFFSET + column))
        if units is not None:
            counts[:, column] = units
    return counts


def uses_pooled_prior(policy: ConsensusPolicy) -> bool:
    return policy.method != "mv" and bool(policy.params.get("pooled_prior", False))


def stops_on_gain(policy: ConsensusPolicy) -> bool:
    return float(policy.params.get("stop_gain", 0.0)) > 0.0


def keeps_pooled_counts(policy: ConsensusPolicy) -> bool:
    """The crowd's confusion counts are kept for a pooled prior or the horizon gain."""
    return policy.method != "mv" and (uses_pooled_prior(policy) or stops_on_gain(policy))


def class_counts(view: ReliabilityView, scope: str, k: int) -> IntArray:
    units = view.entry((scope, CLASS_KEY, 0))
    return np.zeros(k, dtype=np.int64) if units is None else units.copy()


def _credit(policy: ConsensusPolicy, k: int) -> FloatArray:
    credit = np.eye(k)
    near = policy.float_param("ordinal_near_credit")
    if policy.kind == "ordinal" and near > 0.0:
        idx = np.arange(k)
        credit[np.abs(idx[:, None] - idx[None, :]) == 1] = near
    return credit


def symmetric_prior(policy: ConsensusPolicy, k: int) -> FloatArray:
    """Per-row Dirichlet pseudo-counts: strength * (p0 on the diagonal, rest spread)."""
    strength = policy.float_param("prior_strength")
    p0 = policy.float_param("prior_accuracy")
    prior = np.full((k, k), strength * (1.0 - p0) / (k - 1))
    np.fill_diagonal(prior, strength * p0)
    return prior


def pooled_confusion(policy: ConsensusPolicy, pooled: IntArray) -> FloatArray:
    """The crowd's confusion matrix: its K x K counts plus the symmetric prior, per row."""
    crowd = pooled / SCALE + symmetric_prior(policy, pooled.shape[-1])
    return np.asarray(crowd / crowd.sum(axis=-1, keepdims=True), dtype=np.float64)


def pooled_accuracy(policy: ConsensusPolicy, pooled: IntArray) -> float:
    """The crowd's accuracy: its correct share under the prior_accuracy Beta prior."""
    strength = policy.float_param("prior_strength")
    correct = float(np.trace(pooled)) / SCALE
    total = float(pooled.sum()) / SCALE
    return (correct + strength * policy.float_param("prior_accuracy")) / (total + strength)


def dirichlet_prior(policy: ConsensusPolicy, pooled: IntArray) -> FloatArray:
    """Each annotator's per-row pseudo-counts: symmetric, or centred on the crowd.

    pooled: the crowd's K x K counts (ignored unless the policy pools).
    """
    if not uses_pooled_prior(policy):
        return symmetric_prior(policy, pooled.shape[-1])
    centre = pooled_confusion(policy, pooled)
    return np.asarray(policy.float_param("prior_strength") * centre, dtype=np.float64)


def prior_accuracy(policy: ConsensusPolicy, pooled: IntArray) -> float:
    """Centre of the one-coin Beta prior: prior_accuracy, or the crowd's pooled accuracy."""
    if not uses_pooled_prior(policy):
        return policy.float_param("prior_accuracy")
    return pooled_accuracy(policy, pooled)


def crowd_confusion(policy: ConsensusPolicy, pooled: IntArray) -> FloatArray:
    """(K, K) rows P(label | class) of an unknown reader from the crowd.

    mv: the symmetric mv_accuracy reader; weighted: symmetric at the crowd's pooled
    accuracy; ds: the crowd's pooled confusion matrix. Both pooled ones start from the
    symmetric prior, so a crowd with no history is the prior_accuracy reader.
    """
    if policy.method == "ds":
        return pooled_confusion(policy, pooled)
    p = (
        policy.float_param("mv_accuracy")
        if policy.method == "mv"
        else pooled_accuracy(policy, pooled)
    )
    return symmetric_confusion(pooled.shape[-1], p)


def symmetric_confusion(k: int, accuracy: float) -> FloatArray:
    """(K, K) one-coin reader: right with `accuracy`, errors spread evenly."""
    theta = np.full((k, k), (1.0 - accuracy) / (k - 1))
    np.fill_diagonal(theta, accuracy)
    return theta


def one_coin_accuracy(policy: ConsensusPolicy, counts: IntArray, pooled: IntArray) -> FloatArray:
    """Posterior-mean accuracy p_a from (..., K, K) counts with the Beta prior."""
    strength = policy.float_param("prior_strength")
    p0 = prior_accuracy(policy, pooled)
    correct = np.trace(counts, axis1=-2, axis2=-1) / SCALE
    total = counts.sum(axis=(-2, -1)) / SCALE
    p = (correct + strength * p0) / (total + strength)
    return np.asarray(np.clip(p, _P_MIN, 1.0 - _P_MIN), dtype=np.float64)


def balanced_accuracy(policy: ConsensusPolicy, counts: IntArray, pooled: IntArray) -> FloatArray:
    """Mean per-class recall from (..., K, K) counts, each row under its share of the prior.

    A reader who gives one class to everything scores chance here however often the
    consensus is that class, where the one-coin accuracy would rank them as good as the
    consensus is lopsided.
    """
    strength = policy.float_param("prior_strength") / counts.shape[-1]
    p0 = prior_accuracy(policy, pooled)
    correct = np.diagonal(counts, axis1=-2, axis2=-1) / SCALE
    total = counts.sum(axis=-1) / SCALE
    recall = ((correct + strength * p0) / (total + strength)).mean(axis=-1)
    return np.asarray(np.clip(recall, _P_MIN, 1.0 - _P_MIN), dtype=np.float64)


def log_confusion(policy: ConsensusPolicy, counts: IntArray, pooled: IntArray) -> FloatArray:
    """log theta from (..., K, K) counts: Dirichlet posterior mean per row."""
    smoothed = counts / SCALE + dirichlet_prior(policy, pooled)
    return np.asarray(np.log(smoothed / smoothed.sum(axis=-1, keepdims=True)), dtype=np.float64)


def vote_terms(
    policy: ConsensusPolicy,
    counts: IntArray,
    columns: IntArray,
    multiplicity: IntArray,
    pooled: IntArray,
) -> FloatArray:
    """(n, K) additive log-score terms of n votes, given each voter's (n, K, K) counts."""
    k = counts.shape[-1]
    weight = 1.0 / multiplicity.astype(np.float64)
    if policy.method == "ds":
        theta = log_confusion(policy, counts, pooled)
        return np.asarray(theta[np.arange(len(columns)), :, columns] * weight[:, None])
    credit = _credit(policy, k)[:, columns].T
    if policy.method == "mv":
        p0 = policy.float_param("mv_accuracy")
        vote_weight = np.full(len(columns), np.log(p0 * (k - 1) / (1.0 - p0)))
    else:
        p = one_coin_accuracy(policy, counts, pooled)
        vote_weight = np.log(p * (k - 1) / (1.0 - p))
    return credit * (vote_weight * weight)[:, None]


def log_prior(policy: ConsensusPolicy, units: IntArray) -> FloatArray:
    """Class log prior: uniform for mv/weighted, Dirichlet posterior mean for ds."""
    k = units.shape[-1]
    if policy.method != "ds":
        return np.zeros(k)
    smoothed = units / SCALE + policy.float_param("class_prior")
    return np.asarray(np.log(smoothed / smoothed.sum()), dtype=np.float64)


def softmax_rows(scores: FloatArray) -> FloatArray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    expd = np.exp(shifted)
    return np.asarray(expd / expd.sum(axis=1, keepdims=True), dtype=np.float64)


def posterior_units(
    policy: ConsensusPolicy,
    scope: str,
    items: Sequence[Sequence[Vote]],
    view: ReliabilityView,
    k: int,
) -> IntArray:
    """(N, K) quantized posteriors of N items. The single code path for step and batch."""
    flat = [(i, vote) for i, votes in enumerate(items) for vote in votes]
    scores = np.tile(log_prior(policy, class_counts(view, scope, k)), (len(items), 1))
    if flat:
        cache: dict[str, IntArray] = {}
        for _, vote in flat:
            if vote.annotator not in cache:
                cache[vote.annotator] = confusion_counts(view, scope, vote.annotator, k)
        counts = np.stack([cache[vote.annotator] for _, vote in flat])
        columns = np.fromiter((v.column for _, v in flat), dtype=np.int64, count=len(flat))
        mult = np.fromiter((v.multiplicity for _, v in flat), dtype=np.int64, count=len(flat))
        rows = np.fromiter((i for i, _ in flat), dtype=np.int64, count=len(flat))
        pooled = pooled_counts(view, scope, k)
        np.add.at(scores, rows, vote_terms(policy, counts, columns, mult, pooled))
    return quantize(softmax_rows(scores))
