"""The registry of front-end clients and their signing keys (operator actions).

A client has an id, a set of annotators it may speak for (or all of them), and keys. A
key's secret is derived from the service's master key and the key's random salt, so the
database holds no secret (shared/signing.py: derive_secret). Every change is appended to
the submission audit chain; secrets never are.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shared.audit import PgAuditLog
from shared.signing import SigningKey, derive_secret, fingerprint, new_salt

CHAIN = "submission"


@dataclass(frozen=True)
class IssuedKey:
    """A new key: give `key_id` and `secret_hex` to the front-end once; they are not kept."""

    client_id: str
    key_id: str
    secret: bytes

    @property
    def secret_hex(self) -> str:
        return self.secret.hex()

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.key_id, self.secret)


class ClientError(Exception):
    """An operator action that cannot be done as asked."""


def new_key_id(client_id: str) -> str:
    return f"{client_id[:150]}.k{secrets.token_hex(6)}"


async def register_client(
    conn: asyncpg.Connection,
    master: bytes,
    client_id: str,
    *,
    annotators: list[str] | None = None,
    all_annotators: bool = False,
    description: str = "",
    key_id: str | None = None,
    salt: str | None = None,
) -> IssuedKey:
    """Register a client with its first key. With an explicit `key_id` and `salt` the call
    is idempotent (tests and the demo derive the same key every time)."""
    async with conn.transaction():
        created = await conn.fetchval(
            """INSERT INTO clients (client_id, description, all_annotators) VALUES ($1, $2, $3)
               ON CONFLICT (client_id) DO NOTHING RETURNING true""",
            client_id,
            description,
            all_annotators,
        )
        if created:
            await _audit(
                conn,
                "client.registered",
                client_id,
                {"client_id": client_id, "all_annotators": all_annotators},
            )
        elif key_id is None:
            raise ClientError(f"client {client_id} exists; use rotate to issue a new key")
        await allow_annotators(conn, client_id, annotators or [])
        return await _issue(conn, master, client_id, key_id, salt)


async def _issue(
    conn: asyncpg.Connection,
    master: bytes,
    client_id: str,
    key_id: str | None,
    salt: str | None,
) -> IssuedKey:
    key_id = key_id or new_key_id(client_id)
    salt = salt or new_salt()
    secret = derive_secret(master, key_id, salt)
    existing = await conn.fetchrow(
        "SELECT client_id, salt FROM client_keys WHERE key_id = $1", key_id
    )
    if existing is not None:
        if (existing["client_id"], existing["salt"]) != (client_id, salt):
            raise ClientError(f"key {key_id} exists with another client or salt")
        return IssuedKey(client_id, key_id, secret)
    await conn.execute(
        "INSERT INTO client_keys (key_id, client_id, salt, fingerprint) VALUES ($1, $2, $3, $4)",
        key_id,
        client_id,
        salt,
        fingerprint(secret),
    )
    await _audit(
        conn,
        "client.key_issued",
        client_id,
        {"client_id": client_id, "key_id": key_id, "fingerprint": fingerprint(secret)},
    )
    return IssuedKey(client_id, key_id, secret)


async def rotate_key(
    conn: asyncpg.Connection, master: bytes, client_id: str, grace: timedelta
) -> IssuedKey:
    """Issue a new key; the client's other live keys keep working for `grace`, then expire."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT true FROM clients WHERE client_id = $1", client_id):
            raise ClientError(f"client {client_id} is not registered")
        until = datetime.now(UTC) + grace
        retiring = await conn.fetch(
            """UPDATE client_keys SET expires_at = $2
                WHERE client_id = $1 AND revoked_at IS NULL
                  AND (expires_at IS NULL OR expires_at > $2)
               RETURNING key_id""",
            client_id,
            until,
        )
        issued = await _issue(conn, master, client_id, None, None)
        await _audit(
            conn,
            "client.key_rotated",
            client_id,
            {
                "client_id": client_id,
                "new_key_id": issued.key_id,
                "retiring_key_ids": sorted(r["key_id"] for r in retiring),
                "retiring_at": until,
            },
        )
        return issued


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> None:
    """Stop accepting a key at once (records already on the broker before now still count)."""
    async with conn.transaction():
        client_id = await conn.fetchval(
            """UPDATE client_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL
               RETURNING client_id""",
            key_id,
        )
        if client_id is None:
            raise ClientError(f"key {key_id} is unknown or already revoked")
        await _audit(conn, "client.key_revoked", client_id, {"key_id": key_id})


async def allow_annotators(conn: asyncpg.Connection, client_id: str, annotators: list[str]) -> int:
    """Let a client speak for more annotators; returns how many were new."""
    added = 0
    for annotator_id in annotators:
        added += bool(
            await conn.fetchval(
                """INSERT INTO client_annotators (client_id, annotator_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING RETURNING true""",
                client_id,
                annotator_id,
            )
        )
    if added:
        await _audit(
            conn,
            "client.annotators_allowed",
            client_id,
            {"client_id": client_id, "annotator_ids": sorted(annotators)},
        )
    return added


async def set_active(conn: asyncpg.Connection, client_id: str, active: bool) -> None:
    async with conn.transaction():
        changed = await conn.fetchval(
            """UPDATE clients SET active = $2 WHERE client_id = $1 AND active <> $2
               RETURNING true""",
            client_id,
            active,
        )
        if changed:
            await _audit(
                conn,
                "client.activated" if active else "client.deactivated",
                client_id,
                {"client_id": client_id},
            )


async def list_clients(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT c.client_id, c.active, c.all_annotators,
                  (SELECT count(*) FROM client_annotators a WHERE a.client_id = c.client_id)
                      AS annotators,
                  k.key_id, k.fingerprint, k.created_at, k.expires_at, k.revoked_at
             FROM clients c LEFT JOIN client_keys k USING (client_id)
            ORDER BY c.client_id, k.created_at"""
    )
    return [dict(r) for r in rows]


async def _audit(conn: asyncpg.Connection, kind: str, subject: str, body: dict[str, Any]) -> None:
    await PgAuditLog(conn, CHAIN).append(kind, body, at=datetime.now(UTC), subject=subject)
