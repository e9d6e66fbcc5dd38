"""PostgreSQL queries of the submission schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg

from services.submission.validation import AnnotationHistory, Assignment, ClientKey, ItemInfo
from shared.events import AssignmentCancelled, AssignmentIssued, TaskDefined
from shared.kafka.records import Delivery


@dataclass(frozen=True)
class StoredRevision:
    """One row of `labels`: a label revision or a retraction, with its provenance."""

    label_id: UUID
    event_id: UUID
    annotation_id: UUID
    revision: int
    item_id: str
    task_id: str
    task_version: int
    annotator_id: str
    client_id: str
    assignment_id: UUID | None
    value: dict[str, Any] | None
    labeled_at: datetime
    received_at: datetime
    time_spent_ms: int | None
    raw_sha256: str
    retraction: bool
    superseded: bool
    guideline_version: str | None
    key_id: str | None
    signed_at: datetime | None
    published_at: datetime
    source_topic: str
    source_partition: int
    source_offset: int
    comment: str | None
    # "adjudicator" for a decision answering an adjudication assignment, with its rationale.
    role: str = "reader"
    adjudication: dict[str, Any] | None = None


_REVISION_COLUMNS = list(StoredRevision.__dataclass_fields__)


class PgSubmissionStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def save_task(self, task: TaskDefined) -> Literal["new", "same", "conflict"]:
        """Store a task version; a second, different definition of it is not stored."""
        definition = task.model_dump(mode="json")
        inserted = await self.conn.fetchval(
            """INSERT INTO tasks (task_id, version, definition) VALUES ($1, $2, $3)
               ON CONFLICT (task_id, version) DO NOTHING RETURNING true""",
            task.task_id,
            task.version,
            definition,
        )
        if inserted:
            return "new"
        stored = await self.conn.fetchval(
            "SELECT definition FROM tasks WHERE task_id = $1 AND version = $2",
            task.task_id,
            task.version,
        )
        return "same" if TaskDefined.model_validate(stored) == task else "conflict"

    async def task(self, task_id: str, version: int) -> TaskDefined | None:
        row = await self.conn.fetchval(
            "SELECT definition FROM tasks WHERE task_id = $1 AND version = $2", task_id, version
        )
        return TaskDefined.model_validate(row) if row is not None else None

    async def task_versions(self, task_id: str) -> list[int]:
        rows = await self.conn.fetch(
            "SELECT version FROM tasks WHERE task_id = $1 ORDER BY version", task_id
        )
        return [r["version"] for r in rows]

    async def register_item(
        self, item_id: str, task_id: str, width: float | None, height: float | None
    ) -> None:
        await self.conn.execute(
            """INSERT INTO items (item_id, task_id, image_width, image_height)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            item_id,
            task_id,
            width,
            height,
        )

    async def item(self, item_id: str) -> ItemInfo | None:
        row = await self.conn.fetchrow(
            "SELECT task_id, image_width, image_height FROM items WHERE item_id = $1", item_id
        )
        return ItemInfo(row["task_id"], row["image_width"], row["image_height"]) if row else None

    async def items(self, item_ids: list[str]) -> dict[str, ItemInfo]:
        """The registered items among `item_ids`."""
        rows = await self.conn.fetch(
            """SELECT item_id, task_id, image_width, image_height FROM items
               WHERE item_id = ANY($1::text[])""",
            item_ids,
        )
        return {
            r["item_id"]: ItemInfo(r["task_id"], r["image_width"], r["image_height"]) for r in rows
        }

    async def client_key(self, key_id: str, annotator_id: str) -> ClientKey | None:
        row = await self.conn.fetchrow(
            """SELECT k.key_id, k.client_id, k.salt, c.active, k.expires_at, k.revoked_at,
                      c.all_annotators OR EXISTS (
                          SELECT 1 FROM client_annotators a
                           WHERE a.client_id = k.client_id AND a.annotator_id = $2) AS allowed
                 FROM client_keys k JOIN clients c USING (client_id)
                WHERE k.key_id = $1""",
            key_id,
            annotator_id,
        )
        if row is None:
            return None
        return ClientKey(
            key_id=row["key_id"],
            client_id=row["client_id"],
            salt=row["salt"],
            client_active=row["active"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            may_speak_for_annotator=row["allowed"],
        )

    async def save_assignment(self, assignment: AssignmentIssued, issued_at: datetime) -> None:
        await self.conn.execute(
            """INSERT INTO assignments (assignment_id, item_id, task_id, annotator_id, issued_at,
                   lease_expires_at, kind) VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (assignment_id) DO NOTHING""",
            assignment.assignment_id,
            assignment.item_id,
            assignment.task_id,
            assignment.annotator_id,
            issued_at,
            assignment.lease_expires_at,
            assignment.kind,
        )

    async def save_cancellation(self, cancelled: AssignmentCancelled) -> None:
        """Record a cancellation (the first one of an assignment counts)."""
        await self.conn.execute(
            """INSERT INTO assignment_cancellations (assignment_id, item_id, task_id,
                   annotator_id, reason, cancelled_at) VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (assignment_id) DO NOTHING""",
            cancelled.assignment_id,
            cancelled.item_id,
            cancelled.task_id,
            cancelled.annotator_id,
            cancelled.reason,
            cancelled.cancelled_at,
        )

    async def assignments(
        self, assignment_id: UUID | None, item_id: str, annotator_id: str
    ) -> list[Assignment]:
        rows = await self.conn.fetch(
            """SELECT a.assignment_id, a.item_id, a.task_id, a.annotator_id, a.lease_expires_at,
                      a.kind, c.reason AS cancelled_reason, c.cancelled_at
                 FROM assignments a LEFT JOIN assignment_cancellations c USING (assignment_id)
                WHERE a.assignment_id = $1 OR (a.item_id = $2 AND a.annotator_id = $3)""",
            assignment_id,
            item_id,
            annotator_id,
        )
        return [Assignment(**dict(r)) for r in rows]

    async def assignments_of(
        self, assignment_ids: list[UUID], item_ids: list[str], annotator_ids: list[str]
    ) -> list[Assignment]:
        """What `assignments` returns for each of several labels, in one query: the
        assignments with one of the ids or for one of the (item, annotator) pairs."""
        rows = await self.conn.fetch(
            """SELECT a.assignment_id, a.item_id, a.task_id, a.annotator_id, a.lease_expires_at,
                      a.kind, c.reason AS cancelled_reason, c.cancelled_at
                 FROM assignments a LEFT JOIN assignment_cancellations c USING (assignment_id)
                WHERE a.assignment_id IN (
                    -- Two index lookups (an OR of both would scan the table).
                    SELECT assignment_id FROM assignments WHERE assignment_id = ANY($1::uuid[])
                    UNION
                    SELECT b.assignment_id
                      FROM unnest($2::text[], $3::text[]) AS p(item_id, annotator_id)
                      JOIN assignments b USING (item_id, annotator_id))
                ORDER BY a.assignment_id""",
            assignment_ids,
            item_ids,
            annotator_ids,
        )
        return [Assignment(**dict(r)) for r in rows]

    async def histories(self, annotation_ids: list[UUID]) -> dict[UUID, AnnotationHistory]:
        """`history` of each annotation that has stored revisions."""
        rows = await self.conn.fetch(
            """SELECT annotation_id, revision, annotator_id, item_id FROM labels
               WHERE annotation_id = ANY($1::uuid[]) ORDER BY annotation_id, revision""",
            annotation_ids,
        )
        found: dict[UUID, list[Any]] = {}
        for r in rows:
            found.setdefault(r["annotation_id"], []).append(r)
        return {
            annotation_id: AnnotationHistory(
                frozenset(r["revision"] for r in revisions),
                revisions[0]["annotator_id"],
                revisions[0]["item_id"],
            )
            for annotation_id, revisions in found.items()
        }

    async def history(self, annotation_id: UUID) -> AnnotationHistory:
        rows = await self.conn.fetch(
            """SELECT revision, annotator_id, item_id FROM labels WHERE annotation_id = $1
               ORDER BY revision""",
            annotation_id,
        )
        if not rows:
            return AnnotationHistory()
        return AnnotationHistory(
            frozenset(r["revision"] for r in rows), rows[0]["annotator_id"], rows[0]["item_id"]
        )

    async def save_revision(self, row: StoredRevision) -> None:
        await self.save_revisions([row])

    async def save_revisions(self, rows: list[StoredRevision]) -> None:
        """Insert revisions in order (one pipelined statement)."""
        if not rows:
            return
        await self.conn.executemany(
            f"""INSERT INTO labels ({", ".join(_REVISION_COLUMNS)})
                VALUES ({", ".join(f"${i}" for i in range(1, len(_REVISION_COLUMNS) + 1))})""",
            [tuple(getattr(row, c) for c in _REVISION_COLUMNS) for row in rows],
        )

    async def save_rejection(
        self,
        *,
        event_id: Any,
        code: str,
        message: str,
        delivery: Delivery,
        key_id: str | None,
        redact: bool,
    ) -> None:
        await self.conn.execute(
            """INSERT INTO rejections (event_id, code, message, topic, partition, "offset", raw,
                   raw_sha256, key_id, raw_redacted)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            event_id,
            code,
            message,
            delivery.topic,
            delivery.partition,
            delivery.offset,
            b"" if redact else delivery.value,
            delivery.sha256,
            key_id,
            redact,
        )

    async def park(
        self, event_id: UUID, item_id: str, annotator_id: str, delivery: Delivery, at: datetime
    ) -> None:
        await self.conn.execute(
            """INSERT INTO parked_labels (event_id, item_id, annotator_id, topic, partition,
                   "offset", key, value, headers, timestamp_ms, parked_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (event_id) DO NOTHING""",
            event_id,
            item_id,
            annotator_id,
            delivery.topic,
            delivery.partition,
            delivery.offset,
            delivery.key,
            delivery.value,
            [[name, value.hex()] for name, value in delivery.headers],
            delivery.timestamp_ms,
            at,
        )

    async def take_parked_for(self, item_id: str, annotator_id: str) -> list[Delivery]:
        """Remove and return the labels waiting for this item and annotator."""
        rows = await self.conn.fetch(
            """DELETE FROM parked_labels WHERE item_id = $1 AND annotator_id = $2
               RETURNING *""",
            item_id,
            annotator_id,
        )
        return [_parked_delivery(r) for r in sorted(rows, key=lambda r: r["offset"])]

    async def take_parked_for_item(self, item_id: str) -> list[Delivery]:
        """Remove and return the labels waiting for this item to be registered."""
        rows = await self.conn.fetch(
            "DELETE FROM parked_labels WHERE item_id = $1 RETURNING *", item_id
        )
        return [_parked_delivery(r) for r in sorted(rows, key=lambda r: r["offset"])]

    async def take_parked_before(self, cutoff: datetime, limit: int) -> list[Delivery]:
        """Remove and return labels that waited since before `cutoff` (skipping rows another
        instance is handling)."""
        rows = await self.conn.fetch(
            """DELETE FROM parked_labels WHERE event_id IN (
                   SELECT event_id FROM parked_labels WHERE parked_at < $1
                    ORDER BY parked_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               RETURNING *""",
            cutoff,
            limit,
        )
        return [_parked_delivery(r) for r in sorted(rows, key=lambda r: r["parked_at"])]


def _parked_delivery(row: Any) -> Delivery:
    return Delivery(
        topic=row["topic"],
        partition=row["partition"],
        offset=row["offset"],
        key=row["key"],
        value=bytes(row["value"]),
        headers=tuple((name, bytes.fromhex(value)) for name, value in row["headers"]),
        timestamp_ms=row["timestamp_ms"],
    )
