"""How the outbox relay gets rows into Kafka: at least once, or exactly once.

`BrokerPublisher` uses the service's idempotent producer; a crash between publishing and
marking rows sent republishes them, and consumers' inboxes absorb the duplicates.

`TransactionalPublisher` is for topics read by consumers without an inbox (the hospital
topic). Each batch is one Kafka transaction that also writes the batch's outbox ids to
`relay.checkpoints.v1`. After a crash the relay reads its last checkpoint (read_committed)
and marks those ids sent before draining again, so a row is in Kafka exactly once and
readers using `isolation.level=read_committed` never see an aborted batch. The
transactional id fences a previous relay process that is still alive.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker
from opentelemetry import trace

from shared.db.pool import DbConnection
from shared.kafka.clients import client_options
from shared.settings import StackSettings
from shared.telemetry import headers_context, tracer
from shared.topics import RELAY_CHECKPOINTS


class RowPublisher(Protocol):
    async def start(self) -> None: ...

    async def recover(self, conn: DbConnection) -> None: ...

    async def publish(self, rows: Sequence[asyncpg.Record]) -> None: ...

    async def stop(self) -> None: ...


def publish_span(row: asyncpg.Record) -> AbstractContextManager[trace.Span]:
    """A producer span per relayed row, child of the span that wrote the row."""
    return tracer("consilium.relay").start_as_current_span(
        f"{row['topic']} publish",
        context=headers_context(row["headers"]),
        kind=trace.SpanKind.PRODUCER,
        attributes={"messaging.system": "kafka", "messaging.destination.name": row["topic"]},
    )


class BrokerPublisher:
    """At least once, through the service's faststream broker."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def start(self) -> None:
        return None

    async def recover(self, conn: DbConnection) -> None:
        return None

    async def publish(self, rows: Sequence[asyncpg.Record]) -> None:
        futures = []
        for row in rows:
            with publish_span(row):
                futures.append(
                    await self.broker.publish(
                        row["value"],
                        row["topic"],
                        key=row["key"],
                        headers=row["headers"],
                        no_confirm=True,
                    )
                )
        for future in futures:
            await future

    async def stop(self) -> None:
        return None


class TransactionalPublisher:
    """Exactly once: one Kafka transaction per batch, with its outbox ids checkpointed."""

    def __init__(self, stack: StackSettings, service: str) -> None:
        self.stack = stack
        self.service = service
        self.checkpoint_topic = RELAY_CHECKPOINTS.qualified(stack.topic_prefix)
        self._producer: AIOKafkaProducer | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the transactional publisher is not started")
        return self._producer

    async def start(self) -> None:
        """A new producer each time: starting it fences any older one with this id."""
        self._producer = AIOKafkaProducer(
            **client_options(self.stack),
            transactional_id=f"consilium-{self.stack.topic_prefix}{self.service}-relay",
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            client_id=f"consilium-{self.service}-relay",
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, rows: Sequence[asyncpg.Record]) -> None:
        checkpoint = json.dumps({"ids": [row["id"] for row in rows]}).encode()
        async with self.producer.transaction():
            for row in rows:
                with publish_span(row):
                    await self.producer.send(
                        row["topic"],
                        row["value"],
                        key=row["key"],
                        headers=[(k, str(v).encode()) for k, v in row["headers"].items()],
                    )
            await self.producer.send(self.checkpoint_topic, checkpoint, key=self.service.encode())

    async def recover(self, conn: DbConnection) -> None:
        """Mark the rows of the last committed transaction as sent (they are in Kafka)."""
        ids = await self.last_checkpoint()
        if ids:
            await conn.execute(
                """UPDATE outbox SET published_at = now()
                   WHERE id = ANY($1::bigint[]) AND published_at IS NULL""",
                ids,
            )

    async def _stable_end(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, wait_s: float = 30.0
    ) -> int:
        """The partition's end once no transaction is pending on it.

        A transaction that has just committed may not have its markers written yet: its
        records sit beyond the last stable offset. Reading before they land would miss the
        newest checkpoint and publish its rows again, so wait until the stable end reaches
        the high watermark (after fencing, no new transaction of ours can be open)."""
        probe = AIOKafkaConsumer(
            **client_options(self.stack), group_id=None, isolation_level="read_uncommitted"
        )
        await probe.start()
        try:
            deadline = asyncio.get_running_loop().time() + wait_s
            while True:
                stable = (await consumer.end_offsets([partition]))[partition]
                high = (await probe.end_offsets([partition]))[partition]
                if stable >= high or asyncio.get_running_loop().time() > deadline:
                    return int(stable)
                await asyncio.sleep(0.1)
        finally:
            await probe.stop()

    async def last_checkpoint(self) -> list[int]:
        consumer = AIOKafkaConsumer(
            **client_options(self.stack),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            partition = TopicPartition(self.checkpoint_topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            end = await self._stable_end(consumer, partition)
            last: Any = None
            while await consumer.position(partition) < end:
                batches = await consumer.getmany(partition, timeout_ms=1000)
                for record in batches.get(partition, []):
                    if record.key == self.service.encode():
                        last = record.value
            return [int(i) for i in json.loads(last)["ids"]] if last else []
        finally:
            await consumer.stop()
