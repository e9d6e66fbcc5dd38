"""The consensus an item gets does not depend on how often its label events arrive or in
which order its revisions do: the same labels sent once each in one order, and five times
each in another, come out as the same published consensus."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest

from shared.db.pool import connect
from shared.events import REGISTRY, ConsensusPolicy
from shared.runtime import ServiceRuntime
from shared.topics import (
    CONSENSUS_LABELS,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
)
from tests import factories
from tests.integration.conftest import Kafka, dsn_for, wait_until

pytestmark = pytest.mark.integration

# (annotator, revision, value): the last revision of each annotation is what counts.
HISTORY = (
    ("reader-a", 1, "0"),
    ("reader-a", 2, "1"),
    ("reader-b", 1, "1"),
    ("reader-c", 1, "0"),
    ("reader-c", 2, "0"),
    ("reader-c", 3, "1"),
)
# The fourth reader comes last in both orders: with min_labels=4 it is what lets the
# engine decide, so both items are decided on their complete (final) input.
LAST = ("reader-d", 1, "0")


async def _item(kafka: Kafka, task_id: str) -> str:
    item = factories.item_event(task_id)
    await kafka.publish(ITEMS_REGISTERED, item)
    return item.payload.item_id


def _events(item_id: str, task_id: str) -> dict[tuple[str, int], tuple[bytes, Any]]:
    """The signed records of HISTORY + LAST for one item (fresh ids, same values)."""
    annotations = {reader: uuid.uuid4() for reader, _, _ in (*HISTORY, LAST)}
    records = {}
    for reader, revision, value in (*HISTORY, LAST):
        event = factories.label_event(
            item_id, task_id, reader, value, annotation_id=annotations[reader], revision=revision
        )
        raw = event.encode()
        records[(reader, revision)] = (raw, factories.sign(raw))
    return records


async def _publish(kafka: Kafka, item_id: str, order: list[tuple[bytes, Any]]) -> None:
    topic = LABELS_SUBMITTED.qualified(kafka.stack.topic_prefix)
    sent = [
        await kafka.producer.send(topic, raw, key=item_id.encode(), headers=headers)
        for raw, headers in order
    ]
    await asyncio.gather(*sent)


async def test_duplicates_and_revision_order_do_not_change_the_consensus(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    task = factories.task(
        require_assignment=False,
        initial_overlap=1,
        policy=ConsensusPolicy(method="mv", min_labels=4, max_labels=6, threshold=0.7),
    )
    await kafka.publish(TASKS_DEFINED, factories.task_event(task))
    once_item, often_item = await _item(kafka, task.task_id), await _item(kafka, task.task_id)

    async def registered() -> bool:
        conn = await connect(dsn_for("submission"), "submission")
        try:
            found = await conn.fetchval(
                "SELECT count(*) FROM items WHERE item_id = ANY($1::text[])",
                [once_item, often_item],
            )
            return bool(found == 2)
        finally:
            await conn.close()

    await wait_until(registered)

    # Once each, highest revisions first (every lower one arrives late, superseded).
    once = _events(once_item, task.task_id)
    descending = sorted(HISTORY, key=lambda h: (-h[1], h[0]))
    await _publish(kafka, once_item, [once[(r, n)] for r, n, _ in (*descending, LAST)])
    # Five copies of each, revisions ascending, copies shuffled among each other.
    often = _events(often_item, task.task_id)
    copies = [often[(r, n)] for r, n, _ in HISTORY for _ in range(5)]
    random.Random(7).shuffle(copies)
    copies.sort(key=lambda c: _revision_rank(c, often))  # keep each reader's revisions ascending
    await _publish(kafka, often_item, [*copies, *[often[(LAST[0], LAST[1])]] * 5])

    accepted: dict[uuid.UUID, tuple[str, int, str]] = {}
    accepted_per_item: dict[str, list[tuple[str, int, str]]] = {once_item: [], often_item: []}
    published: dict[str, list[Any]] = {once_item: [], often_item: []}
    done = {once_item: False, often_item: False}
    last_label_ids: dict[str, set[uuid.UUID]] = {once_item: set(), often_item: set()}
    async with kafka.reader(LABELS_ACCEPTED, CONSENSUS_LABELS) as reader:
        deadline = asyncio.get_running_loop().time() + 60
        while not all(done.values()):
            assert asyncio.get_running_loop().time() < deadline, (published, accepted)
            for record in await reader.drain(0.5):
                key = record.key.decode() if record.key else ""
                if key not in published:
                    continue
                event = REGISTRY.decode(record.value)
                if event.event_type == "label.accepted":
                    p = event.payload
                    accepted[p.label_id] = (p.annotator_id, p.revision, p.value.label)
                    accepted_per_item[key].append(accepted[p.label_id])
                    if p.annotator_id == LAST[0]:
                        last_label_ids[key].add(p.label_id)
                elif event.event_type == "consensus.published":
                    published[key].append(event.payload)
                    if last_label_ids[key] & set(event.payload.contributing_label_ids):
                        done[key] = True
        published_more = await reader.drain(2.0)  # anything later would be a second decision
    keys = {once_item.encode(), often_item.encode()}
    later = [r for r in published_more if r.key in keys and r.topic.endswith("consensus.labels.v1")]
    assert not later

    # Every label was accepted exactly once per item, whatever the number of copies.
    assert sorted(accepted_per_item[once_item]) == sorted(accepted_per_item[often_item])
    assert len(accepted_per_item[often_item]) == len(HISTORY) + 1

    def summary(item: str) -> dict[str, Any]:
        final = published[item][-1]
        return {
            "versions": [p.version for p in published[item]],
            "label": final.label,
            "confidence": final.confidence,
            "distribution": final.distribution,
            "agreement": final.agreement,
            "method": final.method,
            "contributing": sorted(accepted[i] for i in final.contributing_label_ids),
            "annotators": sorted(final.contributing_annotators),
        }

    assert summary(once_item) == summary(often_item)
    # The winning revision of each annotation, not any earlier or later-arriving one.
    assert summary(once_item)["contributing"] == [
        ("reader-a", 2, "1"),
        ("reader-b", 1, "1"),
        ("reader-c", 3, "1"),
        ("reader-d", 1, "0"),
    ]
    assert summary(once_item)["label"] == "1"


def _revision_rank(copy: tuple[bytes, Any], events: dict[tuple[str, int], Any]) -> int:
    """A copy's revision number (a stable sort by it keeps the shuffle within a revision)."""
    return next(n for (_, n), value in events.items() if value == copy)
