"""A batch of accepted labels decided with a constant number of queries.

On the consumer's batch fast path (shared/kafka/consumer.py), a batch that holds only
accepted labels and retractions loads, in one query each, the states of all its items
(locked, as `PgConsensusStore.load` locks them), their gold answers and their tasks. The
handlers then read and write those through `BatchedConsensusStore`, which keeps each
item's state as the per-record queries would have found it, and the decisions, item
states and reliability deltas are inserted in order at the end of the batch (pipelined).
Nothing else this service consumes is handled during such a batch, so no one else reads
these rows meanwhile. Any other batch, and the per-record path, query as usual.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.consensus.engine.reliability import ReliabilityDelta
from services.consensus.reliability_store import INSERT_DELTA
from services.consensus.skills import LabelCounts, LastPublished
from services.consensus.state import TrackedItem
from services.consensus.store import (
    INSERT_DECISION,
    MARK_PUBLISHED,
    UPSERT_ITEM_STATE_TEXT,
    PgConsensusStore,
)
from shared.envelope import Envelope
from shared.events import (
    AnnotatorSkillEstimated,
    DecisionRecord,
    LabelAccepted,
    LabelRetracted,
    TaskDefined,
)
from shared.kafka.consumer import BatchScope, HandlerContext

SCOPE_KEY = "consensus.labels"


class BatchedConsensusStore(PgConsensusStore):
    """PgConsensusStore over the prefetched rows of one batch, writes deferred to its end."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        states: dict[str, tuple[str, str, int] | None],
        gold: dict[str, dict[str, Any] | None],
        tasks: dict[tuple[str, int], TaskDefined | None],
    ) -> None:
        super().__init__(conn)
        # item id -> (state JSON as stored, status, consensus version); None: no row yet.
        self.states = states
        self.golds = gold
        self.tasks = tasks
        # (annotator, task) -> [labels, gold_labels, gold_correct, published_labels,
        # published_skill, published_gold_accuracy] as counted so far; None: no row yet.
        self.skills: dict[tuple[str, str], list[Any] | None] = {}
        self._counted: dict[tuple[str, str], list[int]] = {}
        self._published: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._saves: list[tuple[Any, ...]] = []
        self._decisions: list[tuple[Any, ...]] = []
        self._deltas: list[tuple[Any, ...]] = []

    @classmethod
    async def load_batch(
        cls, conn: asyncpg.Connection, envelopes: Sequence[Envelope[Any]]
    ) -> BatchedConsensusStore | None:
        """None unless every record of the batch is an accepted label or a retraction."""
        payloads = [e.payload for e in envelopes]
        if not all(isinstance(p, LabelAccepted | LabelRetracted) for p in payloads):
            return None
        item_ids = sorted({p.item_id for p in payloads})
        states: dict[str, tuple[str, str, int] | None] = dict.fromkeys(item_ids)
        for row in await conn.fetch(
            """SELECT item_id, state, status, consensus_version FROM item_state
               WHERE item_id = ANY($1::text[]) ORDER BY item_id FOR UPDATE""",
            item_ids,
        ):
            states[row["item_id"]] = (
                json.dumps(row["state"]),
                row["status"],
                row["consensus_version"],
            )
        gold: dict[str, dict[str, Any] | None] = dict.fromkeys(item_ids)
        for row in await conn.fetch(
            "SELECT item_id, gold_value FROM gold_items WHERE item_id = ANY($1::text[])",
            item_ids,
        ):
            gold[row["item_id"]] = row["gold_value"]
        versions = sorted({(p.task_id, p.task_version) for p in payloads})
        tasks: dict[tuple[str, int], TaskDefined | None] = dict.fromkeys(versions)
        for row in await conn.fetch(
            """SELECT task_id, version, definition FROM tasks
               WHERE (task_id, version) IN (SELECT * FROM unnest($1::text[], $2::integer[]))""",
            [task_id for task_id, _ in versions],
            [version for _, version in versions],
        ):
            tasks[row["task_id"], row["version"]] = TaskDefined.model_validate(row["definition"])
        store = cls(conn, states, gold, tasks)
        readers = sorted({(p.annotator_id, p.task_id) for p in payloads})
        store.skills = dict.fromkeys(readers)
        for row in await conn.fetch(
            """SELECT annotator_id, task_id, labels, gold_labels, gold_correct, published_labels,
                      published_skill, published_gold_accuracy FROM annotator_skill
               WHERE (annotator_id, task_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
               ORDER BY annotator_id, task_id FOR UPDATE""",
            [annotator for annotator, _ in readers],
            [task for _, task in readers],
        ):
            store.skills[row["annotator_id"], row["task_id"]] = list(row.values())[2:]
        return store

    async def load(self, item_id: str) -> tuple[TrackedItem, str, int] | None:
        if item_id not in self.states:
            return await super().load(item_id)
        stored = self.states[item_id]
        if stored is None:
            return None
        state, status, version = stored
        return TrackedItem.from_json(json.loads(state)), status, version

    async def gold(self, item_id: str) -> dict[str, Any] | None:
        if item_id not in self.golds:
            return await super().gold(item_id)
        value = self.golds[item_id]
        return json.loads(json.dumps(value)) if value is not None else None

    async def task(self, task_id: str, version: int) -> TaskDefined | None:
        if (task_id, version) not in self.tasks:
            return await super().task(task_id, version)
        return self.tasks[task_id, version]

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
        document = json.dumps(state.to_json())  # as the jsonb codec would encode it
        self.states[item_id] = (document, status, consensus_version)
        self._saves.append(
            (item_id, task_id, task_version, document, status, consensus_version, now)
        )

    async def record_decision(self, item_id: str, decision: DecisionRecord, now: datetime) -> None:
        self._decisions.append((item_id, decision.outcome, decision.model_dump(mode="json"), now))

    async def count_label(
        self, annotator_id: str, task_id: str, gold_correct: bool | None
    ) -> tuple[LabelCounts, LastPublished | None]:
        key = (annotator_id, task_id)
        if key not in self.skills:
            return await super().count_label(annotator_id, task_id, gold_correct)
        gold = (0, 0) if gold_correct is None else (1, 1 if gold_correct else 0)
        row = self.skills[key] or [0, 0, 0, None, None, None]
        row = [row[0] + 1, row[1] + gold[0], row[2] + gold[1], *row[3:]]
        self.skills[key] = row
        counted = self._counted.setdefault(key, [0, 0, 0])
        for column, added in enumerate((1, *gold)):
            counted[column] += added
        counts = LabelCounts(row[0], row[1], row[2])
        return counts, None if row[3] is None else LastPublished(row[4], row[5], row[3])

    async def mark_published(self, estimate: AnnotatorSkillEstimated, now: datetime) -> None:
        key = (estimate.annotator_id, estimate.task_id)
        row = self.skills.get(key)
        if row is None:  # not counted in this batch (count_label always comes first)
            await super().mark_published(estimate, now)
            return
        row[3:6] = [estimate.labels, estimate.skill, estimate.gold_accuracy]
        self._published[key] = (*key, estimate.labels, estimate.skill, estimate.gold_accuracy, now)

    def record_delta(self, item_id: str, delta: ReliabilityDelta) -> None:
        """As PgReliability.record, at the end of the batch."""
        if not delta.is_empty():
            self._deltas.append((item_id, delta.to_dict()))

    async def flush(self) -> None:
        """Write what the batch's handlers deferred, each table's rows in their order."""
        if self._deltas:
            await self.conn.executemany(INSERT_DELTA, self._deltas)
        if self._decisions:
            await self.conn.executemany(INSERT_DECISION, self._decisions)
        if self._saves:
            await self.conn.executemany(UPSERT_ITEM_STATE_TEXT, self._saves)
        if self._counted:
            await self.conn.executemany(
                _ADD_COUNTS, [(*key, *counted) for key, counted in self._counted.items()]
            )
        if self._published:
            await self.conn.executemany(MARK_PUBLISHED, list(self._published.values()))
        self._counted.clear()
        self._published.clear()
        self._deltas.clear()
        self._decisions.clear()
        self._saves.clear()


_ADD_COUNTS = """INSERT INTO annotator_skill AS s (annotator_id, task_id, labels, gold_labels,
        gold_correct) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (annotator_id, task_id) DO UPDATE SET labels = s.labels + EXCLUDED.labels,
        gold_labels = s.gold_labels + EXCLUDED.gold_labels,
        gold_correct = s.gold_correct + EXCLUDED.gold_correct"""


async def prefetch(
    conn: asyncpg.Connection, scope: BatchScope, envelopes: Sequence[Envelope[Any]]
) -> None:
    """The label routes' batch hook."""
    store = await BatchedConsensusStore.load_batch(conn, envelopes)
    if store is not None:
        scope.values[SCOPE_KEY] = store
        scope.finish_with(SCOPE_KEY, store.flush)


def store_for(ctx: HandlerContext) -> PgConsensusStore:
    """The batch's store on the fast path, else one that queries per call."""
    if ctx.batch is not None:
        batched: BatchedConsensusStore | None = ctx.batch.values.get(SCOPE_KEY)
        if batched is not None:
            return batched
    return PgConsensusStore(ctx.conn)
