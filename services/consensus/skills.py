"""Annotator skill estimates from the reliability ledger, and when to publish one (pure).

skill is the annotator's expected accuracy on the task: the posterior mean of a Beta
prior (`prior_strength` pseudo-labels at `prior_accuracy`, the task policy's parameters)
updated with the mass of their labels that matched the consensus or gold class, out of
all their learned mass (the diagonal and the total of their confusion counts in the
ledger). agreement_with_consensus is that share without the prior. The classifying kinds
(binary, categorical, ordinal) keep per-annotator confusion counts over the task's
classes; box tasks keep them over candidate existence (drew a box where the consensus
has an object, drew none where it has none: engine/boxes.py), so their skill is the
reader's detection accuracy on candidate objects; multi-label tasks keep them per
finding (present or absent), summed here, so their skill is the reader's accuracy on one
finding of one item. Numeric and mask tasks publish no estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.consensus import engine
from services.consensus.engine.categorical import confusion_counts
from services.consensus.engine.fixedpoint import SCALE, IntArray
from services.consensus.engine.reliability import ReliabilityView
from services.consensus.scoped import engine_scopes
from shared.events import AnnotatorSkillEstimated

SKILL_KINDS = frozenset({"binary", "categorical", "ordinal", "boxes", "multilabel"})
# An estimate is published when it moved by this much since the last one published ...
MATERIAL_CHANGE = 0.02
# ... or when the annotator gave this many labels since.
EVERY_LABELS = 25


@dataclass(frozen=True)
class LabelCounts:
    """How many labels an annotator gave on a task, how many on gold items, how many right."""

    labels: int = 0
    gold_labels: int = 0
    gold_correct: int = 0


@dataclass(frozen=True)
class LastPublished:
    skill: float | None
    gold_accuracy: float | None
    labels: int


def estimate(
    policy: engine.ConsensusPolicy,
    view: ReliabilityView,
    annotator_id: str,
    task_id: str,
    counts: LabelCounts,
) -> AnnotatorSkillEstimated | None:
    """The annotator's current estimate, or None when the ledger knows nothing of them."""
    if policy.kind not in SKILL_KINDS:
        return None
    confusion = _confusion(policy, view, annotator_id)
    total = float(confusion.sum()) / SCALE
    if total <= 0.0:
        return None
    correct = float(np.trace(confusion)) / SCALE
    strength = policy.float_param("prior_strength")
    prior = policy.float_param("prior_accuracy")
    return AnnotatorSkillEstimated(
        annotator_id=annotator_id,
        task_id=task_id,
        labels=counts.labels,
        agreement_with_consensus=round(correct / total, 6),
        skill=round((correct + strength * prior) / (total + strength), 6),
        gold_labels=counts.gold_labels,
        gold_accuracy=(
            round(counts.gold_correct / counts.gold_labels, 6) if counts.gold_labels else None
        ),
    )


def _confusion(
    policy: engine.ConsensusPolicy, view: ReliabilityView, annotator_id: str
) -> IntArray:
    """The annotator's confusion counts the skill is read from (see the module docstring)."""
    per_scope = [
        confusion_counts(view, scope, annotator_id, policy.n_classes)
        for scope in engine_scopes(policy)
    ]
    return np.asarray(np.sum(per_scope, axis=0), dtype=np.int64)


def should_publish(current: AnnotatorSkillEstimated, last: LastPublished | None) -> bool:
    """Publish the first estimate, one that moved materially, or every EVERY_LABELS labels,
    so a busy annotator's estimate costs a bounded number of events."""
    if last is None:
        return True
    if current.labels - last.labels >= EVERY_LABELS:
        return True
    return _moved(current.skill, last.skill) or _moved(current.gold_accuracy, last.gold_accuracy)


def _moved(now: float | None, before: float | None) -> bool:
    if now is None or before is None:
        return now is not before
    return abs(now - before) >= MATERIAL_CHANGE
