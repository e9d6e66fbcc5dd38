"""Transactional outbox: events are rows written with the state change that caused them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from shared.envelope import Envelope, EventSpec
from shared.telemetry import inject_headers
from shared.topics import Topic


@dataclass
class Outbox:
    """Collects outgoing events of one transaction and writes them before it commits."""

    conn: asyncpg.Connection
    topic_prefix: str
    _rows: list[tuple[str, bytes | None, bytes, dict[str, str], uuid.UUID | None]] = field(
        default_factory=list
    )

    def add(self, topic: Topic, envelope: Envelope[Any]) -> None:
        headers = {
            "content-type": "application/json",
            "event_type": envelope.event_type,
            "schema_version": str(envelope.schema_version),
            **inject_headers(),
        }
        self._rows.append(
            (
                topic.qualified(self.topic_prefix),
                envelope.key.encode(),
                envelope.encode(),
                headers,
                envelope.event_id,
            )
        )

    def add_raw(
        self, topic: Topic, key: bytes | None, value: bytes, headers: dict[str, str]
    ) -> None:
        """An outgoing record whose bytes are not an envelope (dead letters)."""
        self._rows.append((topic.qualified(self.topic_prefix), key, value, headers, None))

    async def flush(self) -> int:
        """Write collected rows inside the caller's transaction."""
        if not self._rows:
            return 0
        await self.conn.executemany(
            "INSERT INTO outbox (topic, key, value, headers, event_id) VALUES ($1, $2, $3, $4, $5)",
            self._rows,
        )
        written = len(self._rows)
        self._rows.clear()
        return written

    def discard(self) -> None:
        self._rows.clear()

    @property
    def pending(self) -> int:
        return len(self._rows)


@dataclass
class Emitter:
    """Builds envelopes for a service and queues them on an outbox."""

    producer: str
    outbox: Outbox
    now: datetime
    cause: Envelope[Any] | None = None

    def emit(
        self, spec: EventSpec[Any], topic: Topic, payload: BaseModel, *, key: str
    ) -> Envelope[Any]:
        """Queue one event caused by the event being handled (if any)."""
        envelope = spec.wrap(
            payload,
            key=key,
            producer=self.producer,
            event_id=uuid.uuid4(),
            occurred_at=self.now,
            correlation_id=self.cause.correlation_id if self.cause else uuid.uuid4(),
            causation_id=self.cause.event_id if self.cause else None,
        )
        self.outbox.add(topic, envelope)
        return envelope
