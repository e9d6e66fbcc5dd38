"""Whom to ask next: candidates ranked by expected information about the item's label.

For an item with posterior q over K classes and a candidate annotator with confusion
matrix theta (rows: true class, columns: label), the expected information gain of one
more label is the mutual information between the true class and that label:

    EIG = H(q) - sum_l p(l) H(q | l),   p(l) = sum_c q_c theta[c, l],
    q(c | l) proportional to q_c theta[c, l]

(Lindley 1956; the criterion of active label collection, e.g. Sheng et al. 2008). theta
is the one each method uses: the Dawid-Skene posterior mean for ds, the symmetric
mv_accuracy matrix for mv, and for weighted the one-coin matrix at the reader's mean
per-class recall rather than at the agreement its votes are weighted by: once the
consensus leans to one class, a reader who gives that class to everything agrees with it
more than a good reader does, and asking him would make it lean further.

A multi-label item is one binary question per finding, each with its own reliability
(the finding's ledger scope): a candidate's gain is the sum of their gains on the
findings that still need labels (independent questions, so the informations add), and a
reader strong on the finding in doubt is asked before one strong only on findings
already decided.

Annotators already on the item are excluded. Equally informative annotators keep the
order the caller lists them in (a queue, the order readers became free), so the ranking
is deterministic and a tie does not send every item to the same reader.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from services.consensus.engine import item_categorical, multilabel
from services.consensus.engine.categorical import (
    balanced_accuracy,
    confusion_counts,
    log_confusion,
    pooled_counts,
    symmetric_confusion,
)
from services.consensus.engine.fixedpoint import FloatArray
from services.consensus.engine.policy import CATEGORICAL_KINDS, ConsensusPolicy
from services.consensus.engine.reliability import ReliabilityView
from services.consensus.engine.state import ItemState


def _entropy(p: FloatArray) -> float:
    nz = p[p > 0.0]
    return float(-(nz * np.log(nz)).sum())


def expected_information(q: FloatArray, theta: FloatArray) -> float:
    """Mutual information (nats) between the true class ~ q and one label from theta."""
    joint = q[:, None] * theta
    p_label = joint.sum(axis=0)
    gain = _entropy(q)
    for column in range(theta.shape[1]):
        if p_label[column] > 0.0:
            gain -= float(p_label[column]) * _entropy(joint[:, column] / p_label[column])
    return max(gain, 0.0)


def annotator_theta(
    policy: ConsensusPolicy, view: ReliabilityView, annotator: str, scope: str = ""
) -> FloatArray:
    """The confusion matrix the ranking uses for this annotator (module docstring)."""
    k = policy.n_classes
    counts = confusion_counts(view, scope, annotator, k)
    pooled = pooled_counts(view, scope, k)
    if policy.method == "ds":
        return np.exp(log_confusion(policy, counts, pooled))
    p = (
        policy.float_param("mv_accuracy")
        if policy.method == "mv"
        else float(balanced_accuracy(policy, counts, pooled))
    )
    return symmetric_confusion(k, p)


def preferred_annotators(
    policy: ConsensusPolicy,
    state: ItemState,
    candidates: Iterable[str],
    reliability: ReliabilityView,
    limit: int | None = None,
) -> list[tuple[str, float]]:
    """Candidates not yet on the item, best first, with their expected information (nats).

    Ties keep the candidates' order (first listing of a repeated id).
    """
    questions = _open_questions(policy, state, reliability)
    on_item = {obs.annotator_id for obs in state.labels}
    listed = [a for a in dict.fromkeys(candidates) if a not in on_item]
    ranked = sorted(
        (
            -sum(
                expected_information(q, annotator_theta(policy, reliability, a, scope))
                for scope, q in questions
            ),
            position,
            a,
        )
        for position, a in enumerate(listed)
    )
    result = [(a, -neg) for neg, _, a in ranked]
    return result if limit is None else result[:limit]


def _open_questions(
    policy: ConsensusPolicy, state: ItemState, reliability: ReliabilityView
) -> list[tuple[str, FloatArray]]:
    """(ledger scope, posterior) of each question one more label should answer.

    A classifying item is one question; a multi-label item one per finding that still
    needs more labels (every finding when none does, as when the caller asks anyway).
    """
    if policy.kind in CATEGORICAL_KINDS:
        decision, _ = item_categorical.evaluate(policy, state, reliability)
        q = np.array([decision.distribution[c] for c in policy.classes], dtype=np.float64)
        return [("", q)]
    if policy.kind != "multilabel":
        raise ValueError(
            "preferred_annotators supports binary, categorical, ordinal and multilabel kinds"
        )
    decision, _ = multilabel.evaluate(policy, state, reliability)
    findings = decision.details["findings"]
    undecided = [f for f in policy.classes if findings[f]["outcome"] == "needs_more"]
    questions = []
    for finding in undecided or policy.classes:
        present = float(findings[finding]["probability_present"])
        questions.append((finding, np.array([1.0 - present, present], dtype=np.float64)))
    return questions
