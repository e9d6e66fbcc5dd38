"""Graceful shutdown never commits an unfinished message: it is processed after restart."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from shared.db.pool import connect, create_pool
from shared.events import ITEM_REGISTERED, REGISTRY
from shared.kafka.broker import make_broker
from shared.kafka.consumer import ConsumerConfig, EventConsumer, HandlerContext, Route
from shared.settings import StackSettings
from shared.topics import ITEMS_REGISTERED
from tests import factories
from tests.integration.conftest import Kafka, dsn_for, wait_until

pytestmark = pytest.mark.integration


class SlowHandler:
    """Blocks on `slow_item` until released. Its effect is the consumer's inbox row, which
    commits in the same transaction as the handler or not at all."""

    def __init__(self, slow_item: str) -> None:
        self.slow_item = slow_item
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, ctx: HandlerContext, event: Any) -> None:
        item_id = event.payload.item_id
        await ctx.conn.execute("SELECT 1")
        if item_id == self.slow_item:
            self.entered.set()
            await self.release.wait()


async def _member(stack: StackSettings, group: str, handler: SlowHandler) -> tuple[Any, Any, Any]:
    pool = await create_pool(dsn_for("export"), "export")
    broker = make_broker(stack, client_id=group, graceful_timeout=1.0)
    stopping = asyncio.Event()
    consumer = EventConsumer(
        ConsumerConfig(name=group, group_id=group, topic_prefix=stack.topic_prefix),
        pool,
        REGISTRY,
        [Route(ITEMS_REGISTERED, ITEM_REGISTERED, handler)],
        stopping=stopping,
    )
    consumer.register(broker)
    await broker.start()
    return broker, pool, stopping


async def _effects(group: str, event_id: Any) -> int:
    conn = await connect(dsn_for("export"), "export")
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2", group, event_id
        )
        return count
    finally:
        await conn.close()


async def test_a_message_cut_off_by_shutdown_is_processed_again_after_restart(
    stack: StackSettings, kafka: Kafka
) -> None:
    group = f"shutdown-{uuid.uuid4().hex[:6]}"
    event = factories.item_event("task-s", item_id=f"slow-{uuid.uuid4().hex[:6]}")
    first = SlowHandler(event.payload.item_id)
    broker, pool, stopping = await _member(stack, group, first)
    await kafka.publish_raw(ITEMS_REGISTERED, event.encode(), key=b"shutdown")
    await asyncio.wait_for(first.entered.wait(), timeout=60)

    # SIGTERM arrives while the handler is still working: stop without finishing it.
    stopping.set()
    await broker.stop()
    await pool.close()
    assert await _effects(group, event.event_id) == 0

    second = SlowHandler("nothing-is-slow-now")
    broker, pool, stopping = await _member(stack, group, second)
    try:
        await wait_until(lambda: _effects(group, event.event_id), timeout=60)
    finally:
        stopping.set()
        await broker.stop()
        await pool.close()
    assert await _effects(group, event.event_id) == 1
