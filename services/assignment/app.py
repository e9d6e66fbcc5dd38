"""Composition root of the assignment service."""

from __future__ import annotations

from pathlib import Path

from services.assignment.handlers import AssignmentHandlers
from shared.runtime import Dependencies, ServiceDefinition, Wiring
from shared.topics import (
    ASSIGNMENTS_ISSUED,
    ASSIGNMENTS_REQUESTED,
    CONSENSUS_REACHED,
    DEAD_LETTERS,
    ITEMS_REGISTERED,
    TASKS_DEFINED,
)


async def build(deps: Dependencies) -> Wiring:
    return Wiring(AssignmentHandlers(deps.redis).routes())


DEFINITION = ServiceDefinition(
    name="assignment",
    migrations=Path(__file__).parent / "migrations",
    build=build,
    consumes=(
        TASKS_DEFINED,
        ITEMS_REGISTERED,
        ASSIGNMENTS_REQUESTED,
        CONSENSUS_REACHED,
    ),
    produces=(
        ASSIGNMENTS_ISSUED,
        DEAD_LETTERS,
    ),
)
