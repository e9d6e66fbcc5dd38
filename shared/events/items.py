"""Items and assignments."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Field

from shared.events.base import InternalPayload
from shared.events.consensus import DecisionRecord
from shared.events.labels import LabelValue


class ItemRegistered(InternalPayload):
    """A case (or one finding of a case) to be labeled; case_ref is pseudonymous."""

    item_id: str = Field(min_length=1, max_length=200)
    task_id: str = Field(min_length=1, max_length=200)
    case_ref: str = Field(min_length=1, max_length=500)
    priority: int = Field(0, ge=0, le=100)
    site: str | None = None
    # The image's size in pixels, for tasks whose boxes are in pixel coordinates.
    image_width: float | None = Field(None, gt=0)
    image_height: float | None = Field(None, gt=0)
    # The known answer of a gold (control) item. Gold items are assigned like any other
    # item, so readers cannot tell them apart; their labels feed skill estimates.
    gold_value: LabelValue | None = None


class AssignmentRequested(InternalPayload):
    """Consensus asks for one more independent label on an item."""

    item_id: str
    task_id: str
    reason: str
    labels_so_far: int
    exclude_annotators: tuple[str, ...] = ()
    preferred_annotators: tuple[str, ...] = ()


class AssignmentIssued(InternalPayload):
    """A leased assignment of an item to an annotator.

    kind "label": a reader's assignment; it is blind (no other reader's answer).
    kind "adjudication": a contested item for an adjudicator, with the evidence (the
    escalated decision) and the queue tier it was routed from.
    """

    assignment_id: UUID
    item_id: str
    task_id: str
    annotator_id: str
    case_ref: str
    lease_expires_at: datetime
    kind: Literal["label", "adjudication"] = "label"
    tier: int | None = None
    evidence: DecisionRecord | None = None


class AssignmentCancelled(InternalPayload):
    """An assignment is over before its label arrived; front-ends stop showing it.

    consensus_reached: the item needs no more labels; expired: the lease ran out and the
    item went to someone else; declined: the annotator declined it; adjudicated: the item
    was decided by an adjudicator; escalated: an adjudication moved to the next tier.
    """

    assignment_id: UUID
    item_id: str
    task_id: str
    annotator_id: str
    reason: Literal["consensus_reached", "expired", "declined", "adjudicated", "escalated"]
    cancelled_at: datetime
