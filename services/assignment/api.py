"""The pull API for front-ends: the next assignment, and declining one.

Every change runs in one PostgreSQL transaction with its events written to the outbox,
exactly as a consumed event's would be. `python -m services.assignment.api` prints the
OpenAPI document (committed as docs/openapi/assignment.json).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, cast

import asyncpg
from fastapi import FastAPI, HTTPException, Path, Response
from pydantic import BaseModel

from services.assignment.assigner import Assigner, DeclineOutcome, Work
from services.assignment.sweeper import Clock, wall_clock
from shared.events import AssignmentIssued
from shared.kafka.outbox import Emitter, Outbox

T = TypeVar("T")
AnnotatorId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:/|\-]+$")]


class Declined(BaseModel):
    assignment_id: uuid.UUID
    status: Literal["declined"] = "declined"


class Problem(BaseModel):
    detail: str


@dataclass
class PullService:
    """The API's side of the assignment service: a pool, the assigner and the clock."""

    pool: asyncpg.Pool
    assigner: Assigner
    topic_prefix: str
    clock: Clock = wall_clock

    async def run(self, action: Callable[[Work], Awaitable[T]]) -> T:
        async with self.pool.acquire() as conn, conn.transaction():
            outbox = Outbox(cast(asyncpg.Connection, conn), self.topic_prefix)
            result = await action(Work(conn, Emitter("assignment", outbox, self.clock())))
            await outbox.flush()
            return result

    async def next_for(self, annotator_id: str) -> AssignmentIssued | None:
        return await self.run(lambda work: self.assigner.next_for(work, annotator_id))

    async def decline(self, annotator_id: str, assignment_id: uuid.UUID) -> DeclineOutcome:
        return await self.run(lambda work: self.assigner.decline(work, annotator_id, assignment_id))


def create_api(service: PullService | None) -> FastAPI:
    """The FastAPI app; `service` is None only to generate the OpenAPI document."""
    api = FastAPI(
        title="Consilium assignment API",
        version="1",
        description=(
            "Front-ends pull an annotator's next assignment and decline assignments. "
            "Assignments are also published on the Kafka topic assignments.issued.v1, "
            "keyed by annotator (see docs/ASSIGNMENT.md)."
        ),
        docs_url=None,
        redoc_url=None,
    )

    def live() -> PullService:
        if service is None:
            raise HTTPException(503, "not connected")
        return service

    @api.get(
        "/annotators/{annotator_id}/next",
        response_model=AssignmentIssued,
        responses={204: {"description": "Nothing to do for this annotator now."}},
        summary="The annotator's next assignment",
    )
    async def next_assignment(annotator_id: AnnotatorId) -> Any:
        """The annotator's oldest live assignment. An adjudicator with none gets the head of
        an adjudication queue they serve, claimed for them as a new assignment (also
        published on assignments.issued.v1)."""
        issued = await live().next_for(annotator_id)
        if issued is None:
            return Response(status_code=204)
        return issued

    @api.post(
        "/annotators/{annotator_id}/assignments/{assignment_id}/decline",
        response_model=Declined,
        responses={
            404: {"model": Problem, "description": "No such assignment of this annotator."},
            409: {"model": Problem, "description": "The assignment is no longer open."},
        },
        summary="Decline an open assignment",
    )
    async def decline(annotator_id: AnnotatorId, assignment_id: uuid.UUID) -> Declined:
        """End the lease (AssignmentCancelled with reason "declined" is published) and give
        the item to another eligible annotator."""
        outcome = await live().decline(annotator_id, assignment_id)
        if outcome == "not_found":
            raise HTTPException(404, f"annotator {annotator_id} has no assignment {assignment_id}")
        if outcome == "not_open":
            raise HTTPException(409, f"assignment {assignment_id} is no longer open")
        return Declined(assignment_id=assignment_id)

    return api


def openapi_document() -> dict[str, Any]:
    document: dict[str, Any] = create_api(None).openapi()
    return document


if __name__ == "__main__":
    sys.stdout.write(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")
