"""PostgreSQL queries of the submission schema."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.events import LabelAccepted, TaskDefined


class PgSubmissionStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def save_task(self, task: TaskDefined) -> None:
        await self.conn.execute(
            """INSERT INTO tasks (task_id, version, definition) VALUES ($1, $2, $3)
               ON CONFLICT (task_id, version) DO NOTHING""",
            task.task_id,
            task.version,
            task.model_dump(mode="json"),
        )

    async def task(self, task_id: str, version: int) -> TaskDefined | None:
        row = await self.conn.fetchval(
            "SELECT definition FROM tasks WHERE task_id = $1 AND version = $2", task_id, version
        )
        return TaskDefined.model_validate(row) if row is not None else None

    async def register_item(self, item_id: str, task_id: str) -> None:
        await self.conn.execute(
            "INSERT INTO items (item_id, task_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            item_id,
            task_id,
        )

    async def item_task(self, item_id: str) -> str | None:
        task_id: str | None = await self.conn.fetchval(
            "SELECT task_id FROM items WHERE item_id = $1", item_id
        )
        return task_id

    async def latest_revision(self, annotation_id: Any) -> int | None:
        revision: int | None = await self.conn.fetchval(
            "SELECT max(revision) FROM labels WHERE annotation_id = $1", annotation_id
        )
        return revision

    async def save_label(
        self, label: LabelAccepted, event_id: Any, time_spent_ms: int | None
    ) -> None:
        await self.conn.execute(
            """INSERT INTO labels (label_id, event_id, annotation_id, revision, item_id, task_id,
                   task_version, annotator_id, client_id, assignment_id, value, labeled_at,
                   received_at, time_spent_ms, raw_sha256)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)""",
            label.label_id,
            event_id,
            label.annotation_id,
            label.revision,
            label.item_id,
            label.task_id,
            label.task_version,
            label.annotator_id,
            label.client_id,
            label.assignment_id,
            label.value.model_dump(mode="json"),
            label.labeled_at,
            label.received_at,
            time_spent_ms,
            label.raw_sha256,
        )

    async def save_rejection(
        self,
        *,
        event_id: Any,
        code: str,
        message: str,
        topic: str,
        partition: int,
        offset: int,
        raw: bytes,
        raw_sha256: str,
    ) -> None:
        await self.conn.execute(
            """INSERT INTO rejections (event_id, code, message, topic, partition, "offset", raw,
                   raw_sha256)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            event_id,
            code,
            message,
            topic,
            partition,
            offset,
            raw,
            raw_sha256,
        )
