"""Composition root of the consensus service."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.consensus.handlers import ConsensusHandlers
from services.consensus.reestimate import run_periodically
from services.consensus.reliability_store import PgReliability
from shared.runtime import BackgroundLoop, Dependencies, ServiceDefinition, Wiring
from shared.topics import (
    ADJUDICATION_REQUESTED,
    ANNOTATORS_SKILL,
    ASSIGNMENTS_REQUESTED,
    CONSENSUS_REACHED,
    DEAD_LETTERS,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    TASKS_DEFINED,
)


async def build(deps: Dependencies) -> Wiring:
    """Load the reliability ledger before consuming; refresh it in the background and,
    when configured, re-estimate reached items periodically under it."""
    reliability = PgReliability()
    await reliability.load(deps.pool)
    handlers = ConsensusHandlers(reliability)

    async def refresh(stopping: asyncio.Event) -> None:
        await reliability.run(deps.pool, stopping)

    async def reestimate(stopping: asyncio.Event) -> None:
        await run_periodically(
            deps.pool,
            handlers,
            stopping,
            interval_s=deps.settings.reestimate_interval_s,
            topic_prefix=deps.stack.topic_prefix,
        )

    background: tuple[BackgroundLoop, ...] = (refresh,)
    if deps.settings.reestimate_interval_s > 0.0:
        background = (refresh, reestimate)
    return Wiring(handlers.routes(), background)


DEFINITION = ServiceDefinition(
    name="consensus",
    migrations=Path(__file__).parent / "migrations",
    build=build,
    consumes=(
        TASKS_DEFINED,
        ITEMS_REGISTERED,
        LABELS_ACCEPTED,
    ),
    produces=(
        CONSENSUS_REACHED,
        ASSIGNMENTS_REQUESTED,
        ADJUDICATION_REQUESTED,
        ANNOTATORS_SKILL,
        DEAD_LETTERS,
    ),
)
