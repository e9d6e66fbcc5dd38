"""The consuming half of the delivery semantics.

A batch of records is handled in one PostgreSQL transaction. Each record runs in its own
savepoint: the inbox row `(consumer, event_id)` and the handler's effects and outbox rows
commit together or not at all, so a redelivered event has no second effect. A record whose
handler keeps failing is retried a bounded number of times with backoff, then recorded in
`dead_letters` and sent to the dead-letter topic (through the outbox), and the partition
keeps flowing. Offsets are committed only after the transaction committed; if the
database is unreachable, or the service is shutting down, the batch is rewound instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from opentelemetry import context as otel_context
from opentelemetry import trace

from shared.envelope import DecodeError, Envelope, EventRegistry, EventSpec
from shared.kafka.errors import is_infrastructure_error
from shared.kafka.outbox import Emitter, Outbox
from shared.kafka.records import Delivery
from shared.logging import get_logger
from shared.metrics import METRICS
from shared.telemetry import extract_context, tracer
from shared.topics import DEAD_LETTERS, Topic

log = get_logger(__name__)


@dataclass
class BatchScope:
    """What the handlers of one fast-path batch share (see `Route.prefetch`).

    `values` holds what a prefetch hook loaded for the whole batch (and what handlers keep
    up to date as they write); `finish_with` queues writes that handlers deferred, run in
    registration order after the last handler and before the outbox flush, inside the
    batch's savepoint. A record handled on the per-record path gets no scope."""

    values: dict[str, Any] = field(default_factory=dict)
    _finishers: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)

    def finish_with(self, name: str, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` once at the end of the batch (a second call with `name` keeps the
        first action)."""
        self._finishers.setdefault(name, action)

    async def finish(self) -> None:
        for action in self._finishers.values():
            await action()


@dataclass
class HandlerContext:
    """What a handler may touch: the transaction's connection and the outbox emitter, and
    on the batch fast path the batch's shared scope."""

    conn: asyncpg.Connection
    emitter: Emitter
    delivery: Delivery
    committed: list[Callable[[], None]] = field(default_factory=list)
    batch: BatchScope | None = None

    @property
    def now(self) -> datetime:
        return self.emitter.now

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once the batch's transaction has committed, never for an attempt
        that was rolled back (metrics observed here count each event once)."""
        self.committed.append(action)


Handler = Callable[[HandlerContext, Envelope[Any]], Awaitable[None]]
# Called once per fast-path batch, before its handlers, with every envelope of the batch.
Prefetch = Callable[[asyncpg.Connection, BatchScope, Sequence[Envelope[Any]]], Awaitable[None]]
InvalidHandler = Callable[[HandlerContext, DecodeError], Awaitable[None]]
ReplayHandler = Callable[[HandlerContext, Envelope[Any], "FirstSeen"], Awaitable[None]]


@dataclass(frozen=True)
class FirstSeen:
    """Where an event id was first consumed."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Route:
    """Events of type `event` on `topic` go to `handler`; anything else on the topic that
    cannot be decoded as that event goes to `on_invalid`, or to dead letters.

    Several routes may share a topic (one per event type it carries); the first one with
    `on_invalid` answers what none of them can decode. `on_replay` is told about a copy of
    an already handled event id that arrives at another offset (a redelivery of the same
    offset stays silent); either way the copy has no second effect.

    `prefetch` lets the handler load what the whole batch needs in a few set-based queries
    (and defer its writes to the batch's end) on the fast path; each distinct hook of the
    batch's routes runs once. Handlers must give the same results with and without it.
    """

    topic: Topic
    event: EventSpec[Any]
    handler: Handler
    on_invalid: InvalidHandler | None = None
    on_replay: ReplayHandler | None = None
    prefetch: Prefetch | None = None


class _SlowPath(Exception):
    """The batch cannot take the fast path (see EventConsumer._process_fast)."""


class PoisonMessage(Exception):
    """A record that can never be processed as it is (it goes straight to dead letters)."""


@dataclass
class ConsumerConfig:
    name: str
    group_id: str
    topic_prefix: str = ""
    max_attempts: int = 3
    retry_backoff_s: float = 0.2
    max_event_bytes: int = 256 * 1024
    batch_max_records: int = 500
    batch_timeout_ms: int = 50
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"


@dataclass
class EventConsumer:
    """Consumes the routes' topics as one consumer-group member with manual commits."""

    config: ConsumerConfig
    pool: asyncpg.Pool
    registry: EventRegistry
    routes: Sequence[Route]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _by_topic: dict[str, dict[str, Route]] = field(init=False)

    def __post_init__(self) -> None:
        self._by_topic = {}
        for route in self.routes:
            by_type = self._by_topic.setdefault(route.topic.qualified(self.config.topic_prefix), {})
            if route.event.event_type in by_type:
                raise ValueError(f"two routes for {route.event.event_type} on {route.topic.name}")
            by_type[route.event.event_type] = route

    def register(self, broker: KafkaBroker) -> None:
        """Attach a batch subscriber with manual acknowledgement to `broker`."""
        subscriber = broker.subscriber(
            *self._by_topic,
            batch=True,
            group_id=self.config.group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset=self.config.auto_offset_reset,
            max_records=self.config.batch_max_records,
            batch_timeout_ms=self.config.batch_timeout_ms,
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            max_partition_fetch_bytes=max(1024 * 1024, 2 * self.config.max_event_bytes),
            title=f"{self.config.name}-consumer",
            parser=_tolerant_headers,
            decoder=_undecoded,
        )
        subscriber(self.on_batch)

    async def on_batch(self, msg: KafkaMessage) -> None:
        """Entry point for faststream: process, then commit offsets or rewind."""
        raw = msg.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        deliveries = [Delivery.from_record(r) for r in records]
        if await self.process(deliveries):
            await msg.ack()
        else:
            await msg.nack()

    async def process(self, deliveries: Sequence[Delivery]) -> bool:
        """Handle a batch in one transaction; True when it committed and may be acked."""
        attempt = 0
        while not self.stopping.is_set():
            try:
                started = time.perf_counter()
                committed: list[Callable[[], None]] = []
                async with self.pool.acquire() as conn, conn.transaction():
                    failed: dict[int, BaseException] = {}
                    outcomes = await self._process_fast(conn, deliveries, failed, committed)  # type: ignore[arg-type]  # a pool proxy is a Connection at run time
                    if outcomes is None:
                        outcomes = [
                            await self._process_one(conn, d, committed, failed.get(i))  # type: ignore[arg-type]  # a pool proxy is a Connection at run time
                            for i, d in enumerate(deliveries)
                        ]
                _run_after_commit(committed)
                for delivery, outcome in zip(deliveries, outcomes, strict=True):
                    METRICS.events_in.labels(self.config.name, delivery.topic, outcome).inc()
                METRICS.batch_seconds.labels(self.config.name).observe(
                    time.perf_counter() - started
                )
                return True
            except Exception as exc:
                if not is_infrastructure_error(exc):
                    raise
                attempt += 1
                delay = min(5.0, self.config.retry_backoff_s * 2 ** min(attempt, 6))
                log.warning(
                    "batch_rolled_back_infrastructure",
                    consumer=self.config.name,
                    error=repr(exc),
                    retry_in_s=delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
        return False

    # ---------------------------------------------------------------- batch fast path
    # The common batch (every record decodes, none was consumed before, every handler
    # succeeds at once) runs in one savepoint with one inbox statement and one outbox flush
    # for the whole batch, instead of a savepoint, an inbox insert and a flush per record.
    # Anything else rolls that savepoint back and the batch takes the per-record path
    # below, so outcomes, retries, replays and dead letters are exactly as before.

    async def _process_fast(
        self,
        conn: asyncpg.Connection,
        deliveries: Sequence[Delivery],
        failed: dict[int, BaseException],
        committed: list[Callable[[], None]],
    ) -> list[str] | None:
        """Outcomes of the batch handled on the fast path, or None to take the slow one.

        A handler that raised here counts as that record's first attempt (`failed`, by
        index), so the slow path calls it at most `max_attempts` times in all."""
        if len(deliveries) < 2:
            return None
        decoded: list[tuple[Delivery, Route, Envelope[Any]]] = []
        for delivery in deliveries:
            routes = self._by_topic[delivery.topic]
            if len(delivery.value) > self.config.max_event_bytes:
                return None
            try:
                envelope = self.registry.decode(delivery.value, expect=set(routes))
            except DecodeError:
                return None
            decoded.append((delivery, routes[envelope.event_type], envelope))
        if len({envelope.event_id for _, _, envelope in decoded}) != len(decoded):
            return None
        outbox = Outbox(conn, self.config.topic_prefix)
        pending: list[Callable[[], None]] = []
        try:
            async with conn.transaction():
                claimed = await conn.fetch(
                    """INSERT INTO inbox (consumer, event_id, topic, partition, "offset", outcome)
                       SELECT $1, e, t, p, o, 'processed'
                       FROM unnest($2::uuid[], $3::text[], $4::integer[], $5::bigint[])
                            AS claimed(e, t, p, o)
                       ON CONFLICT (consumer, event_id) DO NOTHING RETURNING 1""",
                    self.config.name,
                    [envelope.event_id for _, _, envelope in decoded],
                    [delivery.topic for delivery, _, _ in decoded],
                    [delivery.partition for delivery, _, _ in decoded],
                    [delivery.offset for delivery, _, _ in decoded],
                )
                if len(claimed) != len(decoded):
                    raise _SlowPath("a record of the batch was consumed before")
                scope = BatchScope()
                hooks: list[Prefetch] = []
                for _, route, _ in decoded:
                    if route.prefetch is not None and route.prefetch not in hooks:
                        hooks.append(route.prefetch)
                for hook in hooks:
                    await hook(conn, scope, [envelope for _, _, envelope in decoded])
                for index, (delivery, route, envelope) in enumerate(decoded):
                    try:
                        pending += await self._handle_fast(
                            conn, outbox, scope, delivery, route, envelope
                        )
                    except Exception as exc:
                        if not is_infrastructure_error(exc) and not isinstance(exc, PoisonMessage):
                            failed[index] = exc
                        raise
                await scope.finish()
                await outbox.flush()
        except Exception as exc:
            outbox.discard()
            if is_infrastructure_error(exc):
                raise
            return None
        committed += pending
        return ["processed"] * len(decoded)

    async def _handle_fast(
        self,
        conn: asyncpg.Connection,
        outbox: Outbox,
        scope: BatchScope,
        delivery: Delivery,
        route: Route,
        envelope: Envelope[Any],
    ) -> list[Callable[[], None]]:
        """Handle one record; returns what it asked to run after commit."""
        with self._span(delivery) as span:
            _bind_event(envelope)
            ctx = HandlerContext(
                conn,
                Emitter(self.config.name, outbox, self.clock(), envelope),
                delivery,
                batch=scope,
            )
            with self._timed(envelope):
                await route.handler(ctx, envelope)
            span.set_attribute("consilium.outcome", "processed")
            return ctx.committed

    # ---------------------------------------------------------------- per-record path

    async def _process_one(
        self,
        conn: asyncpg.Connection,
        delivery: Delivery,
        committed: list[Callable[[], None]],
        failed: BaseException | None = None,
    ) -> str:
        routes = self._by_topic[delivery.topic]
        with self._span(delivery) as span:
            outcome = await self._handle_with_retries(conn, routes, delivery, committed, failed)
            span.set_attribute("consilium.outcome", outcome)
            return outcome

    @contextlib.contextmanager
    def _timed(self, envelope: Envelope[Any]) -> Iterator[None]:
        """Observe one handler call's duration, failed calls included."""
        started = time.perf_counter()
        try:
            yield
        finally:
            METRICS.handler_seconds.labels(self.config.name, envelope.event_type).observe(
                time.perf_counter() - started
            )

    @contextlib.contextmanager
    def _span(self, delivery: Delivery) -> Iterator[trace.Span]:
        """The consumer span of one record, child of the span that published it; log lines
        written meanwhile carry the record's position (and its ids, once decoded)."""
        token = otel_context.attach(extract_context(delivery.headers))
        logged = structlog.contextvars.bound_contextvars(
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            event_id=None,
            correlation_id=None,
        )
        try:
            with (
                logged,
                tracer("consilium.consumer").start_as_current_span(
                    f"{delivery.topic} process",
                    kind=trace.SpanKind.CONSUMER,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.destination.name": delivery.topic,
                        "messaging.kafka.partition": delivery.partition,
                        "messaging.kafka.offset": delivery.offset,
                        "messaging.consumer.group.name": self.config.group_id,
                    },
                ) as span,
            ):
                yield span
        finally:
            otel_context.detach(token)

    async def _handle_with_retries(
        self,
        conn: asyncpg.Connection,
        routes: dict[str, Route],
        delivery: Delivery,
        committed: list[Callable[[], None]],
        failed: BaseException | None = None,
    ) -> str:
        envelope: Envelope[Any] | None = None
        decode_error: DecodeError | None = None
        if len(delivery.value) > self.config.max_event_bytes:
            decode_error = DecodeError(
                "oversized",
                f"{len(delivery.value)} bytes exceeds the limit of {self.config.max_event_bytes}",
            )
        else:
            try:
                envelope = self.registry.decode(delivery.value, expect=set(routes))
            except DecodeError as exc:
                decode_error = exc
        route = (
            routes[envelope.event_type]
            if envelope is not None
            else next((r for r in routes.values() if r.on_invalid), next(iter(routes.values())))
        )
        # An unreadable record has no trustworthy event id: its position identifies it.
        event_id = envelope.event_id if envelope else delivery.position_id
        if envelope is not None:
            _bind_event(envelope)

        # A first attempt that already failed on the batch fast path counts.
        last_error: BaseException | None = failed
        attempts = 1 if failed is not None else 0
        if failed is not None:
            self._log_failure(delivery, 1, failed)
            if self.config.max_attempts > 1:
                await asyncio.sleep(self.config.retry_backoff_s)
        first_attempt = attempts + 1
        for attempts in range(first_attempt, self.config.max_attempts + 1):
            outbox = Outbox(conn, self.config.topic_prefix)
            ctx = HandlerContext(
                conn, Emitter(self.config.name, outbox, self.clock(), envelope), delivery
            )
            try:
                async with conn.transaction():
                    outcome = await self._attempt(
                        ctx, route, event_id, delivery, envelope, decode_error
                    )
                    await outbox.flush()
                committed += ctx.committed
                return outcome
            except Exception as exc:
                outbox.discard()
                if is_infrastructure_error(exc):
                    raise
                last_error = exc
                if isinstance(exc, PoisonMessage):
                    break
                self._log_failure(delivery, attempts, exc)
                if attempts < self.config.max_attempts:
                    await asyncio.sleep(self.config.retry_backoff_s * 2 ** (attempts - 1))
        assert last_error is not None
        await self._dead_letter(conn, delivery, event_id, last_error, attempts)
        return "dead_lettered"

    def _log_failure(self, delivery: Delivery, attempt: int, error: BaseException) -> None:
        log.warning(
            "handler_failed",
            consumer=self.config.name,
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            attempt=attempt,
            error=repr(error),
        )

    async def _attempt(
        self,
        ctx: HandlerContext,
        route: Route,
        event_id: Any,
        delivery: Delivery,
        envelope: Envelope[Any] | None,
        decode_error: DecodeError | None,
    ) -> str:
        """One attempt at a record inside its savepoint; returns its outcome."""
        if not await self._claim(ctx.conn, event_id, delivery, "processed"):
            if envelope is None or route.on_replay is None:
                return "duplicate"
            first = await self._replayed_from(ctx.conn, event_id, delivery)
            if first is None:
                return "duplicate"
            await route.on_replay(ctx, envelope, first)
            return "replayed"
        if envelope is not None:
            with self._timed(envelope):
                await route.handler(ctx, envelope)
            return "processed"
        if route.on_invalid is not None and decode_error is not None:
            await route.on_invalid(ctx, decode_error)
            return "rejected"
        raise PoisonMessage(f"{decode_error.code}: {decode_error.message}")  # type: ignore[union-attr]

    async def _replayed_from(
        self, conn: asyncpg.Connection, event_id: Any, delivery: Delivery
    ) -> FirstSeen | None:
        """Where a duplicate event id was first seen, if this copy is another record (not a
        redelivery of the same offset) that has not been answered yet."""
        row = await conn.fetchrow(
            """SELECT topic, partition, "offset" FROM inbox
               WHERE consumer = $1 AND event_id = $2""",
            self.config.name,
            event_id,
        )
        if row is None:
            return None
        first = FirstSeen(row["topic"], row["partition"], row["offset"])
        if (first.topic, first.partition, first.offset) == (
            delivery.topic,
            delivery.partition,
            delivery.offset,
        ):
            return None
        # The copy's own position is claimed, so its redelivery is answered only once.
        if not await self._claim(conn, delivery.position_id, delivery, "processed"):
            return None
        return first

    async def _claim(
        self, conn: asyncpg.Connection, event_id: Any, delivery: Delivery, outcome: str
    ) -> bool:
        """Insert the inbox row; False when this consumer already had this event."""
        inserted = await conn.fetchval(
            """INSERT INTO inbox (consumer, event_id, topic, partition, "offset", outcome)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (consumer, event_id) DO NOTHING RETURNING true""",
            self.config.name,
            event_id,
            delivery.topic,
            delivery.partition,
            delivery.offset,
            outcome,
        )
        return bool(inserted)

    async def _dead_letter(
        self,
        conn: asyncpg.Connection,
        delivery: Delivery,
        event_id: Any,
        error: BaseException,
        attempts: int,
    ) -> None:
        original_headers = delivery.header_map()
        message = str(error)[:2000]
        async with conn.transaction():
            await self._claim(conn, event_id, delivery, "dead_lettered")
            await conn.execute(
                """INSERT INTO dead_letters (consumer, topic, partition, "offset", event_id, key,
                       value, headers, error_type, error, attempts)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                   ON CONFLICT (consumer, topic, partition, "offset") DO NOTHING""",
                self.config.name,
                delivery.topic,
                delivery.partition,
                delivery.offset,
                event_id,
                delivery.key,
                delivery.value,
                original_headers,
                type(error).__name__,
                message,
                attempts,
            )
            outbox = Outbox(conn, self.config.topic_prefix)
            outbox.add_raw(
                DEAD_LETTERS,
                delivery.key,
                delivery.value,
                {
                    **original_headers,
                    "dlq.consumer": self.config.name,
                    "dlq.source.topic": delivery.topic,
                    "dlq.source.partition": str(delivery.partition),
                    "dlq.source.offset": str(delivery.offset),
                    "dlq.error.type": type(error).__name__,
                    "dlq.error.message": message,
                    "dlq.attempts": str(attempts),
                },
            )
            await outbox.flush()
        METRICS.dead_lettered.labels(self.config.name, delivery.topic).inc()
        log.error(
            "dead_lettered",
            consumer=self.config.name,
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            error_type=type(error).__name__,
            error=message,
            attempts=attempts,
        )


async def _tolerant_headers(records: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """faststream decodes every header value as UTF-8 and fails the whole batch on one that
    is not, so one hostile record would stall its partition. Parse copies whose headers are
    made decodable, and hand the handlers the original records (Delivery keeps the bytes)."""
    batch = records if isinstance(records, tuple) else (records,)
    safe = tuple(
        dataclasses.replace(
            r, headers=[(k, v.decode("utf-8", "replace").encode()) for k, v in r.headers]
        )
        if any(not _utf8(v) for _, v in r.headers)
        else r
        for r in batch
    )
    message = await original(safe if isinstance(records, tuple) else safe[0])
    message.raw_message = records
    return message


async def _undecoded(message: Any) -> Any:
    """on_batch reads the raw records; faststream's own decoder would re-parse their headers."""
    return message.body


def _utf8(value: bytes | None) -> bool:
    try:
        (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _bind_event(envelope: Envelope[Any]) -> None:
    """Name the event being handled in every log line until its record is done."""
    structlog.contextvars.bind_contextvars(
        event_id=str(envelope.event_id), correlation_id=str(envelope.correlation_id)
    )


def _run_after_commit(actions: Sequence[Callable[[], None]]) -> None:
    """Run committed handlers' follow-ups; one failing must not fail the acked batch."""
    for action in actions:
        try:
            action()
        except Exception:
            log.exception("after_commit_failed")
