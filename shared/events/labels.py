"""Label events: the ingress event front-ends publish, and what submission answers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from shared.events.base import IngressPayload, InternalPayload

Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:/|\-]+$")]


class CategoricalValue(IngressPayload):
    kind: Literal["categorical"] = "categorical"
    label: str = Field(min_length=1, max_length=200)


class OrdinalValue(IngressPayload):
    kind: Literal["ordinal"] = "ordinal"
    grade: int


class NumericValue(IngressPayload):
    kind: Literal["numeric"] = "numeric"
    measurement: float = Field(allow_inf_nan=False)
    unit: str = Field("", max_length=32)


LabelValue = Annotated[CategoricalValue | OrdinalValue | NumericValue, Field(discriminator="kind")]


class LabelSubmitted(IngressPayload):
    """A label as a front-end submits it. Strict: unknown fields are rejected."""

    annotation_id: UUID
    revision: int = Field(1, ge=1)
    item_id: Identifier
    task_id: Identifier
    task_version: int = Field(ge=1)
    annotator_id: Identifier
    client_id: Identifier
    assignment_id: UUID | None = None
    value: LabelValue
    labeled_at: AwareDatetime
    time_spent_ms: int | None = Field(None, ge=0, le=7 * 24 * 3600 * 1000)


class LabelAccepted(InternalPayload):
    """A stored label, with the provenance submission recorded for it."""

    label_id: UUID
    annotation_id: UUID
    revision: int
    item_id: str
    task_id: str
    task_version: int
    annotator_id: str
    client_id: str
    assignment_id: UUID | None = None
    value: LabelValue
    labeled_at: datetime
    received_at: datetime
    raw_sha256: str


class RejectionCode(StrEnum):
    """Why a label event was rejected; stable, machine-readable."""

    UNDECODABLE = "undecodable"
    INVALID_ENVELOPE = "invalid_envelope"
    UNSUPPORTED_EVENT = "unsupported_event"
    INVALID_PAYLOAD = "invalid_payload"
    OVERSIZED = "oversized"
    UNKNOWN_TASK = "unknown_task"
    TASK_VERSION_MISMATCH = "task_version_mismatch"
    WRONG_LABEL_KIND = "wrong_label_kind"
    VALUE_NOT_ALLOWED = "value_not_allowed"
    UNKNOWN_ITEM = "unknown_item"
    ITEM_TASK_MISMATCH = "item_task_mismatch"
    STALE_REVISION = "stale_revision"


class LabelRejected(InternalPayload):
    """A label event that was not accepted, kept and answered with a reason."""

    rejected_event_id: UUID | None
    code: RejectionCode
    message: str
    item_id: str | None = None
    annotator_id: str | None = None
    client_id: str | None = None
    raw_sha256: str
    source_topic: str
    source_partition: int
    source_offset: int
