"""Composition root of the assignment service."""

from __future__ import annotations

from pathlib import Path

from services.assignment.handlers import AssignmentHandlers
from shared.runtime import Dependencies, ServiceDefinition, Wiring


async def build(deps: Dependencies) -> Wiring:
    return Wiring(AssignmentHandlers(deps.redis).routes())


DEFINITION = ServiceDefinition(
    name="assignment", migrations=Path(__file__).parent / "migrations", build=build
)
