"""The hash-chained audit log every service appends its regulator-relevant facts to.

Rows live in `audit.log` (one chain per service, `chain` = the service name). Each row's
`hash` is SHA-256 over the canonical JSON of all its columns and the previous row's hash,
so changing, removing or reordering any row breaks every hash after it; `verify_chain`
names the first row that no longer fits. The table is owned by a role no service can log
in as: services may INSERT and SELECT only (deploy/postgres/schemas.psql), a trigger
refuses UPDATE, DELETE and TRUNCATE even to the owner, and row-level security lets a
service append only to its own chain.

Canonical JSON: keys sorted, no insignificant whitespace, UTF-8 (not \\u-escaped), no
NaN or infinity; datetimes as UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`, UUIDs as lowercase
strings, tuples as lists, enums as their values, pydantic models as their JSON dump.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel

GENESIS = "0" * 64
TABLE = "audit.log"
_LOCK_NAMESPACE = 0x41756474  # "Audt": one appender per chain at a time


def canonical_json(value: Any) -> str:
    """The one serialisation that is hashed (see the module docstring)."""
    return json.dumps(
        _plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditRow:
    """One row of a chain as stored."""

    chain: str
    seq: int
    recorded_at: datetime
    kind: str
    subject: str | None
    event_id: UUID | None
    body: str
    prev_hash: str
    hash: str

    def expected_hash(self) -> str:
        return row_hash(
            self.prev_hash,
            chain=self.chain,
            seq=self.seq,
            recorded_at=self.recorded_at,
            kind=self.kind,
            subject=self.subject,
            event_id=self.event_id,
            body=self.body,
        )


def row_hash(
    prev_hash: str,
    *,
    chain: str,
    seq: int,
    recorded_at: datetime,
    kind: str,
    subject: str | None,
    event_id: UUID | None,
    body: str,
) -> str:
    """SHA-256 of the previous hash and the canonical JSON of every column of the row."""
    material = canonical_json(
        {
            "body": body,
            "chain": chain,
            "event_id": event_id,
            "kind": kind,
            "prev_hash": prev_hash,
            "recorded_at": recorded_at,
            "seq": seq,
            "subject": subject,
        }
    )
    return hashlib.sha256(f"{prev_hash}\n{material}".encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """What walking a chain found: rows checked, its head, and the first broken row."""

    chain: str
    rows: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


class ChainWalker:
    """Checks rows fed in seq order; stops at the first missing, reordered or altered one."""

    def __init__(self, chain: str) -> None:
        self.chain = chain
        self.count = 0
        self.prev_seq = 0
        self.prev_hash = GENESIS
        self.broken_seq: int | None = None
        self.reason = ""

    def feed(self, row: AuditRow) -> bool:
        """False once the chain is broken (later rows are not looked at)."""
        if self.broken_seq is not None:
            return False
        self.count += 1
        if row.seq != self.prev_seq + 1:
            self.reason = f"expected seq {self.prev_seq + 1}, found {row.seq}"
        elif row.prev_hash != self.prev_hash:
            self.reason = "prev_hash is not the previous row's hash"
        elif row.expected_hash() != row.hash:
            self.reason = "hash does not match the row's content"
        else:
            self.prev_seq, self.prev_hash = row.seq, row.hash
            return True
        self.broken_seq = row.seq
        return False

    def report(self) -> ChainReport:
        return ChainReport(
            self.chain, self.count, self.prev_seq, self.prev_hash, self.broken_seq, self.reason
        )


def verify_chain(chain: str, rows: Iterable[AuditRow]) -> ChainReport:
    """Walk rows in seq order and report the first that does not fit."""
    walker = ChainWalker(chain)
    for row in rows:
        if not walker.feed(row):
            break
    return walker.report()


@dataclass(frozen=True)
class AuditEntry:
    """A row to append, before it has its place (seq) and hashes in the chain."""

    kind: str
    body: Mapping[str, Any]
    at: datetime
    subject: str | None = None
    event_id: UUID | None = None


class PgAuditLog:
    """Appends to and reads one service's chain in `audit.log`."""

    def __init__(self, conn: asyncpg.Connection, chain: str) -> None:
        self.conn = conn
        self.chain = chain

    async def append(
        self,
        kind: str,
        body: Mapping[str, Any],
        *,
        at: datetime,
        subject: str | None = None,
        event_id: UUID | None = None,
    ) -> AuditRow:
        """Append one row inside the caller's transaction (which holds the chain's lock
        until it commits, so concurrent appenders form one chain)."""
        (row,) = await self.append_many([AuditEntry(kind, body, at, subject, event_id)])
        return row

    async def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRow]:
        """Append rows in order as `append` would one by one, with one lock, one head read
        and one pipelined insert."""
        if not entries:
            return []
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_NAMESPACE, self.chain
        )
        prev_seq, prev_hash = await self.head()
        rows: list[AuditRow] = []
        for entry in entries:
            row = AuditRow(
                chain=self.chain,
                seq=prev_seq + 1,
                recorded_at=entry.at.astimezone(UTC),  # microseconds: what timestamptz keeps
                kind=entry.kind,
                subject=entry.subject,
                event_id=entry.event_id,
                body=canonical_json(entry.body),
                prev_hash=prev_hash,
                hash="",
            )
            row = AuditRow(**{**row.__dict__, "hash": row.expected_hash()})
            rows.append(row)
            prev_seq, prev_hash = row.seq, row.hash
        await self.conn.executemany(
            f"""INSERT INTO {TABLE} (chain, seq, recorded_at, kind, subject, event_id, body,
                   prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            [
                (r.chain, r.seq, r.recorded_at, r.kind, r.subject, r.event_id, r.body,
                 r.prev_hash, r.hash)
                for r in rows
            ],
        )  # fmt: skip
        return rows

    async def rows(self, batch: int = 5000) -> AsyncIterator[AuditRow]:
        """Every row of the chain in seq order, read in pages."""
        after = 0
        while True:
            records = await self.conn.fetch(
                f"""SELECT chain, seq, recorded_at, kind, subject, event_id, body, prev_hash, hash
                    FROM {TABLE} WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3""",
                self.chain,
                after,
                batch,
            )
            if not records:
                return
            for record in records:
                yield AuditRow(**dict(record))
            after = records[-1]["seq"]

    async def verify(self) -> ChainReport:
        """Walk the whole chain from its first row (streaming, constant memory)."""
        walker = ChainWalker(self.chain)
        async for row in self.rows():
            if not walker.feed(row):
                break
        return walker.report()

    async def head(self) -> tuple[int, str]:
        """The last row's seq and hash (0 and the genesis hash for an empty chain)."""
        head = await self.conn.fetchrow(
            f"SELECT seq, hash FROM {TABLE} WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
            self.chain,
        )
        return (head["seq"], head["hash"]) if head else (0, GENESIS)


async def chains(conn: asyncpg.Connection) -> list[str]:
    """The chains present in the log."""
    return [r["chain"] for r in await conn.fetch(f"SELECT DISTINCT chain FROM {TABLE} ORDER BY 1")]
