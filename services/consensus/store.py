"""PostgreSQL queries of the consensus schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from services.consensus.state import TrackedItem
from shared.events import DecisionRecord, TaskDefined


class PgConsensusStore:
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

    async def load(self, item_id: str) -> tuple[TrackedItem, str, int] | None:
        """The item's state, status and consensus version, locked for this transaction."""
        row = await self.conn.fetchrow(
            """SELECT state, status, consensus_version FROM item_state
               WHERE item_id = $1 FOR UPDATE""",
            item_id,
        )
        if row is None:
            return None
        return TrackedItem.from_json(row["state"]), row["status"], row["consensus_version"]

    async def save(
        self,
        item_id: str,
        task_id: str,
        task_version: int,
        state: TrackedItem,
        status: str,
        consensus_version: int,
        now: datetime,
    ) -> None:
        await self.conn.execute(
            """INSERT INTO item_state (item_id, task_id, task_version, state, status,
                   consensus_version, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (item_id) DO UPDATE SET task_version = EXCLUDED.task_version,
                   state = EXCLUDED.state, status = EXCLUDED.status,
                   consensus_version = EXCLUDED.consensus_version,
                   updated_at = EXCLUDED.updated_at""",
            item_id,
            task_id,
            task_version,
            state.to_json(),
            status,
            consensus_version,
            now,
        )

    async def waiting_items(self, task_id: str, version: int) -> list[str]:
        rows = await self.conn.fetch(
            """SELECT item_id FROM item_state WHERE status = 'waiting_for_task'
               AND task_id = $1 AND task_version = $2 ORDER BY item_id""",
            task_id,
            version,
        )
        return [row["item_id"] for row in rows]

    async def record_decision(self, item_id: str, decision: DecisionRecord, now: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO decisions (item_id, outcome, record, decided_at) VALUES ($1, $2, $3, $4)",
            item_id,
            decision.outcome,
            decision.model_dump(mode="json"),
            now,
        )

    async def count_by_status(self) -> dict[str, Any]:
        rows = await self.conn.fetch("SELECT status, count(*) AS n FROM item_state GROUP BY status")
        return {row["status"]: row["n"] for row in rows}
