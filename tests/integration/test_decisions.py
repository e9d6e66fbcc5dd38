"""Decisions that are not 'reached': one more label, escalation, and the reliability ledger."""

from __future__ import annotations

from typing import Any

import pytest

from services.assignment.admin import register_annotators
from shared.db.pool import connect
from shared.events import REGISTRY, ConsensusPolicy, MultiLabelValue
from shared.runtime import ServiceRuntime
from shared.topics import (
    ADJUDICATION_REQUESTED,
    ASSIGNMENTS_ISSUED,
    ASSIGNMENTS_REQUESTED,
    ITEMS_REGISTERED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
)
from tests import factories
from tests.integration.conftest import Kafka, dsn_for, wait_for_reliability_fold, wait_until
from tests.integration.test_pipeline import _known_to_submission

pytestmark = pytest.mark.integration
READERS = ("reader-a", "reader-b", "reader-c", "reader-d")


async def _item_with_policy(kafka: Kafka, policy: ConsensusPolicy, **task: Any) -> tuple[str, str]:
    # These tests are about decisions: labels need no live assignment (the split-item test
    # still answers the real assignments; test_submission covers the assignment rule).
    definition = factories.task(policy=policy, require_assignment=False, **task)
    await register_annotators(dsn_for("assignment"), definition.task_id, list(READERS), "reader")
    await kafka.publish(TASKS_DEFINED, factories.task_event(definition))
    return definition.task_id, await _new_item(kafka, definition.task_id)


async def _new_item(kafka: Kafka, task_id: str) -> str:
    item = factories.item_event(task_id)
    await kafka.publish(ITEMS_REGISTERED, item)
    await wait_until(lambda: _known_to_submission(item.payload.item_id))
    return item.payload.item_id


def _for_item(item_id: str):  # type: ignore[no-untyped-def]
    return lambda record: REGISTRY.decode(record.value).payload.item_id == item_id


async def test_a_split_item_asks_for_one_more_label_from_a_reader_not_yet_on_it(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    task_id, item_id = await _item_with_policy(
        kafka, ConsensusPolicy(method="mv", min_labels=3, max_labels=5, threshold=0.9)
    )
    async with kafka.reader(ASSIGNMENTS_ISSUED) as reader:
        initial = await reader.until(_for_item(item_id), count=3)
    assigned = [REGISTRY.decode(r.value).payload.annotator_id for r in initial]
    for annotator, value in zip(assigned, ("1", "0", "1"), strict=True):
        await kafka.publish(
            LABELS_SUBMITTED, factories.label_event(item_id, task_id, annotator, value)
        )

    async with kafka.reader(ASSIGNMENTS_REQUESTED) as reader:
        (record,) = await reader.until(_for_item(item_id))
    request = REGISTRY.decode(record.value).payload
    assert request.labels_so_far == 3
    assert set(request.exclude_annotators) == set(assigned)
    async with kafka.reader(ASSIGNMENTS_ISSUED) as reader:
        issued = await reader.until(_for_item(item_id), count=4)
    assert {REGISTRY.decode(r.value).payload.annotator_id for r in issued} == set(READERS)


async def test_a_multilabel_item_in_doubt_asks_for_the_readers_its_findings_know(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    # Multi-label reliability lives in one ledger scope per finding; the request ranks the
    # readers known there instead of leaving the choice to the assignment service.
    policy = ConsensusPolicy(method="ds", min_labels=2, max_labels=4, threshold=0.99)
    findings = {"label_kind": "multilabel", "classes": ("effusion", "edema")}
    task_id, first = await _item_with_policy(kafka, policy, initial_overlap=2, **findings)

    async def report(item_id: str, annotator: str, present: tuple[str, ...]) -> None:
        value = MultiLabelValue(findings=present)
        event = factories.label_event(item_id, task_id, annotator, "", label_value=value)
        await kafka.publish(LABELS_SUBMITTED, event)

    for annotator in READERS:
        await report(first, annotator, ("effusion",))
    conn = await connect(dsn_for("consensus"), "consensus")
    try:
        await wait_for_reliability_fold(conn, first, deltas=len(READERS))
    finally:
        await conn.close()

    split = await _new_item(kafka, task_id)
    await report(split, "reader-a", ("effusion",))
    await report(split, "reader-b", ())
    async with kafka.reader(ASSIGNMENTS_REQUESTED) as reader:
        (record,) = await reader.until(_for_item(split))
    request = REGISTRY.decode(record.value).payload
    assert request.labels_so_far == 2
    assert set(request.exclude_annotators) == {"reader-a", "reader-b"}
    assert sorted(request.preferred_annotators) == ["reader-c", "reader-d"]


async def test_an_item_without_confidence_at_its_label_budget_is_escalated_with_evidence(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    task_id, item_id = await _item_with_policy(
        kafka, ConsensusPolicy(method="mv", min_labels=3, max_labels=4, threshold=0.9)
    )
    labels = [
        factories.label_event(item_id, task_id, reader, value)
        for reader, value in zip(READERS, ("1", "0", "1", "0"), strict=True)
    ]
    for label in labels:
        await kafka.publish(LABELS_SUBMITTED, label)

    async with kafka.reader(ADJUDICATION_REQUESTED) as reader:
        (record,) = await reader.until(_for_item(item_id))
    escalation = REGISTRY.decode(record.value).payload
    assert escalation.decision.outcome == "contested"
    assert escalation.decision.label is None or escalation.decision.confidence < 0.9
    assert len(escalation.decision.contributing_label_ids) == 4
    assert escalation.decision.votes == {"0": 2.0, "1": 2.0}


async def test_a_critical_finding_escalates_at_once(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    task_id, item_id = await _item_with_policy(
        kafka,
        ConsensusPolicy(
            method="mv", min_labels=3, max_labels=5, threshold=0.7, critical_labels=("1",)
        ),
    )
    await kafka.publish(LABELS_SUBMITTED, factories.label_event(item_id, task_id, "reader-a", "1"))
    async with kafka.reader(ADJUDICATION_REQUESTED) as reader:
        (record,) = await reader.until(_for_item(item_id))
    assert REGISTRY.decode(record.value).payload.decision.reason == "critical finding reported"


async def test_decisions_record_the_reliability_snapshot_they_used(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    task_id, item_id = await _item_with_policy(
        kafka, ConsensusPolicy(method="ds", min_labels=3, max_labels=3, threshold=0.5)
    )
    for reader, value in zip(READERS[:3], ("1", "1", "0"), strict=True):
        await kafka.publish(
            LABELS_SUBMITTED, factories.label_event(item_id, task_id, reader, value)
        )
    conn = await connect(dsn_for("consensus"), "consensus")
    try:
        await wait_until(
            lambda: conn.fetchval("SELECT count(*) >= 3 FROM decisions WHERE item_id = $1", item_id)
        )
        await wait_until(
            lambda: conn.fetchval(
                "SELECT count(*) > 0 FROM reliability_deltas WHERE item_id = $1", item_id
            )
        )
        versions = await conn.fetch(
            "SELECT record->>'reliability_version' AS v FROM decisions WHERE item_id = $1", item_id
        )
        for row in versions:
            stored = await conn.fetchval(
                "SELECT count(*) FROM reliability_snapshots WHERE version = $1", row["v"]
            )
            # The empty ledger is the one snapshot that needs no row to be replayed.
            assert stored == 1 or row["v"] == "rel:" + "0" * 32
    finally:
        await conn.close()
