"""Composition root of the export service."""

from __future__ import annotations

from pathlib import Path

from services.export.handlers import routes
from shared.runtime import Dependencies, ServiceDefinition, Wiring
from shared.topics import (
    CONSENSUS_FHIR,
    CONSENSUS_LABELS,
    CONSENSUS_REACHED,
    DEAD_LETTERS,
    RELAY_CHECKPOINTS,
)


async def build(deps: Dependencies) -> Wiring:
    return Wiring(routes(publish_fhir=deps.settings.publish_fhir))


DEFINITION = ServiceDefinition(
    name="export",
    migrations=Path(__file__).parent / "migrations",
    build=build,
    consumes=(CONSENSUS_REACHED,),
    produces=(
        CONSENSUS_LABELS,
        CONSENSUS_FHIR,
        RELAY_CHECKPOINTS,
        DEAD_LETTERS,
    ),
)
