"""Reliability re-estimate: decide reached items again under the current annotator
reliability and publish a new consensus version for each whose label flips.

Online Dawid-Skene decides an item with the reliability known when its last label came
in; readers' reliability keeps being learned afterwards, so an early decision can differ
from what the same labels say today. Only a flip to another reached label is acted on:
an item that would now be less certain keeps its published label (re-opening or
escalating settled items in bulk is an operator's decision, not a side effect). Each
flip is one transaction: the item's new state, the decision (reason
`reliability_reestimate`) and the ConsensusReached event in the outbox, superseding the
published version as any other change does.

`run_periodically` sweeps on a timer inside the service; of several consensus
instances, only the one holding the sweep's advisory lock sweeps in a given round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from services.consensus import engine
from services.consensus.handlers import ConsensusHandlers
from services.consensus.policies import consensus_value, engine_policy
from services.consensus.scoped import TaskView
from services.consensus.state import TrackedItem
from services.consensus.store import PgConsensusStore
from shared.events import TaskDefined
from shared.kafka.consumer import HandlerContext
from shared.kafka.errors import is_infrastructure_error
from shared.kafka.outbox import Emitter, Outbox
from shared.kafka.records import Delivery
from shared.logging import get_logger
from shared.metrics import METRICS

log = get_logger(__name__)

REASON = "reliability_reestimate"
PRODUCER = "consensus"
SWEEP_LOCK = 0x52455354  # "REST": one periodic sweep per schema at a time
_TRY_LOCK = "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))"
_UNLOCK = "SELECT pg_advisory_unlock($1, hashtext(current_schema()))"


@dataclass
class ReestimateReport:
    checked: int = 0
    flipped: list[str] = field(default_factory=list)


def flips(policy: engine.ConsensusPolicy, tracked: TrackedItem, view: TaskView) -> bool:
    """True when the item's labels, decided again under `view`, reach another label."""
    decision = engine.rescore(policy, tracked.engine, view).decision
    return (
        decision.outcome == "reached" and consensus_value(decision.label) != tracked.published_label
    )


async def reestimate(
    conn: asyncpg.Connection,
    handlers: ConsensusHandlers,
    *,
    task_id: str | None,
    topic_prefix: str,
    now: Callable[[], datetime],
    page: int = 500,
) -> ReestimateReport:
    """Check every reached item (of one task, or all) in item order.

    Items are read a page at a time without locks and decided again in memory; only an
    item that flips is locked, checked again and published, one transaction each. A sweep
    thus costs a query per page rather than a transaction per item, labels arriving
    meanwhile never wait on an item that keeps its label, a crash loses no work, and a
    second run finds nothing left to do."""
    report = ReestimateReport()
    tasks = TaskCache(PgConsensusStore(conn))
    after = ""
    while True:
        rows = await conn.fetch(
            """SELECT item_id, task_id, task_version, state FROM item_state
               WHERE status = 'reached' AND item_id > $1
               AND ($2::text IS NULL OR task_id = $2) ORDER BY item_id LIMIT $3""",
            after,
            task_id,
            page,
        )
        if not rows:
            return report
        for row in rows:
            report.checked += 1
            known = await tasks.get(row["task_id"], row["task_version"])
            if known is None:
                continue
            view = TaskView(handlers.reliability.current, row["task_id"])
            if not flips(known[1], TrackedItem.from_json(row["state"]), view):
                continue
            flipped = await _reestimate_item(
                conn, handlers, tasks, row["item_id"], topic_prefix, now()
            )
            if flipped:
                report.flipped.append(row["item_id"])
        after = rows[-1]["item_id"]


KnownTask = tuple[TaskDefined, engine.ConsensusPolicy]


class TaskCache:
    """Task definitions and their engine policies, read once per sweep."""

    def __init__(self, store: PgConsensusStore) -> None:
        self.store = store
        self.known: dict[tuple[str, int], KnownTask | None] = {}

    async def get(self, task_id: str, version: int) -> KnownTask | None:
        key = (task_id, version)
        if key not in self.known:
            task = await self.store.task(task_id, version)
            self.known[key] = (task, engine_policy(task)) if task is not None else None
        return self.known[key]


async def run_periodically(
    pool: asyncpg.Pool,
    handlers: ConsensusHandlers,
    stopping: asyncio.Event,
    *,
    interval_s: float,
    topic_prefix: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Sweep every reached item each `interval_s` until stopped; an outage skips a round."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval_s)
        if stopping.is_set():
            return
        try:
            await sweep_once(pool, handlers, topic_prefix=topic_prefix, now=now)
        except Exception as exc:
            if not is_infrastructure_error(exc):
                log.exception("reestimate_sweep_failed")
            else:
                log.warning("reestimate_sweep_postponed", error=repr(exc))


async def sweep_once(
    pool: asyncpg.Pool,
    handlers: ConsensusHandlers,
    *,
    topic_prefix: str,
    now: Callable[[], datetime],
) -> ReestimateReport | None:
    """One sweep over every task, or None when another instance is sweeping."""
    async with pool.acquire() as conn:
        if not await conn.fetchval(_TRY_LOCK, SWEEP_LOCK):
            return None
        try:
            report = await reestimate(
                conn,  # type: ignore[arg-type]  # a pool proxy is a Connection at run time
                handlers,
                task_id=None,
                topic_prefix=topic_prefix,
                now=now,
            )
        finally:
            await conn.execute(_UNLOCK, SWEEP_LOCK)
    METRICS.reestimated_items.labels("checked").inc(report.checked)
    METRICS.reestimated_items.labels("flipped").inc(len(report.flipped))
    log.info("reestimate_swept", checked=report.checked, flipped=len(report.flipped))
    return report


async def _reestimate_item(
    conn: asyncpg.Connection,
    handlers: ConsensusHandlers,
    tasks: TaskCache,
    item_id: str,
    topic_prefix: str,
    now: datetime,
) -> bool:
    """Lock the item, decide it again under the current reliability (it may have changed
    since it was read) and, if it still flips, publish the new version."""
    store = PgConsensusStore(conn)
    async with conn.transaction():
        loaded = await store.load(item_id)  # locked: a label arriving meanwhile waits
        if loaded is None or loaded[1] != "reached":
            return False
        tracked, _, version = loaded
        row = await conn.fetchrow(
            "SELECT task_id, task_version FROM item_state WHERE item_id = $1", item_id
        )
        known = await tasks.get(row["task_id"], row["task_version"]) if row else None
        if known is None:
            return False
        task, policy = known
        view = TaskView(handlers.reliability.current, task.task_id)
        if not flips(policy, tracked, view):
            return False
        outbox = Outbox(conn, topic_prefix)
        ctx = HandlerContext(conn, Emitter(PRODUCER, outbox, now), _delivery(item_id, now))
        await handlers.redecide(ctx, store, task, tracked, version, reason=REASON)
        await outbox.flush()
    for action in ctx.committed:
        action()
    return True


def _delivery(item_id: str, now: datetime) -> Delivery:
    """The re-estimate consumed no record: this names its origin for the handler context."""
    return Delivery(
        topic="consilium.reestimate",
        partition=0,
        offset=0,
        key=item_id.encode(),
        value=b"",
        headers=(),
        timestamp_ms=int(now.timestamp() * 1000),
    )
