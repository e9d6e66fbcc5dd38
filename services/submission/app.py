"""Composition root of the submission service."""

from __future__ import annotations

from pathlib import Path

from services.submission.handlers import routes
from shared.runtime import Dependencies, ServiceDefinition, Wiring


async def build(deps: Dependencies) -> Wiring:
    return Wiring(routes())


DEFINITION = ServiceDefinition(
    name="submission", migrations=Path(__file__).parent / "migrations", build=build
)
