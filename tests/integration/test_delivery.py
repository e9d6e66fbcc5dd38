"""The shared delivery plumbing on the real servers: retries, dead letters, commits."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest

from services.cli.dlq import replay
from shared.db.pool import connect, create_pool
from shared.events import ITEM_REGISTERED, REGISTRY
from shared.kafka.broker import make_broker
from shared.kafka.consumer import ConsumerConfig, EventConsumer, HandlerContext, Route
from shared.kafka.publishers import BrokerPublisher
from shared.kafka.relay import OutboxRelay
from shared.settings import StackSettings
from shared.topics import DEAD_LETTERS, ITEMS_REGISTERED
from tests import factories
from tests.integration.conftest import Kafka, dsn_for, wait_until

pytestmark = pytest.mark.integration


class FlakyHandler:
    """Fails every time for items named poison-*, works for the rest."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.done: list[str] = []
        self.fixed = False

    async def __call__(self, ctx: HandlerContext, event: Any) -> None:
        item_id = event.payload.item_id
        self.calls[item_id] += 1
        if item_id.startswith("poison-") and not self.fixed:
            raise RuntimeError(f"cannot handle {item_id}")
        await ctx.conn.execute("SELECT 1")
        self.done.append(item_id)


async def _run_consumer(stack: StackSettings, handler: FlakyHandler, stop: asyncio.Event) -> None:
    """One consumer group member plus its relay, on the export schema of the test database."""
    name = f"flaky-{uuid.uuid4().hex[:6]}"
    pool = await create_pool(dsn_for("export"), "export")
    broker = make_broker(stack, client_id=name)
    consumer = EventConsumer(
        ConsumerConfig(
            name=name,
            group_id=name,
            topic_prefix=stack.topic_prefix,
            max_attempts=3,
            retry_backoff_s=0.01,
        ),
        pool,
        REGISTRY,
        [Route(ITEMS_REGISTERED, ITEM_REGISTERED, handler)],
        stopping=stop,
    )
    consumer.register(broker)
    await broker.start()
    relay = OutboxRelay(
        name, "export", dsn_for("export"), pool, BrokerPublisher(broker), poll_s=0.1, stopping=stop
    )
    relay_task = asyncio.create_task(relay.run())
    await stop.wait()
    await broker.stop()
    await relay_task
    await pool.close()


async def test_a_handler_that_raises_dead_letters_after_bounded_retries_and_the_next_message_flows(
    stack: StackSettings, kafka: Kafka
) -> None:
    handler = FlakyHandler()
    stop = asyncio.Event()
    task = asyncio.create_task(_run_consumer(stack, handler, stop))
    try:
        poison = factories.item_event("task-x", item_id=f"poison-{uuid.uuid4().hex[:6]}")
        healthy = factories.item_event("task-x")
        # Same key: same partition, so the healthy event really comes after the poison one.
        await kafka.publish_raw(
            ITEMS_REGISTERED,
            poison.encode(),
            key=b"k",
            headers=[("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")],
        )
        await kafka.publish_raw(ITEMS_REGISTERED, healthy.encode(), key=b"k")
        await wait_until(lambda: healthy.payload.item_id in handler.done, timeout=60)

        async with kafka.reader(DEAD_LETTERS) as reader:
            (record,) = await reader.until(lambda r: r.value == poison.encode())
        headers = {k: v.decode() for k, v in record.headers}
        assert handler.calls[poison.payload.item_id] == 3
        assert headers["dlq.source.topic"] == ITEMS_REGISTERED.qualified(stack.topic_prefix)
        assert headers["dlq.error.type"] == "RuntimeError"
        assert headers["dlq.attempts"] == "3"
        assert "cannot handle" in headers["dlq.error.message"]
        assert headers["traceparent"].startswith("00-111")
        assert record.key == b"k"
        conn = await connect(dsn_for("export"), "export")
        try:
            row = await conn.fetchrow(
                "SELECT * FROM dead_letters WHERE event_id = $1", poison.event_id
            )
        finally:
            await conn.close()
        assert row is not None
        assert row["attempts"] == 3 and bytes(row["value"]) == poison.encode()

        # After the fix, `consilium dlq replay` re-drives it and it is processed once.
        handler.fixed = True
        assert await replay("export", [row["id"]], "handler fixed", "tests", dsn_for("export")) == 1
        await wait_until(lambda: poison.payload.item_id in handler.done, timeout=60)
        conn = await connect(dsn_for("export"), "export")
        try:
            replayed = await conn.fetchrow("SELECT * FROM dead_letters WHERE id = $1", row["id"])
        finally:
            await conn.close()
        assert replayed is not None and replayed["replay_count"] == 1
        assert (replayed["replayed_by"], replayed["replay_note"]) == ("tests", "handler fixed")
    finally:
        stop.set()
        await task


async def test_a_redelivered_batch_has_no_second_effect(stack: StackSettings, kafka: Kafka) -> None:
    """Processing the same records twice (as after a crash before the offset commit)."""
    pool = await create_pool(dsn_for("export"), "export")
    handler = FlakyHandler()
    consumer = EventConsumer(
        ConsumerConfig(name=f"redeliver-{uuid.uuid4().hex[:6]}", group_id="unused"),
        pool,
        REGISTRY,
        [Route(ITEMS_REGISTERED, ITEM_REGISTERED, handler)],
    )
    from shared.kafka.records import Delivery

    events = [factories.item_event("task-y") for _ in range(5)]
    batch = [
        Delivery(ITEMS_REGISTERED.name, 0, offset, b"k", e.encode(), (), 0)
        for offset, e in enumerate(events)
    ]
    try:
        assert await consumer.process(batch)
        assert await consumer.process(batch)
    finally:
        await pool.close()
    assert Counter(handler.done) == Counter(e.payload.item_id for e in events)


async def test_after_commit_actions_run_once_per_event_despite_rolled_back_attempts(
    stack: StackSettings,
) -> None:
    """A failing record rolls the batch's fast path back and the slow path handles every
    record again: what handlers asked to run after commit runs once per event."""
    pool = await create_pool(dsn_for("export"), "export")
    failed_once: set[str] = set()
    committed: list[str] = []

    async def handler(ctx: HandlerContext, event: Any) -> None:
        item_id = event.payload.item_id
        ctx.after_commit(lambda: committed.append(item_id))
        if item_id.startswith("once-") and item_id not in failed_once:
            failed_once.add(item_id)
            raise RuntimeError("fails on its first attempt only")

    consumer = EventConsumer(
        ConsumerConfig(
            name=f"after-commit-{uuid.uuid4().hex[:6]}",
            group_id="unused",
            max_attempts=3,
            retry_backoff_s=0.01,
        ),
        pool,
        REGISTRY,
        [Route(ITEMS_REGISTERED, ITEM_REGISTERED, handler)],
    )
    from shared.kafka.records import Delivery

    events = [
        factories.item_event("task-z"),
        factories.item_event("task-z", item_id=f"once-{uuid.uuid4().hex[:6]}"),
        factories.item_event("task-z"),
    ]
    batch = [
        Delivery(ITEMS_REGISTERED.name, 0, offset, b"k", e.encode(), (), 0)
        for offset, e in enumerate(events)
    ]
    try:
        assert await consumer.process(batch)
    finally:
        await pool.close()
    assert failed_once, "the batch never took its slow path"
    assert Counter(committed) == Counter(e.payload.item_id for e in events)
