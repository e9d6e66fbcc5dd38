"""Plain-SQL migrations per service schema: numbered files, applied once, checksummed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shared.db.pool import connect

PLUMBING_DIR = Path(__file__).parent / "migrations"
_LOCK_NAMESPACE = 0x436F6E73  # "Cons": advisory locks of the migration runner


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(service_dir: Path) -> list[Migration]:
    """Shared plumbing first, then the service's own numbered files, in order."""
    files = sorted(PLUMBING_DIR.glob("*.sql")) + sorted(service_dir.glob("*.sql"))
    return [Migration(path.stem, path) for path in files]


async def migrate(dsn: str, schema: str, service_dir: Path) -> list[str]:
    """Apply pending migrations in one transaction each; returns the versions applied.

    A changed file that was already applied is an error: migrations are append-only.
    """
    conn = await connect(dsn, schema)
    try:
        await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", _LOCK_NAMESPACE, schema)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        done: list[str] = []
        for migration in discover(service_dir):
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"{schema}: migration {migration.version} changed after it was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    migration.version,
                    migration.checksum,
                )
            done.append(migration.version)
        return done
    finally:
        await conn.close()


async def pending(pool: asyncpg.Pool, service_dir: Path) -> list[str]:
    """Migrations not applied yet (readiness fails while any are pending)."""
    try:
        rows = await pool.fetch("SELECT version FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return [m.version for m in discover(service_dir)]
    applied = {r["version"] for r in rows}
    return [m.version for m in discover(service_dir) if m.version not in applied]


class MigrationError(RuntimeError):
    """A migration cannot be applied safely."""
