"""The assignment sweeper: expires leases, escalates overdue adjudications, retries starved
items and waiting queue entries, and measures the queues.

It reads PostgreSQL only (Redis may have been flushed). Each change is its own short
transaction that claims its row with FOR UPDATE SKIP LOCKED, so several instances sweep
side by side without doing anything twice, and emits through the outbox. It sweeps the
items registered under its own topic prefix (deployments sharing a database under
different prefixes leave each other alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg

from services.assignment.assigner import Assigner, Work
from shared.kafka.outbox import Emitter, Outbox
from shared.logging import get_logger
from shared.metrics import METRICS

log = get_logger(__name__)

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class SweepReport:
    expired: int = 0
    escalated: int = 0
    breached: int = 0
    refilled: int = 0
    dispatched: int = 0


@dataclass
class Sweeper:
    pool: asyncpg.Pool
    assigner: Assigner
    topic_prefix: str
    every_s: float = 1.0
    batch: int = 200
    clock: Clock = wall_clock
    # Restricts each pass to these tasks (None: every task of the namespace).
    tasks: Sequence[str] | None = None
    # The items this sweeper looks after: those registered under this namespace (the
    # handlers' namespace; by default the topic prefix).
    namespace: str | None = None
    _gauges: set[tuple[str, str, str]] = field(default_factory=set)

    @property
    def items_namespace(self) -> str:
        return self.topic_prefix if self.namespace is None else self.namespace

    async def run(self, stopping: asyncio.Event) -> None:
        """Sweep every `every_s` seconds until stopped; a failed pass is retried next time."""
        while not stopping.is_set():
            try:
                await self.sweep()
            except Exception as exc:  # the database may be away: keep the loop alive
                log.warning("sweep_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.every_s)

    async def sweep(self) -> SweepReport:
        """One pass over everything that is due at the clock's time."""
        now = self.clock()
        report = SweepReport()
        for assignment_id in await self._ids(
            """SELECT a.assignment_id FROM assignments a JOIN items i USING (item_id)
               WHERE a.status = 'open' AND i.namespace = $3
               AND ($1::text[] IS NULL OR a.task_id = ANY($1)) AND a.lease_expires_at <= $4
               ORDER BY a.lease_expires_at, a.assignment_id LIMIT $2""",
            self.items_namespace,
            now,
        ):
            claim = """SELECT true FROM items i JOIN assignments a USING (item_id)
                       WHERE a.assignment_id = $1 AND a.status = 'open'
                       FOR UPDATE OF i, a SKIP LOCKED"""
            if await self._once(now, claim, assignment_id, self._expire):
                report.expired += 1
        for item_id in await self._ids(
            """SELECT q.item_id FROM adjudication_queue q JOIN items i USING (item_id)
               WHERE q.status IN ('waiting', 'assigned') AND i.namespace = $3
               AND ($1::text[] IS NULL OR q.task_id = ANY($1)) AND q.breached_at IS NULL
               AND q.due_at <= $4 ORDER BY q.due_at, q.item_id LIMIT $2""",
            self.items_namespace,
            now,
        ):
            claim = """SELECT true FROM items i JOIN adjudication_queue q USING (item_id)
                       WHERE i.item_id = $1 FOR UPDATE OF i, q SKIP LOCKED"""
            outcome = await self._once(now, claim, item_id, self._escalate)
            report.escalated += outcome == "escalated"
            report.breached += outcome == "breached"
        for item_id in await self._ids(
            """SELECT item_id FROM items WHERE starved AND namespace = $3
               AND ($1::text[] IS NULL OR task_id = ANY($1))
               ORDER BY priority DESC, registered_at, item_id LIMIT $2""",
            self.items_namespace,
        ):
            claim = "SELECT true FROM items WHERE item_id = $1 AND starved FOR UPDATE SKIP LOCKED"
            report.refilled += await self._once(now, claim, item_id, self._fill) or 0
        for item_id in await self._ids(
            # Only entries some adjudicator could take: queues nobody serves must not
            # fill every pass's batch and starve the ones somebody does.
            """SELECT q.item_id FROM adjudication_queue q JOIN items i USING (item_id)
               WHERE q.status = 'waiting' AND i.namespace = $3
               AND ($1::text[] IS NULL OR q.task_id = ANY($1))
               AND EXISTS (SELECT 1 FROM annotators a
                           WHERE a.task_id = q.task_id AND a.active AND a.role = 'adjudicator'
                             AND a.tier = q.tier AND a.specialty = q.specialty)
               ORDER BY q.priority DESC, q.enqueued_at, q.item_id LIMIT $2""",
            self.items_namespace,
        ):
            claim = "SELECT true FROM items WHERE item_id = $1 FOR UPDATE SKIP LOCKED"
            report.dispatched += bool(await self._once(now, claim, item_id, self._dispatch))
        await self.measure(now)
        return report

    async def _expire(self, work: Work, assignment_id: Any) -> bool:
        return await self.assigner.expire(work, assignment_id)

    async def _escalate(self, work: Work, item_id: Any) -> str:
        return await self.assigner.escalate(work, item_id)

    async def _fill(self, work: Work, item_id: Any) -> int:
        return await self.assigner.fill(work, item_id)

    async def _dispatch(self, work: Work, item_id: Any) -> bool:
        return await self.assigner.dispatch(work, item_id)

    async def _ids(self, query: str, *args: Any) -> list[Any]:
        """Candidate rows ($1: the task scope, $2: the batch size, then `args`)."""
        tasks = list(self.tasks) if self.tasks is not None else None
        rows = await self.pool.fetch(query, tasks, self.batch, *args)
        return [row[0] for row in rows]

    async def _once(
        self,
        now: datetime,
        claim: str,
        key: str | uuid.UUID,
        action: Callable[[Work, Any], Awaitable[Any]],
    ) -> Any:
        """Claim one row (skipped when another transaction holds it) and act on it."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(claim, key):
                return None
            outbox = Outbox(cast(asyncpg.Connection, conn), self.topic_prefix)
            result = await action(Work(conn, Emitter("assignment", outbox, now)), key)
            await outbox.flush()
            return result

    async def measure(self, now: datetime) -> None:
        """Per queue and tier: how many contested items wait, and the oldest one's age."""
        rows = await self.pool.fetch(
            """SELECT q.task_id, q.specialty, q.tier, count(*) AS waiting,
                      min(q.enqueued_at) AS oldest
               FROM adjudication_queue q JOIN items i USING (item_id)
               WHERE q.status = 'waiting' AND i.namespace = $1
               GROUP BY q.task_id, q.specialty, q.tier""",
            self.items_namespace,
        )
        current: set[tuple[str, str, str]] = set()
        for row in rows:
            labels = (row["task_id"], row["specialty"], str(row["tier"]))
            METRICS.adjudication_waiting.labels(*labels).set(row["waiting"])
            age = max(0.0, (now - row["oldest"]).total_seconds())
            METRICS.adjudication_oldest_seconds.labels(*labels).set(age)
            current.add(labels)
        for labels in self._gauges - current:  # a queue that emptied reports nothing
            for gauge in (METRICS.adjudication_waiting, METRICS.adjudication_oldest_seconds):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        self._gauges = current
