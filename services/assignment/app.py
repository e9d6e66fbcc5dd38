"""Composition root of the assignment service."""

from __future__ import annotations

from pathlib import Path

from services.assignment.api import PullService, create_api
from services.assignment.assigner import Assigner
from services.assignment.handlers import AssignmentHandlers
from services.assignment.leases import LeaseCache
from services.assignment.settings import AssignmentConfig
from services.assignment.sweeper import Sweeper
from shared.runtime import Dependencies, ServiceDefinition, Wiring
from shared.topics import (
    ADJUDICATION_REQUESTED,
    ANNOTATORS_SKILL,
    ASSIGNMENTS_ISSUED,
    ASSIGNMENTS_REQUESTED,
    CONSENSUS_REACHED,
    DEAD_LETTERS,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    TASKS_DEFINED,
)


async def build(deps: Dependencies) -> Wiring:
    config = AssignmentConfig()
    assigner = Assigner(LeaseCache(deps.redis))
    prefix = deps.stack.topic_prefix
    sweeper = Sweeper(
        deps.pool, assigner, prefix, every_s=config.sweep_every_s, batch=config.sweep_batch
    )
    api = create_api(PullService(deps.pool, assigner, prefix))
    handlers = AssignmentHandlers(assigner, namespace=prefix)
    return Wiring(handlers.routes(), background=[sweeper.run], http=api)


DEFINITION = ServiceDefinition(
    name="assignment",
    migrations=Path(__file__).parent / "migrations",
    build=build,
    consumes=(
        TASKS_DEFINED,
        ITEMS_REGISTERED,
        ASSIGNMENTS_REQUESTED,
        LABELS_ACCEPTED,
        CONSENSUS_REACHED,
        ADJUDICATION_REQUESTED,
        ANNOTATORS_SKILL,
    ),
    produces=(
        ASSIGNMENTS_ISSUED,
        DEAD_LETTERS,
    ),
)
