"""Composition root of the submission service."""

from __future__ import annotations

from pathlib import Path

from services.submission.handlers import SubmissionHandlers
from services.submission.settings import SubmissionConfig
from shared.runtime import Dependencies, ServiceDefinition, Wiring
from shared.topics import (
    ASSIGNMENTS_ISSUED,
    DEAD_LETTERS,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    LABELS_REJECTED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
)


async def build(deps: Dependencies) -> Wiring:
    handlers = SubmissionHandlers(SubmissionConfig())
    return Wiring(
        handlers.routes(), background=[handlers.sweeper(deps.pool, deps.stack.topic_prefix)]
    )


DEFINITION = ServiceDefinition(
    name="submission",
    migrations=Path(__file__).parent / "migrations",
    build=build,
    consumes=(TASKS_DEFINED, ITEMS_REGISTERED, ASSIGNMENTS_ISSUED, LABELS_SUBMITTED),
    produces=(LABELS_ACCEPTED, LABELS_REJECTED, DEAD_LETTERS),
)
