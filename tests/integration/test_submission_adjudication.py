"""Submission's handlers for cancelled assignments and adjudicators' decisions, on a real
PostgreSQL transaction (rolled back at the end)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.audit import PgAuditLog
from tests import factories
from tests.integration.test_submission import submission

pytestmark = pytest.mark.integration


def _a_second_ago() -> datetime:
    # Broker timestamps have millisecond precision: keep the cancellation clearly earlier.
    return datetime.now(UTC) - timedelta(seconds=1)


async def test_an_adjudicators_decision_is_stored_forwarded_and_audited_with_its_rationale(
    stack: Any,
) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=())
        lease = factories.assignment_event(item_id, task.task_id, "adj-1", kind="adjudication")
        await sub.handle(lease)
        rationale = factories.rationale("1")
        decision = factories.label_event(
            item_id,
            task.task_id,
            "adj-1",
            "1",
            assignment_id=lease.payload.assignment_id,
            adjudication=rationale,
        )
        (accepted,) = await sub.handle(decision)
        row = await sub.conn.fetchrow(
            "SELECT role, adjudication FROM labels WHERE event_id = $1", decision.event_id
        )
        audit = await sub.conn.fetchrow(
            "SELECT body FROM audit.log WHERE event_id = $1 AND kind = 'label.adjudicated'",
            decision.event_id,
        )
        verified = await PgAuditLog(sub.conn, "submission").verify()
    assert accepted.event_type == "label.accepted"
    assert accepted.payload.role == "adjudicator"
    assert accepted.payload.adjudication == rationale
    assert row is not None and row["role"] == "adjudicator"
    assert row["adjudication"] == rationale.model_dump(mode="json")
    assert audit is not None
    body = json.loads(audit["body"]) if isinstance(audit["body"], str) else audit["body"]
    assert body["role"] == "adjudicator" and body["value"] == {"kind": "categorical", "label": "1"}
    assert body["adjudication"]["signature_meaning"] == "I adjudicate this case as 1"
    assert body["adjudication"]["reason_code"] == rationale.reason_code
    assert verified.ok


async def test_a_reader_cannot_decide_an_item_with_a_rationale(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, leases = await sub.item(annotators=("reader-a",))
        claimed = factories.label_event(
            item_id,
            task.task_id,
            "reader-a",
            "1",
            assignment_id=leases["reader-a"],
            adjudication=factories.rationale("1"),
        )
        found = factories.label_event(
            item_id, task.task_id, "reader-a", "1", adjudication=factories.rationale("1")
        )
        assert await sub.rejection(claimed) == "not_adjudicator"
        assert await sub.rejection(found) == "not_adjudicator"
        stored = await sub.conn.fetchval("SELECT count(*) FROM labels WHERE item_id = $1", item_id)
    assert stored == 0


async def test_a_decision_without_an_assignment_waits_then_is_answered_not_adjudicator(
    stack: Any,
) -> None:
    async with submission(assignment_wait_s=0.01) as sub:
        task, item_id, _ = await sub.item(annotators=())
        decision = factories.label_event(
            item_id, task.task_id, "adj-9", "1", adjudication=factories.rationale("1")
        )
        assert await sub.handle(decision) == []  # parked: the assignment may be on its way
        await asyncio.sleep(0.05)
        swept = await sub.handlers.sweep(sub.conn, "")
        (row,) = await sub.conn.fetch(
            "SELECT code FROM rejections WHERE event_id = $1", decision.event_id
        )
    assert swept >= 1 and row["code"] == "not_adjudicator"


async def test_an_answer_to_an_adjudication_without_a_rationale_is_rejected(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=())
        lease = factories.assignment_event(item_id, task.task_id, "adj-1", kind="adjudication")
        await sub.handle(lease)
        bare = factories.label_event(
            item_id, task.task_id, "adj-1", "1", assignment_id=lease.payload.assignment_id
        )
        assert await sub.rejection(bare) == "rationale_missing"


async def test_phi_in_a_rationale_is_rejected_and_its_bytes_are_not_kept(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=())
        lease = factories.assignment_event(item_id, task.task_id, "adj-1", kind="adjudication")
        await sub.handle(lease)
        leaky = factories.label_event(
            item_id,
            task.task_id,
            "adj-1",
            "1",
            assignment_id=lease.payload.assignment_id,
            adjudication=factories.rationale("1", text="discussed with Mr. Smith"),
        )
        assert await sub.rejection(leaky) == "phi_suspected"
        kept = await sub.conn.fetchrow(
            "SELECT raw, raw_redacted FROM rejections WHERE event_id = $1", leaky.event_id
        )
    assert kept is not None and kept["raw_redacted"] and bytes(kept["raw"]) == b""


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("expired", "assignment_expired"),
        ("declined", "assignment_cancelled"),
        ("escalated", "assignment_cancelled"),
        ("adjudicated", "assignment_cancelled"),
    ],
)
async def test_a_label_for_a_cancelled_assignment_is_rejected_with_its_reason(
    stack: Any, reason: str, code: str
) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=())
        lease = factories.assignment_event(item_id, task.task_id, "reader-a")
        await sub.handle(lease)
        await sub.handle(factories.cancellation_event(lease.payload, reason, at=_a_second_ago()))
        late = factories.label_event(
            item_id, task.task_id, "reader-a", "1", assignment_id=lease.payload.assignment_id
        )
        assert await sub.rejection(late) == code


async def test_a_cancelled_adjudication_refuses_the_adjudicators_late_decision(
    stack: Any,
) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=())
        lease = factories.assignment_event(item_id, task.task_id, "adj-1", kind="adjudication")
        await sub.handle(lease)
        await sub.handle(
            factories.cancellation_event(lease.payload, "escalated", at=_a_second_ago())
        )
        decision = factories.label_event(
            item_id, task.task_id, "adj-1", "1", adjudication=factories.rationale("1")
        )
        assert await sub.rejection(decision) == "assignment_cancelled"


async def test_a_label_after_the_item_reached_consensus_is_still_accepted(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=())
        lease = factories.assignment_event(item_id, task.task_id, "reader-a")
        await sub.handle(lease)
        await sub.handle(factories.cancellation_event(lease.payload, "consensus_reached"))
        # A later cancellation of the same assignment does not replace the first.
        await sub.handle(factories.cancellation_event(lease.payload, "expired"))
        label = factories.label_event(
            item_id, task.task_id, "reader-a", "0", assignment_id=lease.payload.assignment_id
        )
        (accepted,) = await sub.handle(label)
    assert accepted.event_type == "label.accepted"
    assert accepted.payload.role == "reader" and accepted.payload.adjudication is None


async def test_a_decision_that_overtook_its_adjudication_assignment_is_accepted_on_arrival(
    stack: Any,
) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=())
        decision = factories.label_event(
            item_id, task.task_id, "adj-1", "1", adjudication=factories.rationale("1")
        )
        assert await sub.handle(decision) == []  # parked until the assignment arrives
        lease = factories.assignment_event(item_id, task.task_id, "adj-1", kind="adjudication")
        (accepted,) = await sub.handle(lease)
    assert accepted.event_type == "label.accepted" and accepted.causation_id == decision.event_id
    assert accepted.payload.role == "adjudicator"
    assert accepted.payload.assignment_id == lease.payload.assignment_id
