"""Publishing events from operator tools and from the demo's simulated front-end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.envelope import Envelope
from shared.events import TASK_DEFINED, TaskDefined
from shared.kafka.clients import client_options
from shared.settings import StackSettings
from shared.topics import TASKS_DEFINED, Topic

_TASK_NAMESPACE = uuid.UUID("0b7f1c52-3d8e-4a43-8f3e-8f9a1d2c6b10")


@asynccontextmanager
async def producer(stack: StackSettings) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(
        **client_options(stack),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        client_id="consilium-cli",
    )
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


def topic_reader(stack: StackSettings, *topics: Topic) -> AIOKafkaConsumer:
    """Reads topics from their beginning: no group, nothing committed, committed data only."""
    return AIOKafkaConsumer(
        *(topic.qualified(stack.topic_prefix) for topic in topics),
        **client_options(stack),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )


async def send(
    client: AIOKafkaProducer, stack: StackSettings, topic: Topic, event: Envelope[Any]
) -> Any:
    """Queue one envelope; returns the delivery future."""
    return await client.send(
        topic.qualified(stack.topic_prefix),
        event.encode(),
        key=event.key.encode(),
        headers=[("content-type", b"application/json"), ("event_type", event.event_type.encode())],
    )


async def publish_task(
    stack: StackSettings, task: TaskDefined, producer_name: str = "consilium-cli"
) -> None:
    event = TASK_DEFINED.wrap(
        task,
        key=task.task_id,
        producer=producer_name,
        # The same task version always gets the same event id: publishing twice is harmless.
        event_id=uuid.uuid5(_TASK_NAMESPACE, f"{task.task_id}:{task.version}"),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
    )
    async with producer(stack) as client:
        await (await send(client, stack, TASKS_DEFINED, event))
