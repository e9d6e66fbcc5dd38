"""The outbox relay: publishes committed outbox rows in order, then marks them sent.

One relay per service schema is active at a time (a PostgreSQL advisory lock), so rows are
published in id order and per-key order holds. What a crash between publishing and
marking means depends on the publisher (shared/kafka/publishers.py): a republished batch
that inboxes absorb, or, for exactly-once topics, a batch recovered from its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from shared.db.pool import connect
from shared.kafka.errors import is_infrastructure_error
from shared.kafka.publishers import RowPublisher
from shared.logging import get_logger
from shared.metrics import METRICS

log = get_logger(__name__)
_RELAY_LOCK = 0x52454C59  # "RELY": one drain at a time per schema
_LEADER_LOCK = 0x4C454144  # "LEAD": one publishing relay per schema


@dataclass
class OutboxRelay:
    service: str
    schema: str
    dsn: str
    pool: asyncpg.Pool
    publisher: RowPublisher
    batch_size: int = 500
    poll_s: float = 0.5
    retention_s: float = 24 * 3600
    # A drain (or a publisher start or stop, or the leader-lock query) that has not
    # finished by then is abandoned and retried like an outage: rows not yet marked sent
    # are published again (inboxes and the exactly-once checkpoint absorb the copies), so
    # a wait that never returns cannot stall the outbox.
    step_timeout_s: float = 60.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _recovered: bool = False

    async def run(self) -> None:
        """Relay until stopped; a NOTIFY from the outbox trigger wakes it immediately.

        Of several instances of a service, the one holding the schema's leader lock (on its
        LISTEN connection) starts its publisher and relays; the others wait as standbys,
        so a transactional publisher is never fenced by a standby starting up.
        """
        listener: asyncpg.Connection | None = None
        leading = False
        failures = 0
        try:
            while not self.stopping.is_set():
                try:
                    if listener is None or listener.is_closed():
                        leading = await self._step_down(leading)
                        listener = await connect(self.dsn, self.schema)
                        await listener.add_listener(f"{self.schema}_outbox", self._on_notify)
                    if not leading:
                        if not await asyncio.wait_for(
                            listener.fetchval(
                                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                                _LEADER_LOCK,
                                self.schema,
                            ),
                            self.step_timeout_s,
                        ):
                            await self._sleep(self.poll_s * 4)
                            continue
                        await asyncio.wait_for(self.publisher.start(), self.step_timeout_s)
                        leading, self._recovered = True, False
                    self._wake.clear()
                    published = await asyncio.wait_for(self.drain_once(), self.step_timeout_s)
                    failures = 0
                    if not published:
                        await self._sleep(self.poll_s)
                except Exception as exc:
                    if not is_infrastructure_error(exc) and not _is_kafka_error(exc):
                        log.exception("outbox_relay_failed", service=self.service)
                    else:
                        log.warning(
                            "outbox_relay_retrying",
                            service=self.service,
                            error=repr(exc),
                            failures=failures + 1,
                        )
                    failures += 1
                    self._recovered = False  # the last batch may be in Kafka but not marked
                    leading = await self._step_down(leading)
                    if listener is not None:
                        with contextlib.suppress(Exception):
                            await listener.close()
                        listener = None
                    await self._sleep(min(5.0, 0.2 * 2**failures))
        finally:
            await self._step_down(leading)
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    async def _step_down(self, leading: bool) -> bool:
        if leading:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.publisher.stop(), self.step_timeout_s)
        return False

    async def drain_once(self) -> int:
        """Publish one batch of unsent rows; returns how many were published."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", _RELAY_LOCK, self.schema
            ):
                return 0
            if not self._recovered:
                await self.publisher.recover(conn)
                self._recovered = True
            rows = await conn.fetch(
                """SELECT id, topic, key, value, headers FROM outbox
                   WHERE published_at IS NULL ORDER BY id LIMIT $1""",
                self.batch_size,
            )
            if not rows:
                METRICS.outbox_backlog.labels(self.service).set(0)
                return 0
            await self.publisher.publish(rows)
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
            for row in rows:
                METRICS.events_out.labels(self.service, row["topic"]).inc()
            backlog = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            METRICS.outbox_backlog.labels(self.service).set(backlog)
            return len(rows)

    async def purge(self) -> int:
        """Delete rows published longer ago than the retention (Kafka keeps the events)."""
        result: str = await self.pool.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            self.retention_s,
        )
        return int(result.split()[-1])

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        waiters = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self.stopping.wait()),
        ]
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in waiters:
            task.cancel()


def _is_kafka_error(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaError

    return isinstance(exc, KafkaError)
