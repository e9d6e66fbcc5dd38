"""Builders of valid events for tests (each call gets fresh ids unless given).

Label events are signed with the test client's key (`sign`); the integration conftest
registers that client, allowed to speak for every annotator, in the test database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from services.submission.settings import SubmissionConfig
from shared.envelope import Envelope
from shared.events import (
    ASSIGNMENT_CANCELLED,
    ASSIGNMENT_ISSUED,
    ITEM_REGISTERED,
    LABEL_RETRACTION_SUBMITTED,
    LABEL_SUBMITTED,
    TASK_DEFINED,
    AdjudicationRationale,
    AssignmentCancelled,
    AssignmentIssued,
    CategoricalValue,
    ConsensusPolicy,
    ItemRegistered,
    LabelRetractionSubmitted,
    LabelSubmitted,
    LabelValue,
    TaskDefined,
)
from shared.kafka.records import Delivery
from shared.signing import Headers, SigningKey, derive_secret
from shared.signing import sign as sign_bytes

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CLIENT_ID = "viewer-1"
KEY_ID = "viewer-1.tests"
KEY_SALT = "tests"
KEY = SigningKey(KEY_ID, derive_secret(SubmissionConfig().master, KEY_ID, KEY_SALT))


def task(task_id: str | None = None, **overrides: Any) -> TaskDefined:
    fields: dict[str, Any] = {
        "task_id": task_id or f"task-{uuid.uuid4().hex[:8]}",
        "version": 1,
        "title": "Pneumothorax present?",
        "label_kind": "categorical",
        "classes": ("0", "1"),
        "initial_overlap": 3,
        # Majority vote at 0.7: two of three agreeing readers settle an item.
        "policy": ConsensusPolicy(method="mv", min_labels=3, max_labels=5, threshold=0.7),
    }
    fields.update(overrides)
    return TaskDefined(**fields)


def task_event(definition: TaskDefined) -> Envelope[TaskDefined]:
    return TASK_DEFINED.wrap(
        definition,
        key=definition.task_id,
        producer="tests",
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


def item_event(
    task_id: str, item_id: str | None = None, **overrides: Any
) -> Envelope[ItemRegistered]:
    item_id = item_id or f"item-{uuid.uuid4().hex[:10]}"
    return ITEM_REGISTERED.wrap(
        ItemRegistered(item_id=item_id, task_id=task_id, case_ref=f"case:{item_id}", **overrides),
        key=item_id,
        producer="tests",
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


def label_event(
    item_id: str,
    task_id: str,
    annotator: str,
    value: str,
    *,
    event_id: uuid.UUID | None = None,
    annotation_id: uuid.UUID | None = None,
    revision: int = 1,
    assignment_id: uuid.UUID | None = None,
    label_value: LabelValue | None = None,
    **overrides: Any,
) -> Envelope[LabelSubmitted]:
    fields: dict[str, Any] = {
        "annotation_id": annotation_id or uuid.uuid4(),
        "revision": revision,
        "item_id": item_id,
        "task_id": task_id,
        "task_version": 1,
        "annotator_id": annotator,
        "client_id": CLIENT_ID,
        "assignment_id": assignment_id,
        "value": label_value or CategoricalValue(label=value),
        "labeled_at": NOW,
        "time_spent_ms": 41_000,
    }
    fields.update(overrides)
    return LABEL_SUBMITTED.wrap(
        LabelSubmitted(**fields),
        key=item_id,
        producer="viewer-1",
        event_id=event_id or uuid.uuid4(),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


def retraction_event(
    item_id: str,
    task_id: str,
    annotator: str,
    annotation_id: uuid.UUID,
    revision: int,
    **overrides: Any,
) -> Envelope[LabelRetractionSubmitted]:
    fields: dict[str, Any] = {
        "annotation_id": annotation_id,
        "revision": revision,
        "item_id": item_id,
        "task_id": task_id,
        "task_version": 1,
        "annotator_id": annotator,
        "client_id": CLIENT_ID,
        "retracted_at": NOW,
        "reason": "read the wrong series",
    }
    fields.update(overrides)
    return LABEL_RETRACTION_SUBMITTED.wrap(
        LabelRetractionSubmitted(**fields),
        key=item_id,
        producer=CLIENT_ID,
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


def assignment_event(
    item_id: str,
    task_id: str,
    annotator: str,
    *,
    lease_expires_at: datetime | None = None,
    assignment_id: uuid.UUID | None = None,
    kind: Literal["label", "adjudication"] = "label",
) -> Envelope[AssignmentIssued]:
    """An assignment as the assignment service issues it (by default live for a day)."""
    return ASSIGNMENT_ISSUED.wrap(
        AssignmentIssued(
            assignment_id=assignment_id or uuid.uuid4(),
            item_id=item_id,
            task_id=task_id,
            annotator_id=annotator,
            case_ref=f"case:{item_id}",
            lease_expires_at=lease_expires_at or datetime.now(UTC) + timedelta(days=1),
            kind=kind,
        ),
        key=annotator,
        producer="assignment",
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


def cancellation_event(
    assignment: AssignmentIssued, reason: str, at: datetime | None = None
) -> Envelope[AssignmentCancelled]:
    """The assignment service's cancellation of `assignment` (keyed by its annotator)."""
    return ASSIGNMENT_CANCELLED.wrap(
        AssignmentCancelled(
            assignment_id=assignment.assignment_id,
            item_id=assignment.item_id,
            task_id=assignment.task_id,
            annotator_id=assignment.annotator_id,
            reason=reason,
            cancelled_at=at or datetime.now(UTC),
        ),
        key=assignment.annotator_id,
        producer="assignment",
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


def rationale(decision: str = "present", **overrides: Any) -> AdjudicationRationale:
    """An adjudicator's structured rationale and signature meaning."""
    fields: dict[str, Any] = {
        "reason_code": "reader_error",
        "guideline_clause": "4.2",
        "text": "visceral pleural line without lung markings beyond it",
        "signature_meaning": f"I adjudicate this case as {decision}",
    }
    fields.update(overrides)
    return AdjudicationRationale(**fields)


def sign(value: bytes, key: SigningKey = KEY, signed_at: datetime | None = None) -> Headers:
    """The signature headers the test client's front-end would send."""
    return sign_bytes(value, key, signed_at)


def delivery(
    event: Envelope[Any] | bytes,
    *,
    headers: Headers | None = None,
    signed: bool = True,
    topic: str = "labels.submitted.v1",
    offset: int = 0,
    at: datetime | None = None,
) -> Delivery:
    """A consumed record of `event` (signed now by the test client unless told otherwise)."""
    value = event if isinstance(event, bytes) else event.encode()
    key = None if isinstance(event, bytes) else event.key.encode()
    if headers is None:
        headers = sign(value) if signed else []
    moment = at or datetime.now(UTC)
    return Delivery(topic, 0, offset, key, value, tuple(headers), int(moment.timestamp() * 1000))
