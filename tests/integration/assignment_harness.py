"""The assignment service's handlers, sweeper and pull API on the real PostgreSQL and
Redis, with an injected clock; each step commits like the running service's would."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import asyncpg
import redis.asyncio as aioredis
from pydantic import BaseModel

from services.assignment.api import PullService
from services.assignment.assigner import Assigner
from services.assignment.handlers import AssignmentHandlers
from services.assignment.leases import LeaseCache
from services.assignment.sweeper import Sweeper
from shared.db.pool import create_pool
from shared.envelope import Envelope, EventSpec
from shared.events import (
    ADJUDICATION_REQUESTED_EVENT,
    ANNOTATOR_SKILL_ESTIMATED,
    ASSIGNMENT_REQUESTED,
    CONSENSUS_REACHED_EVENT,
    LABEL_ACCEPTED,
    REGISTRY,
    AdjudicationRequested,
    AnnotatorSkillEstimated,
    AssignmentRequested,
    CategoricalValue,
    ConsensusReached,
    DecisionRecord,
    LabelAccepted,
)
from shared.kafka.consumer import HandlerContext
from shared.kafka.outbox import Emitter, Outbox
from shared.settings import StackSettings
from tests import factories
from tests.integration.conftest import dsn_for

# Far from the wall clock, so the running services' sweepers never find these leases due.
EPOCH = datetime(2100, 1, 1, tzinfo=UTC)


def wrap(spec: EventSpec[Any], payload: BaseModel, key: str, at: datetime) -> Envelope[Any]:
    return spec.wrap(
        payload,
        key=key,
        producer="tests",
        event_id=uuid.uuid4(),
        occurred_at=at,
        correlation_id=uuid.uuid4(),
    )


def decision(
    readers: tuple[str, ...] = (), outcome: Literal["reached", "contested"] = "contested"
) -> DecisionRecord:
    return DecisionRecord(
        outcome=outcome,
        label="1" if outcome == "reached" else None,
        confidence=0.5,
        distribution={"0": 0.5, "1": 0.5},
        agreement=0.5,
        contributing_label_ids=(),
        method="mv",
        method_version="1",
        parameters={},
        contributing_annotators=readers,
    )


@dataclass
class AssignmentHarness:
    pool: asyncpg.Pool
    redis: aioredis.Redis
    prefix: str
    now: datetime = EPOCH
    tasks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.assigner = Assigner(LeaseCache(self.redis))
        # Items of a namespace of their own: the session's running assignment service
        # (same topic prefix) must not sweep what these tests sweep by hand.
        namespace = f"{self.prefix}harness-{uuid.uuid4().hex[:8]}"
        self.handlers = AssignmentHandlers(self.assigner, namespace=namespace)
        self.routes = {r.event.event_type: r.handler for r in self.handlers.routes()}
        self.sweeper = Sweeper(
            self.pool,
            self.assigner,
            self.prefix,
            clock=lambda: self.now,
            tasks=self.tasks,
            namespace=namespace,
        )
        self.pull = PullService(self.pool, self.assigner, self.prefix, clock=lambda: self.now)

    async def handle(self, event: Envelope[Any]) -> None:
        """Run the event's handler in its own committed transaction, as the consumer does."""
        async with self.pool.acquire() as acquired, acquired.transaction():
            conn = cast(asyncpg.Connection, acquired)
            outbox = Outbox(conn, self.prefix)
            emitter = Emitter("assignment", outbox, self.now, event)
            await self.routes[event.event_type](
                HandlerContext(conn, emitter, factories.delivery(event)), event
            )
            await outbox.flush()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # --- events as the other services publish them

    async def request_more(self, item_id: str, task_id: str, labels_so_far: int) -> None:
        request = AssignmentRequested(
            item_id=item_id, task_id=task_id, reason="needs_more", labels_so_far=labels_so_far
        )
        await self.handle(wrap(ASSIGNMENT_REQUESTED, request, item_id, self.now))

    async def accept_label(self, assignment: asyncpg.Record) -> None:
        event_id = uuid.uuid4()
        label = LabelAccepted(
            label_id=event_id,
            annotation_id=uuid.uuid4(),
            revision=1,
            item_id=assignment["item_id"],
            task_id=assignment["task_id"],
            task_version=1,
            annotator_id=assignment["annotator_id"],
            client_id=factories.CLIENT_ID,
            assignment_id=assignment["assignment_id"],
            received_at=self.now,
            raw_sha256="0" * 64,
            value=CategoricalValue(label="1"),
            labeled_at=self.now,
            role="adjudicator" if assignment["kind"] == "adjudication" else "reader",
        )
        await self.handle(wrap(LABEL_ACCEPTED, label, assignment["item_id"], self.now))

    async def reach_consensus(self, item_id: str, task_id: str, adjudicator: str | None) -> None:
        reached = ConsensusReached(
            item_id=item_id,
            task_id=task_id,
            task_version=1,
            consensus_version=1,
            decision=decision(outcome="reached"),
            decided_at=self.now,
            adjudicator_id=adjudicator,
        )
        await self.handle(wrap(CONSENSUS_REACHED_EVENT, reached, item_id, self.now))

    async def contest(self, item_id: str, task_id: str, readers: tuple[str, ...]) -> None:
        request = AdjudicationRequested(
            item_id=item_id,
            task_id=task_id,
            task_version=1,
            reason="contested",
            decision=decision(readers),
        )
        await self.handle(wrap(ADJUDICATION_REQUESTED_EVENT, request, item_id, self.now))

    async def estimate_skill(self, annotator_id: str, task_id: str, skill: float) -> None:
        estimate = AnnotatorSkillEstimated(
            annotator_id=annotator_id,
            task_id=task_id,
            labels=10,
            agreement_with_consensus=skill,
            skill=skill,
        )
        await self.handle(wrap(ANNOTATOR_SKILL_ESTIMATED, estimate, annotator_id, self.now))

    # --- what happened

    async def assignments(self, task_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM assignments WHERE task_id = $1 ORDER BY issued_at, assignment_id",
            task_id,
        )

    async def events(self, task_id: str) -> list[Envelope[Any]]:
        """Every event emitted about the task, in outbox order."""
        rows = await self.pool.fetch(
            "SELECT value FROM outbox WHERE topic = $1 ORDER BY id",
            f"{self.prefix}assignments.issued.v1",
        )
        events = [REGISTRY.decode(row["value"]) for row in rows]
        return [event for event in events if event.payload.task_id == task_id]


@asynccontextmanager
async def assignment_harness(stack: StackSettings) -> AsyncIterator[AssignmentHarness]:
    pool = await create_pool(dsn_for("assignment"), "assignment", max_size=4)
    redis = aioredis.from_url(stack.redis_url)
    try:
        yield AssignmentHarness(pool, redis, stack.topic_prefix)
    finally:
        await redis.aclose()
        await pool.close()
