"""The outbox relay's loop, with its database and publisher stood in (no I/O)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import asyncpg
import pytest

from shared.kafka import relay as relay_module
from shared.kafka.relay import OutboxRelay


class Listener:
    """The LISTEN connection: always gets the leader lock."""

    def is_closed(self) -> bool:
        return False

    async def add_listener(self, *_: Any) -> None:
        return None

    async def fetchval(self, *_: Any) -> bool:
        return True

    async def close(self) -> None:
        return None


class CountingPublisher:
    def __init__(self) -> None:
        self.starts = 0
        self.stops = 0

    async def start(self) -> None:
        self.starts += 1

    async def recover(self, conn: Any) -> None:
        return None

    async def publish(self, rows: Sequence[asyncpg.Record]) -> None:
        return None

    async def stop(self) -> None:
        self.stops += 1


async def test_a_drain_that_never_returns_is_abandoned_and_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def connect(*_: Any) -> Listener:
        return Listener()

    monkeypatch.setattr(relay_module, "connect", connect)
    publisher = CountingPublisher()
    relay = OutboxRelay(
        "svc", "svc", "dsn", cast(asyncpg.Pool, None), publisher, poll_s=0.01, step_timeout_s=0.2
    )
    drains = 0

    async def drain_once() -> int:
        nonlocal drains
        drains += 1
        if drains == 1:
            await asyncio.Event().wait()  # e.g. a publish whose acknowledgement never comes
        relay.stopping.set()
        return 1

    monkeypatch.setattr(relay, "drain_once", drain_once)
    await asyncio.wait_for(relay.run(), timeout=10)
    assert drains == 2
    # The stuck attempt stepped down (publisher stopped), the retry started it again.
    assert (publisher.starts, publisher.stops) == (2, 2)
