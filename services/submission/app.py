"""Composition root of the submission service."""

from __future__ import annotations

from pathlib import Path

from services.submission.handlers import routes
from shared.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="submission",
    migrations=Path(__file__).parent / "migrations",
    routes=lambda _deps: routes(),
)
