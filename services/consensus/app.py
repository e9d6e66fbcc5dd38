"""Composition root of the consensus service."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.consensus.handlers import ConsensusHandlers
from services.consensus.reliability_store import PgReliability
from shared.runtime import Dependencies, ServiceDefinition, Wiring
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
    """Load the reliability ledger before consuming; refresh it in the background."""
    reliability = PgReliability()
    await reliability.load(deps.pool)

    async def refresh(stopping: asyncio.Event) -> None:
        await reliability.run(deps.pool, stopping)

    return Wiring(ConsensusHandlers(reliability).routes(), (refresh,))


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
