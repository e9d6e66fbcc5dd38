"""Killing a process inside a narrow window of the delivery protocol: between a batch's
database commit and its offset commit (caught by pausing and probing), and between the
relay's publish and its marking rows sent (reached every time by holding row locks)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.db.pool import connect
from shared.topics import Topic
from tests.reliability.processes import ServiceProcess
from tests.reliability.servers import PrivateServers

# In-flight requests (an offset commit, a produce) land within this long after a pause.
SETTLE_S = 0.15


async def kill_between_commits(
    process: ServiceProcess, servers: PrivateServers, rng: random.Random, probes: int = 10
) -> int | None:
    """Pause the service, and kill -9 it if its inbox holds a record past its group's
    committed offset (the batch's transaction committed, its offsets did not); otherwise
    resume it and look again a moment later. Returns the probe that caught it there, or
    None (it is killed anyway after the last probe, wherever it is)."""
    service = process.name
    conn = await connect(servers.postgres.dsn(service), service)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers.kafka.bootstrap)
    await admin.start()
    try:
        for probe in range(1, probes + 1):
            process.signal(signal.SIGSTOP)
            await asyncio.sleep(SETTLE_S)  # an offset commit already sent lands meanwhile
            rows = await conn.fetch(
                """SELECT topic, partition, max("offset") AS last FROM inbox
                   WHERE consumer = $1 GROUP BY topic, partition""",
                service,
            )
            committed = await admin.list_consumer_group_offsets(f"consilium-{service}")
            if any(
                row["last"] >= _committed(committed, row["topic"], row["partition"]) for row in rows
            ):
                process.kill()
                return probe
            process.signal(signal.SIGCONT)
            await asyncio.sleep(rng.uniform(0.01, 0.1))
        process.kill()
        return None
    finally:
        await conn.close()
        await admin.close()


def _committed(offsets: dict[TopicPartition, Any], topic: str, partition: int) -> int:
    found = offsets.get(TopicPartition(topic, partition))
    return found.offset if found is not None else 0


@dataclass
class Tail:
    """Follows a topic from where it ends now and keeps the event ids seen (read_committed:
    what consumers can see)."""

    bootstrap: str
    topic: Topic
    seen: set[uuid.UUID] = field(default_factory=set)
    consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await self.consumer.start()
        name = self.topic.qualified("")
        partitions = [TopicPartition(name, p) for p in range(self.topic.partitions)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)

    async def catch_up(self) -> None:
        """Read up to the topic's current end."""
        assert self.consumer is not None
        partitions = list(self.consumer.assignment())
        end = await self.consumer.end_offsets(partitions)
        while [tp for tp in partitions if await self.consumer.position(tp) < end[tp]]:
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                self.seen.update(_event_id(r.value) for r in records)

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()


def _event_id(value: bytes) -> uuid.UUID:
    document: Any = json.loads(value)
    return uuid.UUID(document["event_id"])


async def kill_between_publish_and_mark(
    process: ServiceProcess, servers: PrivateServers, tail: Tail, timeout: float = 8.0
) -> int:
    """Hold row locks on unsent outbox rows: the relay reads them (a plain SELECT does not
    wait for row locks), publishes them, then blocks on marking them sent. Once it is
    blocked there and the rows are in Kafka, kill -9 it. Returns how many of the held rows
    were in Kafka unmarked when it died (0: the window was not reached in time, and the
    process is killed anyway)."""
    service = process.name
    conn = await connect(servers.postgres.dsn(service), service)
    transaction = conn.transaction()
    await transaction.start()
    try:
        deadline = time.monotonic() + timeout
        held: set[uuid.UUID] = set()
        while not held and time.monotonic() < deadline:
            rows = await conn.fetch(
                """SELECT event_id FROM outbox
                   WHERE published_at IS NULL AND event_id IS NOT NULL AND topic = $1
                   ORDER BY id LIMIT 50 FOR UPDATE SKIP LOCKED""",
                tail.topic.qualified(""),
            )
            held = {row["event_id"] for row in rows}
            if not held:
                await asyncio.sleep(0.01)
        in_kafka = 0
        while held and time.monotonic() < deadline:
            # Activity is read once per transaction unless the snapshot is dropped.
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            blocked = await conn.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE wait_event_type = 'Lock' AND usename = current_user
                     AND query LIKE 'UPDATE outbox SET published_at%'"""
            )
            if blocked:
                await tail.catch_up()
                in_kafka = len(held & tail.seen)
                if in_kafka:
                    break
            await asyncio.sleep(0.02)
        process.kill()
        return in_kafka
    finally:
        await transaction.rollback()
        await conn.close()
