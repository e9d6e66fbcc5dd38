"""`consilium dlq list|show|replay`: inspect dead letters and re-drive them after a fix.

Each service keeps its dead letters in its own schema (`dead_letters`, with the original
bytes and headers). Replay publishes the original record again to its source topic and
clears the consumer's inbox entry for it, so the fixed handler processes it once more;
the row keeps who replayed it, when, why and how often.
"""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from shared.db.pool import connect
from shared.kafka.clients import client_options
from shared.settings import SERVICES, StackSettings, service_settings

app = typer.Typer(no_args_is_help=True, help=__doc__)
console = Console()
ServiceOption = Annotated[str | None, typer.Option(help="one service (default: all four)")]


def _services(service: str | None) -> tuple[str, ...]:
    if service is not None and service not in SERVICES:
        raise typer.BadParameter(f"one of {', '.join(SERVICES)}", param_hint="--service")
    return (service,) if service else SERVICES


async def _rows(service: str, where: str = "", *args: Any) -> list[Any]:
    conn = await connect(service_settings(service).database_url, service)
    try:
        return list(
            await conn.fetch(
                f"""SELECT id, consumer, topic, partition, "offset", event_id, error_type, error,
                           attempts, created_at, replayed_at, replayed_by, replay_note,
                           replay_count, key, value, headers
                    FROM dead_letters {where} ORDER BY id""",
                *args,
            )
        )
    finally:
        await conn.close()


@app.command("list")
def list_command(
    service: ServiceOption = None,
    pending: Annotated[bool, typer.Option(help="only those never replayed")] = False,
) -> None:
    """One line per dead letter: where it came from, the error, whether it was replayed."""
    table = Table("service", "id", "source", "error", "attempts", "created", "replayed")
    for name in _services(service):
        rows = asyncio.run(_rows(name, "WHERE replayed_at IS NULL" if pending else ""))
        for row in rows:
            table.add_row(
                name,
                str(row["id"]),
                f"{row['topic']}[{row['partition']}]@{row['offset']}",
                f"{row['error_type']}: {row['error'][:60]}",
                str(row["attempts"]),
                row["created_at"].isoformat(timespec="seconds"),
                f"{row['replay_count']}x by {row['replayed_by']}" if row["replayed_at"] else "",
            )
    console.print(table)


@app.command("show")
def show_command(
    service: Annotated[str, typer.Argument(help="the service whose dead letter it is")],
    dead_letter_id: Annotated[int, typer.Argument(help="the id from `dlq list`")],
) -> None:
    """Everything about one dead letter, including its original bytes and headers."""
    rows = asyncio.run(_rows(_services(service)[0], "WHERE id = $1", dead_letter_id))
    if not rows:
        raise typer.BadParameter(f"no dead letter {dead_letter_id} in {service}")
    row = dict(rows[0])
    value = bytes(row.pop("value"))
    key = row.pop("key")
    for name, item in row.items():
        console.print(f"[bold]{name}[/bold]: {item}")
    console.print(f"[bold]key[/bold]: {bytes(key)!r}" if key is not None else "[bold]key[/bold]: -")
    console.print(
        f"[bold]value[/bold] ({len(value)} bytes): {value[:4000].decode(errors='replace')}"
    )


@app.command("replay")
def replay_command(
    service: Annotated[str, typer.Argument(help="the service whose dead letters to re-drive")],
    ids: Annotated[list[int], typer.Argument(help="dead letter ids from `dlq list`")],
    note: Annotated[str, typer.Option(help="why it is replayed (kept with the record)")] = "",
) -> None:
    """Publish dead letters again to their source topic so the fixed service handles them."""
    replayed = asyncio.run(replay(_services(service)[0], ids, note, getpass.getuser()))
    console.print(f"replayed {replayed} dead letter(s) from {service}")


async def replay(service: str, ids: list[int], note: str, who: str, dsn: str | None = None) -> int:
    """Re-drive dead letters; returns how many. Also the API the tests use."""
    stack = StackSettings()
    conn = await connect(dsn or service_settings(service).database_url, service)
    producer = AIOKafkaProducer(**client_options(stack), enable_idempotence=True)
    await producer.start()
    count = 0
    try:
        for dead_letter_id in ids:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT * FROM dead_letters WHERE id = $1 FOR UPDATE", dead_letter_id
                )
                if row is None:
                    raise typer.BadParameter(f"no dead letter {dead_letter_id} in {service}")
                # The inbox row would absorb the record as a duplicate: the fix must see it.
                await conn.execute(
                    """DELETE FROM inbox WHERE consumer = $1 AND event_id = $2
                       AND outcome = 'dead_lettered'""",
                    row["consumer"],
                    row["event_id"],
                )
                headers = [
                    (name, value.encode())
                    for name, value in row["headers"].items()
                    if not name.startswith("dlq.")
                ] + [("dlq.replayed-from", f"{service}:{dead_letter_id}".encode())]
                await producer.send_and_wait(
                    row["topic"], bytes(row["value"]), key=row["key"], headers=headers
                )
                await conn.execute(
                    """UPDATE dead_letters SET replayed_at = now(), replayed_by = $2,
                           replay_note = $3, replay_count = replay_count + 1 WHERE id = $1""",
                    dead_letter_id,
                    who,
                    note,
                )
                count += 1
    finally:
        await producer.stop()
        await conn.close()
    return count
