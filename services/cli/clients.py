"""`consilium clients ...`: register front-end clients, rotate and revoke their keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from services.submission import clients as registry
from services.submission.settings import DEV_MASTER_KEY, SubmissionConfig
from shared.db.pool import connect
from shared.settings import service_settings

app = typer.Typer(no_args_is_help=True, help=__doc__)
console = Console()
T = TypeVar("T")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="submission database URL (default: CONSILIUM_SUBMISSION_DATABASE_URL)"),
]


def _run(database_url: str | None, action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def run() -> T:
        conn = await connect(
            database_url or service_settings("submission").database_url, "submission"
        )
        try:
            return await action(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except registry.ClientError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


def _master() -> bytes:
    config = SubmissionConfig()
    if config.client_key_master.get_secret_value() == DEV_MASTER_KEY:
        console.print(
            "[yellow]warning: the development master key is in use; set "
            "CONSILIUM_SUBMISSION_CLIENT_KEY_MASTER in production[/yellow]"
        )
    return config.master


def _show(issued: registry.IssuedKey) -> None:
    console.print(f"client     {issued.client_id}")
    console.print(f"key id     {issued.key_id}")
    console.print(f"secret     {issued.secret_hex}")
    console.print(
        "[bold]Give the key id and secret to the front-end now; they are not shown again.[/bold]"
    )


@app.command("register")
def register(
    client_id: Annotated[str, typer.Argument(help="the front-end's client id")],
    annotator: Annotated[
        list[str] | None, typer.Option("--annotator", "-a", help="an annotator it may speak for")
    ] = None,
    all_annotators: Annotated[bool, typer.Option(help="it may speak for every annotator")] = False,
    description: Annotated[str, typer.Option(help="free text for operators")] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Register a front-end client and issue its first key."""
    master = _master()
    issued = _run(
        database_url,
        lambda conn: registry.register_client(
            conn,
            master,
            client_id,
            annotators=annotator or [],
            all_annotators=all_annotators,
            description=description,
        ),
    )
    _show(issued)


@app.command("rotate")
def rotate(
    client_id: Annotated[str, typer.Argument()],
    grace_minutes: Annotated[
        float, typer.Option(help="how long the client's current keys keep working")
    ] = 60.0,
    database_url: DatabaseUrl = None,
) -> None:
    """Issue a new key; the client's current keys expire after the grace period."""
    master = _master()
    issued = _run(
        database_url,
        lambda conn: registry.rotate_key(conn, master, client_id, timedelta(minutes=grace_minutes)),
    )
    _show(issued)


@app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument()], database_url: DatabaseUrl = None) -> None:
    """Stop accepting a key at once."""
    _run(database_url, lambda conn: registry.revoke_key(conn, key_id))
    console.print(f"revoked {key_id}")


@app.command("allow")
def allow(
    client_id: Annotated[str, typer.Argument()],
    annotators: Annotated[list[str], typer.Argument(help="pseudonymous annotator ids")],
    database_url: DatabaseUrl = None,
) -> None:
    """Let a client speak for more annotators."""
    added = _run(database_url, lambda conn: registry.allow_annotators(conn, client_id, annotators))
    console.print(f"{client_id}: {added} annotator(s) added")


@app.command("deactivate")
def deactivate(
    client_id: Annotated[str, typer.Argument()], database_url: DatabaseUrl = None
) -> None:
    """Reject everything a client signs from now on (all its keys)."""
    _run(database_url, lambda conn: registry.set_active(conn, client_id, False))
    console.print(f"deactivated {client_id}")


@app.command("list")
def list_(database_url: DatabaseUrl = None) -> None:
    """Clients, the annotators they may speak for, and their keys (never secrets)."""
    rows: list[dict[str, Any]] = _run(database_url, registry.list_clients)
    table = Table("client", "active", "annotators", "key id", "fingerprint", "created", "ends")
    for row in rows:
        ends = row["revoked_at"] and f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}"
        ends = ends or (row["expires_at"] and f"expires {row['expires_at']:%Y-%m-%d %H:%M}") or ""
        table.add_row(
            row["client_id"],
            "yes" if row["active"] else "no",
            "all" if row["all_annotators"] else str(row["annotators"]),
            row["key_id"] or "",
            row["fingerprint"] or "",
            f"{row['created_at']:%Y-%m-%d %H:%M}" if row["created_at"] else "",
            ends,
        )
    console.print(table)
