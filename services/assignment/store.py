"""asyncpg queries on the assignment schema (PostgreSQL is the record of every lease)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.assignment.rules import Annotator, ItemFacts
from shared.db.pool import DbConnection
from shared.events import TaskDefined

# An assignment that still counts towards an item's overlap (not expired, declined or
# cancelled); 'closed' is how rows written before leases had end reasons were closed.
USED = ("open", "answered", "closed")


@dataclass
class PgAssignmentStore:
    conn: DbConnection

    async def task(self, task_id: str) -> TaskDefined | None:
        row = await self.conn.fetchval(
            "SELECT definition FROM tasks WHERE task_id = $1 ORDER BY version DESC LIMIT 1",
            task_id,
        )
        return TaskDefined.model_validate(row) if row is not None else None

    async def lock_item(self, item_id: str) -> asyncpg.Record | None:
        return await self.conn.fetchrow(
            "SELECT * FROM items WHERE item_id = $1 FOR UPDATE", item_id
        )

    async def item_facts(
        self, item_id: str, site: str | None, evidence_readers: Sequence[str] = ()
    ) -> ItemFacts:
        rows = await self.conn.fetch(
            "SELECT annotator_id, kind FROM assignments WHERE item_id = $1", item_id
        )
        readers = {r["annotator_id"] for r in rows if r["kind"] == "label"}
        return ItemFacts(
            item_id=item_id,
            site=site,
            had=frozenset(r["annotator_id"] for r in rows),
            readers=frozenset(readers | set(evidence_readers)),
        )

    async def candidates(self, task_id: str, role: str) -> list[Annotator]:
        rows = await self.conn.fetch(
            """SELECT a.annotator_id, a.role, a.site, a.tier, a.specialty, a.max_open, k.skill,
                      (SELECT count(*) FROM assignments s
                        WHERE s.annotator_id = a.annotator_id AND s.task_id = a.task_id
                          AND s.status = 'open') AS open_count
               FROM annotators a
               LEFT JOIN skills k ON k.annotator_id = a.annotator_id AND k.task_id = a.task_id
               WHERE a.task_id = $1 AND a.active AND a.role = $2""",
            task_id,
            role,
        )
        return [
            Annotator(
                annotator_id=r["annotator_id"],
                role=r["role"],
                site=r["site"],
                tier=r["tier"],
                specialty=r["specialty"],
                max_open=r["max_open"],
                open_count=r["open_count"],
                skill=r["skill"],
            )
            for r in rows
        ]

    async def used_label_count(self, item_id: str) -> int:
        count: int = await self.conn.fetchval(
            """SELECT count(*) FROM assignments WHERE item_id = $1 AND kind = 'label'
               AND NOT gold AND status = ANY($2::text[])""",
            item_id,
            list(USED),
        )
        return count

    async def reader_history(self, annotator_id: str, task_id: str) -> tuple[int, int]:
        """How many label assignments of the task the reader has had, and how many gold."""
        row = await self.conn.fetchrow(
            """SELECT count(*) AS assigned, count(*) FILTER (WHERE gold) AS gold
               FROM assignments WHERE annotator_id = $1 AND task_id = $2 AND kind = 'label'""",
            annotator_id,
            task_id,
        )
        assert row is not None
        return row["assigned"], row["gold"]

    async def gold_pool(self, task_id: str, annotator_id: str) -> list[asyncpg.Record]:
        """The task's gold items the reader has not had."""
        return await self.conn.fetch(
            """SELECT item_id, case_ref, site FROM items i WHERE task_id = $1 AND gold
               AND NOT EXISTS (SELECT 1 FROM assignments a
                               WHERE a.item_id = i.item_id AND a.annotator_id = $2)""",
            task_id,
            annotator_id,
        )

    async def insert_assignment(
        self,
        *,
        assignment_id: uuid.UUID,
        item_id: str,
        task_id: str,
        annotator_id: str,
        issued_at: datetime,
        lease_expires_at: datetime,
        kind: str,
        tier: int | None,
        gold: bool,
    ) -> None:
        await self.conn.execute(
            """INSERT INTO assignments (assignment_id, item_id, task_id, annotator_id,
                   issued_at, lease_expires_at, kind, tier, gold)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            assignment_id,
            item_id,
            task_id,
            annotator_id,
            issued_at,
            lease_expires_at,
            kind,
            tier,
            gold,
        )

    async def starved_items(self, task_id: str, limit: int) -> list[str]:
        """The task's items waiting for a reader, most urgent first, that nobody else is
        filling right now."""
        rows = await self.conn.fetch(
            """SELECT item_id FROM items WHERE task_id = $1 AND starved
               ORDER BY priority DESC, registered_at, item_id LIMIT $2 FOR UPDATE SKIP LOCKED""",
            task_id,
            limit,
        )
        return [row["item_id"] for row in rows]

    async def lock_assignment(self, assignment_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.conn.fetchrow(
            "SELECT * FROM assignments WHERE assignment_id = $1 FOR UPDATE", assignment_id
        )

    async def end_assignment(
        self, assignment_id: uuid.UUID, status: str, reason: str, at: datetime
    ) -> None:
        await self.conn.execute(
            """UPDATE assignments SET status = $2, end_reason = $3, ended_at = $4
               WHERE assignment_id = $1""",
            assignment_id,
            status,
            reason,
            at,
        )

    async def open_assignments_of_item(self, item_id: str) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            """SELECT * FROM assignments WHERE item_id = $1 AND status = 'open'
               ORDER BY issued_at, assignment_id FOR UPDATE""",
            item_id,
        )

    async def set_item(self, item_id: str, **columns: Any) -> None:
        names = list(columns)
        assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
        await self.conn.execute(
            f"UPDATE items SET {assignments} WHERE item_id = $1",
            item_id,
            *columns.values(),
        )

    async def lock_queue_entry(self, item_id: str) -> asyncpg.Record | None:
        return await self.conn.fetchrow(
            "SELECT * FROM adjudication_queue WHERE item_id = $1 FOR UPDATE", item_id
        )

    async def set_queue_entry(self, item_id: str, **columns: Any) -> None:
        names = list(columns)
        assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
        await self.conn.execute(
            f"UPDATE adjudication_queue SET {assignments} WHERE item_id = $1",
            item_id,
            *columns.values(),
        )
