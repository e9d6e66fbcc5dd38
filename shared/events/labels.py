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


class MultiLabelValue(IngressPayload):
    """The findings a reader reports present; every other finding of the task is absent."""

    kind: Literal["multilabel"] = "multilabel"
    findings: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = Field(
        (), max_length=200
    )


class Box(IngressPayload):
    """An axis-aligned box, x0 < x1 and y0 < y1, in the task's coordinate space."""

    x0: float = Field(allow_inf_nan=False)
    y0: float = Field(allow_inf_nan=False)
    x1: float = Field(allow_inf_nan=False)
    y1: float = Field(allow_inf_nan=False)
    label: str | None = Field(None, min_length=1, max_length=200)


class BoxesValue(IngressPayload):
    """Every box a reader drew on an image; an empty list means "nothing to box"."""

    kind: Literal["boxes"] = "boxes"
    boxes: tuple[Box, ...] = Field((), max_length=1000)


LabelValue = Annotated[
    CategoricalValue | OrdinalValue | NumericValue | MultiLabelValue | BoxesValue,
    Field(discriminator="kind"),
]


class AdjudicationRationale(IngressPayload):
    """Why an adjudicator decided a contested case as they did, and what they signed.

    signature_meaning states what the signature attests, in the adjudicator's words
    ("I adjudicate this case as pneumothorax present"), as 21 CFR 11.50 asks of a
    signed record.
    """

    reason_code: Identifier
    guideline_clause: str | None = Field(None, min_length=1, max_length=200)
    # Free text; checked for PHI like every free-text field.
    text: str | None = Field(None, max_length=2000)
    signature_meaning: str = Field(min_length=1, max_length=500)


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
    # Free text for the adjudicator; checked for PHI like every free-text field.
    comment: str | None = Field(None, max_length=2000)
    # Present on an adjudicator's decision of a contested item (an adjudication assignment).
    adjudication: AdjudicationRationale | None = None


class LabelRetractionSubmitted(IngressPayload):
    """An annotator withdraws an annotation: a revision with no value. Strict like labels.

    The retraction is revision `revision` of `annotation_id`; a later revision brings the
    annotation back, an earlier one arriving late stays superseded.
    """

    annotation_id: UUID
    revision: int = Field(ge=1)
    item_id: Identifier
    task_id: Identifier
    task_version: int = Field(ge=1)
    annotator_id: Identifier
    client_id: Identifier
    assignment_id: UUID | None = None
    retracted_at: AwareDatetime
    reason: str | None = Field(None, max_length=2000)


class ForwardedLabel(InternalPayload):
    """What submission tells downstream about every revision it accepts."""

    label_id: UUID
    annotation_id: UUID
    revision: int
    item_id: str
    task_id: str
    task_version: int
    annotator_id: str
    client_id: str
    assignment_id: UUID | None = None
    received_at: datetime
    raw_sha256: str
    key_id: str | None = None
    # True when a higher revision of the annotation was already stored: the revision is
    # kept and forwarded, and "latest revision wins" keeps it out of the consensus.
    superseded: bool = False


class LabelAccepted(ForwardedLabel):
    """A stored label, with the provenance submission recorded for it."""

    value: LabelValue
    labeled_at: datetime
    # Provenance added with signed ingress; absent on events written before it.
    guideline_version: str | None = None
    signed_at: datetime | None = None
    time_spent_ms: int | None = None
    # "adjudicator": the label decides a contested item and closes it.
    role: Literal["reader", "adjudicator"] = "reader"
    adjudication: AdjudicationRationale | None = None


class LabelRetracted(ForwardedLabel):
    """An accepted retraction: consensus drops `annotation_id` unless it holds a higher
    revision of it, and remembers the retraction against lower revisions arriving late."""

    retracted_at: datetime


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
    # Kept so that old rejection events still decode; no longer emitted (late revisions
    # are kept as superseded, see docs/SUBMISSION.md).
    STALE_REVISION = "stale_revision"
    REVISION_CONFLICT = "revision_conflict"
    ANNOTATION_MISMATCH = "annotation_mismatch"
    INVALID_GEOMETRY = "invalid_geometry"
    NO_ASSIGNMENT = "no_assignment"
    ASSIGNMENT_EXPIRED = "assignment_expired"
    ASSIGNMENT_MISMATCH = "assignment_mismatch"
    # The assignment was cancelled (declined, escalated or adjudicated) before the label.
    ASSIGNMENT_CANCELLED = "assignment_cancelled"
    # A decision with an adjudication rationale from someone holding no live adjudication
    # assignment for the item.
    NOT_ADJUDICATOR = "not_adjudicator"
    # An answer to an adjudication assignment without its rationale and signature meaning.
    RATIONALE_MISSING = "rationale_missing"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    KEY_REVOKED = "key_revoked"
    BAD_SIGNATURE = "bad_signature"
    SIGNATURE_EXPIRED = "signature_expired"
    REPLAYED = "replayed"
    CLIENT_MISMATCH = "client_mismatch"
    ANNOTATOR_NOT_ALLOWED = "annotator_not_allowed"
    PHI_SUSPECTED = "phi_suspected"


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
    key_id: str | None = None
