"""Value of the horizon: how much could the labels still to come improve the decision?

A fixed design collects `max_labels` labels per item and decides from all of them.
Stopping after n labels gives up, in expectation under the engine's own model,

    gain = E_y[max_c P(c | x, y)] - max_c P(c | x)

where x are the labels so far and y the r = max_labels - n labels not yet collected. The
next readers are unknown members of the crowd, so each future label follows the crowd's
confusion matrix theta (row: true class) and y | c is multinomial(r, theta_c):

    gain = sum over count vectors y of max_c pi_c Mult(y; r, theta_c) - max_c pi_c.

Reaching when gain <= stop_gain bounds the accuracy given up against the fixed design by
stop_gain per item. Since gain <= 1 - max pi, on its own the rule would be at least as
eager as a confidence threshold of 1 - stop_gain; the decision rule (decision.outcome_for)
therefore also asks that the item be stop_gain_floor confident and that the gain be at
most stop_gain_share of its error, so that it stops early only where the horizon is short
or the crowd noisy, where the labels still to come could not fix the answer anyway.

The sum is exact over the C(r + K - 1, K - 1) count vectors. Above MAX_OUTCOMES the labels
of the least likely classes are pooled into one "other" outcome: a coarser y, so the gain
is understated a little in that case. The result is rounded to SCALE units, so the
comparison does not depend on the last bits of the float sum.
"""

from __future__ import annotations

from functools import cache
from itertools import combinations
from math import comb, lgamma

import numpy as np

from services.consensus.engine.fixedpoint import SCALE, FloatArray

MAX_OUTCOMES = 20_000
"""Count vectors summed per decision at most (bounds the cost for many classes)."""


@cache
def _count_vectors(remaining: int, categories: int) -> tuple[FloatArray, FloatArray]:
    """Every way `remaining` labels fall into `categories`, and log(r! / prod y_j!)."""
    rows = []
    # Stars and bars: bar positions among remaining + categories - 1 slots.
    for bars in combinations(range(remaining + categories - 1), categories - 1):
        edges = (-1, *bars, remaining + categories - 1)
        rows.append([edges[j + 1] - edges[j] - 1 for j in range(categories)])
    counts = np.array(rows, dtype=np.float64)
    log_coef = lgamma(remaining + 1.0) - np.array(
        [sum(lgamma(y + 1.0) for y in row) for row in rows], dtype=np.float64
    )
    counts.setflags(write=False)
    log_coef.setflags(write=False)
    return counts, log_coef


def _outcome_columns(posterior: FloatArray, remaining: int) -> list[list[int]]:
    """Label columns that stay distinct (most likely classes first); the rest pooled."""
    k = len(posterior)
    if comb(remaining + k - 1, k - 1) <= MAX_OUTCOMES:
        return [[j] for j in range(k)]
    order = sorted(range(k), key=lambda j: (-posterior[j], j))
    kept = 1
    while kept + 1 < k and comb(remaining + kept + 1, kept + 1) <= MAX_OUTCOMES:
        kept += 1
    return [[j] for j in order[:kept]] + [sorted(order[kept:])]


def horizon_gain(posterior: FloatArray, theta: FloatArray, remaining: int) -> float:
    """Expected gain in P(correct) from `remaining` more labels drawn from `theta`.

    posterior: (K,) current class probabilities; theta: (K, K) rows P(label | class).
    """
    if remaining <= 0:
        return 0.0
    groups = _outcome_columns(posterior, remaining)
    grouped = np.stack([theta[:, g].sum(axis=1) for g in groups], axis=1)
    counts, log_coef = _count_vectors(remaining, len(groups))
    log_theta = np.log(np.clip(grouped, 1e-300, None))
    # (V, K): log pi_c + log Mult(y_v; r, theta_c); zero-probability classes drop out.
    with np.errstate(divide="ignore"):
        log_pi = np.log(posterior)
    log_joint = log_coef[:, None] + counts @ log_theta.T + log_pi[None, :]
    expected_best = float(np.exp(log_joint.max(axis=1)).sum())
    gain = max(expected_best - float(posterior.max()), 0.0)
    return round(gain * SCALE) / SCALE
