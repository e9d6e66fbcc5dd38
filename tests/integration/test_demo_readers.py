"""The demo counts each item's readers from the assignment topic, read to its end."""

from __future__ import annotations

import uuid
from typing import Literal

import pytest

from services.cli.datasets import Answer
from services.cli.demo import readers_assigned
from services.cli.demo_plan import make_plan
from shared.kafka.admin import delete_topics, ensure_topics
from shared.settings import StackSettings
from shared.topics import ASSIGNMENTS_ISSUED
from tests import factories
from tests.integration.conftest import Kafka

pytestmark = pytest.mark.integration

ANSWERS = [
    Answer("bc4", "patient1/study1|Edema", "1"),
    Answer("bc6", "patient1/study1|Edema", "0"),
    Answer("bc8", "patient1/study2|Edema", "1"),
]


async def test_every_reader_assignment_for_the_plans_items_is_counted_once(
    stack: StackSettings, kafka: Kafka
) -> None:
    # A prefix of its own: no running service consumes these assignments.
    own = StackSettings(topic_prefix=f"d{uuid.uuid4().hex[:8]}.")
    await ensure_topics(own, (ASSIGNMENTS_ISSUED,))
    try:
        publisher = Kafka(own, kafka.producer)
        plan = make_plan("demo-readers", ANSWERS, uuid.uuid4().hex[:8])
        first, second = sorted(plan.item_task)
        task = plan.item_task[first]
        issued: list[tuple[str, str, Literal["label", "adjudication"]]] = [
            (first, "bc4", "label"),
            (first, "bc6", "label"),
            (first, "bc6", "label"),  # reissued after an expired lease: one reader
            (first, "demo-adjudicator", "adjudication"),  # not a reader
            (second, "bc8", "label"),
            ("someone-elses-item", "bc4", "label"),
        ]
        for item, reader, kind in issued:
            event = factories.assignment_event(item, task, reader, kind=kind)
            await publisher.publish(ASSIGNMENTS_ISSUED, event)

        readers = await readers_assigned(own, plan)
    finally:
        await delete_topics(own)
    assert dict(readers) == {first: {"bc4", "bc6"}, second: {"bc8"}}
