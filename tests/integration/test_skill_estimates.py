"""Gold items through the running services: their labels teach the reliability ledger,
nothing reaches the hospital topic, and readers' skill estimates come out on
annotators.skill.v1."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from services.assignment.admin import register_annotators
from shared.db.pool import connect
from shared.events import REGISTRY, CategoricalValue, ConsensusPolicy
from shared.runtime import ServiceRuntime
from shared.topics import (
    ANNOTATORS_SKILL,
    CONSENSUS_REACHED,
    ITEMS_REGISTERED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
)
from tests import factories
from tests.integration.conftest import Kafka, dsn_for, wait_for_reliability_fold, wait_until
from tests.integration.test_pipeline import _known_to_submission

pytestmark = pytest.mark.integration

ANSWERS = {"sk-right": "1", "sk-wrong": "0"}  # the gold answer is "1"


def _registered(item_id: str) -> Callable[[], Awaitable[bool]]:
    return lambda: _known_to_submission(item_id)


async def test_gold_labels_yield_skill_estimates_and_no_consensus(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    definition = factories.task(
        policy=ConsensusPolicy(method="mv", min_labels=2, max_labels=3, threshold=0.7),
        require_assignment=False,
    )
    task_id = definition.task_id
    await register_annotators(dsn_for("assignment"), task_id, list(ANSWERS), "reader")
    await kafka.publish(TASKS_DEFINED, factories.task_event(definition))
    items = []
    for _ in range(2):
        item = factories.item_event(task_id, gold_value=CategoricalValue(label="1"))
        await kafka.publish(ITEMS_REGISTERED, item)
        items.append(item.payload.item_id)
    for item_id in items:
        await wait_until(_registered(item_id))

    async def answer(item_id: str) -> None:
        for reader, value in ANSWERS.items():
            await kafka.publish(
                LABELS_SUBMITTED, factories.label_event(item_id, task_id, reader, value)
            )

    conn = await connect(dsn_for("consensus"), "consensus")
    try:
        await answer(items[0])
        # The first gold item's readers are in a reliability snapshot the service uses.
        await wait_for_reliability_fold(conn, items[0], deltas=2)
        await answer(items[1])
        async with kafka.reader(ANNOTATORS_SKILL) as reader:
            records = await reader.until(
                lambda r: REGISTRY.decode(r.value).payload.task_id == task_id, count=2
            )
        statuses = await conn.fetch(
            "SELECT status FROM item_state WHERE item_id = ANY($1::text[])", items
        )
    finally:
        await conn.close()
    estimates = {REGISTRY.decode(r.value).payload.annotator_id: REGISTRY.decode(r.value).payload
                 for r in records}  # fmt: skip
    assert {r.key for r in records} == {a.encode() for a in ANSWERS}
    right, wrong = estimates["sk-right"], estimates["sk-wrong"]
    assert (right.gold_labels, right.gold_accuracy) == (2, 1.0)
    assert (wrong.gold_labels, wrong.gold_accuracy) == (2, 0.0)
    assert right.skill is not None and wrong.skill is not None and right.skill > wrong.skill
    assert [row["status"] for row in statuses] == ["gold", "gold"]
    async with kafka.reader(CONSENSUS_REACHED) as reader:
        decided = await reader.drain(1.0)
    assert not [r for r in decided if r.key is not None and r.key.decode() in items]
