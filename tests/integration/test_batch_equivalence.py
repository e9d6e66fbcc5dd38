"""The batch fast path with set-based prefetch gives what the per-record path gives.

The same scenario (revisions, a retraction and rejections among the labels of a batch)
runs through the real consumer twice with fresh ids: once as one batch (prefetched,
writes deferred to the batch's end) and once record by record. Submission's answers,
stored revisions and audit rows, and consensus's decisions and item states, must match
record for record. Everything runs in one transaction that is rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from services.consensus import batch as consensus_batch
from services.consensus.handlers import ConsensusHandlers
from services.consensus.reliability_store import PgReliability
from services.consensus.store import PgConsensusStore
from services.export import handlers as export_handlers
from services.export.handlers import routes as export_routes
from services.submission import batch as submission_batch
from services.submission.handlers import SubmissionHandlers
from services.submission.settings import SubmissionConfig
from shared.audit import PgAuditLog
from shared.db.pool import connect
from shared.envelope import Envelope
from shared.events import LABEL_ACCEPTED, REGISTRY, AnnotatorSkillEstimated, LabelAccepted
from shared.kafka.consumer import ConsumerConfig, EventConsumer, Route
from shared.kafka.records import Delivery
from shared.topics import (
    ASSIGNMENTS_ISSUED,
    CONSENSUS_REACHED,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    TASKS_DEFINED,
)
from tests import factories
from tests.integration.conftest import dsn_for

pytestmark = pytest.mark.integration

READERS = ("r1", "r2", "r3")


class _OneConnection:
    """A pool stand-in that hands out one connection (already in a transaction), so the
    consumer's batch transaction is a savepoint of the test's."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self.conn


@asynccontextmanager
async def rolled_back(service: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(dsn_for(service), service)
    transaction = conn.transaction()
    await transaction.start()
    try:
        yield conn
    finally:
        await transaction.rollback()
        await conn.close()


def _consumer(conn: asyncpg.Connection, routes: Sequence[Route]) -> EventConsumer:
    return EventConsumer(
        ConsumerConfig(name=f"equivalence-{uuid.uuid4().hex[:6]}", group_id="unused"),
        _OneConnection(conn),  # type: ignore[arg-type]  # duck-typed pool
        REGISTRY,
        routes,
    )


def _records(events: Sequence[Envelope[Any]], topic: str) -> list[Delivery]:
    return [factories.delivery(e, topic=topic, offset=i) for i, e in enumerate(events)]


def _scenario() -> tuple[list[Envelope[Any]], list[Envelope[Any]]]:
    """Setup events (task, items, leases) and a batch of labels with fresh ids."""
    task = factories.task()
    items = [factories.item_event(task.task_id) for _ in range(4)]
    ids = [item.payload.item_id for item in items]
    leases = [
        factories.assignment_event(item_id, task.task_id, f"{reader}-{task.task_id}")
        for item_id in ids[:3]
        for reader in READERS
    ]
    setup: list[Envelope[Any]] = [factories.task_event(task), *items, *leases]
    a0, a1, a3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def label(item: int, reader: str, value: str, **fields: Any) -> Envelope[Any]:
        annotator = f"{reader}-{task.task_id}"  # each run's readers are its own
        return factories.label_event(ids[item], task.task_id, annotator, value, **fields)

    labels = [
        label(0, "r1", "1", annotation_id=a0),
        label(0, "r2", "1", annotation_id=a1),
        label(0, "r1", "0", annotation_id=a0, revision=2),  # revised within the batch
        label(0, "r3", "1"),
        label(1, "r1", "1", annotation_id=a3),
        factories.retraction_event(ids[1], task.task_id, f"r1-{task.task_id}", a3, 2),
        label(1, "r2", "1", annotation_id=a0, revision=3),  # someone else's annotation
        label(2, "r1", "1"),
        label(2, "r2", "0"),
        label(2, "r3", "0"),
        label(3, "r1", "1"),  # no assignment
        label(0, "r2", "0", annotation_id=a1),  # revision 1 again
        label(1, "r2", "1"),
        label(1, "r3", "0"),
        label(1, "r1", "0", annotation_id=a3, revision=3),  # after its retraction
    ]
    return setup, labels


async def _outbox_since(conn: asyncpg.Connection, first_id: int) -> list[Envelope[Any]]:
    rows = await conn.fetch("SELECT value FROM outbox WHERE id > $1 ORDER BY id", first_id)
    return [REGISTRY.decode(bytes(r["value"])) for r in rows]


def _answers(labels: Sequence[Envelope[Any]], emitted: Sequence[Envelope[Any]]) -> list[Any]:
    """Per label, in order: what submission answered it with."""
    by_cause = {e.causation_id: e for e in emitted}
    answers: list[Any] = []
    for label in labels:
        answer = by_cause[label.event_id]
        p = answer.payload
        if answer.event_type == "label.rejected":
            answers.append(("rejected", str(p.code)))
        else:
            answers.append((answer.event_type, p.revision, p.superseded))
    return answers


async def _submission_run(
    conn: asyncpg.Connection, *, batched: bool
) -> tuple[list[Any], list[Envelope[Any]]]:
    """One scenario through submission's consumer; its answers, audit kinds and revisions,
    and the labels it accepted."""
    handlers = SubmissionHandlers(SubmissionConfig(assignment_wait_s=0))
    setup, labels = _scenario()
    first_id = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    consumer = _consumer(conn, handlers.routes())
    topics = {
        "task.defined": TASKS_DEFINED.name,
        "item.registered": ITEMS_REGISTERED.name,
        "assignment.issued": ASSIGNMENTS_ISSUED.name,
    }
    for event in setup:
        assert await consumer.process(_records([event], topics[event.event_type]))
    records = _records(labels, "labels.submitted.v1")
    if batched:
        assert await consumer.process(records)
    else:
        for record in records:
            assert await consumer.process([record])
    emitted = await _outbox_since(conn, first_id)
    audit = await conn.fetch(
        "SELECT event_id, kind FROM audit.log WHERE chain = 'submission' AND event_id = ANY($1)",
        [label.event_id for label in labels],
    )
    kinds = {r["event_id"]: r["kind"] for r in audit}
    stored = await conn.fetch(
        "SELECT event_id, revision, superseded, retraction FROM labels WHERE event_id = ANY($1)",
        [label.event_id for label in labels],
    )
    rows = {r["event_id"]: (r["revision"], r["superseded"], r["retraction"]) for r in stored}
    outcome = [
        (answer, kinds.get(label.event_id), rows.get(label.event_id))
        for label, answer in zip(labels, _answers(labels, emitted), strict=True)
    ]
    accepted = [
        e for e in emitted if e.event_type in ("label.accepted", "label.retracted")
    ]  # in the order submission emitted them
    return outcome, [factories.task_event(_task_of(setup)), *accepted]


def _task_of(setup: Sequence[Envelope[Any]]) -> Any:
    return setup[0].payload


async def test_submission_batch_answers_every_label_as_record_by_record(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[bool] = []
    load = submission_batch.LabelBatch.load

    async def counted(conn: asyncpg.Connection, envelopes: Any) -> Any:
        loaded = await load(conn, envelopes)
        loads.append(loaded is not None)
        return loaded

    monkeypatch.setattr(submission_batch.LabelBatch, "load", counted)
    async with rolled_back("submission") as conn:
        batched, _ = await _submission_run(conn, batched=True)
        assert loads == [True], "the label batch was not prefetched"
        single, _ = await _submission_run(conn, batched=False)
        chain = await PgAuditLog(conn, "submission").verify()
    assert batched == single
    answers = [answer for answer, _, _ in batched]
    assert answers.count(("label.accepted", 1, False)) == 9
    assert ("label.accepted", 2, False) in answers and ("label.retracted", 2, False) in answers
    assert [a[1] for a in answers if a[0] == "rejected"] == [
        "annotation_mismatch",
        "no_assignment",
        "revision_conflict",
    ]
    assert chain.ok, chain.reason


async def _consensus_run(
    sub: asyncpg.Connection, conn: asyncpg.Connection, *, batched: bool
) -> tuple[list[Any], list[Envelope[Any]]]:
    """Submission's accepted labels of a fresh scenario through consensus's consumer."""
    _, accepted = await _submission_run(sub, batched=True)
    task_event, labels = accepted[0], accepted[1:]
    consumer = _consumer(conn, ConsensusHandlers(PgReliability()).routes())
    first_id = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    assert await consumer.process(_records([task_event], TASKS_DEFINED.name))
    records = _records(labels, LABELS_ACCEPTED.name)
    if batched:
        assert await consumer.process(records)
    else:
        for record in records:
            assert await consumer.process([record])
    item_ids = list(dict.fromkeys(label.payload.item_id for label in labels))
    states = await conn.fetch(
        """SELECT item_id, status, consensus_version, state->'published_label' AS published,
                  jsonb_array_length(state->'engine'->'labels') AS labels
           FROM item_state WHERE item_id = ANY($1)""",
        item_ids,
    )
    by_item = {r["item_id"]: tuple(r)[1:] for r in states}
    decisions = await conn.fetch(
        "SELECT item_id, outcome FROM decisions WHERE item_id = ANY($1) ORDER BY id", item_ids
    )
    emitted = await _outbox_since(conn, first_id)
    outcome: list[Any] = [
        (
            by_item.get(item_id),
            [d["outcome"] for d in decisions if d["item_id"] == item_id],
            [e.event_type for e in emitted if e.key == item_id],
        )
        for item_id in item_ids
    ]
    task_id = task_event.payload.task_id
    skills = await conn.fetch(
        """SELECT split_part(annotator_id, '-', 1) AS reader, labels, gold_labels, gold_correct,
                  published_labels, published_skill
           FROM annotator_skill WHERE task_id = $1 ORDER BY annotator_id""",
        task_id,
    )
    outcome.append([tuple(r) for r in skills])
    return outcome, [e for e in emitted if e.key in item_ids]


async def test_consensus_batch_decides_every_item_as_record_by_record(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[bool] = []
    load = consensus_batch.BatchedConsensusStore.load_batch

    async def counted(conn: asyncpg.Connection, envelopes: Any) -> Any:
        loaded = await load(conn, envelopes)
        loads.append(loaded is not None)
        return loaded

    monkeypatch.setattr(consensus_batch.BatchedConsensusStore, "load_batch", counted)
    async with rolled_back("submission") as sub, rolled_back("consensus") as conn:
        batched, _ = await _consensus_run(sub, conn, batched=True)
        assert loads == [True], "the label batch was not prefetched"
        single, _ = await _consensus_run(sub, conn, batched=False)
    assert batched == single
    *items, skills = batched
    statuses = [state[0] for state, _, _ in items if state is not None]
    assert "reached" in statuses
    assert any("consensus.reached" in kinds for _, _, kinds in items)
    assert [(reader, labels) for reader, labels, *_ in skills] == [("r1", 4), ("r2", 3), ("r3", 3)]


async def test_batched_skill_counts_and_publications_match_the_per_call_queries(
    stack: Any,
) -> None:
    """count_label and mark_published, deferred to the batch's end, return and store what
    the per-call upserts do (for a reader with a stored row and one without)."""
    calls: list[tuple[str, bool | None, bool]] = [
        ("a", None, False),
        ("b", True, False),
        ("a", False, True),
        ("b", None, True),
        ("a", True, False),
        ("b", False, False),
        ("a", None, True),
    ]

    async def play(conn: asyncpg.Connection, store: Any, task_id: str) -> list[Any]:
        seen = []
        for reader, gold_correct, publish in calls:
            counts, last = await store.count_label(f"{reader}-{task_id}", task_id, gold_correct)
            seen.append((counts, last))
            if publish:
                estimate = AnnotatorSkillEstimated(
                    annotator_id=f"{reader}-{task_id}",
                    task_id=task_id,
                    labels=counts.labels,
                    agreement_with_consensus=0.5,
                    skill=0.1 * counts.labels,
                    gold_labels=counts.gold_labels,
                    gold_accuracy=None,
                )
                await store.mark_published(estimate, factories.NOW)
        if isinstance(store, consensus_batch.BatchedConsensusStore):
            await store.flush()
        rows = await conn.fetch(
            """SELECT split_part(annotator_id, '-', 1), labels, gold_labels, gold_correct,
                      published_labels, published_skill, published_at
               FROM annotator_skill WHERE task_id = $1 ORDER BY 1""",
            task_id,
        )
        return [seen, [tuple(r) for r in rows]]

    async with rolled_back("consensus") as conn:
        results = []
        for batched in (True, False):
            task_id = f"skills-{uuid.uuid4().hex[:8]}"
            # Reader a has a row already, b has none.
            await conn.execute(
                "INSERT INTO annotator_skill (annotator_id, task_id, labels) VALUES ($1, $2, 7)",
                f"a-{task_id}",
                task_id,
            )
            label = factories.label_event("item", task_id, "x", "1")
            accepted = [
                LABEL_ACCEPTED.wrap(
                    LabelAccepted(
                        label_id=uuid.uuid4(),
                        annotation_id=uuid.uuid4(),
                        revision=1,
                        item_id=f"item-{reader}",
                        task_id=task_id,
                        task_version=1,
                        annotator_id=f"{reader}-{task_id}",
                        client_id="c",
                        assignment_id=None,
                        received_at=factories.NOW,
                        raw_sha256="0" * 64,
                        key_id=None,
                        superseded=False,
                        value=label.payload.value,
                        labeled_at=factories.NOW,
                        guideline_version=None,
                        signed_at=None,
                        time_spent_ms=None,
                    ),
                    key=f"item-{reader}",
                    producer="submission",
                    event_id=uuid.uuid4(),
                    occurred_at=factories.NOW,
                    correlation_id=uuid.uuid4(),
                )
                for reader in ("a", "b")
            ]
            store: Any = (
                await consensus_batch.BatchedConsensusStore.load_batch(conn, accepted)
                if batched
                else PgConsensusStore(conn)
            )
            results.append(await play(conn, store, task_id))
    batched_result, single_result = results
    assert batched_result == single_result
    seen, rows = batched_result
    assert rows[0][:5] == ("a", 11, 2, 1, 11) and rows[1][:5] == ("b", 3, 2, 1, 2)
    assert seen[-1][1] is not None and seen[0][1] is None


async def _export_run(
    sub: asyncpg.Connection,
    consensus: asyncpg.Connection,
    conn: asyncpg.Connection,
    *,
    batched: bool,
) -> list[Any]:
    """Consensus's decisions of a fresh scenario, each delivered twice (the copy with its
    own event id, as a decision repeated), through export's consumer."""
    _, emitted = await _consensus_run(sub, consensus, batched=True)
    reached = [e for e in emitted if e.event_type == "consensus.reached"]
    copies = [e.model_copy(update={"event_id": uuid.uuid4()}) for e in reached]
    consumer = _consumer(conn, export_routes(publish_fhir=True))
    first_id = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    records = _records([*reached, *copies], CONSENSUS_REACHED.name)
    if batched:
        assert await consumer.process(records)
    else:
        for record in records:
            assert await consumer.process([record])
    item_ids = [e.payload.item_id for e in reached]
    published = await conn.fetch(
        """SELECT item_id, version, payload->>'label' AS label, payload->'supersedes_version'
               AS supersedes FROM published WHERE item_id = ANY($1) ORDER BY item_id, version""",
        item_ids,
    )
    rows = await conn.fetch(
        "SELECT key, headers->>'event_type' AS kind FROM outbox WHERE id > $1 ORDER BY id",
        first_id,
    )
    by_item = {item_id: i for i, item_id in enumerate(item_ids)}
    return [
        sorted(
            (by_item[r["item_id"]], r["version"], r["label"], r["supersedes"]) for r in published
        ),
        [(by_item[bytes(r["key"]).decode()], r["kind"]) for r in rows],
    ]


async def test_export_batch_publishes_every_version_as_record_by_record(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefetched: list[int] = []
    hook = export_handlers.prefetch

    async def counted(conn: asyncpg.Connection, scope: Any, envelopes: Any) -> None:
        prefetched.append(len(envelopes))
        await hook(conn, scope, envelopes)

    monkeypatch.setattr(export_handlers, "prefetch", counted)
    async with (
        rolled_back("submission") as sub,
        rolled_back("consensus") as consensus,
        rolled_back("export") as conn,
    ):
        batched = await _export_run(sub, consensus, conn, batched=True)
        assert prefetched == [6], "the batch was not prefetched"
        single = await _export_run(sub, consensus, conn, batched=False)
    assert batched == single
    versions, records = batched
    assert [v[:2] for v in versions] == [(0, 1), (1, 1), (2, 1)]  # copies publish nothing
    assert [kind for _, kind in records] == ["consensus.published", "consensus.fhir"] * 3
