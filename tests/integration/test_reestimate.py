"""The reliability re-estimate on the real consensus schema: an item decided early under
an empty reliability flips once its readers' reliability is known, and only that item is
published again, once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.consensus import engine
from services.consensus.engine.reliability import ReliabilityLedger, ReliabilitySnapshot
from services.consensus.handlers import ConsensusHandlers
from services.consensus.policies import engine_policy
from services.consensus.reestimate import REASON, reestimate
from services.consensus.reliability_store import PgReliability
from services.consensus.scoped import TaskView, scoped_delta
from shared.events import LABEL_ACCEPTED, REGISTRY, ConsensusPolicy, TaskDefined
from tests import factories
from tests.integration.test_handlers import _accepted_from, handler_context

pytestmark = pytest.mark.integration


def _learned(task: TaskDefined) -> ReliabilitySnapshot:
    """Reliability after 40 items on which readers a, d and e agree and b and c, always
    together, say the opposite: b and c are learned to be wrong."""
    policy = engine_policy(task)
    ledger = ReliabilityLedger()
    for index in range(40):
        truth = str(index % 2)
        state = engine.ItemState.new(f"training-{index}")
        for reader in ("a", "d", "e", "b", "c"):
            said = truth if reader in "ade" else str(1 - int(truth))
            observed = engine.LabelObservation(str(uuid.uuid4()), f"reader-{reader}", said)
            result = engine.step(policy, state, observed, TaskView(ledger, task.task_id))
            ledger.apply(scoped_delta(task.task_id, result.delta))
            state = result.state
    return ledger.snapshot()


async def test_an_item_whose_label_flips_under_learned_reliability_is_published_again(
    stack: Any,
) -> None:
    task = factories.task(
        policy=ConsensusPolicy(method="ds", min_labels=3, max_labels=3, threshold=0.6)
    )
    handlers = ConsensusHandlers(PgReliability())  # empty reliability: majority decides
    flipping, steady = (f"re-{uuid.uuid4().hex[:8]}" for _ in range(2))
    async with handler_context("consensus") as context:
        defined = factories.task_event(task)
        await handlers.on_task_defined(context(defined), defined)
        votes = {
            flipping: (("reader-a", "1"), ("reader-b", "0"), ("reader-c", "0")),
            steady: (("reader-a", "1"), ("reader-d", "1"), ("reader-e", "1")),
        }
        for item_id, labels in votes.items():
            for reader, value in labels:
                submitted = factories.label_event(item_id, task.task_id, reader, value)
                accepted = LABEL_ACCEPTED.wrap(
                    _accepted_from(submitted), key=item_id, producer="tests",
                    event_id=uuid.uuid4(), occurred_at=factories.NOW,
                    correlation_id=submitted.correlation_id,
                )  # fmt: skip
                await handlers.on_label_accepted(context(accepted), accepted)
        conn = context(defined).conn
        before = await conn.fetchval(
            "SELECT state->>'published_label' FROM item_state WHERE item_id = $1", flipping
        )

        handlers.reliability.current = _learned(task)
        report = await reestimate(
            conn, handlers, task_id=task.task_id, topic_prefix="", now=lambda: factories.NOW
        )
        again = await reestimate(
            conn, handlers, task_id=task.task_id, topic_prefix="", now=lambda: factories.NOW
        )
        rows = await conn.fetch(
            "SELECT key, value FROM outbox WHERE key = ANY($1::bytea[]) ORDER BY id",
            [flipping.encode(), steady.encode()],
        )
        version = await conn.fetchval(
            "SELECT consensus_version FROM item_state WHERE item_id = $1", flipping
        )
    assert before == "0"
    assert (report.checked, report.flipped) == (2, [flipping])
    assert (again.checked, again.flipped) == (2, [])
    (row,) = rows
    event = REGISTRY.decode(row["value"])
    assert event.event_type == "consensus.reached"
    assert event.payload.item_id == flipping
    assert event.payload.consensus_version == version == 2
    assert event.payload.decision.label == "1"
    assert event.payload.decision.reason == REASON
    assert event.payload.decision.reliability_version == handlers.reliability.current.version
