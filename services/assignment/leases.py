"""Leases in Redis: a key with a TTL per open assignment, the fast path for "is it live".

PostgreSQL holds the record; a missing key (a flush, a restart, a rolled-back write) is
rebuilt from it the first time it is asked for, so losing Redis loses nothing.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis.asyncio as aioredis

from shared.db.pool import DbConnection


def lease_key(assignment_id: uuid.UUID) -> str:
    return f"consilium:lease:{assignment_id}"


@dataclass
class LeaseCache:
    redis: aioredis.Redis

    async def remember(
        self, assignment_id: uuid.UUID, annotator_id: str, expires_at: datetime, now: datetime
    ) -> None:
        ttl = math.ceil((expires_at - now).total_seconds())
        if ttl > 0:
            await self.redis.set(lease_key(assignment_id), annotator_id, ex=ttl)

    async def forget(self, *assignment_ids: uuid.UUID) -> None:
        if assignment_ids:
            await self.redis.delete(*(lease_key(a) for a in assignment_ids))

    async def remaining_s(
        self, conn: DbConnection, assignment_id: uuid.UUID, now: datetime
    ) -> int | None:
        """Seconds the lease has left, or None when it is not live; a key missing from
        Redis is rebuilt from PostgreSQL."""
        ttl: int = await self.redis.ttl(lease_key(assignment_id))
        if ttl > 0:
            return ttl
        row = await conn.fetchrow(
            """SELECT annotator_id, lease_expires_at FROM assignments
               WHERE assignment_id = $1 AND status = 'open' AND lease_expires_at > $2""",
            assignment_id,
            now,
        )
        if row is None:
            return None
        await self.remember(assignment_id, row["annotator_id"], row["lease_expires_at"], now)
        remaining: timedelta = row["lease_expires_at"] - now
        return math.ceil(remaining.total_seconds())
