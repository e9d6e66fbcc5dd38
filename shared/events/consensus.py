"""Consensus decisions, escalations, skill estimates and the hospital-facing label."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from shared.events.base import InternalPayload
from shared.events.labels import AdjudicationRationale

# A class or grade, a measurement, the findings present, or boxes [x0, y0, x1, y1(, class)].
ConsensusValue = str | float | list[str] | list[list[float | str]]


class DecisionRecord(InternalPayload):
    """Everything needed to explain and replay one consensus decision.

    distribution: posterior probability per value; votes: labels per value; agreement:
    observed pairwise agreement among the item's readers; parameters: the complete policy
    (method, thresholds, priors); reliability_version: the digest of the annotator
    reliability snapshot the decision used, so replay is exact.
    """

    outcome: Literal["reached", "needs_more", "contested"]
    label: ConsensusValue | None
    confidence: float
    distribution: dict[str, float]
    agreement: float
    contributing_label_ids: tuple[UUID, ...]
    method: str
    method_version: str
    parameters: dict[str, Any]
    reliability_version: str = "none"
    votes: dict[str, float] = Field(default_factory=dict)
    n_annotators: int = 0
    reason: str = ""
    policy_digest: str = ""
    # Pseudonymous ids of the readers behind contributing_label_ids (for provenance).
    contributing_annotators: tuple[str, ...] = ()
    # What the stopping rules computed when the decision rule consulted them (horizon_gain,
    # flip_risk, dissent_share), so a reach below the threshold shows the value it was
    # reached on, and a hold the share that held it.
    stopping: dict[str, float] = Field(default_factory=dict)


class ConsensusReached(InternalPayload):
    item_id: str
    task_id: str
    task_version: int
    guideline_version: str = ""
    consensus_version: int = Field(ge=1)
    decision: DecisionRecord
    decided_at: datetime
    # Set when an adjudicator decided the item.
    adjudicator_id: str | None = None
    adjudication: AdjudicationRationale | None = None


class AdjudicationRequested(InternalPayload):
    item_id: str
    task_id: str
    task_version: int
    reason: str
    decision: DecisionRecord


class AnnotatorSkillEstimated(InternalPayload):
    """An annotator's current skill on a task (one finding, for per-finding tasks).

    skill: the estimated probability that the annotator's label is right, from the
    consensus engine's reliability model; gold_accuracy: their accuracy on gold items.
    """

    annotator_id: str
    task_id: str
    labels: int
    agreement_with_consensus: float
    skill: float | None = None
    gold_labels: int = 0
    gold_accuracy: float | None = None


class ConsensusPublished(InternalPayload):
    """One published version of an item's consensus label, for hospital integrations."""

    item_id: str
    task_id: str
    task_version: int
    guideline_version: str = ""
    version: int = Field(ge=1)
    supersedes_version: int | None = None
    label: ConsensusValue | None
    confidence: float
    distribution: dict[str, float]
    agreement: float
    method: str
    method_version: str
    parameters: dict[str, Any]
    contributing_label_ids: tuple[UUID, ...]
    contributing_annotators: tuple[str, ...] = ()
    reason: str = ""
    reliability_version: str = "none"
    decided_at: datetime
    provenance_sha256: str
    # Set when an adjudicator decided the item: who, and their structured rationale.
    adjudicator_id: str | None = None
    adjudication: AdjudicationRationale | None = None
