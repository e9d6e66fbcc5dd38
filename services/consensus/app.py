"""Composition root of the consensus service."""

from __future__ import annotations

from pathlib import Path

from services.consensus.handlers import routes
from shared.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="consensus",
    migrations=Path(__file__).parent / "migrations",
    routes=lambda _deps: routes(),
)
