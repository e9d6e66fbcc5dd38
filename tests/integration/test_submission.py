"""Submission's handlers on a real PostgreSQL transaction (rolled back at the end): every
rejection code, revisions and retractions, provenance, parking and the audit rows.

The decode-level codes (undecodable, invalid_envelope, unsupported_event, invalid_payload,
oversized) and replayed go through Kafka in test_pipeline.py and test_signed_ingress.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.submission.clients import register_client, revoke_key
from services.submission.handlers import SubmissionHandlers, label_id_for
from services.submission.settings import SubmissionConfig
from shared.audit import PgAuditLog
from shared.db.pool import connect
from shared.envelope import Envelope
from shared.events import REGISTRY, Box, BoxesValue, NumericValue, TaskDefined
from shared.kafka.consumer import HandlerContext
from shared.kafka.outbox import Emitter, Outbox
from shared.kafka.records import Delivery
from shared.signing import SigningKey
from tests import factories
from tests.integration.conftest import dsn_for

pytestmark = pytest.mark.integration


@dataclass
class Submission:
    """Submission's handlers on one connection inside a transaction that is rolled back."""

    conn: asyncpg.Connection
    handlers: SubmissionHandlers
    offset: int = 0
    emitted: list[Envelope[Any]] = field(default_factory=list)

    async def handle(self, event: Envelope[Any], delivery: Delivery | None = None) -> list[Any]:
        """Run the event's handler; returns the events it emitted."""
        self.offset += 1
        delivery = delivery or factories.delivery(event, offset=self.offset)
        outbox = Outbox(self.conn, "")
        ctx = HandlerContext(
            self.conn, Emitter("submission", outbox, datetime.now(UTC), event), delivery
        )
        h = self.handlers
        handler: Any = {
            "task.defined": h.on_task_defined,
            "item.registered": h.on_item_registered,
            "assignment.issued": h.on_assignment_issued,
            "assignment.cancelled": h.on_assignment_cancelled,
            "label.submitted": h.on_label_submitted,
            "label.retraction_submitted": h.on_retraction_submitted,
        }[event.event_type]
        await handler(ctx, event)
        emitted = [REGISTRY.decode(row[2]) for row in outbox._rows]
        self.emitted += emitted
        return emitted

    async def rejection(self, event: Envelope[Any], delivery: Delivery | None = None) -> str:
        """The code the event is rejected with (fails if it is not rejected)."""
        (answer,) = await self.handle(event, delivery)
        assert answer.event_type == "label.rejected", answer
        assert answer.payload.rejected_event_id == event.event_id
        assert answer.payload.message
        return str(answer.payload.code)

    async def item(
        self, annotators: tuple[str, ...] = ("reader-a",), **task_overrides: Any
    ) -> tuple[TaskDefined, str, dict[str, uuid.UUID]]:
        """A task, an item of it, and a live assignment per annotator."""
        image = {
            k: task_overrides.pop(k) for k in ("image_width", "image_height") if k in task_overrides
        }
        task = factories.task(**task_overrides)
        await self.handle(factories.task_event(task))
        item = factories.item_event(task.task_id, **image)
        await self.handle(item)
        leases = {}
        for annotator in annotators:
            lease = factories.assignment_event(item.payload.item_id, task.task_id, annotator)
            await self.handle(lease)
            leases[annotator] = lease.payload.assignment_id
        return task, item.payload.item_id, leases


@asynccontextmanager
async def submission(**config: Any) -> AsyncIterator[Submission]:
    conn = await connect(dsn_for("submission"), "submission")
    transaction = conn.transaction()
    await transaction.start()
    try:
        yield Submission(conn, SubmissionHandlers(SubmissionConfig(**config)))
    finally:
        await transaction.rollback()
        await conn.close()


async def test_an_accepted_label_records_its_full_provenance_and_is_audited(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, leases = await sub.item(guideline_version="2024-03")
        label = factories.label_event(item_id, task.task_id, "reader-a", "1")
        (accepted,) = await sub.handle(label)
        row = await sub.conn.fetchrow("SELECT * FROM labels WHERE event_id = $1", label.event_id)
        assert row is not None
        audit = await sub.conn.fetchrow(
            "SELECT * FROM audit.log WHERE event_id = $1 AND kind = 'label.accepted'",
            label.event_id,
        )
    assert accepted.event_type == "label.accepted"
    payload = accepted.payload
    assert payload.label_id == label_id_for(label.event_id)
    assert payload.assignment_id == leases["reader-a"]  # found by item and annotator
    assert (payload.guideline_version, payload.key_id) == ("2024-03", factories.KEY_ID)
    assert payload.signed_at is not None and payload.time_spent_ms == 41_000
    assert row["annotator_id"] == "reader-a" and row["client_id"] == factories.CLIENT_ID
    assert row["assignment_id"] == leases["reader-a"] and row["guideline_version"] == "2024-03"
    assert row["labeled_at"] == factories.NOW and row["received_at"] is not None
    assert row["published_at"] is not None and row["signed_at"] is not None
    assert row["raw_sha256"] == payload.raw_sha256 and len(row["raw_sha256"]) == 64
    assert (row["source_topic"], row["superseded"], row["retraction"]) == (
        "labels.submitted.v1",
        False,
        False,
    )
    assert audit is not None and json.loads(audit["body"])["raw_sha256"] == row["raw_sha256"]


# ---------------------------------------------------------------- authenticity


async def test_an_unsigned_label_is_rejected(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item()
        label = factories.label_event(item_id, task.task_id, "reader-a", "1")
        assert await sub.rejection(label, factories.delivery(label, signed=False)) == "unsigned"


async def test_a_label_signed_with_an_unknown_key_is_rejected(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item()
        label = factories.label_event(item_id, task.task_id, "reader-a", "1")
        stranger = SigningKey("nobody.k1", b"k" * 32)
        headers = factories.sign(label.encode(), stranger)
        assert await sub.rejection(label, factories.delivery(label, headers=headers)) == (
            "unknown_key"
        )


async def test_a_tampered_label_fails_its_signature(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item()
        honest = factories.label_event(item_id, task.task_id, "reader-a", "0")
        tampered_bytes = honest.encode().replace(b'"label":"0"', b'"label":"1"')
        tampered = REGISTRY.decode(tampered_bytes)
        delivery = factories.delivery(tampered_bytes, headers=factories.sign(honest.encode()))
        delivery = Delivery(**{**delivery.__dict__, "key": item_id.encode()})
        assert await sub.rejection(tampered, delivery) == "bad_signature"


async def test_a_forged_signature_is_rejected(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item()
        label = factories.label_event(item_id, task.task_id, "reader-a", "1")
        forged = SigningKey(factories.KEY_ID, b"a guess at the secret")
        headers = factories.sign(label.encode(), forged)
        assert await sub.rejection(label, factories.delivery(label, headers=headers)) == (
            "bad_signature"
        )


async def test_a_signature_older_than_the_window_is_rejected_as_expired(stack: Any) -> None:
    async with submission(signature_window_s=300) as sub:
        task, item_id, _ = await sub.item()
        label = factories.label_event(item_id, task.task_id, "reader-a", "1")
        old = datetime.now(UTC) - timedelta(minutes=10)
        headers = factories.sign(label.encode(), signed_at=old)
        assert await sub.rejection(label, factories.delivery(label, headers=headers)) == (
            "signature_expired"
        )


async def test_a_revoked_key_is_refused_and_a_deactivated_client_too(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item()
        issued = await register_client(
            sub.conn, sub.handlers.config.master, f"viewer-{uuid.uuid4().hex[:6]}",
            all_annotators=True,
        )  # fmt: skip
        await revoke_key(sub.conn, issued.key_id)
        label = factories.label_event(
            item_id, task.task_id, "reader-a", "1", client_id=issued.client_id
        )
        headers = factories.sign(label.encode(), issued.signing_key)
        assert await sub.rejection(label, factories.delivery(label, headers=headers)) == (
            "key_revoked"
        )


async def test_a_client_cannot_sign_for_another_client(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item()
        label = factories.label_event(item_id, task.task_id, "reader-a", "1", client_id="other")
        assert await sub.rejection(label) == "client_mismatch"


async def test_a_client_may_speak_only_for_its_annotators(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=("reader-a", "reader-b"))
        issued = await register_client(
            sub.conn, sub.handlers.config.master, f"tablet-{uuid.uuid4().hex[:6]}",
            annotators=["reader-a"],
        )  # fmt: skip

        def signed_by_tablet(annotator: str) -> tuple[Envelope[Any], Delivery]:
            label = factories.label_event(
                item_id, task.task_id, annotator, "1", client_id=issued.client_id
            )
            headers = factories.sign(label.encode(), issued.signing_key)
            return label, factories.delivery(label, headers=headers)

        allowed, delivery = signed_by_tablet("reader-a")
        (accepted,) = await sub.handle(allowed, delivery)
        refused, delivery = signed_by_tablet("reader-b")
        code = await sub.rejection(refused, delivery)
    assert accepted.event_type == "label.accepted"
    assert code == "annotator_not_allowed"


# ---------------------------------------------------------------- PHI and targets


async def test_phi_in_a_free_text_field_is_rejected_and_its_bytes_are_not_kept(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item()
        label = factories.label_event(
            item_id, task.task_id, "reader-a", "1", comment="pt DOB 02/03/1950"
        )
        (answer,) = await sub.handle(label)
        kept = await sub.conn.fetchrow(
            "SELECT raw, raw_redacted FROM rejections WHERE event_id = $1", label.event_id
        )
        assert kept is not None
    assert answer.payload.code == "phi_suspected"
    assert "1950" not in answer.payload.message and answer.payload.annotator_id is None
    assert kept["raw_redacted"] and bytes(kept["raw"]) == b""


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("unknown_task", "unknown_task"),
        ("other_version", "task_version_mismatch"),
        ("unknown_item", "unknown_item"),
        ("item_of_other_task", "item_task_mismatch"),
        ("key_is_not_the_item", "invalid_envelope"),
        ("numeric_for_categorical", "wrong_label_kind"),
        ("class_not_allowed", "value_not_allowed"),
    ],
)
async def test_a_label_for_the_wrong_target_or_value_is_named(
    stack: Any, case: str, code: str
) -> None:
    async with submission(assignment_wait_s=0) as sub:
        task, item_id, _ = await sub.item()
        _, other_item, _ = await sub.item()
        make = factories.label_event
        events = {
            "unknown_task": make(item_id, "no-such-task", "reader-a", "1"),
            "other_version": make(item_id, task.task_id, "reader-a", "1", task_version=9),
            "unknown_item": make("no-such-item", task.task_id, "reader-a", "1"),
            "item_of_other_task": make(other_item, task.task_id, "reader-a", "1"),
            "numeric_for_categorical": make(
                item_id, task.task_id, "reader-a", "", label_value=NumericValue(measurement=1.0)
            ),
            "class_not_allowed": make(item_id, task.task_id, "reader-a", "7"),
        }
        if case == "key_is_not_the_item":
            good = make(item_id, task.task_id, "reader-a", "1")
            event = good.model_copy(update={"key": other_item})
        else:
            event = events[case]
        assert await sub.rejection(event) == code


async def test_malformed_boxes_are_rejected_as_invalid_geometry(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(
            label_kind="boxes", classes=("nodule",), box_coordinates="pixels",
            image_width=512, image_height=512,
        )  # fmt: skip

        def boxes(*items: Box) -> Envelope[Any]:
            return factories.label_event(
                item_id, task.task_id, "reader-a", "", label_value=BoxesValue(boxes=items)
            )

        (accepted,) = await sub.handle(boxes(Box(x0=10, y0=20, x1=200, y1=220, label="nodule")))
        outside = await sub.rejection(boxes(Box(x0=10, y0=20, x1=600, y1=220)))
        inverted = await sub.rejection(boxes(Box(x0=300, y0=20, x1=200, y1=220)))
    assert accepted.event_type == "label.accepted"
    assert accepted.payload.value.boxes[0].label == "nodule"
    assert outside == inverted == "invalid_geometry"


# ---------------------------------------------------------------- assignments


async def test_a_label_without_an_assignment_waits_then_is_rejected_as_no_assignment(
    stack: Any,
) -> None:
    async with submission(assignment_wait_s=0.0) as sub:
        task, item_id, _ = await sub.item(annotators=())
        label = factories.label_event(item_id, task.task_id, "reader-z", "1")
        assert await sub.rejection(label) == "no_assignment"


async def test_a_label_that_overtook_its_assignment_is_accepted_when_it_arrives(
    stack: Any,
) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=())
        label = factories.label_event(item_id, task.task_id, "reader-a", "1")
        assert await sub.handle(label) == []  # parked, no answer yet
        lease = factories.assignment_event(item_id, task.task_id, "reader-a")
        (accepted,) = await sub.handle(lease)
        parked = await sub.conn.fetchval(
            "SELECT count(*) FROM parked_labels WHERE item_id = $1", item_id
        )
    assert accepted.event_type == "label.accepted"
    assert accepted.causation_id == label.event_id
    assert accepted.payload.assignment_id == lease.payload.assignment_id
    assert parked == 0


async def test_a_parked_label_whose_assignment_never_comes_is_swept_as_no_assignment(
    stack: Any,
) -> None:
    async with submission(assignment_wait_s=0.01) as sub:
        task, item_id, _ = await sub.item(annotators=())
        label = factories.label_event(item_id, task.task_id, "reader-q", "1")
        assert await sub.handle(label) == []
        import asyncio

        await asyncio.sleep(0.05)
        swept = await sub.handlers.sweep(sub.conn, "")
        (row,) = await sub.conn.fetch(
            "SELECT code FROM rejections WHERE event_id = $1", label.event_id
        )
    assert swept >= 1 and row["code"] == "no_assignment"


async def test_an_expired_or_mismatched_assignment_is_named(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, leases = await sub.item(annotators=("reader-b",))
        expired = factories.assignment_event(
            item_id,
            task.task_id,
            "reader-a",
            lease_expires_at=datetime.now(UTC) - timedelta(hours=1),
        )
        await sub.handle(expired)
        late = factories.label_event(item_id, task.task_id, "reader-a", "1")
        borrowed = factories.label_event(
            item_id, task.task_id, "reader-a", "1", assignment_id=leases["reader-b"]
        )
        assert await sub.rejection(late) == "assignment_expired"
        assert await sub.rejection(borrowed) == "assignment_mismatch"


async def test_a_task_can_waive_the_assignment_rule(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=(), require_assignment=False)
        (accepted,) = await sub.handle(factories.label_event(item_id, task.task_id, "r-x", "1"))
    assert accepted.event_type == "label.accepted" and accepted.payload.assignment_id is None


# ---------------------------------------------------------------- revisions, retractions


async def test_every_revision_is_kept_and_a_late_lower_one_is_flagged_superseded(
    stack: Any,
) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item()
        annotation = uuid.uuid4()

        def revision(n: int, value: str) -> Envelope[Any]:
            return factories.label_event(
                item_id, task.task_id, "reader-a", value, annotation_id=annotation, revision=n
            )

        answers = [await sub.handle(revision(n, v)) for n, v in ((1, "0"), (3, "1"), (2, "0"))]
        rows = await sub.conn.fetch(
            "SELECT revision, superseded FROM labels WHERE annotation_id = $1 ORDER BY revision",
            annotation,
        )
        current = await sub.conn.fetchval(
            "SELECT revision FROM current_labels WHERE annotation_id = $1", annotation
        )
        conflict = await sub.rejection(revision(3, "0"))
        kinds = await sub.conn.fetch(
            "SELECT kind FROM audit.log WHERE subject = $1 ORDER BY seq", item_id
        )
    assert [a[0].event_type for a in answers] == ["label.accepted"] * 3
    assert [a[0].payload.superseded for a in answers] == [False, False, True]
    assert [(r["revision"], r["superseded"]) for r in rows] == [(1, False), (2, True), (3, False)]
    assert current == 3
    assert conflict == "revision_conflict"
    assert [k["kind"] for k in kinds] == [
        "label.accepted", "label.revised", "label.revised", "label.rejected"
    ]  # fmt: skip


async def test_an_annotation_cannot_be_revised_by_another_annotator(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=("reader-a", "reader-b"))
        annotation = uuid.uuid4()
        first = factories.label_event(
            item_id, task.task_id, "reader-a", "1", annotation_id=annotation
        )
        await sub.handle(first)
        hijack = factories.label_event(
            item_id, task.task_id, "reader-b", "0", annotation_id=annotation, revision=2
        )
        assert await sub.rejection(hijack) == "annotation_mismatch"


async def test_a_retraction_is_stored_as_a_revision_and_emitted_for_consensus(
    stack: Any,
) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item()
        annotation = uuid.uuid4()
        label = factories.label_event(
            item_id, task.task_id, "reader-a", "1", annotation_id=annotation
        )
        await sub.handle(label)
        retraction = factories.retraction_event(item_id, task.task_id, "reader-a", annotation, 2)
        (retracted,) = await sub.handle(retraction)
        current = await sub.conn.fetchval(
            "SELECT count(*) FROM current_labels WHERE annotation_id = $1", annotation
        )
        stored = await sub.conn.fetchrow(
            "SELECT retraction, value, comment FROM labels WHERE event_id = $1", retraction.event_id
        )
        assert stored is not None
        audited = await sub.conn.fetchval(
            "SELECT kind FROM audit.log WHERE event_id = $1", retraction.event_id
        )
    assert retracted.event_type == "label.retracted"
    assert (retracted.payload.annotation_id, retracted.payload.revision) == (annotation, 2)
    assert current == 0
    assert stored["retraction"] and stored["value"] is None
    assert audited == "label.retracted"


async def test_a_task_redefined_differently_under_the_same_version_is_audited_not_stored(
    stack: Any,
) -> None:
    async with submission() as sub:
        task = factories.task()
        await sub.handle(factories.task_event(task))
        await sub.handle(factories.task_event(task))
        changed = task.model_copy(update={"title": "something else"})
        await sub.handle(factories.task_event(changed))
        kinds = await sub.conn.fetch(
            "SELECT kind FROM audit.log WHERE subject = $1 ORDER BY seq", task.task_id
        )
        stored = await sub.conn.fetchval(
            "SELECT definition->>'title' FROM tasks WHERE task_id = $1", task.task_id
        )
    assert [k["kind"] for k in kinds] == ["task.defined", "task.conflict"]
    assert stored == task.title


async def test_the_audit_chain_of_a_busy_transaction_verifies(stack: Any) -> None:
    async with submission() as sub:
        task, item_id, _ = await sub.item(annotators=("reader-a", "reader-b"))
        for annotator in ("reader-a", "reader-b", "reader-c"):
            await sub.handle(factories.label_event(item_id, task.task_id, annotator, "1"))
        report = await PgAuditLog(sub.conn, "submission").verify()
    assert report.ok, report


async def test_a_label_that_overtook_its_items_registration_is_answered_when_it_arrives(
    stack: Any,
) -> None:
    async with submission() as sub:
        task = factories.task(require_assignment=False)
        await sub.handle(factories.task_event(task))
        item = factories.item_event(task.task_id)
        label = factories.label_event(item.payload.item_id, task.task_id, "reader-a", "1")
        assert await sub.handle(label) == []  # parked until the item is known
        (accepted,) = await sub.handle(item)
    assert accepted.event_type == "label.accepted" and accepted.causation_id == label.event_id
