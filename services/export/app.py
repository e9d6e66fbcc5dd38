"""Composition root of the export service."""

from __future__ import annotations

from pathlib import Path

from services.export.handlers import routes
from shared.runtime import Dependencies, ServiceDefinition, Wiring


async def build(deps: Dependencies) -> Wiring:
    return Wiring(routes())


DEFINITION = ServiceDefinition(
    name="export", migrations=Path(__file__).parent / "migrations", build=build
)
