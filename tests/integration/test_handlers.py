"""Each service's handlers called directly on a real PostgreSQL transaction (rolled back).

These pin what a handler writes (rows, outbox events) for one event, without Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from services.consensus.handlers import ConsensusHandlers
from services.consensus.reliability_store import PgReliability
from services.export.handlers import on_consensus_reached
from services.submission.handlers import SubmissionHandlers, label_id_for
from services.submission.settings import SubmissionConfig
from shared.db.pool import connect
from shared.envelope import Envelope
from shared.events import (
    CONSENSUS_REACHED_EVENT,
    LABEL_ACCEPTED,
    REGISTRY,
    ConsensusPolicy,
    ConsensusReached,
    DecisionRecord,
)
from shared.kafka.consumer import HandlerContext
from shared.kafka.outbox import Emitter, Outbox
from tests import factories
from tests.integration.conftest import dsn_for

pytestmark = pytest.mark.integration


@asynccontextmanager
async def handler_context(service: str) -> AsyncIterator[Callable[[Envelope[Any]], HandlerContext]]:
    """Contexts on one connection whose transaction is rolled back at the end."""
    conn = await connect(dsn_for(service), service)
    transaction = conn.transaction()
    await transaction.start()
    outbox = Outbox(conn, "")

    def make(event: Envelope[Any]) -> HandlerContext:
        delivery = factories.delivery(event)  # signed by the test front-end, stamped now
        return HandlerContext(conn, Emitter(service, outbox, factories.NOW, event), delivery)

    try:
        yield make
    finally:
        await transaction.rollback()
        await conn.close()


def _outbox_events(ctx: HandlerContext) -> list[Envelope[Any]]:
    return [REGISTRY.decode(row[2]) for row in ctx.emitter.outbox._rows]


# No waiting for items or assignments that may be on their way: answer at once.
SUBMISSION = SubmissionHandlers(SubmissionConfig(assignment_wait_s=0))


async def test_submission_stores_a_valid_label_and_emits_it_as_accepted(stack: Any) -> None:
    async with handler_context("submission") as context:
        definition = factories.task()
        item = factories.item_event(definition.task_id)
        label = factories.label_event(item.payload.item_id, definition.task_id, "reader-a", "1")
        lease = factories.assignment_event(item.payload.item_id, definition.task_id, "reader-a")
        await SUBMISSION.on_task_defined(
            context(factories.task_event(definition)), factories.task_event(definition)
        )
        await SUBMISSION.on_item_registered(context(item), item)
        await SUBMISSION.on_assignment_issued(context(lease), lease)
        ctx = context(label)
        await SUBMISSION.on_label_submitted(ctx, label)
        (accepted,) = _outbox_events(ctx)
        stored = await ctx.conn.fetchrow("SELECT * FROM labels WHERE event_id = $1", label.event_id)
    assert accepted.event_type == LABEL_ACCEPTED.event_type
    assert accepted.payload.label_id == label_id_for(label.event_id)
    assert accepted.causation_id == label.event_id
    assert stored is not None and stored["raw_sha256"] == accepted.payload.raw_sha256
    assert stored["client_id"] == "viewer-1" and stored["time_spent_ms"] == 41_000


async def test_submission_answers_an_unknown_item_with_a_rejection_not_an_error(stack: Any) -> None:
    async with handler_context("submission") as context:
        definition = factories.task()
        await SUBMISSION.on_task_defined(
            context(factories.task_event(definition)), factories.task_event(definition)
        )
        label = factories.label_event("never-registered", definition.task_id, "reader-a", "1")
        ctx = context(label)
        await SUBMISSION.on_label_submitted(ctx, label)
        (rejected,) = _outbox_events(ctx)
    assert rejected.payload.code == "unknown_item"
    assert rejected.payload.rejected_event_id == label.event_id


async def test_consensus_publishes_once_the_policy_is_met(stack: Any) -> None:
    definition = factories.task(
        policy=ConsensusPolicy(method="mv", min_labels=2, max_labels=3, threshold=0.7)
    )
    handlers = ConsensusHandlers(PgReliability())
    async with handler_context("consensus") as context:
        await handlers.on_task_defined(
            context(factories.task_event(definition)), factories.task_event(definition)
        )
        emitted: list[Envelope[Any]] = []
        for reader in ("reader-a", "reader-b"):
            submitted = factories.label_event("item-h", definition.task_id, reader, "1")
            accepted = LABEL_ACCEPTED.wrap(
                _accepted_from(submitted),
                key="item-h",
                producer="tests",
                event_id=uuid.uuid4(),
                occurred_at=factories.NOW,
                correlation_id=submitted.correlation_id,
            )
            ctx = context(accepted)
            await handlers.on_label_accepted(ctx, accepted)
            emitted = _outbox_events(ctx)
    reached = [e for e in emitted if e.event_type == CONSENSUS_REACHED_EVENT.event_type]
    assert len(reached) == 1
    assert reached[0].payload.decision.label == "1"
    assert reached[0].payload.consensus_version == 1


def _accepted_from(submitted: Envelope[Any]) -> Any:
    from shared.events import LabelAccepted

    return LabelAccepted(
        label_id=label_id_for(submitted.event_id),
        received_at=factories.NOW,
        raw_sha256="0" * 64,
        **submitted.payload.model_dump(exclude={"time_spent_ms"}),
    )


async def test_export_publishes_a_new_version_only_when_the_consensus_changes(stack: Any) -> None:
    def reached(label: str, ids: tuple[uuid.UUID, ...], version: int) -> Envelope[Any]:
        decision = DecisionRecord(
            outcome="reached", label=label, confidence=0.97, distribution={label: 0.97},
            agreement=1.0, contributing_label_ids=ids, method="ds",
            method_version="consilium-engine/1", parameters={},
        )  # fmt: skip
        return CONSENSUS_REACHED_EVENT.wrap(
            ConsensusReached(
                item_id="item-x", task_id="t", task_version=1, consensus_version=version,
                decision=decision, decided_at=factories.NOW,
            ),
            key="item-x", producer="tests", event_id=uuid.uuid4(),
            occurred_at=factories.NOW, correlation_id=uuid.uuid4(),
        )  # fmt: skip

    ids = (uuid.uuid4(), uuid.uuid4())
    async with handler_context("export") as context:
        published: list[Envelope[Any]] = []
        for event in (
            reached("1", ids, 1),
            reached("1", ids, 1),
            reached("0", (*ids, uuid.uuid4()), 2),
        ):
            ctx = context(event)
            await on_consensus_reached(ctx, event)
            published += _outbox_events(ctx)
            ctx.emitter.outbox.discard()
    assert [(p.payload.version, p.payload.supersedes_version) for p in published] == [
        (1, None),
        (2, 1),
    ]
    assert published[1].payload.label == "0"
