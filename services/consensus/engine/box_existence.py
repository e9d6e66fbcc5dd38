"""Does a candidate box exist? Dawid-Skene for a sub-problem that only sees what was drawn.

A candidate is formed only where some reader drew a box, so the "absent" candidates are
false boxes, nearly always one reader's: a false box matching another reader's false box
is a coincidence. Plain Dawid-Skene reads each reader's draw rate on absent candidates off
those candidates (about 1 / readers on the image) and multiplies such rates as if readers
drew false boxes independently at that spot: two agreeing readers then look hardly more
convincing than one. Streamed, ds kept the one-reader false boxes it put above 1/2; EM
from scratch settled on calling every object that two of three readers drew absent
(bench/box_existence.py, docs/CONSENSUS.md).

ds therefore scores existence with the likelihood of the drawing pattern given that the
candidate was formed (a zero-truncated product; Dempster, Laird & Rubin 1977 treat such
censoring in EM):

    P(pattern | present, formed) = prod_a theta_a[present, drew_a] / (1 - prod_a (1 - s_a))
    P(pattern | absent, formed)  = prod_a f^drew_a (1 - f)^(1 - drew_a) / (1 - (1 - f)^n)

over the n readers of the item, where s_a = theta_a[present, drew] is the reader's
sensitivity, learned as before, and f = `box_false_draw_rate` is the chance that a reader
draws a false box matching a given spot. f is a parameter, not learned: candidates alone
hardly identify it, since a false candidate with one drawer looks the same whatever f is.
The class prior P(present | formed) is learned from the candidates as before. One drawer
gives the absent side about 1 / n, two drawers about f: a lone box stands only where the
other readers often miss objects, and a second reader's box makes it an object.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.consensus.engine.categorical import (
    class_counts,
    confusion_counts,
    log_confusion,
    log_prior,
    posterior_units,
    softmax_rows,
)
from services.consensus.engine.fixedpoint import FloatArray, IntArray, quantize
from services.consensus.engine.policy import ConsensusPolicy
from services.consensus.engine.reliability import ReliabilityView
from services.consensus.engine.votes import Vote

ABSENT, PRESENT = 0, 1
_NO_POOL = np.zeros((2, 2), dtype=np.int64)


def existence_units(
    policy: ConsensusPolicy, scope: str, candidates: Sequence[Sequence[Vote]], view: ReliabilityView
) -> IntArray:
    """(N, 2) quantized P(absent), P(present) of N candidates; votes: 1 = drew it."""
    if not candidates:
        return np.zeros((0, 2), dtype=np.int64)
    if policy.method != "ds":
        return posterior_units(policy, scope, candidates, view, 2)
    f = policy.float_param("box_false_draw_rate")
    prior = log_prior(policy, class_counts(view, scope, 2))
    log_theta: dict[str, FloatArray] = {}
    scores = np.tile(prior, (len(candidates), 1))
    for j, votes in enumerate(candidates):
        for vote in votes:
            if vote.annotator not in log_theta:
                counts = confusion_counts(view, scope, vote.annotator, 2)
                log_theta[vote.annotator] = log_confusion(policy, counts, _NO_POOL)
        drew = np.array([vote.column for vote in votes], dtype=np.int64)
        present_rows = np.array([log_theta[v.annotator][PRESENT] for v in votes])
        sensitivity = np.exp(present_rows[:, 1])
        scores[j, PRESENT] += float(present_rows[np.arange(len(votes)), drew].sum())
        scores[j, PRESENT] -= float(np.log1p(-np.prod(1.0 - sensitivity)))
        drawn = int(drew.sum())
        scores[j, ABSENT] += drawn * np.log(f) + (len(votes) - drawn) * np.log1p(-f)
        scores[j, ABSENT] -= float(np.log1p(-((1.0 - f) ** len(votes))))
    return quantize(softmax_rows(scores))
