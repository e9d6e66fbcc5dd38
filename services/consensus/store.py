"""PostgreSQL queries of the consensus schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from services.consensus.skills import LabelCounts, LastPublished
from services.consensus.state import TrackedItem
from shared.events import AnnotatorSkillEstimated, DecisionRecord, TaskDefined

_UPSERT_ITEM_STATE = """INSERT INTO item_state (item_id, task_id, task_version, state, status,
        consensus_version, updated_at)
    VALUES ($1, $2, $3, {state}, $5, $6, $7)
    ON CONFLICT (item_id) DO UPDATE SET task_version = EXCLUDED.task_version,
        state = EXCLUDED.state, status = EXCLUDED.status,
        consensus_version = EXCLUDED.consensus_version,
        updated_at = EXCLUDED.updated_at"""
UPSERT_ITEM_STATE = _UPSERT_ITEM_STATE.format(state="$4")
# The same with the state as JSON text already encoded (not through the jsonb codec).
UPSERT_ITEM_STATE_TEXT = _UPSERT_ITEM_STATE.format(state="$4::text::jsonb")
INSERT_DECISION = (
    "INSERT INTO decisions (item_id, outcome, record, decided_at) VALUES ($1, $2, $3, $4)"
)


MARK_PUBLISHED = """UPDATE annotator_skill SET published_labels = $3, published_skill = $4,
        published_gold_accuracy = $5, published_at = $6
    WHERE annotator_id = $1 AND task_id = $2"""


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

    async def task_version_of(self, item_id: str) -> int:
        """The task version an item's stored state was decided under."""
        version: int = await self.conn.fetchval(
            "SELECT task_version FROM item_state WHERE item_id = $1", item_id
        )
        return version

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
            UPSERT_ITEM_STATE,
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
            INSERT_DECISION,
            item_id,
            decision.outcome,
            decision.model_dump(mode="json"),
            now,
        )

    async def count_by_status(self) -> dict[str, Any]:
        rows = await self.conn.fetch("SELECT status, count(*) AS n FROM item_state GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    async def save_gold(self, item_id: str, task_id: str, gold_value: dict[str, Any]) -> None:
        await self.conn.execute(
            """INSERT INTO gold_items (item_id, task_id, gold_value) VALUES ($1, $2, $3)
               ON CONFLICT (item_id) DO NOTHING""",
            item_id,
            task_id,
            gold_value,
        )

    async def gold(self, item_id: str) -> dict[str, Any] | None:
        """The known answer of a gold item (its LabelValue JSON), None for other items."""
        value: dict[str, Any] | None = await self.conn.fetchval(
            "SELECT gold_value FROM gold_items WHERE item_id = $1", item_id
        )
        return value

    async def count_label(
        self, annotator_id: str, task_id: str, gold_correct: bool | None
    ) -> tuple[LabelCounts, LastPublished | None]:
        """Count one more label of the annotator (on a gold item when `gold_correct` is not
        None); returns the counts and the estimate last published."""
        row = await self.conn.fetchrow(
            """INSERT INTO annotator_skill AS s (annotator_id, task_id, labels, gold_labels,
                   gold_correct) VALUES ($1, $2, 1, $3, $4)
               ON CONFLICT (annotator_id, task_id) DO UPDATE SET labels = s.labels + 1,
                   gold_labels = s.gold_labels + EXCLUDED.gold_labels,
                   gold_correct = s.gold_correct + EXCLUDED.gold_correct
               RETURNING labels, gold_labels, gold_correct, published_labels,
                   published_skill, published_gold_accuracy""",
            annotator_id,
            task_id,
            0 if gold_correct is None else 1,
            1 if gold_correct else 0,
        )
        assert row is not None  # an upsert with RETURNING always returns its row
        counts = LabelCounts(row["labels"], row["gold_labels"], row["gold_correct"])
        if row["published_labels"] is None:
            return counts, None
        last = LastPublished(
            row["published_skill"], row["published_gold_accuracy"], row["published_labels"]
        )
        return counts, last

    async def mark_published(self, estimate: AnnotatorSkillEstimated, now: datetime) -> None:
        await self.conn.execute(
            MARK_PUBLISHED,
            estimate.annotator_id,
            estimate.task_id,
            estimate.labels,
            estimate.skill,
            estimate.gold_accuracy,
            now,
        )
