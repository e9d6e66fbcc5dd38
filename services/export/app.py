"""Composition root of the export service."""

from __future__ import annotations

from pathlib import Path

from services.export.handlers import routes
from shared.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="export",
    migrations=Path(__file__).parent / "migrations",
    routes=lambda _deps: routes(),
)
