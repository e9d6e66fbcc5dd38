"""The reliability re-estimate on the real consensus schema: an item decided early under
an empty reliability flips once its readers' reliability is known, and only that item is
published again, once; the service's periodic sweep does the same, one instance at a
time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from services.consensus import engine
from services.consensus.app import build
from services.consensus.engine.reliability import ReliabilityLedger, ReliabilitySnapshot
from services.consensus.handlers import ConsensusHandlers
from services.consensus.policies import engine_policy
from services.consensus.reestimate import (
    REASON,
    SWEEP_LOCK,
    reestimate,
    run_periodically,
    sweep_once,
)
from services.consensus.reliability_store import PgReliability
from services.consensus.scoped import TaskView, scoped_delta
from shared.db.pool import connect, create_pool
from shared.envelope import Envelope
from shared.events import LABEL_ACCEPTED, REGISTRY, ConsensusPolicy, TaskDefined
from shared.kafka.consumer import HandlerContext
from shared.metrics import METRICS
from shared.runtime import Dependencies
from shared.settings import StackSettings, service_settings
from tests import factories
from tests.integration.conftest import dsn_for
from tests.integration.test_handlers import _accepted_from, handler_context

pytestmark = pytest.mark.integration


def _learned(task: TaskDefined) -> ReliabilitySnapshot:
    """Reliability after 40 items on which readers a, d and e agree and b and c, always
    together, say the opposite: b and c are learned to be wrong."""
    policy = engine_policy(task)
    ledger = ReliabilityLedger()
    for index in range(40):
        truth = str(index % 2)
        state = engine.ItemState.new(f"training-{index}")
        for reader in ("a", "d", "e", "b", "c"):
            said = truth if reader in "ade" else str(1 - int(truth))
            observed = engine.LabelObservation(str(uuid.uuid4()), f"reader-{reader}", said)
            result = engine.step(policy, state, observed, TaskView(ledger, task.task_id))
            ledger.apply(scoped_delta(task.task_id, result.delta))
            state = result.state
    return ledger.snapshot()


async def _decide_early(
    handlers: ConsensusHandlers, context: Callable[[Envelope[Any]], HandlerContext]
) -> tuple[TaskDefined, str, str]:
    """A ds task and two items decided under an empty reliability, where the majority
    decides: `flipping` (a says 1, b and c say 0) and `steady` (a, d and e say 1)."""
    task = factories.task(
        policy=ConsensusPolicy(method="ds", min_labels=3, max_labels=3, threshold=0.6)
    )
    flipping, steady = (f"re-{uuid.uuid4().hex[:8]}" for _ in range(2))
    defined = factories.task_event(task)
    await handlers.on_task_defined(context(defined), defined)
    votes = {
        flipping: (("reader-a", "1"), ("reader-b", "0"), ("reader-c", "0")),
        steady: (("reader-a", "1"), ("reader-d", "1"), ("reader-e", "1")),
    }
    for item_id, labels in votes.items():
        for reader, value in labels:
            submitted = factories.label_event(item_id, task.task_id, reader, value)
            accepted = LABEL_ACCEPTED.wrap(
                _accepted_from(submitted), key=item_id, producer="tests",
                event_id=uuid.uuid4(), occurred_at=factories.NOW,
                correlation_id=submitted.correlation_id,
            )  # fmt: skip
            await handlers.on_label_accepted(context(accepted), accepted)
    return task, flipping, steady


@asynccontextmanager
async def _early_items_then_learned_reliability() -> AsyncIterator[
    tuple[ConsensusHandlers, asyncpg.Connection, TaskDefined, str, str]
]:
    """`_decide_early`'s items, then the learned reliability under which `flipping` flips;
    everything is rolled back at the end."""
    handlers = ConsensusHandlers(PgReliability())  # empty reliability: majority decides
    async with handler_context("consensus") as context:
        task, flipping, steady = await _decide_early(handlers, context)
        handlers.reliability.current = _learned(task)
        yield handlers, context(factories.task_event(task)).conn, task, flipping, steady


async def _published(conn: asyncpg.Connection, *item_ids: str) -> list[Any]:
    rows = await conn.fetch(
        "SELECT key, value FROM outbox WHERE key = ANY($1::bytea[]) ORDER BY id",
        [item_id.encode() for item_id in item_ids],
    )
    return [REGISTRY.decode(row["value"]) for row in rows]


async def test_an_item_whose_label_flips_under_learned_reliability_is_published_again(
    stack: Any,
) -> None:
    async with _early_items_then_learned_reliability() as (handlers, conn, task, flipping, steady):
        before = await conn.fetchval(
            "SELECT state->>'published_label' FROM item_state WHERE item_id = $1", flipping
        )
        report = await reestimate(
            conn, handlers, task_id=task.task_id, topic_prefix="", now=lambda: factories.NOW
        )
        again = await reestimate(
            conn, handlers, task_id=task.task_id, topic_prefix="", now=lambda: factories.NOW
        )
        events = await _published(conn, flipping, steady)
        version = await conn.fetchval(
            "SELECT consensus_version FROM item_state WHERE item_id = $1", flipping
        )
    assert before == "0"
    assert (report.checked, report.flipped) == (2, [flipping])
    assert (again.checked, again.flipped) == (2, [])
    (event,) = events
    assert event.event_type == "consensus.reached"
    assert event.payload.item_id == flipping
    assert event.payload.consensus_version == version == 2
    assert event.payload.decision.label == "1"
    assert event.payload.decision.reason == REASON
    assert event.payload.decision.reliability_version == handlers.reliability.current.version


class _LockRecorder:
    """The test's connection, recording the items each query locked (FOR UPDATE)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.locked: list[str] = []

    async def fetchrow(self, query: str, *args: Any) -> Any:
        if "FOR UPDATE" in query:
            self.locked.append(args[0])
        return await self.conn.fetchrow(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


async def test_a_sweep_locks_only_the_items_that_flip(stack: Any) -> None:
    """Labels being handled never wait on an item the sweep merely checks."""
    async with _early_items_then_learned_reliability() as (handlers, conn, task, flipping, _):
        recorder = _LockRecorder(conn)
        report = await reestimate(
            recorder,  # type: ignore[arg-type]  # delegates everything to the connection
            handlers,
            task_id=task.task_id,
            topic_prefix="",
            now=lambda: factories.NOW,
        )
    assert (report.checked, report.flipped) == (2, [flipping])
    assert recorder.locked == [flipping]


class _OneConnection:
    """A pool of the test's one connection, so a sweep's writes roll back with it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self.conn


def _flipped_so_far() -> float:
    value = METRICS.registry.get_sample_value(
        "consilium_reestimated_items_total", {"result": "flipped"}
    )
    return value or 0.0


async def test_the_periodic_sweep_republishes_flipped_items_until_stopped(stack: Any) -> None:
    async with _early_items_then_learned_reliability() as (handlers, conn, _, flipping, steady):
        flipped_before = _flipped_so_far()
        stopping = asyncio.Event()
        loop = asyncio.create_task(
            run_periodically(
                _OneConnection(conn),  # type: ignore[arg-type]  # acquire() is all it uses
                handlers,
                stopping,
                interval_s=0.05,
                topic_prefix="",
                now=lambda: factories.NOW,
            )
        )
        for _ in range(200):  # the loop sweeps every 50 ms; 10 s is ample on a busy machine
            if _flipped_so_far() > flipped_before:
                break
            await asyncio.sleep(0.05)
        stopping.set()
        await asyncio.wait_for(loop, timeout=30)
        events = await _published(conn, flipping, steady)
    assert _flipped_so_far() > flipped_before
    assert [(e.payload.item_id, e.payload.decision.reason) for e in events] == [(flipping, REASON)]


async def test_a_sweep_waits_its_turn_while_another_instance_sweeps(stack: Any) -> None:
    async with _early_items_then_learned_reliability() as (handlers, conn, _, flipping, steady):
        other = await connect(dsn_for("consensus"), "consensus")
        try:
            # Another replica's sweep: the same key, on its own session.
            await other.execute(
                "SELECT pg_advisory_lock($1, hashtext(current_schema()))", SWEEP_LOCK
            )
            skipped = await sweep_once(
                _OneConnection(conn),  # type: ignore[arg-type]
                handlers,
                topic_prefix="",
                now=lambda: factories.NOW,
            )
            await other.execute(
                "SELECT pg_advisory_unlock($1, hashtext(current_schema()))", SWEEP_LOCK
            )
        finally:
            await other.close()
        events_while_locked = await _published(conn, flipping, steady)
        swept = await sweep_once(
            _OneConnection(conn),  # type: ignore[arg-type]
            handlers,
            topic_prefix="",
            now=lambda: factories.NOW,
        )
    assert skipped is None
    assert events_while_locked == []
    assert swept is not None and flipping in swept.flipped and steady not in swept.flipped


@pytest.mark.parametrize(("interval_s", "loops"), [(0.0, 1), (3600.0, 2)])
async def test_the_service_sweeps_periodically_only_when_an_interval_is_set(
    stack: Any, interval_s: float, loops: int
) -> None:
    settings = service_settings("consensus", reestimate_interval_s=interval_s)
    pool = await create_pool(dsn_for("consensus"), "consensus", max_size=1)
    try:
        deps = Dependencies(settings, StackSettings(), pool, redis=None, broker=None)  # type: ignore[arg-type]  # build uses neither
        wiring = await build(deps)
    finally:
        await pool.close()
    assert len(wiring.background) == loops  # the reliability refresh, then the sweep
