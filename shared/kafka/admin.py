"""Topic administration with aiokafka's admin client (tests and `consilium topics`)."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.kafka.clients import client_options
from shared.settings import StackSettings
from shared.topics import ALL_TOPICS, Topic


async def ensure_topics(stack: StackSettings, topics: tuple[Topic, ...] = ALL_TOPICS) -> list[str]:
    """Create missing topics (single-node replication); returns the names created."""
    admin = AIOKafkaAdminClient(**client_options(stack), client_id="consilium-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        prefix = stack.topic_prefix
        wanted = [t for t in topics if t.qualified(prefix) not in existing]
        if not wanted:
            return []
        new = [
            NewTopic(t.qualified(prefix), t.partitions, 1, topic_configs=dict(t.config))
            for t in wanted
        ]
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new)
        return [t.qualified(prefix) for t in wanted]
    finally:
        await admin.close()


async def delete_topics(stack: StackSettings) -> None:
    """Delete every topic with `prefix` (test clean-up)."""
    prefix = stack.topic_prefix
    if not prefix:
        raise ValueError("refusing to delete unprefixed topics")
    admin = AIOKafkaAdminClient(**client_options(stack), client_id="consilium-admin")
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()
