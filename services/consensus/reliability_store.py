"""Global annotator reliability in PostgreSQL: an append-only delta log and snapshots.

Every decision appends its item's reliability delta in the same transaction as the item's
state. Each consensus instance folds the committed deltas into its own ledger (additions
commute, so every instance converges to the same counts) and publishes a snapshot, named
by its content digest, that its next decisions use and record. A delta is folded once:
each fold reads the transactions finished between the previous horizon and the current
one (`pg_snapshot_xmin`), so none is missed however transactions interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import asyncpg

from services.consensus.engine.reliability import (
    ReliabilityDelta,
    ReliabilityLedger,
    ReliabilitySnapshot,
)
from shared.kafka.errors import is_infrastructure_error
from shared.logging import get_logger

log = get_logger(__name__)


INSERT_DELTA = "INSERT INTO reliability_deltas (item_id, delta) VALUES ($1, $2)"


@dataclass
class PgReliability:
    refresh_s: float = 1.0
    ledger: ReliabilityLedger = field(default_factory=ReliabilityLedger)
    current: ReliabilitySnapshot = field(default_factory=ReliabilitySnapshot.empty)
    horizon: int = 0

    async def record(self, conn: asyncpg.Connection, item_id: str, delta: ReliabilityDelta) -> None:
        """Append one decision's delta (inside the handler's transaction)."""
        if not delta.is_empty():
            await conn.execute(
                INSERT_DELTA,
                item_id,
                delta.to_dict(),
            )

    async def load(self, pool: asyncpg.Pool) -> None:
        """Start from the newest stored snapshot, then fold what came after it."""
        row = await pool.fetchrow(
            """SELECT snapshot, horizon::text AS horizon FROM reliability_snapshots
               ORDER BY created_at DESC, version LIMIT 1"""
        )
        if row is not None:
            snapshot = ReliabilitySnapshot.from_dict(row["snapshot"])
            self.ledger = ReliabilityLedger(snapshot.entries)
            self.current = snapshot
            self.horizon = int(row["horizon"])
        await self.refresh(pool)

    async def refresh(self, pool: asyncpg.Pool) -> bool:
        """Fold newly committed deltas; True when the snapshot changed."""
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            horizon = int(
                await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            )
            rows = await conn.fetch(
                """SELECT delta FROM reliability_deltas
                   WHERE xid >= $1::text::xid8 AND xid < $2::text::xid8""",
                str(self.horizon),
                str(horizon),
            )
            for row in rows:
                self.ledger.apply(ReliabilityDelta.from_dict(row["delta"]))
            self.horizon = horizon
            if self.ledger.version == self.current.version:
                return False
            snapshot = self.ledger.snapshot()
            await conn.execute(
                """INSERT INTO reliability_snapshots (version, snapshot, horizon)
                   VALUES ($1, $2, $3::text::xid8) ON CONFLICT (version) DO NOTHING""",
                snapshot.version,
                snapshot.to_dict(),
                str(horizon),
            )
        self.current = snapshot
        return True

    async def snapshot(self, conn: asyncpg.Connection, version: str) -> ReliabilitySnapshot | None:
        """A stored snapshot by its version (for replay)."""
        data = await conn.fetchval(
            "SELECT snapshot FROM reliability_snapshots WHERE version = $1", version
        )
        return None if data is None else ReliabilitySnapshot.from_dict(data)

    async def run(self, pool: asyncpg.Pool, stopping: asyncio.Event) -> None:
        """Refresh every `refresh_s` until stopped; outages only delay the next refresh."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.refresh_s)
            if stopping.is_set():
                return
            try:
                await self.refresh(pool)
            except Exception as exc:
                if not is_infrastructure_error(exc):
                    log.exception("reliability_refresh_failed")
                else:
                    log.warning("reliability_refresh_postponed", error=repr(exc))
