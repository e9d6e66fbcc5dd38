"""`consilium audit ...`: verify the hash-chained audit log and export its head."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console

from shared.audit import PgAuditLog, chains, format_time
from shared.db.pool import connect
from shared.settings import service_settings

app = typer.Typer(no_args_is_help=True, help=__doc__)
console = Console()

Chain = Annotated[
    list[str] | None,
    typer.Option("--chain", help="chain(s) to check (default: every chain in the log)"),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="any role that may read audit.log (default: the submission database URL)"),
]


async def _chains(conn: object, wanted: list[str] | None) -> list[str]:
    return wanted or await chains(conn)  # type: ignore[arg-type]  # an asyncpg connection


@app.command("verify")
def verify(chain: Chain = None, database_url: DatabaseUrl = None) -> None:
    """Walk each chain from its first row; exit 1 naming the first row that does not fit."""

    async def run() -> bool:
        conn = await connect(database_url or service_settings("submission").database_url, "audit")
        try:
            ok = True
            for name in await _chains(conn, chain):
                report = await PgAuditLog(conn, name).verify()
                if report.ok:
                    console.print(
                        f"{name}: ok, {report.rows} rows, head {report.head_seq} {report.head_hash}"
                    )
                else:
                    ok = False
                    console.print(
                        f"[red]{name}: BROKEN at seq {report.broken_seq}[/red] ({report.reason}); "
                        f"rows 1..{report.head_seq} verify, last good hash {report.head_hash}"
                    )
            return ok
        finally:
            await conn.close()

    raise typer.Exit(0 if asyncio.run(run()) else 1)


@app.command("head")
def head(chain: Chain = None, database_url: DatabaseUrl = None) -> None:
    """Print each chain's head (seq, hash, time) as JSON, to be kept outside the database."""

    async def run() -> list[dict[str, object]]:
        conn = await connect(database_url or service_settings("submission").database_url, "audit")
        try:
            heads = []
            for name in await _chains(conn, chain):
                row = await conn.fetchrow(
                    """SELECT seq, hash, recorded_at FROM audit.log WHERE chain = $1
                       ORDER BY seq DESC LIMIT 1""",
                    name,
                )
                heads.append(
                    {
                        "chain": name,
                        "seq": row["seq"] if row else 0,
                        "hash": row["hash"] if row else "0" * 64,
                        "recorded_at": format_time(row["recorded_at"]) if row else None,
                    }
                )
            return heads
        finally:
            await conn.close()

    typer.echo(json.dumps(asyncio.run(run()), indent=2))
