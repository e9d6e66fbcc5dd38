"""The adjudication scenario, through the four services on the real Kafka, PostgreSQL and
Redis: three readers disagree on a case, consensus asks for a fourth, the case is still
contested, it reaches an adjudicator of the right queue who is none of its readers, and
the adjudicator's signed decision closes it and reaches the hospital topic with its
rationale."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.assignment.admin import AnnotatorProfile, register_annotators
from services.cli.export_cmd import replay_published
from shared.db.pool import connect
from shared.events import REGISTRY, AssignmentRules, ConsensusPolicy
from shared.runtime import ServiceRuntime
from shared.settings import SERVICES
from shared.topics import (
    ADJUDICATION_REQUESTED,
    ASSIGNMENTS_ISSUED,
    ASSIGNMENTS_REQUESTED,
    CONSENSUS_LABELS,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
)
from tests import factories
from tests.integration.conftest import Kafka, dsn_for, wait_until
from tests.integration.test_pipeline import _known_to_submission

pytestmark = pytest.mark.integration

READERS = ("sc-reader-1", "sc-reader-2", "sc-reader-3", "sc-reader-4")
THORACIC = "sc-adj-thoracic"  # the queue the task routes to
NEURO = "sc-adj-neuro"  # an adjudicator of another specialty: never chosen
FIRST_READS = ("1", "0", "1")  # 2-1: below the 0.9 threshold, so one more reader
FOURTH_READ = "0"  # 2-2 at max_labels: contested


def _event(record: Any) -> Any:
    return REGISTRY.decode(record.value)


def _issued_for(item_id: str, kind: str) -> Any:
    def matches(record: Any) -> bool:
        event = _event(record)
        return bool(
            event.event_type == "assignment.issued"
            and event.payload.item_id == item_id
            and event.payload.kind == kind
        )

    return matches


async def _define(kafka: Kafka) -> tuple[str, str]:
    definition = factories.task(
        policy=ConsensusPolicy(method="mv", min_labels=3, max_labels=4, threshold=0.9),
        assignment=AssignmentRules(specialty="thoracic", adjudication_sla_seconds=3600),
    )
    task_id = definition.task_id
    dsn = dsn_for("assignment")
    await register_annotators(dsn, task_id, list(READERS), "reader")
    await register_annotators(
        dsn, task_id, [THORACIC], "adjudicator", AnnotatorProfile(specialty="thoracic")
    )
    await register_annotators(
        dsn, task_id, [NEURO], "adjudicator", AnnotatorProfile(specialty="neuro")
    )
    await kafka.publish(TASKS_DEFINED, factories.task_event(definition))
    item = factories.item_event(task_id)
    await kafka.publish(ITEMS_REGISTERED, item)
    await wait_until(lambda: _known_to_submission(item.payload.item_id))
    return task_id, item.payload.item_id


async def _read(kafka: Kafka, task_id: str, item_id: str, assignment: Any, value: str) -> None:
    """The front-end answers a reader's assignment with their label."""
    await kafka.publish(
        LABELS_SUBMITTED,
        factories.label_event(
            item_id,
            task_id,
            assignment.annotator_id,
            value,
            assignment_id=assignment.assignment_id,
        ),
    )


async def test_a_contested_case_is_closed_by_an_adjudicators_signed_decision(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    task_id, item_id = await _define(kafka)

    # Three readers disagree (2-1).
    async with kafka.reader(ASSIGNMENTS_ISSUED) as reader:
        first = [
            _event(r).payload for r in await reader.until(_issued_for(item_id, "label"), count=3)
        ]
    for assignment, value in zip(first, FIRST_READS, strict=True):
        await _read(kafka, task_id, item_id, assignment, value)

    # Consensus asks for a fourth reader, who still does not settle it (2-2).
    async with kafka.reader(ASSIGNMENTS_REQUESTED) as reader:
        (request,) = await reader.until(lambda r: _event(r).payload.item_id == item_id)
    assert _event(request).payload.labels_so_far == 3
    async with kafka.reader(ASSIGNMENTS_ISSUED) as reader:
        issued = await reader.until(_issued_for(item_id, "label"), count=4)
    (fourth,) = [
        a for a in (_event(r).payload for r in issued) if a.annotator_id not in
        {f.annotator_id for f in first}
    ]  # fmt: skip
    await _read(kafka, task_id, item_id, fourth, FOURTH_READ)
    readers = {a.annotator_id for a in (*first, fourth)}
    assert readers == set(READERS)

    async with kafka.reader(ADJUDICATION_REQUESTED) as reader:
        (escalation,) = await reader.until(lambda r: _event(r).payload.item_id == item_id)
    assert _event(escalation).payload.decision.outcome == "contested"
    assert _event(escalation).payload.decision.votes == {"0": 2.0, "1": 2.0}

    # The thoracic queue's adjudicator gets it, with the evidence; no reader, no neuro.
    async with kafka.reader(ASSIGNMENTS_ISSUED) as reader:
        (record,) = await reader.until(_issued_for(item_id, "adjudication"), timeout=45)
    adjudication = _event(record).payload
    assert adjudication.annotator_id == THORACIC and adjudication.annotator_id not in readers
    assert adjudication.tier == 1
    assert adjudication.evidence is not None and adjudication.evidence.outcome == "contested"

    # The adjudicator signs a decision with a rationale.
    rationale = factories.rationale(
        "pneumothorax present",
        reason_code="reader_error",
        guideline_clause="4.2 apical pneumothorax",
        text="visceral pleural line at the apex, no lung markings beyond it",
    )
    decision = factories.label_event(
        item_id,
        task_id,
        THORACIC,
        "1",
        assignment_id=adjudication.assignment_id,
        adjudication=rationale,
    )
    await kafka.publish(LABELS_SUBMITTED, decision)

    async with kafka.reader(LABELS_ACCEPTED) as reader:
        (accepted,) = await reader.until(
            lambda r: r.key == item_id.encode() and _event(r).payload.annotator_id == THORACIC
        )
    assert _event(accepted).payload.role == "adjudicator"

    # It closes the item and reaches the hospital topic with its rationale.
    async with kafka.reader(CONSENSUS_LABELS) as reader:
        (published_record,) = await reader.until(lambda r: r.key == item_id.encode(), timeout=45)
    published = _event(published_record).payload
    assert published.label == "1" and published.version == 1
    assert published.method == "adjudication" and published.confidence == 1.0
    assert published.adjudicator_id == THORACIC
    assert published.adjudication == rationale
    assert (
        published.adjudication.signature_meaning == "I adjudicate this case as pneumothorax present"
    )

    # The decision and what was signed are in submission's audit chain.
    conn = await connect(dsn_for("submission"), "submission")
    try:
        body = await conn.fetchval(
            "SELECT body FROM audit.log WHERE event_id = $1 AND kind = 'label.adjudicated'",
            decision.event_id,
        )
    finally:
        await conn.close()
    audited = json.loads(body) if isinstance(body, str) else body
    assert audited["annotator_id"] == THORACIC and audited["value"]["label"] == "1"
    assert audited["adjudication"] == rationale.model_dump(mode="json")

    # Replay re-derives the adjudicated decision from submission's raw labels.
    report = await replay_published(task_id, {s: dsn_for(s) for s in SERVICES})
    assert (report.checked, report.reproduced) == (1, 1), report.mismatches
