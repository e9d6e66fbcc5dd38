"""asyncpg pools whose connections work inside one service schema."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f"SET search_path TO {quote_ident(schema)}")
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (schema names come from settings, never from events)."""
    return '"' + name.replace('"', '""') + '"'


async def create_pool(dsn: str, schema: str, *, max_size: int = 8, **kwargs: Any) -> asyncpg.Pool:
    """A pool whose every connection has `schema` on its search path and JSON codecs set."""

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn, schema)

    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, init=init, command_timeout=60, **kwargs
    )
    if pool is None:  # asyncpg types the result as optional
        raise RuntimeError("asyncpg returned no pool")
    return pool


async def connect(dsn: str, schema: str, connect_timeout_s: float = 10.0) -> asyncpg.Connection:
    """One connection in `schema` (for LISTEN, migrations and operator tools)."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=connect_timeout_s)
    await _init_connection(conn, schema)
    return conn


# A plain connection or one borrowed from a pool: both run queries the same way.
DbConnection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
