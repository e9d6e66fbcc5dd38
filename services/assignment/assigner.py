"""The assignment service's use cases: fill an item's overlap, end leases and reissue,
queue and dispatch adjudications, close decided items.

Each runs inside the caller's transaction (a consumed event, a sweep step, an HTTP call)
and emits through that transaction's outbox. Every use case locks the item row first, so
two transactions working on one item serialise instead of deadlocking.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import asyncpg

from services.assignment.leases import LeaseCache
from services.assignment.rules import (
    Annotator,
    ItemFacts,
    Slot,
    choose,
    gold_due,
    next_tier,
    pick_gold,
    refusal,
)
from services.assignment.store import PgAssignmentStore
from shared.db.pool import DbConnection
from shared.events import (
    ASSIGNMENT_CANCELLED,
    ASSIGNMENT_ISSUED,
    AdjudicationRequested,
    AssignmentCancelled,
    AssignmentIssued,
    AssignmentRequested,
    AssignmentRules,
    ConsensusReached,
    DecisionRecord,
    TaskDefined,
)
from shared.kafka.outbox import Emitter
from shared.metrics import METRICS
from shared.topics import ASSIGNMENTS_ISSUED

CancelReason = Literal["consensus_reached", "expired", "declined", "adjudicated", "escalated"]
DeclineOutcome = Literal["declined", "not_found", "not_open"]


class Unit(Protocol):
    """One transaction's connection and outbox emitter (a HandlerContext is one)."""

    @property
    def conn(self) -> DbConnection: ...

    @property
    def emitter(self) -> Emitter: ...

    @property
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class Work:
    """A unit of work outside a consumed event: a sweep step or an HTTP call."""

    conn: DbConnection
    emitter: Emitter

    @property
    def now(self) -> datetime:
        return self.emitter.now


@dataclass
class Assigner:
    leases: LeaseCache

    # --- reader assignments

    async def fill(
        self,
        unit: Unit,
        item_id: str,
        *,
        preferred: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> int:
        """Issue label assignments until the item has as many as it wants. When the only
        readers who may take it are at their cap, it is marked starved: an answer on its
        task or the sweeper retries it."""
        store = PgAssignmentStore(unit.conn)
        item = await store.lock_item(item_id)
        if item is None:
            return 0
        task = await store.task(item["task_id"])
        need = item["wanted"] - await store.used_label_count(item_id)
        if item["status"] != "open" or task is None or need <= 0:
            if item["starved"]:
                await store.set_item(item_id, starved=False)
            return 0
        facts = await store.item_facts(item_id, item["site"])
        candidates = await store.candidates(task.task_id, "reader")
        chosen = choose(
            candidates, facts, task.assignment, need, preferred=preferred, exclude=exclude
        )
        for annotator in chosen:
            await self._issue(unit, task, item, annotator.annotator_id)
            await self._interleave_gold(
                unit, store, task, replace(annotator, open_count=annotator.open_count + 1)
            )
        # Short of readers only while someone could take it once they have a free slot;
        # an item nobody else may ever take waits for a new registration instead.
        starved = len(chosen) < need and any(
            refusal(c, facts, task.assignment, exclude=exclude) == "at_cap" for c in candidates
        )
        if starved != item["starved"]:
            await store.set_item(item_id, starved=starved)
        return len(chosen)

    async def request_more(self, unit: Unit, request: AssignmentRequested) -> str | None:
        """Consensus asks for one more label; returns why none was issued, if none was."""
        store = PgAssignmentStore(unit.conn)
        item = await store.lock_item(request.item_id)
        task = await store.task(request.task_id)
        if item is None or task is None:
            return "unknown item or task"
        if item["status"] != "open":
            return f"item is {item['status']}"
        wanted = min(task.policy.max_labels, max(item["wanted"], request.labels_so_far + 1))
        if wanted > item["wanted"]:
            await store.set_item(request.item_id, wanted=wanted)
        issued = await self.fill(
            unit,
            request.item_id,
            preferred=request.preferred_annotators,
            exclude=request.exclude_annotators,
        )
        if issued:
            return None
        if wanted <= await store.used_label_count(request.item_id):
            return "label budget exhausted"
        return "no eligible annotator"

    async def _interleave_gold(
        self, unit: Unit, store: PgAssignmentStore, task: TaskDefined, reader: Annotator
    ) -> None:
        """Give the reader a gold item they have not had when their gold share is due."""
        rules = task.assignment
        assigned, gold = await store.reader_history(reader.annotator_id, task.task_id)
        if not gold_due(assigned, gold, rules.gold_share):
            return
        pool = await store.gold_pool(task.task_id, reader.annotator_id)
        allowed = {
            row["item_id"]: row
            for row in pool
            if refusal(reader, ItemFacts(row["item_id"], row["site"]), rules) is None
        }
        chosen = pick_gold(reader.annotator_id, allowed)
        if chosen is not None:
            await self._issue(unit, task, allowed[chosen], reader.annotator_id, gold=True)

    # --- issuing and ending leases

    async def _issue(
        self,
        unit: Unit,
        task: TaskDefined,
        item: asyncpg.Record,
        annotator_id: str,
        *,
        kind: Literal["label", "adjudication"] = "label",
        tier: int | None = None,
        evidence: DecisionRecord | None = None,
        gold: bool = False,
    ) -> uuid.UUID:
        assignment_id = uuid.uuid4()
        expires = unit.now + timedelta(seconds=task.assignment.lease_seconds)
        await PgAssignmentStore(unit.conn).insert_assignment(
            assignment_id=assignment_id,
            item_id=item["item_id"],
            task_id=task.task_id,
            annotator_id=annotator_id,
            issued_at=unit.now,
            lease_expires_at=expires,
            kind=kind,
            tier=tier,
            gold=gold,
        )
        await self.leases.remember(assignment_id, annotator_id, expires, unit.now)
        # A gold item's assignment is published exactly like any other: no marker.
        unit.emitter.emit(
            ASSIGNMENT_ISSUED,
            ASSIGNMENTS_ISSUED,
            AssignmentIssued(
                assignment_id=assignment_id,
                item_id=item["item_id"],
                task_id=task.task_id,
                annotator_id=annotator_id,
                case_ref=item["case_ref"],
                lease_expires_at=expires,
                kind=kind,
                tier=tier,
                evidence=evidence,
            ),
            key=annotator_id,
        )
        METRICS.assignments_issued.labels(kind).inc()
        return assignment_id

    async def _end(
        self, unit: Unit, row: asyncpg.Record, status: str, reason: CancelReason
    ) -> None:
        await PgAssignmentStore(unit.conn).end_assignment(
            row["assignment_id"], status, reason, unit.now
        )
        await self.leases.forget(row["assignment_id"])
        unit.emitter.emit(
            ASSIGNMENT_CANCELLED,
            ASSIGNMENTS_ISSUED,
            AssignmentCancelled(
                assignment_id=row["assignment_id"],
                item_id=row["item_id"],
                task_id=row["task_id"],
                annotator_id=row["annotator_id"],
                reason=reason,
                cancelled_at=unit.now,
            ),
            key=row["annotator_id"],
        )

    async def expire(self, unit: Unit, assignment_id: uuid.UUID) -> bool:
        """End a lease that ran out and give its item to someone else."""
        row = await self._lock_open(unit, assignment_id)
        if row is None or row["lease_expires_at"] > unit.now:
            return False
        await self._end(unit, row, "expired", "expired")
        METRICS.lease_expiries.labels(row["kind"]).inc()
        await self._reissue(unit, row)
        return True

    async def decline(
        self, unit: Unit, annotator_id: str, assignment_id: uuid.UUID
    ) -> DeclineOutcome:
        """The annotator gives an open assignment back; its item goes to someone else."""
        row = await self._lock_open(unit, assignment_id, any_status=True)
        if row is None or row["annotator_id"] != annotator_id:
            return "not_found"
        if row["status"] != "open":
            return "not_open"
        await self._end(unit, row, "declined", "declined")
        METRICS.assignment_declines.labels(row["kind"]).inc()
        await self._reissue(unit, row)
        return "declined"

    async def answered(
        self, unit: Unit, assignment_id: uuid.UUID | None, item_id: str, annotator_id: str
    ) -> None:
        """A label for the assignment was accepted: the lease is done, not reissued."""
        store = PgAssignmentStore(unit.conn)
        await store.lock_item(item_id)
        rows = await unit.conn.fetch(
            """UPDATE assignments SET status = 'answered', end_reason = 'answered',
                   ended_at = $4
               WHERE status = 'open' AND item_id = $2 AND annotator_id = $3
                 AND ($1::uuid IS NULL OR assignment_id = $1)
               RETURNING assignment_id, kind, task_id""",
            assignment_id,
            item_id,
            annotator_id,
            unit.now,
        )
        await self.leases.forget(*(r["assignment_id"] for r in rows))
        for row in rows:
            if row["kind"] == "label":
                await self._refill_task(unit, row["task_id"])
            else:
                await unit.conn.execute(
                    """UPDATE adjudication_queue SET status = 'answered'
                       WHERE item_id = $1 AND assignment_id = $2 AND status = 'assigned'""",
                    item_id,
                    row["assignment_id"],
                )

    async def _refill_task(self, unit: Unit, task_id: str, tries: int = 3) -> None:
        """An answer frees a reader's slot: the task's most urgent starved items get their
        chance at once rather than at the next sweep."""
        for item_id in await PgAssignmentStore(unit.conn).starved_items(task_id, tries):
            await self.fill(unit, item_id)

    async def _lock_open(
        self, unit: Unit, assignment_id: uuid.UUID, *, any_status: bool = False
    ) -> asyncpg.Record | None:
        store = PgAssignmentStore(unit.conn)
        item_id = await unit.conn.fetchval(
            "SELECT item_id FROM assignments WHERE assignment_id = $1", assignment_id
        )
        if item_id is None:
            return None
        await store.lock_item(item_id)
        row = await store.lock_assignment(assignment_id)
        if row is None or (row["status"] != "open" and not any_status):
            return None
        return row

    async def _reissue(self, unit: Unit, ended: asyncpg.Record) -> None:
        if ended["kind"] == "label":
            if not ended["gold"]:  # a gold item has no overlap of its own to keep
                await self.fill(unit, ended["item_id"])
            return
        await unit.conn.execute(
            """UPDATE adjudication_queue SET status = 'waiting', assignment_id = NULL
               WHERE item_id = $1 AND assignment_id = $2 AND status = 'assigned'""",
            ended["item_id"],
            ended["assignment_id"],
        )
        await self.dispatch(unit, ended["item_id"])

    # --- adjudication queues

    async def enqueue(self, unit: Unit, request: AdjudicationRequested) -> str | None:
        """Queue a contested item by its task's specialty at tier 1 and try to dispatch it;
        returns why it was not queued, if it was not."""
        store = PgAssignmentStore(unit.conn)
        item = await store.lock_item(request.item_id)
        if item is None:
            return "adjudication of an unknown item"
        if item["gold"]:  # its answer is known; readers' labels on it only measure them
            return "adjudication of a gold item"
        task = await store.task(request.task_id)
        rules = task.assignment if task is not None else AssignmentRules()
        await store.set_item(request.item_id, status="contested", starved=False)
        await unit.conn.execute(
            """INSERT INTO adjudication_queue (item_id, task_id, specialty, priority, tier,
                   enqueued_at, due_at, evidence, status)
               VALUES ($1, $2, $3, $4, 1, $5, $6, $7, 'waiting')
               ON CONFLICT (item_id) DO UPDATE SET tier = 1, enqueued_at = EXCLUDED.enqueued_at,
                   due_at = EXCLUDED.due_at, evidence = EXCLUDED.evidence, status = 'waiting',
                   assignment_id = NULL, breached_at = NULL, closed_at = NULL
               WHERE adjudication_queue.status = 'closed'""",
            request.item_id,
            request.task_id,
            rules.specialty,
            item["priority"],
            unit.now,
            unit.now + timedelta(seconds=rules.adjudication_sla_seconds),
            request.decision.model_dump(mode="json"),
        )
        await self.dispatch(unit, request.item_id)
        return None

    async def dispatch(self, unit: Unit, item_id: str, *, only: str | None = None) -> bool:
        """Give a waiting contested item to the best eligible adjudicator of its queue's
        tier and specialty (or to `only`, when they are eligible)."""
        store = PgAssignmentStore(unit.conn)
        item = await store.lock_item(item_id)
        entry = await store.lock_queue_entry(item_id)
        if item is None or entry is None or entry["status"] != "waiting":
            return False
        task = await store.task(entry["task_id"])
        if task is None:
            return False
        evidence = DecisionRecord.model_validate(entry["evidence"])
        facts = await store.item_facts(item_id, item["site"], evidence.contributing_annotators)
        candidates = [
            c
            for c in await store.candidates(task.task_id, "adjudicator")
            if only is None or c.annotator_id == only
        ]
        slot = Slot("adjudication", tier=entry["tier"], specialty=entry["specialty"])
        chosen = choose(candidates, facts, task.assignment, 1, slot=slot)
        if not chosen:
            return False
        assignment_id = await self._issue(
            unit,
            task,
            item,
            chosen[0].annotator_id,
            kind="adjudication",
            tier=entry["tier"],
            evidence=evidence,
        )
        await store.set_queue_entry(item_id, status="assigned", assignment_id=assignment_id)
        return True

    async def escalate(self, unit: Unit, item_id: str) -> Literal["escalated", "breached", "none"]:
        """Move an overdue contested item to the next tier (its adjudication assignment, if
        any, is cancelled), or past the last tier mark it SLA-breached where it stays."""
        store = PgAssignmentStore(unit.conn)
        await store.lock_item(item_id)
        entry = await store.lock_queue_entry(item_id)
        if (
            entry is None
            or entry["status"] not in ("waiting", "assigned")
            or entry["breached_at"] is not None
            or entry["due_at"] > unit.now
        ):
            return "none"
        task = await store.task(entry["task_id"])
        rules = task.assignment if task is not None else AssignmentRules()
        tier = next_tier(entry["tier"], rules.adjudication_tiers)
        if tier is None:
            await store.set_queue_entry(item_id, breached_at=unit.now)
            METRICS.adjudication_sla_breaches.labels(entry["task_id"], entry["specialty"]).inc()
            return "breached"
        if entry["assignment_id"] is not None:
            row = await store.lock_assignment(entry["assignment_id"])
            if row is not None and row["status"] == "open":
                await self._end(unit, row, "cancelled", "escalated")
        await store.set_queue_entry(
            item_id,
            tier=tier,
            due_at=unit.now + timedelta(seconds=rules.adjudication_sla_seconds),
            status="waiting",
            assignment_id=None,
        )
        await self.dispatch(unit, item_id)
        return "escalated"

    # --- decided items

    async def close(self, unit: Unit, decision: ConsensusReached) -> int:
        """A decided item needs nobody else: its open leases are cancelled (front-ends are
        told) and its adjudication queue entry is closed."""
        store = PgAssignmentStore(unit.conn)
        item = await store.lock_item(decision.item_id)
        if item is None or item["gold"]:  # a gold item's assignments are each reader's own
            return 0
        reason: CancelReason = "adjudicated" if decision.adjudicator_id else "consensus_reached"
        open_rows = await store.open_assignments_of_item(decision.item_id)
        for row in open_rows:
            await self._end(unit, row, "cancelled", reason)
        await store.set_item(decision.item_id, status="decided", starved=False)
        await unit.conn.execute(
            """UPDATE adjudication_queue SET status = 'closed', closed_at = $2
               WHERE item_id = $1 AND status <> 'closed'""",
            decision.item_id,
            unit.now,
        )
        return len(open_rows)

    # --- pull

    async def next_for(self, unit: Unit, annotator_id: str) -> AssignmentIssued | None:
        """The annotator's oldest live assignment; for an adjudicator with none, the head
        of a queue they serve, claimed as a new adjudication assignment."""
        live = await self._oldest_live(unit, annotator_id)
        if live is not None:
            return live
        heads = await unit.conn.fetch(
            """SELECT q.item_id FROM adjudication_queue q
               JOIN annotators a ON a.task_id = q.task_id AND a.specialty = q.specialty
                                AND a.tier = q.tier
               WHERE a.annotator_id = $1 AND a.role = 'adjudicator' AND a.active
                 AND q.status = 'waiting'
               ORDER BY q.priority DESC, q.enqueued_at, q.item_id LIMIT 50""",
            annotator_id,
        )
        for head in heads:
            locked = await unit.conn.fetchval(
                "SELECT true FROM items WHERE item_id = $1 FOR UPDATE SKIP LOCKED",
                head["item_id"],
            )
            if locked and await self.dispatch(unit, head["item_id"], only=annotator_id):
                return await self._oldest_live(unit, annotator_id)
        return None

    async def _oldest_live(self, unit: Unit, annotator_id: str) -> AssignmentIssued | None:
        row = await unit.conn.fetchrow(
            """SELECT a.*, i.case_ref, q.evidence FROM assignments a
               JOIN items i USING (item_id)
               LEFT JOIN adjudication_queue q
                      ON q.item_id = a.item_id AND q.assignment_id = a.assignment_id
               WHERE a.annotator_id = $1 AND a.status = 'open' AND a.lease_expires_at > $2
               ORDER BY a.issued_at, a.assignment_id LIMIT 1""",
            annotator_id,
            unit.now,
        )
        if row is None:
            return None
        # The lease's key is rebuilt here if Redis lost it.
        await self.leases.remaining_s(unit.conn, row["assignment_id"], unit.now)
        return issued_view(row)


def issued_view(row: Any) -> AssignmentIssued:
    """An open assignment as it was published."""
    evidence = row["evidence"]
    return AssignmentIssued(
        assignment_id=row["assignment_id"],
        item_id=row["item_id"],
        task_id=row["task_id"],
        annotator_id=row["annotator_id"],
        case_ref=row["case_ref"],
        lease_expires_at=row["lease_expires_at"],
        kind=row["kind"],
        tier=row["tier"],
        evidence=DecisionRecord.model_validate(evidence) if evidence is not None else None,
    )
