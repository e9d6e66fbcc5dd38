"""Fixtures that talk to the real Kafka, PostgreSQL and Redis of deploy/local.

Nothing here skips: when a server is missing the session fails with the command that
starts it. Every session uses the `consilium_test` database and its own topic prefix and
consumer groups, so runs never see each other's events.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.db.migrate import migrate
from shared.db.pool import connect
from shared.envelope import Envelope
from shared.kafka.admin import delete_topics, ensure_topics
from shared.runtime import ServiceRuntime
from shared.settings import SERVICES, ServiceSettings, StackSettings, service_settings
from shared.telemetry import inject_headers, install
from shared.topics import Topic

pytestmark = pytest.mark.integration
TEST_DATABASE = "consilium_test"


def dsn_for(service: str) -> str:
    return (
        f"postgresql://consilium_{service}:consilium_{service}@127.0.0.1:5432/{TEST_DATABASE}"
        "?sslmode=disable"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


SPANS = InMemorySpanExporter()


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[StackSettings]:
    """The real stack with a fresh topic prefix; fails loudly when a server is down.

    Every span of the session (all services run in this process) is kept in SPANS."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    install(provider)
    settings = StackSettings(topic_prefix=f"t{uuid.uuid4().hex[:8]}.")
    await _require_servers(settings)
    await ensure_topics(settings)
    await _migrate_test_database()
    await _drop_orphaned_outbox_rows(settings)
    await _register_test_client()
    yield settings
    await delete_topics(settings)
    await _drop_orphaned_outbox_rows(settings, prefix=settings.topic_prefix)


async def _require_servers(settings: StackSettings) -> None:
    hint = "start the stack with `deploy/local/stack.sh up` (make test does it)"
    try:
        conn = await asyncpg.connect(dsn_for("submission"), timeout=5)
        await conn.close()
    except Exception as exc:
        pytest.fail(f"PostgreSQL ({TEST_DATABASE}) is not reachable: {exc!r}; {hint}")
    try:
        client = aioredis.from_url(settings.redis_url)
        await client.ping()  # type: ignore[misc]  # redis types ping as sync-or-async
        await client.aclose()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable: {exc!r}; {hint}")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(producer.start(), timeout=15)
    except Exception as exc:
        pytest.fail(f"Kafka is not reachable at {settings.kafka_bootstrap}: {exc!r}; {hint}")
    finally:
        await producer.stop()


async def _migrate_test_database() -> None:
    """Apply migrations. Tables are not emptied: every test makes its own ids, so sessions
    running side by side (or one after another) never see each other's rows."""
    from services.cli.registry import definition

    for name in SERVICES:
        spec = definition(name)
        await migrate(dsn_for(name), name, spec.migrations)


async def _register_test_client() -> None:
    """The test front-end (tests/factories.py signs with its key) may speak for anyone."""
    from services.submission.clients import register_client
    from services.submission.settings import SubmissionConfig
    from shared.db.pool import connect
    from tests import factories

    conn = await connect(dsn_for("submission"), "submission")
    try:
        await register_client(
            conn,
            SubmissionConfig().master,
            factories.CLIENT_ID,
            all_annotators=True,
            key_id=factories.KEY_ID,
            salt=factories.KEY_SALT,
        )
    finally:
        await conn.close()


async def _drop_orphaned_outbox_rows(settings: StackSettings, prefix: str | None = None) -> None:
    """Unpublished test rows whose topics are gone (an earlier session's prefix, or this
    one's at its end) would hold every relay of the test database back: remove them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = list(await admin.list_topics())
    finally:
        await admin.close()
    for name in SERVICES:
        conn = await connect(dsn_for(name), name)
        try:
            if prefix is None:
                await conn.execute(
                    """DELETE FROM outbox WHERE published_at IS NULL
                       AND NOT (topic = ANY($1::text[]))""",
                    existing,
                )
            else:
                await conn.execute(
                    "DELETE FROM outbox WHERE published_at IS NULL AND starts_with(topic, $1)",
                    prefix,
                )
        finally:
            await conn.close()


def settings_for(service: str, **overrides: Any) -> ServiceSettings:
    return service_settings(
        service,
        database_url=dsn_for(service),
        http_port=free_port(),
        consumer_group=f"test-{service}-{uuid.uuid4().hex[:6]}",
        retry_backoff_s=0.05,
        outbox_poll_s=0.1,
        **overrides,
    )


@pytest.fixture(scope="session")
async def services(stack: StackSettings) -> AsyncIterator[dict[str, ServiceRuntime]]:
    """All four services running in this process against the real stack."""
    from services.cli.registry import definition

    # A label that overtakes its item or assignment waits this long before it is answered
    # (unknown_item / no_assignment); short, so tests of those codes do not wait a minute.
    os.environ.setdefault("CONSILIUM_SUBMISSION_ASSIGNMENT_WAIT_S", "4")
    os.environ.setdefault("CONSILIUM_SUBMISSION_SWEEP_EVERY_S", "0.5")
    # Export also publishes FHIR per consensus version, so that path runs on every label.
    opt_in = {"export": {"publish_fhir": True}}
    runtimes = {
        name: ServiceRuntime(definition(name), settings_for(name, **opt_in.get(name, {})), stack)
        for name in SERVICES
    }
    for runtime in runtimes.values():
        await runtime.start()
    await wait_until(lambda: all(r._assigned() for r in runtimes.values()), timeout=60)
    yield runtimes
    for runtime in runtimes.values():
        await runtime.stop()


async def fetch_value(service: str, sql: str, *args: Any) -> Any:
    """One value from a service's test database, on a connection of its own."""
    conn = await connect(dsn_for(service), service)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def wait_until(
    condition: Callable[[], Any], timeout: float = 30.0, every: float = 0.1
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


async def wait_for_reliability_fold(conn: asyncpg.Connection, item_id: str, deltas: int) -> None:
    """Until `deltas` reliability deltas of the item are in a snapshot the service uses."""
    await wait_until(
        lambda: conn.fetchval(
            "SELECT count(*) >= $2 FROM reliability_deltas WHERE item_id = $1", item_id, deltas
        )
    )
    await wait_until(
        lambda: conn.fetchval(
            # A fold's horizon is past every transaction it read (reliability_store.py).
            """SELECT count(*) > 0 FROM reliability_snapshots WHERE horizon >
                   (SELECT xid FROM reliability_deltas WHERE item_id = $1
                     ORDER BY xid DESC LIMIT 1)""",
            item_id,
        )
    )


@dataclass
class Kafka:
    stack: StackSettings
    producer: AIOKafkaProducer

    async def publish(self, topic: Topic, event: Envelope[Any], *, signed: bool = True) -> None:
        """Publish an event; ingress label events are signed by the test front-end."""
        value = event.encode()
        headers = None
        if signed and topic.name == "labels.submitted.v1":
            from tests import factories

            headers = factories.sign(value)
        await self.publish_raw(topic, value, event.key.encode(), headers)

    async def publish_raw(
        self,
        topic: Topic,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Publish bytes; the current trace context (if any) travels in the headers."""
        headers = [*(headers or []), *((k, v.encode()) for k, v in inject_headers().items())]
        await self.producer.send_and_wait(
            topic.qualified(self.stack.topic_prefix), value, key=key, headers=headers or []
        )

    @asynccontextmanager
    async def reader(self, *topics: Topic) -> AsyncIterator[TopicReader]:
        """Reads the topics from their beginning (no group, nothing committed)."""
        consumer = AIOKafkaConsumer(
            *[t.qualified(self.stack.topic_prefix) for t in topics],
            bootstrap_servers=self.stack.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            yield TopicReader(consumer)
        finally:
            await consumer.stop()


@dataclass
class TopicReader:
    consumer: AIOKafkaConsumer

    async def until(
        self, predicate: Callable[[Any], bool], *, count: int = 1, timeout: float = 30.0
    ) -> list[Any]:
        """Records matching `predicate` until `count` are seen (fails after `timeout`)."""
        found: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"saw {len(found)} of {count} expected records in {timeout}s")
            batches = await self.consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batches.values():
                found.extend(r for r in records if predicate(r))
        return found

    async def drain(self, seconds: float = 1.0) -> list[Any]:
        """Everything that arrives within `seconds`."""
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            batches = await self.consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
        return records


@pytest.fixture(scope="session")
async def kafka(stack: StackSettings) -> AsyncIterator[Kafka]:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    yield Kafka(stack, producer)
    await producer.stop()
