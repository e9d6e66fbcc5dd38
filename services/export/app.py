"""Composition root of the export service."""

from __future__ import annotations

from pathlib import Path

from shared.runtime import ServiceDefinition

from services.export.handlers import routes

DEFINITION = ServiceDefinition(
    name="export",
    migrations=Path(__file__).parent / "migrations",
    routes=lambda _deps: routes(),
)
