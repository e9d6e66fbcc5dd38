"""Items and assignments."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from shared.events.base import InternalPayload


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


class AssignmentRequested(InternalPayload):
    """Consensus asks for one more independent label on an item."""

    item_id: str
    task_id: str
    reason: str
    labels_so_far: int
    exclude_annotators: tuple[str, ...] = ()
    preferred_annotators: tuple[str, ...] = ()


class AssignmentIssued(InternalPayload):
    """A leased assignment of an item to an annotator; carries no other reader's answer."""

    assignment_id: UUID
    item_id: str
    task_id: str
    annotator_id: str
    case_ref: str
    lease_expires_at: datetime
