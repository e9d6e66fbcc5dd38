"""Composition root of the assignment service."""

from __future__ import annotations

from pathlib import Path

from services.assignment.handlers import AssignmentHandlers
from shared.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="assignment",
    migrations=Path(__file__).parent / "migrations",
    routes=lambda deps: AssignmentHandlers(deps.redis).routes(),
)
