"""The process shell around a service: connections, consumer, relay, HTTP, shutdown.

A service describes itself with a `ServiceDefinition`; `ServiceRuntime` wires it to the
real infrastructure. Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import uvicorn
from faststream.kafka import KafkaBroker

from shared.db.migrate import migrate, pending
from shared.db.pool import create_pool
from shared.events import REGISTRY
from shared.http import ASGIApp, make_app
from shared.kafka.broker import make_broker
from shared.kafka.consumer import ConsumerConfig, EventConsumer, Route
from shared.kafka.publishers import BrokerPublisher, RowPublisher, TransactionalPublisher
from shared.kafka.relay import OutboxRelay
from shared.logging import configure_logging, get_logger
from shared.metrics import METRICS
from shared.settings import ServiceSettings, StackSettings
from shared.telemetry import configure_tracing
from shared.topics import Topic

log = get_logger(__name__)


@dataclass
class Dependencies:
    """Live connections handed to a service's composition root."""

    settings: ServiceSettings
    stack: StackSettings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    broker: KafkaBroker


BackgroundLoop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Wiring:
    """What a service's composition root hands the runtime: routes, background loops and
    HTTP routes served beside /healthz, /readyz and /metrics."""

    routes: Sequence[Route]
    background: Sequence[BackgroundLoop] = ()
    http: ASGIApp | None = None


@dataclass(frozen=True)
class ServiceDefinition:
    """What a service is: its schema's migrations, the topics it consumes and produces
    (the AsyncAPI document is generated from these), and how it wires itself."""

    name: str
    migrations: Path
    build: Callable[[Dependencies], Awaitable[Wiring]]
    consumes: tuple[Topic, ...] = ()
    produces: tuple[Topic, ...] = ()


@dataclass
class ServiceRuntime:
    definition: ServiceDefinition
    settings: ServiceSettings
    stack: StackSettings
    serve_http: bool = True
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    deps: Dependencies | None = None
    consumer: EventConsumer | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _http: uvicorn.Server | None = None

    @property
    def schema(self) -> str:
        return self.definition.name

    async def start(self) -> None:
        """Migrate, connect, subscribe and start the relay; returns once consuming."""
        applied = await migrate(self.settings.database_url, self.schema, self.definition.migrations)
        if applied:
            log.info("migrations_applied", versions=applied)
        pool = await create_pool(
            self.settings.database_url, self.schema, max_size=self.settings.db_pool_max
        )
        redis = aioredis.from_url(self.stack.redis_url)
        broker = make_broker(self.stack, client_id=f"consilium-{self.definition.name}")
        self.deps = Dependencies(self.settings, self.stack, pool, redis, broker)
        wiring = await self.definition.build(self.deps)
        routed = {route.topic.name for route in wiring.routes}
        declared = {topic.name for topic in self.definition.consumes}
        if declared and routed != declared:
            raise RuntimeError(
                f"{self.schema}: routes {sorted(routed)} != consumes {sorted(declared)}"
            )
        self.consumer = EventConsumer(
            ConsumerConfig(
                name=self.definition.name,
                group_id=self.settings.consumer_group,
                topic_prefix=self.stack.topic_prefix,
                max_attempts=self.settings.max_attempts,
                retry_backoff_s=self.settings.retry_backoff_s,
                max_event_bytes=self.settings.max_event_bytes,
                batch_max_records=self.settings.batch_max_records,
                batch_timeout_ms=self.settings.batch_timeout_ms,
                session_timeout_ms=self.settings.session_timeout_ms,
                heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            ),
            pool,
            REGISTRY,
            wiring.routes,
            stopping=self.stopping,
        )
        self.consumer.register(broker)
        await broker.start()
        publisher: RowPublisher = (
            TransactionalPublisher(self.stack, self.definition.name)
            if self.settings.exactly_once_relay
            else BrokerPublisher(broker)
        )
        relay = OutboxRelay(
            self.definition.name,
            self.schema,
            self.settings.database_url,
            pool,
            publisher,
            batch_size=self.settings.outbox_batch,
            poll_s=self.settings.outbox_poll_s,
            stopping=self.stopping,
        )
        self._tasks.append(asyncio.create_task(relay.run(), name=f"{self.schema}-relay"))
        self._tasks.append(asyncio.create_task(self._measure(), name="gauges"))
        for loop in wiring.background:
            self._tasks.append(asyncio.create_task(loop(self.stopping)))
        if self.serve_http:
            config = uvicorn.Config(
                make_app(self.definition.name, self.readiness, wiring.http),
                host=self.settings.http_host,
                port=self.settings.http_port,
                log_level="warning",
                lifespan="on",
            )
            self._http = _QuietServer(config)
            self._tasks.append(asyncio.create_task(self._http.serve(), name="http"))
        log.info("service_started", service=self.definition.name)

    async def stop(self) -> None:
        """Stop consuming (in-flight batches finish or are rewound), then the relay, then I/O."""
        self.stopping.set()
        if self.deps is None:
            return
        await self.deps.broker.stop()
        if self._http is not None:
            self._http.should_exit = True
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        await self.deps.redis.aclose()
        await self.deps.pool.close()
        log.info("service_stopped", service=self.definition.name)

    async def readiness(self) -> dict[str, str]:
        """Every dependency the service needs to make progress, with a reason when not ok."""
        deps = self.deps
        if deps is None:
            return {"service": "starting"}
        checks: dict[str, str] = {}
        checks["postgres"] = await _check(lambda: deps.pool.fetchval("SELECT 1"))
        checks["redis"] = await _check(_redis_ping(deps.redis))
        checks["kafka"] = await _check(_kafka_ping(deps.broker))
        try:
            todo = await pending(deps.pool, self.definition.migrations)
            checks["migrations"] = "ok" if not todo else f"pending: {', '.join(todo)}"
        except Exception as exc:
            checks["migrations"] = f"error: {exc!r}"
        checks["consumer"] = "ok" if self._assigned() else "no partitions assigned"
        return checks

    async def _measure(self, every_s: float = 5.0) -> None:
        """Gauges that need polling: consumer lag per assigned partition (end offset minus
        position; partitions lost in a rebalance are dropped) and the outbox backlog."""
        reported: set[tuple[str, str, str]] = set()
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=every_s)
            current: set[tuple[str, str, str]] = set()
            for consumer in self._consumers():
                with contextlib.suppress(Exception):  # a rebalance may pull partitions away
                    for partition in consumer.assignment():
                        end = consumer.highwater(partition)
                        if end is None:
                            continue
                        labels = (self.definition.name, partition.topic, str(partition.partition))
                        position = await consumer.position(partition)
                        METRICS.consumer_lag.labels(*labels).set(max(0, end - position))
                        current.add(labels)
            for labels in reported - current:
                with contextlib.suppress(KeyError):
                    METRICS.consumer_lag.remove(*labels)
            reported = current
            if self.deps is not None:
                with contextlib.suppress(Exception):  # the database may be down: keep trying
                    backlog = await self.deps.pool.fetchval(
                        "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                    )
                    METRICS.outbox_backlog.labels(self.definition.name).set(backlog)

    def _consumers(self) -> list[Any]:
        broker = self.deps.broker if self.deps else None
        if broker is None:
            return []
        found = (getattr(s, "consumer", None) for s in broker.subscribers)
        return [consumer for consumer in found if consumer is not None]

    def _assigned(self) -> bool:
        return any(consumer.assignment() for consumer in self._consumers())

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.start()
        await self.stopping.wait()
        log.info("service_stopping", service=self.definition.name)
        await self.stop()


class _QuietServer(uvicorn.Server):
    """uvicorn without its own SIGTERM/SIGINT handling: the runtime owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _redis_ping(client: aioredis.Redis) -> Callable[[], Awaitable[Any]]:
    async def ping() -> Any:
        return await client.ping()  # type: ignore[misc]  # redis types ping as sync-or-async

    return ping


def _kafka_ping(broker: KafkaBroker) -> Callable[[], Awaitable[Any]]:
    async def ping() -> Any:
        if not await broker.ping(timeout=2.0):
            raise ConnectionError("broker did not answer")
        return True

    return ping


async def _check(probe: Callable[[], Awaitable[Any]]) -> str:
    try:
        await asyncio.wait_for(probe(), timeout=3.0)
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:300]


def run_service(definition: ServiceDefinition, settings: ServiceSettings) -> None:
    """The `consilium serve` entry point for one service."""
    stack = StackSettings()
    configure_logging(definition.name, stack.log_level, stack.log_format)
    configure_tracing(definition.name, stack.otel_exporter, stack.otel_endpoint)
    asyncio.run(ServiceRuntime(definition, settings, stack).serve_forever())
