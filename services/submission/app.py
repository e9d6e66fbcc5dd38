"""Composition root of the submission service."""

from __future__ import annotations

from pathlib import Path

from shared.runtime import ServiceDefinition

from services.submission.handlers import routes

DEFINITION = ServiceDefinition(
    name="submission",
    migrations=Path(__file__).parent / "migrations",
    routes=lambda _deps: routes(),
)
