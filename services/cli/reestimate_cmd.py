"""`consilium reestimate`: decide reached items again under the current reliability."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from services.consensus.handlers import ConsensusHandlers
from services.consensus.reestimate import ReestimateReport, reestimate
from services.consensus.reliability_store import PgReliability
from shared.db.pool import connect, create_pool
from shared.settings import StackSettings, service_settings

console = Console()


def reestimate_command(
    task: Annotated[str | None, typer.Option(help="only this task's items")] = None,
) -> None:
    """Publish a new consensus version for every reached item whose label flips under the
    annotator reliability learned since it was decided (reason reliability_reestimate)."""
    report = asyncio.run(run_reestimate(task))
    console.print(f"checked {report.checked} reached items: {len(report.flipped)} flipped")
    for item_id in report.flipped[:50]:
        console.print(f"  {item_id}")


async def run_reestimate(task: str | None, dsn: str | None = None) -> ReestimateReport:
    """Load the current reliability snapshot as the service does, then re-estimate."""
    stack = StackSettings()
    dsn = dsn or service_settings("consensus").database_url
    reliability = PgReliability()
    pool = await create_pool(dsn, "consensus", max_size=1)
    try:
        await reliability.load(pool)
    finally:
        await pool.close()
    conn = await connect(dsn, "consensus")
    try:
        return await reestimate(
            conn,
            ConsensusHandlers(reliability),
            task_id=task,
            topic_prefix=stack.topic_prefix,
            now=lambda: datetime.now(UTC),
        )
    finally:
        await conn.close()
