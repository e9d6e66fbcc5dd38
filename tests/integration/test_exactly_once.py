"""The hospital topic gets each consensus version once, even when the relay dies between
committing to Kafka and marking its rows sent."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from shared.db.pool import create_pool
from shared.kafka.publishers import TransactionalPublisher
from shared.kafka.relay import _RELAY_LOCK, OutboxRelay
from shared.settings import StackSettings
from shared.topics import CONSENSUS_LABELS
from tests.integration.conftest import dsn_for

pytestmark = pytest.mark.integration


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
    # One pooled connection holds the relay lock of the export schema for the whole test:
    # the export service's own relay stands aside, and ours (same session) may run.
    pool = await create_pool(dsn_for("export"), "export", max_size=1)
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1, hashtext('export'))", _RELAY_LOCK)
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

        restarted = OutboxRelay(
            service, "export", dsn_for("export"), pool, TransactionalPublisher(stack, service)
        )
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
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_unlock($1, hashtext('export'))", _RELAY_LOCK)
        await pool.close()

    assert unmarked == 0
    assert sorted(await _records_with_keys(stack, keys, "read_committed")) == sorted(keys)
    assert sorted(await _records_with_keys(stack, keys, "read_uncommitted")) == sorted(keys)
