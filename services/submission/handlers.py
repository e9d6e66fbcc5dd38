"""Submission's Kafka handlers: decode -> authenticate -> validate -> store + audit + outbox,
all in the consumer's transaction. Every rejection is stored, audited and answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.submission.batch import label_batch, prefetch
from services.submission.settings import SubmissionConfig
from services.submission.store import PgSubmissionStore, StoredRevision
from services.submission.validation import (
    WAIT,
    Assignment,
    Ingress,
    ItemInfo,
    Rejection,
    check_assignment,
    check_authenticity,
    check_history,
    check_target,
    check_value,
    is_superseded,
    no_assignment,
)
from shared.audit import AuditEntry, PgAuditLog
from shared.envelope import DecodeError, Envelope
from shared.events import (
    ASSIGNMENT_CANCELLED,
    ASSIGNMENT_ISSUED,
    ITEM_REGISTERED,
    LABEL_ACCEPTED,
    LABEL_REJECTED,
    LABEL_RETRACTED,
    LABEL_RETRACTION_SUBMITTED,
    LABEL_SUBMITTED,
    REGISTRY,
    TASK_DEFINED,
    AssignmentCancelled,
    AssignmentIssued,
    ItemRegistered,
    LabelAccepted,
    LabelRejected,
    LabelRetracted,
    LabelRetractionSubmitted,
    LabelSubmitted,
    RejectionCode,
    TaskDefined,
)
from shared.kafka.consumer import BatchScope, FirstSeen, HandlerContext, Route
from shared.kafka.errors import is_infrastructure_error
from shared.kafka.outbox import Emitter, Outbox
from shared.kafka.records import Delivery
from shared.logging import get_logger
from shared.privacy import find_phi
from shared.signing import SignedHeaders
from shared.topics import (
    ASSIGNMENTS_ISSUED,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    LABELS_REJECTED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
)

log = get_logger(__name__)

CHAIN = "submission"
_AUDIT_KEY = "submission.audit"
_LABEL_NAMESPACE = uuid.UUID("8a6f1d7e-5b1e-4f43-9a55-2f6b8c0e9d21")


def label_id_for(event_id: uuid.UUID) -> uuid.UUID:
    """Label ids derive from the event id, so a replay yields the same ids."""
    return uuid.uuid5(_LABEL_NAMESPACE, str(event_id))


def published_at(delivery: Delivery, fallback: datetime) -> datetime:
    """When the record reached the broker (its timestamp; LogAppendTime on
    labels.submitted.v1 makes it the broker's clock), else `fallback`."""
    if delivery.timestamp_ms > 0:
        return datetime.fromtimestamp(delivery.timestamp_ms / 1000, UTC)
    return fallback


class SubmissionHandlers:
    """The submission service's handlers; `config` holds the signing master key and windows."""

    def __init__(self, config: SubmissionConfig) -> None:
        self.config = config

    # ------------------------------------------------------------------ tasks, items, leases

    async def on_task_defined(self, ctx: HandlerContext, event: Envelope[TaskDefined]) -> None:
        task = event.payload
        outcome = await PgSubmissionStore(ctx.conn).save_task(task)
        if outcome == "same":
            return
        if outcome == "conflict":
            log.warning("task_version_redefined", task_id=task.task_id, version=task.version)
        await _audit(
            ctx,
            "task.defined" if outcome == "new" else "task.conflict",
            task.task_id,
            {
                "task_id": task.task_id,
                "version": task.version,
                "guideline_version": task.guideline_version,
                "label_kind": task.label_kind,
                "definition": task,
                "stored": outcome == "new",
            },
            event.event_id,
        )

    async def on_item_registered(
        self, ctx: HandlerContext, event: Envelope[ItemRegistered]
    ) -> None:
        """Record the item, then answer the labels that overtook its registration."""
        item = event.payload
        store = PgSubmissionStore(ctx.conn)
        await store.register_item(item.item_id, item.task_id, item.image_width, item.image_height)
        await self._wake(ctx, await store.take_parked_for_item(item.item_id))

    async def on_assignment_issued(
        self, ctx: HandlerContext, event: Envelope[AssignmentIssued]
    ) -> None:
        """Record the lease, then answer the labels that were waiting for it."""
        assignment = event.payload
        store = PgSubmissionStore(ctx.conn)
        await store.save_assignment(assignment, event.occurred_at)
        await self._wake(
            ctx, await store.take_parked_for(assignment.item_id, assignment.annotator_id)
        )

    async def on_assignment_cancelled(
        self, ctx: HandlerContext, event: Envelope[AssignmentCancelled]
    ) -> None:
        """Record the cancellation: later labels for the assignment are judged by its reason
        (validation.check_assignment)."""
        await PgSubmissionStore(ctx.conn).save_cancellation(event.payload)

    async def _wake(self, ctx: HandlerContext, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            parked: Envelope[LabelSubmitted] = REGISTRY.decode(
                delivery.value, expect={LABEL_SUBMITTED.event_type}
            )
            await self._label(_context_for(ctx, parked, delivery), parked, final=False)

    # ------------------------------------------------------------------ labels

    async def on_label_submitted(
        self, ctx: HandlerContext, event: Envelope[LabelSubmitted]
    ) -> None:
        await self._label(ctx, event, final=False)

    async def on_retraction_submitted(
        self, ctx: HandlerContext, event: Envelope[LabelRetractionSubmitted]
    ) -> None:
        retraction = event.payload
        store = PgSubmissionStore(ctx.conn)
        signed = SignedHeaders.read(ctx.delivery.headers)
        rejection, task, _ = await self._common_checks(ctx, event, store, signed)
        batch = label_batch(ctx)
        history = (
            batch.history(retraction.annotation_id)
            if batch
            else await store.history(retraction.annotation_id)
        )
        rejection = rejection or check_history(retraction, history)
        if rejection is not None or task is None:
            await _reject(ctx, event.event_id, rejection or _unreachable(), retraction, signed)
            return
        superseded = is_superseded(retraction.revision, history)
        row = _stored(ctx, event, task, signed, superseded, None)
        if batch:
            batch.save_revision(row)
        else:
            await store.save_revision(row)
        retracted = LabelRetracted(
            **_forwarded(row, superseded), retracted_at=retraction.retracted_at
        )
        ctx.emitter.emit(LABEL_RETRACTED, LABELS_ACCEPTED, retracted, key=row.item_id)
        await _audit(ctx, "label.retracted", row.item_id, _provenance(row), event.event_id)

    async def _label(
        self, ctx: HandlerContext, event: Envelope[LabelSubmitted], *, final: bool
    ) -> None:
        """Accept, reject, or (when its assignment may still be on its way) park a label;
        `final` turns the wait into `no_assignment`."""
        label = event.payload
        store = PgSubmissionStore(ctx.conn)
        signed = SignedHeaders.read(ctx.delivery.headers)
        rejection, task, item = await self._common_checks(ctx, event, store, signed)
        # The item's registration travels on another topic and may still be on its way.
        unknown_item = rejection is not None and rejection.code == RejectionCode.UNKNOWN_ITEM
        if unknown_item and await self._park(ctx, event, store, final):
            return
        if rejection is None and task is not None and item is not None:
            rejection = check_value(label.value, task, item)
        batch = label_batch(ctx)
        annotation_id = label.annotation_id
        history = batch.history(annotation_id) if batch else await store.history(annotation_id)
        rejection = rejection or check_history(label, history)
        assignment: Assignment | None = None
        if rejection is None and task is not None:
            candidates = (
                batch.assignments(label.assignment_id, label.item_id, label.annotator_id)
                if batch
                else await store.assignments(label.assignment_id, label.item_id, label.annotator_id)
            )
            verdict = check_assignment(label, task, candidates, published_at(ctx.delivery, ctx.now))
            if verdict == WAIT:
                if await self._park(ctx, event, store, final):
                    return
                rejection = no_assignment(label, self.config.assignment_wait)
            elif isinstance(verdict, Rejection):
                rejection = verdict
            elif isinstance(verdict, Assignment):
                assignment = verdict
        if rejection is not None or task is None:
            await _reject(ctx, event.event_id, rejection or _unreachable(), label, signed)
            return
        superseded = is_superseded(label.revision, history)
        row = _stored(ctx, event, task, signed, superseded, assignment)
        if batch:
            batch.save_revision(row)
        else:
            await store.save_revision(row)
        accepted = LabelAccepted(
            **_forwarded(row, superseded),
            value=label.value,
            labeled_at=label.labeled_at,
            guideline_version=row.guideline_version,
            signed_at=row.signed_at,
            time_spent_ms=row.time_spent_ms,
            role="adjudicator" if label.adjudication is not None else "reader",
            adjudication=label.adjudication,
        )
        ctx.emitter.emit(LABEL_ACCEPTED, LABELS_ACCEPTED, accepted, key=row.item_id)
        if label.adjudication is not None:
            kind = "label.adjudicated"
        else:
            kind = "label.revised" if label.revision > 1 else "label.accepted"
        await _audit(ctx, kind, row.item_id, _provenance(row), event.event_id)

    async def _park(
        self,
        ctx: HandlerContext,
        event: Envelope[LabelSubmitted],
        store: PgSubmissionStore,
        final: bool,
    ) -> bool:
        """Keep a label until its item or assignment arrives (True), unless it waited long
        enough already (False: answer it now)."""
        if final or self.config.assignment_wait_s <= 0:
            return False
        label = event.payload
        await store.park(event.event_id, label.item_id, label.annotator_id, ctx.delivery, ctx.now)
        return True

    async def _common_checks(
        self,
        ctx: HandlerContext,
        event: Envelope[Any],
        store: PgSubmissionStore,
        signed: SignedHeaders | None,
    ) -> tuple[Rejection | None, TaskDefined | None, ItemInfo | None]:
        """Authenticity, then PHI, then the envelope key, task and item (also returned)."""
        payload: Ingress = event.payload
        batch = label_batch(ctx)
        lookup = batch or store
        key = await lookup.client_key(signed.key_id, payload.annotator_id) if signed else None
        rejection = check_authenticity(
            value=ctx.delivery.value,
            signed=signed,
            key=key,
            master=self.config.master,
            reference=published_at(ctx.delivery, ctx.now),
            window=self.config.window,
            client_id=payload.client_id,
        )
        if rejection is not None:
            return rejection, None, None
        phi = find_phi(json.loads(ctx.delivery.value))
        if phi is not None:
            return Rejection(RejectionCode.PHI_SUSPECTED, phi.message), None, None
        task = await lookup.task(payload.task_id, payload.task_version)
        item = batch.item(payload.item_id) if batch else await store.item(payload.item_id)
        versions = await store.task_versions(payload.task_id) if task is None else []
        return check_target(payload, event.key, task, item, versions), task, item

    async def on_invalid_label(self, ctx: HandlerContext, error: DecodeError) -> None:
        """Undecodable or invalid ingress bytes are answered on labels.rejected, never dropped;
        bytes that look like they carry PHI are rejected as such and not kept."""
        event_id, item_id, document = _peek(ctx.delivery.value)
        phi = find_phi(document) if document is not None else None
        if phi is not None:
            rejection = Rejection(RejectionCode.PHI_SUSPECTED, phi.message)
            item_id = None
        else:
            try:
                code = RejectionCode(error.code)
            except ValueError:
                code = RejectionCode.INVALID_PAYLOAD
            rejection = Rejection(code, error.message)
        signed = SignedHeaders.read(ctx.delivery.headers)
        await _reject(ctx, event_id, rejection, None, signed, item_id=item_id)

    async def on_replayed(
        self, ctx: HandlerContext, event: Envelope[Any], first: FirstSeen
    ) -> None:
        """Another record with an event id already handled: no second effect, but answered."""
        rejection = Rejection(
            RejectionCode.REPLAYED,
            f"event {event.event_id} was already received ({first.topic} partition "
            f"{first.partition} offset {first.offset}); this copy has no effect",
        )
        await _reject(
            ctx, event.event_id, rejection, event.payload, SignedHeaders.read(ctx.delivery.headers)
        )

    # ------------------------------------------------------------------ parked labels

    async def sweep(self, conn: asyncpg.Connection, topic_prefix: str, limit: int = 200) -> int:
        """Answer labels that waited longer than `assignment_wait_s` (no_assignment, unless
        their assignment arrived meanwhile); returns how many were answered."""
        now = datetime.now(UTC)
        async with conn.transaction():
            store = PgSubmissionStore(conn)
            parked = await store.take_parked_before(now - self.config.assignment_wait, limit)
            outbox = Outbox(conn, topic_prefix)
            for delivery in parked:
                event: Envelope[LabelSubmitted] = REGISTRY.decode(
                    delivery.value, expect={LABEL_SUBMITTED.event_type}
                )
                ctx = HandlerContext(conn, Emitter(CHAIN, outbox, now, event), delivery)
                await self._label(ctx, event, final=True)
            await outbox.flush()
        return len(parked)

    def sweeper(self, pool: asyncpg.Pool, topic_prefix: str) -> Any:
        """A background loop for the runtime: sweep parked labels until stopping."""

        async def loop(stopping: asyncio.Event) -> None:
            while not stopping.is_set():
                try:
                    async with pool.acquire() as conn:
                        await self.sweep(conn, topic_prefix)  # type: ignore[arg-type]  # a pool proxy is a Connection at run time
                except Exception as exc:
                    if not is_infrastructure_error(exc):
                        raise
                    log.warning("parked_sweep_failed", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=self.config.sweep_every_s)

        return loop

    def routes(self) -> list[Route]:
        return [
            Route(TASKS_DEFINED, TASK_DEFINED, self.on_task_defined),
            Route(ITEMS_REGISTERED, ITEM_REGISTERED, self.on_item_registered),
            Route(ASSIGNMENTS_ISSUED, ASSIGNMENT_ISSUED, self.on_assignment_issued),
            Route(ASSIGNMENTS_ISSUED, ASSIGNMENT_CANCELLED, self.on_assignment_cancelled),
            Route(
                LABELS_SUBMITTED,
                LABEL_SUBMITTED,
                self.on_label_submitted,
                on_invalid=self.on_invalid_label,
                on_replay=self.on_replayed,
                prefetch=prefetch,
            ),
            Route(
                LABELS_SUBMITTED,
                LABEL_RETRACTION_SUBMITTED,
                self.on_retraction_submitted,
                on_replay=self.on_replayed,
                prefetch=prefetch,
            ),
        ]


def _unreachable() -> Rejection:  # pragma: no cover - check_target rejects a missing task
    return Rejection(RejectionCode.UNKNOWN_TASK, "task is unknown")


def _context_for(ctx: HandlerContext, event: Envelope[Any], delivery: Delivery) -> HandlerContext:
    """A context for another event handled in the same transaction and outbox."""
    emitter = Emitter(ctx.emitter.producer, ctx.emitter.outbox, ctx.now, event)
    return HandlerContext(ctx.conn, emitter, delivery, batch=ctx.batch)


def _stored(
    ctx: HandlerContext,
    event: Envelope[Any],
    task: TaskDefined,
    signed: SignedHeaders | None,
    superseded: bool,
    assignment: Assignment | None,
) -> StoredRevision:
    payload = event.payload
    is_label = isinstance(payload, LabelSubmitted)
    delivery = ctx.delivery
    return StoredRevision(
        label_id=label_id_for(event.event_id),
        event_id=event.event_id,
        annotation_id=payload.annotation_id,
        revision=payload.revision,
        item_id=payload.item_id,
        task_id=payload.task_id,
        task_version=payload.task_version,
        annotator_id=payload.annotator_id,
        client_id=payload.client_id,
        assignment_id=assignment.assignment_id if assignment else payload.assignment_id,
        value=payload.value.model_dump(mode="json") if is_label else None,
        labeled_at=payload.labeled_at if is_label else payload.retracted_at,
        received_at=ctx.now,
        time_spent_ms=payload.time_spent_ms if is_label else None,
        raw_sha256=delivery.sha256,
        retraction=not is_label,
        superseded=superseded,
        guideline_version=task.guideline_version,
        key_id=signed.key_id if signed else None,
        signed_at=_signed_at(signed),
        published_at=published_at(delivery, ctx.now),
        source_topic=delivery.topic,
        source_partition=delivery.partition,
        source_offset=delivery.offset,
        comment=payload.comment if is_label else payload.reason,
        role="adjudicator" if is_label and payload.adjudication is not None else "reader",
        adjudication=(
            payload.adjudication.model_dump(mode="json")
            if is_label and payload.adjudication is not None
            else None
        ),
    )


def _signed_at(signed: SignedHeaders | None) -> datetime | None:
    from shared.signing import parse_signed_at

    if signed is None:
        return None
    try:
        return parse_signed_at(signed.signed_at_text)
    except ValueError:
        return None


def _forwarded(row: StoredRevision, superseded: bool) -> dict[str, Any]:
    """What an accepted label and an accepted retraction both tell downstream."""
    return {
        "label_id": row.label_id,
        "annotation_id": row.annotation_id,
        "revision": row.revision,
        "item_id": row.item_id,
        "task_id": row.task_id,
        "task_version": row.task_version,
        "annotator_id": row.annotator_id,
        "client_id": row.client_id,
        "assignment_id": row.assignment_id,
        "received_at": row.received_at,
        "raw_sha256": row.raw_sha256,
        "key_id": row.key_id,
        "superseded": superseded,
    }


def _provenance(row: StoredRevision) -> dict[str, Any]:
    """What the audit log records of a stored revision (its hash stands for the bytes)."""
    return {
        "label_id": row.label_id,
        "event_id": row.event_id,
        "annotation_id": row.annotation_id,
        "revision": row.revision,
        "retraction": row.retraction,
        "superseded": row.superseded,
        "item_id": row.item_id,
        "task_id": row.task_id,
        "task_version": row.task_version,
        "guideline_version": row.guideline_version,
        "annotator_id": row.annotator_id,
        "client_id": row.client_id,
        "key_id": row.key_id,
        "assignment_id": row.assignment_id,
        "labeled_at": row.labeled_at,
        "signed_at": row.signed_at,
        "published_at": row.published_at,
        "received_at": row.received_at,
        "time_spent_ms": row.time_spent_ms,
        "raw_sha256": row.raw_sha256,
        # An adjudicator's decision: what they decided, why, and what they signed.
        **(
            {"role": row.role, "value": row.value, "adjudication": row.adjudication}
            if row.role == "adjudicator"
            else {}
        ),
    }


async def _audit(
    ctx: HandlerContext,
    kind: str,
    subject: str | None,
    body: dict[str, Any],
    event_id: uuid.UUID | None,
) -> None:
    """Append to the chain; on the batch fast path, with the batch's other rows at its end
    (one chain lock and head read per batch, the same rows in the same order)."""
    entry = AuditEntry(kind, body, ctx.now, subject, event_id)
    if ctx.batch is None:
        await PgAuditLog(ctx.conn, CHAIN).append_many([entry])
        return
    _audit_buffer(ctx.batch, ctx.conn).append(entry)


def _audit_buffer(scope: BatchScope, conn: asyncpg.Connection) -> list[AuditEntry]:
    entries: list[AuditEntry] | None = scope.values.get(_AUDIT_KEY)
    if entries is None:
        entries = scope.values[_AUDIT_KEY] = []
        buffered = entries

        async def flush() -> None:
            await PgAuditLog(conn, CHAIN).append_many(buffered)

        scope.finish_with(_AUDIT_KEY, flush)
    return entries


async def _reject(
    ctx: HandlerContext,
    event_id: uuid.UUID | None,
    rejection: Rejection,
    payload: Ingress | None,
    signed: SignedHeaders | None,
    *,
    item_id: str | None = None,
) -> None:
    delivery = ctx.delivery
    phi = rejection.code == RejectionCode.PHI_SUSPECTED
    key_id = signed.key_id if signed else None
    if payload is not None and not phi:
        item_id = payload.item_id
    annotator_id = payload.annotator_id if payload is not None and not phi else None
    client_id = payload.client_id if payload is not None and not phi else None
    await PgSubmissionStore(ctx.conn).save_rejection(
        event_id=event_id,
        code=rejection.code.value,
        message=rejection.message,
        delivery=delivery,
        key_id=key_id,
        redact=phi,
    )
    rejected = LabelRejected(
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
        key_id=key_id,
    )
    if phi:
        key = "phi-redacted"
    else:
        key = item_id or (delivery.key.decode(errors="replace") if delivery.key else "unknown")
    ctx.emitter.emit(LABEL_REJECTED, LABELS_REJECTED, rejected, key=key[:200] or "unknown")
    await _audit(
        ctx,
        "label.rejected",
        item_id,
        {**rejected.model_dump(mode="json"), "raw_kept": not phi},
        event_id,
    )


def _peek(raw: bytes) -> tuple[uuid.UUID | None, str | None, Any]:
    """Best-effort event id, item id and JSON document from bytes that failed validation."""
    try:
        document: Any = json.loads(raw)
    except Exception:
        return None, None, None
    if not isinstance(document, dict):
        return None, None, document
    try:
        event_id: uuid.UUID | None = uuid.UUID(str(document.get("event_id")))
    except ValueError:
        event_id = None
    payload = document.get("payload")
    item = payload.get("item_id") if isinstance(payload, dict) else None
    item_id = item if isinstance(item, str) and 0 < len(item) <= 200 else None
    return event_id, item_id, document
