"""Consensus handlers on a real PostgreSQL transaction (rolled back): adjudicators' labels
close items with their rationale, gold items measure readers and stay unpublished, and
readers' skill estimates are published at a bounded rate."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from services.consensus.handlers import ConsensusHandlers
from services.consensus.reliability_store import PgReliability
from services.consensus.skills import EVERY_LABELS
from services.submission.handlers import label_id_for
from shared.envelope import Envelope
from shared.events import (
    LABEL_ACCEPTED,
    LABEL_RETRACTED,
    AdjudicationRationale,
    CategoricalValue,
    ConsensusPolicy,
    LabelAccepted,
    LabelRetracted,
    TaskDefined,
)
from shared.kafka.consumer import HandlerContext
from tests import factories
from tests.integration.test_handlers import _outbox_events, handler_context

pytestmark = pytest.mark.integration

# Two agreeing readers settle an item (0.9); a third who disagrees makes it contested.
POLICY = ConsensusPolicy(method="mv", min_labels=2, max_labels=3, threshold=0.9)

Context = Callable[[Envelope[Any]], HandlerContext]


def _accepted(
    item_id: str,
    task_id: str,
    annotator: str,
    value: str,
    *,
    rationale: AdjudicationRationale | None = None,
) -> Envelope[LabelAccepted]:
    event_id = uuid.uuid4()
    label = LabelAccepted(
        label_id=label_id_for(event_id),
        annotation_id=uuid.uuid4(),
        revision=1,
        item_id=item_id,
        task_id=task_id,
        task_version=1,
        annotator_id=annotator,
        client_id=factories.CLIENT_ID,
        received_at=factories.NOW,
        raw_sha256="0" * 64,
        value=CategoricalValue(label=value),
        labeled_at=factories.NOW,
        role="adjudicator" if rationale is not None else "reader",
        adjudication=rationale,
    )
    return LABEL_ACCEPTED.wrap(
        label,
        key=item_id,
        producer="submission",
        event_id=uuid.uuid4(),
        occurred_at=factories.NOW,
        correlation_id=uuid.uuid4(),
    )


class Consensus:
    """The consensus handlers fed one event at a time; `emitted` holds each call's events."""

    def __init__(self, context: Context, handlers: ConsensusHandlers | None = None) -> None:
        self.context = context
        self.handlers = handlers or ConsensusHandlers(PgReliability())

    async def handle(self, event: Envelope[Any]) -> list[Envelope[Any]]:
        ctx = self.context(event)
        before = len(ctx.emitter.outbox._rows)
        h = self.handlers
        handler: Any = {
            "task.defined": h.on_task_defined,
            "item.registered": h.on_item_registered,
            "label.accepted": h.on_label_accepted,
            "label.retracted": h.on_label_retracted,
        }[event.event_type]
        await handler(ctx, event)
        return _outbox_events(ctx)[before:]

    async def task(self, **overrides: Any) -> TaskDefined:
        overrides.setdefault("policy", POLICY)
        definition = factories.task(**overrides)
        await self.handle(factories.task_event(definition))
        return definition

    async def status(self, item_id: str) -> tuple[str, int]:
        row = await self.context(factories.task_event(factories.task())).conn.fetchrow(
            "SELECT status, consensus_version FROM item_state WHERE item_id = $1", item_id
        )
        assert row is not None
        return row["status"], row["consensus_version"]


def _of(events: list[Envelope[Any]], event_type: str) -> list[Any]:
    return [e.payload for e in events if e.event_type == event_type]


async def test_an_adjudicators_label_closes_a_contested_item_with_the_rationale(
    stack: Any,
) -> None:
    async with handler_context("consensus") as context:
        consensus = Consensus(context)
        task = await consensus.task(
            policy=ConsensusPolicy(method="mv", max_labels=3, threshold=0.9)
        )
        item = f"item-{uuid.uuid4().hex[:8]}"
        escalations = []
        for reader, value in (("r-a", "1"), ("r-b", "0"), ("r-c", "1")):
            emitted = await consensus.handle(_accepted(item, task.task_id, reader, value))
            escalations += _of(emitted, "adjudication.requested")
        assert len(escalations) == 1 and await consensus.status(item) == ("contested", 0)

        rationale = factories.rationale("1")
        decision = _accepted(item, task.task_id, "adj-1", "1", rationale=rationale)
        (reached,) = _of(await consensus.handle(decision), "consensus.reached")
        assert await consensus.status(item) == ("reached", 1)

        # Re-deciding the item (a reader withdraws) keeps the adjudicator and rationale.
        withdrawn = _accepted(item, task.task_id, "r-x", "0")
        republished = _of(await consensus.handle(withdrawn), "consensus.reached")
        republished += _of(await consensus.handle(_retraction(withdrawn)), "consensus.reached")
    assert reached.adjudicator_id == "adj-1" and reached.adjudication == rationale
    assert reached.decision.label == "1" and reached.decision.method == "adjudication"
    assert decision.payload.label_id in reached.decision.contributing_label_ids
    assert reached.consensus_version == 1
    assert [r.consensus_version for r in republished] == [2, 3]
    assert all(r.adjudicator_id == "adj-1" and r.adjudication == rationale for r in republished)


def _retraction(accepted: Envelope[LabelAccepted]) -> Envelope[LabelRetracted]:
    label = accepted.payload
    return LABEL_RETRACTED.wrap(
        LabelRetracted(
            **label.model_dump(include=set(LabelRetracted.model_fields) - {"retracted_at"}),
            retracted_at=factories.NOW,
        ),
        key=label.item_id,
        producer="submission",
        event_id=uuid.uuid4(),
        occurred_at=factories.NOW,
        correlation_id=uuid.uuid4(),
    )


async def test_a_withdrawn_adjudication_sends_the_item_back_to_adjudication(stack: Any) -> None:
    async with handler_context("consensus") as context:
        consensus = Consensus(context)
        task = await consensus.task(
            policy=ConsensusPolicy(method="mv", max_labels=3, threshold=0.9)
        )
        item = f"item-{uuid.uuid4().hex[:8]}"
        for reader, value in (("r-a", "1"), ("r-b", "0"), ("r-c", "1")):
            await consensus.handle(_accepted(item, task.task_id, reader, value))
        decision = _accepted(item, task.task_id, "adj-1", "1", rationale=factories.rationale("1"))
        await consensus.handle(decision)
        again = await consensus.handle(_retraction(decision))
        status = await consensus.status(item)
    (request,) = _of(again, "adjudication.requested")
    assert request.decision.outcome == "contested" and status == ("contested", 1)


async def test_an_adjudicated_item_that_was_published_before_gets_a_new_version(
    stack: Any,
) -> None:
    async with handler_context("consensus") as context:
        consensus = Consensus(context)
        task = await consensus.task()
        item = f"item-{uuid.uuid4().hex[:8]}"
        await consensus.handle(_accepted(item, task.task_id, "r-a", "1"))
        (first,) = _of(
            await consensus.handle(_accepted(item, task.task_id, "r-b", "1")), "consensus.reached"
        )
        late = await consensus.handle(_accepted(item, task.task_id, "r-c", "0"))
        assert _of(late, "adjudication.requested") and not _of(late, "consensus.reached")
        assert await consensus.status(item) == ("contested", 1)
        rationale = factories.rationale("1", reason_code="late_dissent_overruled")
        decision = _accepted(item, task.task_id, "adj-2", "1", rationale=rationale)
        (second,) = _of(await consensus.handle(decision), "consensus.reached")
        assert await consensus.status(item) == ("reached", 2)
    assert first.consensus_version == 1 and first.adjudicator_id is None
    assert second.consensus_version == 2 and second.decision.label == "1"
    assert second.adjudicator_id == "adj-2" and second.adjudication == rationale


async def test_a_gold_item_measures_its_readers_and_is_never_published_extended_or_escalated(
    stack: Any,
) -> None:
    async with handler_context("consensus") as context:
        consensus = Consensus(context)
        task = await consensus.task()
        gold = factories.item_event(task.task_id, gold_value=CategoricalValue(label="1"))
        item = gold.payload.item_id
        assert await consensus.handle(gold) == []
        emitted = []
        for reader, value in (("g-a", "1"), ("g-b", "0"), ("g-c", "0")):
            emitted += await consensus.handle(_accepted(item, task.task_id, reader, value))
        conn = context(gold).conn
        deltas = await conn.fetch("SELECT delta FROM reliability_deltas WHERE item_id = $1", item)
        counts = await conn.fetch(
            """SELECT annotator_id, labels, gold_labels, gold_correct FROM annotator_skill
               WHERE task_id = $1 ORDER BY annotator_id""",
            task.task_id,
        )
        status = await consensus.status(item)
    assert [e.event_type for e in emitted] == []
    assert status == ("gold", 0)
    # Each reader's column learned the gold class (row "1"): the delta scored them against it.
    learned = {(key, column) for d in deltas for _, key, column, _ in d["delta"]["entries"]}
    assert {("g-a", 1), ("g-b", 0), ("g-c", 0)} <= learned
    assert [tuple(r) for r in counts] == [("g-a", 1, 1, 1), ("g-b", 1, 1, 0), ("g-c", 1, 1, 0)]


async def test_a_gold_registration_that_arrives_after_labels_turns_the_item_gold(
    stack: Any,
) -> None:
    async with handler_context("consensus") as context:
        consensus = Consensus(context)
        task = await consensus.task()
        item = f"item-{uuid.uuid4().hex[:8]}"
        first = await consensus.handle(_accepted(item, task.task_id, "g-a", "0"))
        assert _of(first, "consensus.reached") == []
        late = factories.item_event(task.task_id, item, gold_value=CategoricalValue(label="0"))
        assert await consensus.handle(late) == []
        second = await consensus.handle(_accepted(item, task.task_id, "g-b", "0"))
        status = await consensus.status(item)
    assert [e.event_type for e in second] == [] and status == ("gold", 0)


async def test_skill_estimates_follow_gold_results_at_a_bounded_rate(stack: Any) -> None:
    reliability = PgReliability()
    async with handler_context("consensus") as context:
        consensus = Consensus(context, ConsensusHandlers(reliability))
        task = await consensus.task()
        conn = context(factories.task_event(task)).conn

        async def fold_committed_deltas() -> None:
            # What the background refresh does once the handlers' transactions commit.
            from services.consensus.engine.reliability import ReliabilityDelta

            rows = await conn.fetch("SELECT delta FROM reliability_deltas ORDER BY id")
            ledger = type(reliability.ledger)()
            for row in rows:
                ledger.apply(ReliabilityDelta.from_dict(row["delta"]))
            reliability.current = ledger.snapshot()

        async def gold_item(answers: dict[str, str]) -> list[Any]:
            event = factories.item_event(task.task_id, gold_value=CategoricalValue(label="1"))
            await consensus.handle(event)
            estimates = []
            for reader, value in answers.items():
                emitted = await consensus.handle(
                    _accepted(event.payload.item_id, task.task_id, reader, value)
                )
                estimates += _of(emitted, "annotator.skill_estimated")
            return estimates

        # Nothing is known of the readers yet: no estimate.
        assert await gold_item({"s-good": "1", "s-poor": "0"}) == []
        await fold_committed_deltas()
        first = {e.annotator_id: e for e in await gold_item({"s-good": "1", "s-poor": "0"})}
        # A label on an ordinary item while the ledger stands still: nothing new to say.
        ordinary = f"item-{uuid.uuid4().hex[:8]}"
        quiet = _of(
            await consensus.handle(_accepted(ordinary, task.task_id, "s-good", "1")),
            "annotator.skill_estimated",
        )
        await fold_committed_deltas()
        # A right answer at last: the gold accuracy moved, so an estimate goes out.
        moved = await gold_item({"s-poor": "1"})
    good, poor = first["s-good"], first["s-poor"]
    assert good.labels == 2 and good.gold_labels == 2 and good.gold_accuracy == 1.0
    assert poor.gold_labels == 2 and poor.gold_accuracy == 0.0
    assert good.skill is not None and poor.skill is not None and good.skill > 0.7 > poor.skill
    assert good.agreement_with_consensus == 1.0 and poor.agreement_with_consensus == 0.0
    assert quiet == [] and EVERY_LABELS > 3
    (update,) = moved
    assert update.annotator_id == "s-poor" and update.gold_accuracy == pytest.approx(1 / 3)
    # The ledger it read holds both earlier wrong answers: a lower skill than the first.
    assert update.skill is not None and update.skill < poor.skill and update.labels == 3
