"""The walking-skeleton consensus rule (pure): a strict majority of at least min_labels.

Rule: with n current labels, if n >= min_labels and one value holds more than half of
them, the item is reached with that value (confidence = its share). Otherwise, with
fewer than max_labels, one more label is needed; at max_labels it is contested. A value
listed in the policy's critical_labels escalates the item as soon as min_labels are in,
unless every label agrees.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from shared.events import ConsensusPolicy, DecisionRecord

METHOD = "majority"
METHOD_VERSION = "skeleton-1"


@dataclass(frozen=True)
class CurrentLabel:
    label_id: UUID
    annotator_id: str
    value: str


def decide(labels: list[CurrentLabel], policy: ConsensusPolicy) -> DecisionRecord:
    """Apply the majority rule to an item's current labels (one per annotation)."""
    ordered = sorted(labels, key=lambda label: str(label.label_id))
    n = len(ordered)
    counts = Counter(label.value for label in ordered)
    distribution = {value: counts[value] / n for value in sorted(counts)} if n else {}
    # Ties on the top count have no winner: the value is left undecided, never guessed.
    top = counts.most_common()
    leader, leader_count = top[0] if top else (None, 0)
    tied = len(top) > 1 and top[1][1] == leader_count
    share = leader_count / n if n else 0.0
    outcome: Literal["reached", "needs_more", "contested"]
    critical = any(value in policy.critical_labels for value in counts) and len(counts) > 1
    if n >= policy.min_labels and critical:
        outcome = "contested"
    elif n >= policy.min_labels and not tied and leader_count * 2 > n:
        outcome = "reached"
    elif n < policy.max_labels:
        outcome = "needs_more"
    else:
        outcome = "contested"
    return DecisionRecord(
        outcome=outcome,
        label=leader if outcome == "reached" else None,
        confidence=share,
        distribution=distribution,
        agreement=share,
        contributing_label_ids=tuple(label.label_id for label in ordered),
        method=METHOD,
        method_version=METHOD_VERSION,
        parameters={
            "min_labels": policy.min_labels,
            "max_labels": policy.max_labels,
            "critical_labels": list(policy.critical_labels),
        },
    )
