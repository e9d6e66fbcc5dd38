"""The audit log in PostgreSQL: the service role can only append, and `consilium audit
verify` names the first row someone changed behind its back."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from services.cli.audit import app as audit_app
from shared.audit import PgAuditLog
from shared.db.pool import connect
from tests.integration.conftest import TEST_DATABASE, dsn_for, fetch_value

pytestmark = pytest.mark.integration


def superuser_sql(sql: str) -> None:
    """Run SQL as the PostgreSQL superuser (peer authentication, like stack.sh does)."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--"]
    else:
        assert shutil.which("sudo"), "needs root or sudo to act as the postgres superuser"
        command = ["sudo", "-n", "-u", "postgres", "--"]
    subprocess.run(
        [*command, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", TEST_DATABASE, "-c", sql],
        check=True,
        cwd="/",
        capture_output=True,
    )


async def _appended_row(conn: asyncpg.Connection) -> int:
    async with conn.transaction():
        row = await PgAuditLog(conn, "submission").append(
            "test.marker", {"marker": uuid.uuid4()}, at=datetime.now(UTC)
        )
    return row.seq


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("UPDATE audit.log SET body = '{}' WHERE chain = 'submission'", "append-only|permission"),
        ("DELETE FROM audit.log WHERE chain = 'submission'", "append-only|permission"),
        ("TRUNCATE audit.log", "append-only|permission"),
        ("ALTER TABLE audit.log DISABLE TRIGGER log_append_only", "must be owner"),
        ("DROP TABLE audit.log", "must be owner"),
        ("GRANT UPDATE ON audit.log TO consilium_submission", "permission|not.*owner|grant"),
    ],
)
async def test_the_submission_role_cannot_change_or_remove_audit_rows(
    stack: Any, statement: str, error: str
) -> None:
    import re

    conn = await connect(dsn_for("submission"), "submission")
    try:
        seq = await _appended_row(conn)
        if "GRANT" not in statement:
            with pytest.raises(asyncpg.PostgresError) as raised:
                await conn.execute(statement)
            assert re.search(error, str(raised.value), re.IGNORECASE), raised.value
        else:  # a role without the grant option gets a warning and no privilege
            await conn.execute(statement)
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("UPDATE audit.log SET body = '{}' WHERE chain = 'submission'")
        still = await conn.fetchval(
            "SELECT count(*) FROM audit.log WHERE chain = 'submission' AND seq = $1", seq
        )
    finally:
        await conn.close()
    assert still == 1


async def test_a_service_may_append_only_to_its_own_chain_and_only_at_its_head(stack: Any) -> None:
    conn = await connect(dsn_for("submission"), "submission")
    try:
        with pytest.raises(asyncpg.PostgresError, match="row-level security"):
            await PgAuditLog(conn, "consensus").append("x", {}, at=datetime.now(UTC))
        with pytest.raises(asyncpg.PostgresError, match="does not extend"):
            await conn.execute(
                """INSERT INTO audit.log (chain, seq, recorded_at, kind, body, prev_hash, hash)
                   VALUES ('submission', 1, now(), 'forged', '{}', repeat('0', 64), 'x')"""
            )
    finally:
        await conn.close()


def test_audit_verify_names_the_first_modified_row(stack: Any) -> None:
    import asyncio

    async def append_two() -> tuple[int, int]:
        conn = await connect(dsn_for("submission"), "submission")
        try:
            return await _appended_row(conn), await _appended_row(conn)
        finally:
            await conn.close()

    first, _ = asyncio.run(append_two())
    runner = CliRunner()
    url = ["--database-url", dsn_for("submission"), "--chain", "submission"]
    assert runner.invoke(audit_app, ["verify", *url]).exit_code == 0, "chain broken before test"

    original = asyncio.run(_body(first))
    tamper = (
        "ALTER TABLE audit.log DISABLE TRIGGER log_append_only; "
        f'UPDATE audit.log SET body = \'{{"marker":"edited"}}\' '
        f"WHERE chain = 'submission' AND seq = {first}; "
        "ALTER TABLE audit.log ENABLE TRIGGER log_append_only;"
    )
    superuser_sql(tamper)
    try:
        broken = runner.invoke(audit_app, ["verify", *url])
    finally:
        restore = original.replace("'", "''")
        superuser_sql(
            "ALTER TABLE audit.log DISABLE TRIGGER log_append_only; "
            f"UPDATE audit.log SET body = '{restore}' "
            f"WHERE chain = 'submission' AND seq = {first}; "
            "ALTER TABLE audit.log ENABLE TRIGGER log_append_only;"
        )
    assert broken.exit_code == 1
    assert f"BROKEN at seq {first}" in broken.output
    assert runner.invoke(audit_app, ["verify", *url]).exit_code == 0

    head = runner.invoke(audit_app, ["head", *url])
    assert head.exit_code == 0 and '"chain": "submission"' in head.output


async def _body(seq: int) -> str:
    sql = "SELECT body FROM audit.log WHERE chain = 'submission' AND seq = $1"
    body: str = await fetch_value("submission", sql, seq)
    return body


def _disabled(sql: str) -> str:
    """`sql` with the table's triggers off (as the superuser can), in one transaction."""
    return (
        "BEGIN; ALTER TABLE audit.log DISABLE TRIGGER USER; "
        f"{sql} ALTER TABLE audit.log ENABLE TRIGGER USER; COMMIT;"
    )


def _swap(first: int) -> str:
    """Swap rows `first` and `first + 1` (applied twice it restores them); through seqs
    far above the head, since seq is the key and must stay positive."""
    away = 1_000_000_000
    return (
        f"UPDATE audit.log SET seq = seq + {away} "
        f"WHERE chain = 'submission' AND seq IN ({first}, {first + 1}); "
        f"UPDATE audit.log SET seq = {2 * first + 1 + away} - seq "
        f"WHERE chain = 'submission' AND seq IN ({first + away}, {first + 1 + away});"
    )


@pytest.mark.parametrize("tampering", ["edit", "delete", "reorder"])
def test_audit_verify_names_the_first_row_edited_deleted_or_reordered(
    stack: Any, tampering: str
) -> None:
    """A superuser can rewrite history; verify notices each way of doing it, naming the
    first row that no longer fits (for a deletion: the row after the gap)."""
    import asyncio

    async def append_three() -> list[int]:
        conn = await connect(dsn_for("submission"), "submission")
        try:
            return [await _appended_row(conn) for _ in range(3)]
        finally:
            await conn.close()

    first, second, _ = asyncio.run(append_three())  # the third keeps them off the head
    runner = CliRunner()
    url = ["--database-url", dsn_for("submission"), "--chain", "submission"]
    assert runner.invoke(audit_app, ["verify", *url]).exit_code == 0, "chain broken before test"

    row = f"chain = 'submission' AND seq = {first}"
    backup = f"audit_test_{uuid.uuid4().hex[:8]}"
    tamper, restore, named, reason = {
        "edit": (
            f"CREATE TABLE {backup} AS SELECT * FROM audit.log WHERE {row}; "
            f'UPDATE audit.log SET body = \'{{"marker":"edited"}}\' WHERE {row};',
            f"UPDATE audit.log SET body = (SELECT body FROM {backup}) WHERE {row}; "
            f"DROP TABLE {backup};",
            first,
            "hash does not match",
        ),
        "delete": (
            f"CREATE TABLE {backup} AS SELECT * FROM audit.log WHERE {row}; "
            f"DELETE FROM audit.log WHERE {row};",
            f"INSERT INTO audit.log SELECT * FROM {backup}; DROP TABLE {backup};",
            second,
            f"expected seq {first}, found {second}",
        ),
        "reorder": (_swap(first), _swap(first), first, "prev_hash"),
    }[tampering]
    superuser_sql(_disabled(tamper))
    try:
        broken = runner.invoke(audit_app, ["verify", *url])
    finally:
        superuser_sql(_disabled(restore))
    assert broken.exit_code == 1, broken.output
    assert f"BROKEN at seq {named}" in broken.output, broken.output
    assert reason in broken.output, broken.output
    assert runner.invoke(audit_app, ["verify", *url]).exit_code == 0, "not restored"
