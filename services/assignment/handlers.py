"""Assignment handlers: issue leased assignments for new items and on request."""

from __future__ import annotations

import uuid
from datetime import timedelta

import redis.asyncio as aioredis

from services.assignment.routing import choose_annotators
from shared.envelope import Envelope
from shared.events import (
    ASSIGNMENT_ISSUED,
    ASSIGNMENT_REQUESTED,
    CONSENSUS_REACHED_EVENT,
    ITEM_REGISTERED,
    TASK_DEFINED,
    AssignmentIssued,
    AssignmentRequested,
    ConsensusReached,
    ItemRegistered,
    TaskDefined,
)
from shared.kafka.consumer import Handler, HandlerContext, Route
from shared.topics import (
    ASSIGNMENTS_ISSUED,
    ASSIGNMENTS_REQUESTED,
    CONSENSUS_REACHED,
    ITEMS_REGISTERED,
    TASKS_DEFINED,
)

LEASE = timedelta(hours=24)


class AssignmentHandlers:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def on_task_defined(self, ctx: HandlerContext, event: Envelope[TaskDefined]) -> None:
        task = event.payload
        await ctx.conn.execute(
            """INSERT INTO tasks (task_id, version, definition) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING""",
            task.task_id,
            task.version,
            task.model_dump(mode="json"),
        )
        waiting = await ctx.conn.fetch(
            """SELECT item_id, case_ref FROM items WHERE task_id = $1
               AND status = 'waiting_for_task' ORDER BY priority DESC, item_id""",
            task.task_id,
        )
        for row in waiting:
            await self._issue(
                ctx, row["item_id"], task.task_id, row["case_ref"], task.initial_overlap, ()
            )
            await ctx.conn.execute(
                "UPDATE items SET status = 'open' WHERE item_id = $1", row["item_id"]
            )

    async def on_item_registered(
        self, ctx: HandlerContext, event: Envelope[ItemRegistered]
    ) -> None:
        item = event.payload
        task = await self._task(ctx, item.task_id)
        inserted = await ctx.conn.fetchval(
            """INSERT INTO items (item_id, task_id, case_ref, priority, site, status, registered_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING true""",
            item.item_id,
            item.task_id,
            item.case_ref,
            item.priority,
            item.site,
            "open" if task else "waiting_for_task",
            ctx.now,
        )
        if inserted and task is not None:
            await self._issue(
                ctx, item.item_id, item.task_id, item.case_ref, task.initial_overlap, ()
            )

    async def on_assignment_requested(
        self, ctx: HandlerContext, event: Envelope[AssignmentRequested]
    ) -> None:
        request = event.payload
        row = await ctx.conn.fetchrow(
            "SELECT case_ref FROM items WHERE item_id = $1", request.item_id
        )
        task = await self._task(ctx, request.task_id)
        issued = 0
        if row is not None and task is not None:
            total = await ctx.conn.fetchval(
                "SELECT count(*) FROM assignments WHERE item_id = $1", request.item_id
            )
            if total < task.policy.max_labels:
                issued = await self._issue(
                    ctx,
                    request.item_id,
                    request.task_id,
                    row["case_ref"],
                    1,
                    request.exclude_annotators,
                )
        if not issued:
            await ctx.conn.execute(
                "INSERT INTO unfilled_requests (item_id, reason, requested_at) VALUES ($1, $2, $3)",
                request.item_id,
                "no eligible annotator or label budget exhausted",
                ctx.now,
            )

    async def on_consensus_reached(
        self, ctx: HandlerContext, event: Envelope[ConsensusReached]
    ) -> None:
        """A decided item needs no more labels: its open assignments close, leases go."""
        closed = await ctx.conn.fetch(
            """UPDATE assignments SET status = 'closed'
               WHERE item_id = $1 AND status = 'open' RETURNING assignment_id""",
            event.payload.item_id,
        )
        if closed:
            await self.redis.delete(*[f"consilium:lease:{r['assignment_id']}" for r in closed])

    async def _task(self, ctx: HandlerContext, task_id: str) -> TaskDefined | None:
        row = await ctx.conn.fetchval(
            "SELECT definition FROM tasks WHERE task_id = $1 ORDER BY version DESC LIMIT 1", task_id
        )
        return TaskDefined.model_validate(row) if row is not None else None

    async def _issue(
        self,
        ctx: HandlerContext,
        item_id: str,
        task_id: str,
        case_ref: str,
        count: int,
        exclude: tuple[str, ...],
    ) -> int:
        rows = await ctx.conn.fetch(
            """SELECT a.annotator_id,
                      (SELECT count(*) FROM assignments s
                        WHERE s.annotator_id = a.annotator_id AND s.status = 'open') AS open_count
               FROM annotators a WHERE a.task_id = $1 AND a.active AND a.role = 'reader'""",
            task_id,
        )
        already = {
            r["annotator_id"]
            for r in await ctx.conn.fetch(
                "SELECT annotator_id FROM assignments WHERE item_id = $1", item_id
            )
        }
        chosen = choose_annotators(
            {r["annotator_id"]: r["open_count"] for r in rows}, set(exclude) | already, count
        )
        expires = ctx.now + LEASE
        for annotator_id in chosen:
            assignment_id = uuid.uuid4()
            await ctx.conn.execute(
                """INSERT INTO assignments (assignment_id, item_id, task_id, annotator_id,
                       issued_at, lease_expires_at) VALUES ($1, $2, $3, $4, $5, $6)""",
                assignment_id,
                item_id,
                task_id,
                annotator_id,
                ctx.now,
                expires,
            )
            # The lease's fast path; PostgreSQL stays the record it is rebuilt from.
            await self.redis.set(
                f"consilium:lease:{assignment_id}", annotator_id, ex=int(LEASE.total_seconds())
            )
            ctx.emitter.emit(
                ASSIGNMENT_ISSUED,
                ASSIGNMENTS_ISSUED,
                AssignmentIssued(
                    assignment_id=assignment_id,
                    item_id=item_id,
                    task_id=task_id,
                    annotator_id=annotator_id,
                    case_ref=case_ref,
                    lease_expires_at=expires,
                ),
                key=annotator_id,
            )
        return len(chosen)

    def routes(self) -> list[Route]:
        def route(topic, spec, handler: Handler) -> Route:  # type: ignore[no-untyped-def]
            return Route(topic, spec, handler)

        return [
            route(TASKS_DEFINED, TASK_DEFINED, self.on_task_defined),
            route(ITEMS_REGISTERED, ITEM_REGISTERED, self.on_item_registered),
            route(ASSIGNMENTS_REQUESTED, ASSIGNMENT_REQUESTED, self.on_assignment_requested),
            route(CONSENSUS_REACHED, CONSENSUS_REACHED_EVENT, self.on_consensus_reached),
        ]
