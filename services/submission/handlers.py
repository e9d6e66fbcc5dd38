"""Submission's Kafka handlers: decode -> validate -> store + outbox, in one transaction."""

from __future__ import annotations

import json
import uuid
from typing import Any

from services.submission.store import PgSubmissionStore
from services.submission.validation import Rejection, check_label
from shared.envelope import DecodeError, Envelope
from shared.events import (
    ITEM_REGISTERED,
    LABEL_ACCEPTED,
    LABEL_REJECTED,
    LABEL_SUBMITTED,
    TASK_DEFINED,
    ItemRegistered,
    LabelAccepted,
    LabelRejected,
    LabelSubmitted,
    RejectionCode,
    TaskDefined,
)
from shared.kafka.consumer import HandlerContext, Route
from shared.topics import (
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    LABELS_REJECTED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
)

_LABEL_NAMESPACE = uuid.UUID("8a6f1d7e-5b1e-4f43-9a55-2f6b8c0e9d21")


def label_id_for(event_id: uuid.UUID) -> uuid.UUID:
    """Label ids derive from the event id, so a replay yields the same ids."""
    return uuid.uuid5(_LABEL_NAMESPACE, str(event_id))


async def on_task_defined(ctx: HandlerContext, event: Envelope[TaskDefined]) -> None:
    await PgSubmissionStore(ctx.conn).save_task(event.payload)


async def on_item_registered(ctx: HandlerContext, event: Envelope[ItemRegistered]) -> None:
    await PgSubmissionStore(ctx.conn).register_item(event.payload.item_id, event.payload.task_id)


async def on_label_submitted(ctx: HandlerContext, event: Envelope[LabelSubmitted]) -> None:
    store = PgSubmissionStore(ctx.conn)
    label = event.payload
    rejection = check_label(
        label,
        await store.task(label.task_id, label.task_version),
        await store.item_task(label.item_id),
        await store.latest_revision(label.annotation_id),
    )
    if rejection is not None:
        await _reject(
            ctx, event.event_id, rejection, label.item_id, label.annotator_id, label.client_id
        )
        return
    accepted = LabelAccepted(
        label_id=label_id_for(event.event_id),
        annotation_id=label.annotation_id,
        revision=label.revision,
        item_id=label.item_id,
        task_id=label.task_id,
        task_version=label.task_version,
        annotator_id=label.annotator_id,
        client_id=label.client_id,
        assignment_id=label.assignment_id,
        value=label.value,
        labeled_at=label.labeled_at,
        received_at=ctx.now,
        raw_sha256=ctx.delivery.sha256,
    )
    await store.save_label(accepted, event.event_id, label.time_spent_ms)
    ctx.emitter.emit(LABEL_ACCEPTED, LABELS_ACCEPTED, accepted, key=label.item_id)


async def on_invalid_label(ctx: HandlerContext, error: DecodeError) -> None:
    """Undecodable or invalid ingress bytes are answered on labels.rejected, never dropped."""
    event_id, item_id = _peek(ctx.delivery.value)
    try:
        code = RejectionCode(error.code)
    except ValueError:
        code = RejectionCode.INVALID_PAYLOAD
    await _reject(ctx, event_id, Rejection(code, error.message), item_id)


async def _reject(
    ctx: HandlerContext,
    event_id: uuid.UUID | None,
    rejection: Rejection,
    item_id: str | None,
    annotator_id: str | None = None,
    client_id: str | None = None,
) -> None:
    delivery = ctx.delivery
    await PgSubmissionStore(ctx.conn).save_rejection(
        event_id=event_id,
        code=rejection.code.value,
        message=rejection.message,
        topic=delivery.topic,
        partition=delivery.partition,
        offset=delivery.offset,
        raw=delivery.value,
        raw_sha256=delivery.sha256,
    )
    payload = LabelRejected(
        rejected_event_id=event_id,
        code=rejection.code,
        message=rejection.message,
        item_id=item_id,
        annotator_id=annotator_id,
        client_id=client_id,
        raw_sha256=delivery.sha256,
        source_topic=delivery.topic,
        source_partition=delivery.partition,
        source_offset=delivery.offset,
    )
    key = item_id or (delivery.key.decode(errors="replace") if delivery.key else "unknown")
    ctx.emitter.emit(LABEL_REJECTED, LABELS_REJECTED, payload, key=key[:200] or "unknown")


def _peek(raw: bytes) -> tuple[uuid.UUID | None, str | None]:
    """Best-effort event id and item id from bytes that failed validation."""
    try:
        data: Any = json.loads(raw)
        event_id = uuid.UUID(str(data.get("event_id")))
    except Exception:
        return None, None
    payload = data.get("payload") if isinstance(data, dict) else None
    item = payload.get("item_id") if isinstance(payload, dict) else None
    return event_id, item if isinstance(item, str) and 0 < len(item) <= 200 else None


def routes() -> list[Route]:
    return [
        Route(TASKS_DEFINED, TASK_DEFINED, on_task_defined),
        Route(ITEMS_REGISTERED, ITEM_REGISTERED, on_item_registered),
        Route(
            LABELS_SUBMITTED,
            LABEL_SUBMITTED,
            on_label_submitted,
            on_invalid=on_invalid_label,
        ),
    ]
