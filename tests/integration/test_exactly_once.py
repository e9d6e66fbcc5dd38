"""The hospital topic gets each consensus version once, even when the relay dies between
committing to Kafka and marking its rows sent."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from shared.db.pool import connect
from shared.kafka.publishers import TransactionalPublisher
from shared.kafka.relay import _RELAY_LOCK, OutboxRelay
from shared.settings import StackSettings
from shared.topics import CONSENSUS_LABELS
from tests.integration.conftest import dsn_for

pytestmark = pytest.mark.integration


@dataclass
class HeldConnection:
    """Stands in for a pool: every acquire gets the same connection, never reset."""

    conn: asyncpg.Connection

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self.conn

    async def fetch(self, *args: Any) -> list[Any]:
        return list(await self.conn.fetch(*args))

    async def fetchval(self, *args: Any) -> Any:
        return await self.conn.fetchval(*args)


async def _records_with_keys(stack: StackSettings, keys: set[bytes], isolation: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        CONSENSUS_LABELS.qualified(stack.topic_prefix),
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation,
    )
    await consumer.start()
    try:
        seen: list[bytes] = []
        idle = 0
        while idle < 6:  # three seconds without news: the topic is read to its end
            batches = await consumer.getmany(timeout_ms=500)
            idle = 0 if batches else idle + 1
            seen += [r.key for records in batches.values() for r in records if r.key in keys]
        return seen
    finally:
        await consumer.stop()


async def test_a_batch_committed_to_kafka_but_not_marked_is_not_published_again(
    stack: StackSettings,
) -> None:
    # One connection holds the relay lock of the export schema for the whole test: the
    # export service's own relay stands aside, and ours (same session) may run. (A pooled
    # connection would not do: asyncpg releases advisory locks when it returns to a pool.)
    pool = HeldConnection(await connect(dsn_for("export"), "export"))
    await pool.conn.execute("SELECT pg_advisory_lock($1, hashtext('export'))", _RELAY_LOCK)
    service = f"export-{uuid.uuid4().hex[:6]}"
    keys = {f"eo-{uuid.uuid4().hex[:8]}".encode() for _ in range(3)}
    topic = CONSENSUS_LABELS.qualified(stack.topic_prefix)
    crashed = TransactionalPublisher(stack, service)
    try:
        rows = await pool.fetch(
            """INSERT INTO outbox (topic, key, value, headers)
               SELECT $1, k, k, '{"content-type": "application/json"}'::jsonb
               FROM unnest($2::bytea[]) AS k RETURNING id, topic, key, value, headers""",
            topic,
            sorted(keys),
        )
        await crashed.start()
        await crashed.publish(rows)  # in Kafka; the process dies before marking the rows

        publisher = TransactionalPublisher(stack, service)
        held = cast(asyncpg.Pool, pool)  # the relay only acquires connections from it
        restarted = OutboxRelay(service, "export", dsn_for("export"), held, publisher)
        await restarted.publisher.start()
        try:
            await restarted.drain_once()
        finally:
            await restarted.publisher.stop()
        unmarked = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE id = ANY($1::bigint[]) AND published_at IS NULL",
            [row["id"] for row in rows],
        )
    finally:
        await crashed.stop()
        await pool.conn.execute("SELECT pg_advisory_unlock($1, hashtext('export'))", _RELAY_LOCK)
        await pool.conn.close()

    assert unmarked == 0
    assert sorted(await _records_with_keys(stack, keys, "read_committed")) == sorted(keys)
    assert sorted(await _records_with_keys(stack, keys, "read_uncommitted")) == sorted(keys)
