"""Hostile input on the real Kafka: a table of malformed, forged and misdirected label
events, interleaved with valid signed ones on the same item partition, published in one
go. Every bad record is answered on labels.rejected.v1 with its code; the valid ones are
accepted, in their publish order, as if the bad ones were not there."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.submission.clients import register_client, revoke_key
from services.submission.settings import SubmissionConfig
from shared.db.pool import connect
from shared.envelope import Envelope
from shared.events import REGISTRY, Box, BoxesValue, ConsensusPolicy, NumericValue, OrdinalValue
from shared.runtime import ServiceRuntime
from shared.signing import HEADER_KEY_ID, HEADER_SIGNATURE, HEADER_SIGNED_AT, SigningKey
from shared.topics import (
    ASSIGNMENTS_ISSUED,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    LABELS_REJECTED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
)
from tests import factories
from tests.integration.conftest import Kafka, dsn_for, wait_until

pytestmark = pytest.mark.integration

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Record:
    """One record to publish: its bytes and headers (the Kafka key is always the item's)."""

    name: str
    value: bytes
    headers: Headers
    code: str | None  # the expected rejection code; None for a valid event
    event_id: uuid.UUID | None = None  # the rejected_event_id expected, when readable

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.value).hexdigest()


@dataclass
class Scene:
    """The tasks, items, assignments and clients the table is about."""

    cat: str  # categorical task "0"/"1", assignments required
    ord_task: str  # ordinal 1..5
    num_task: str  # numeric 0..100 mm
    box_task: str  # normalized boxes, at most 2, labelled "nodule"
    item: str  # the categorical item every record is keyed by
    ord_item: str
    num_item: str
    box_item: str
    assignments: dict[str, uuid.UUID] = field(default_factory=dict)
    limited: SigningKey | None = None  # a client that may speak for good-1 only
    limited_client: str = ""
    revoked: SigningKey | None = None
    revoked_client: str = ""


GOOD = ("good-1", "good-2", "good-3", "good-4")


async def _scene(kafka: Kafka) -> Scene:
    ordinal = factories.task(label_kind="ordinal", classes=(), ordinal_range=(1, 5))
    numeric = factories.task(
        label_kind="numeric",
        classes=(),
        numeric_range=(0.0, 100.0),
        policy=ConsensusPolicy(method="median"),
    )
    boxes = factories.task(label_kind="boxes", classes=("nodule",), max_boxes=2)
    categorical = factories.task()
    tasks = (categorical, ordinal, numeric, boxes)
    for definition in tasks:
        await kafka.publish(TASKS_DEFINED, factories.task_event(definition))
    items = [factories.item_event(t.task_id) for t in tasks]
    for item in items:
        await kafka.publish(ITEMS_REGISTERED, item)
    scene = Scene(
        cat=categorical.task_id,
        ord_task=ordinal.task_id,
        num_task=numeric.task_id,
        box_task=boxes.task_id,
        item=items[0].payload.item_id,
        ord_item=items[1].payload.item_id,
        num_item=items[2].payload.item_id,
        box_item=items[3].payload.item_id,
    )
    issued = [factories.assignment_event(scene.item, scene.cat, reader) for reader in GOOD]
    issued.append(
        factories.assignment_event(
            scene.item, scene.cat, "late-1", lease_expires_at=datetime.now(UTC) - timedelta(hours=1)
        )
    )
    for assignment in issued:
        scene.assignments[assignment.payload.annotator_id] = assignment.payload.assignment_id
        await kafka.publish(ASSIGNMENTS_ISSUED, assignment)

    conn = await connect(dsn_for("submission"), "submission")
    try:
        master = SubmissionConfig().master
        suffix = uuid.uuid4().hex[:6]
        limited = await register_client(conn, master, f"tablet-{suffix}", annotators=["good-1"])
        revoked = await register_client(conn, master, f"old-{suffix}", all_annotators=True)
        await revoke_key(conn, revoked.key_id)
        scene.limited, scene.limited_client = limited.signing_key, limited.client_id
        scene.revoked, scene.revoked_client = revoked.signing_key, revoked.client_id

        async def ready() -> bool:
            known = await conn.fetchval(
                "SELECT count(*) FROM items WHERE item_id = ANY($1::text[])",
                [i.payload.item_id for i in items],
            )
            leased = await conn.fetchval(
                "SELECT count(*) FROM assignments WHERE assignment_id = ANY($1::uuid[])",
                list(scene.assignments.values()),
            )
            return bool(known == len(items) and leased == len(issued))

        await wait_until(ready, timeout=30)
    finally:
        await conn.close()
    return scene


# ------------------------------------------------------------------ building records


def _doc(event: Envelope[Any]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(event.encode())
    return document


def _dumps(document: Any) -> bytes:
    # allow_nan (the default) writes NaN / Infinity as bare JSON tokens, as a sloppy
    # front-end's encoder would.
    return json.dumps(document).encode()


def _signed(name: str, code: str | None, value: bytes, event_id: uuid.UUID | None) -> Record:
    return Record(name, value, factories.sign(value), code, event_id)


def _event(name: str, code: str | None, event: Envelope[Any]) -> Record:
    return _signed(name, code, event.encode(), event.event_id)


def _mutated(
    name: str, code: str, event: Envelope[Any], change: Callable[[dict[str, Any]], None]
) -> Record:
    document = _doc(event)
    change(document)
    return _signed(name, code, _dumps(document), event.event_id)


def _payload(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda document: document["payload"].update(changes)


def _without(*path: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        for step in path[:-1]:
            document = document[step]
        del document[path[-1]]

    return change


def _bad_records(scene: Scene) -> list[Record]:
    """The table: one hostile or malformed record per row, each with its expected code."""
    s = scene
    nonce = uuid.uuid4().hex.encode()

    def label(annotator: str = "good-1", value: str = "1", **kw: Any) -> Envelope[Any]:
        return factories.label_event(s.item, s.cat, annotator, value, **kw)

    def on(item: str, task: str, value: Any, annotator: str = "good-1") -> Envelope[Any]:
        return factories.label_event(item, task, annotator, "", label_value=value)

    def boxes(*items: Box) -> Envelope[Any]:
        return on(s.box_item, s.box_task, BoxesValue(boxes=items))

    rows: list[Record] = []

    # --- bytes that are not a label event at all
    rows += [
        Record("undecodable bytes", b"\xff\xfe\x00 not json " + nonce, [], "undecodable"),
        Record("empty value", b"", [], "undecodable"),
        Record("json array", b'["not", "an", "object"]', [], "undecodable"),
        Record("json scalar", b'"a string, not an object"', [], "undecodable"),
        Record("json null", b"null", [], "undecodable"),
    ]
    whole = label()
    rows.append(_signed("truncated json", "undecodable", whole.encode()[:-7], None))
    latin = label(comment="caf\u00e9 opacity")
    rows.append(
        _signed(
            "latin-1 byte inside json",
            "undecodable",
            latin.encode().replace("caf\u00e9".encode(), b"caf\xe9"),
            None,
        )
    )

    # --- envelope
    def set_env(**changes: Any) -> Callable[[dict[str, Any]], None]:
        return lambda document: document.update(changes)

    rows += [
        _mutated("wrong event_type", "unsupported_event", label(), set_env(event_type="x.y")),
        _mutated(
            "internal event type on ingress",
            "unsupported_event",
            label(),
            set_env(event_type="label.accepted"),
        ),
        _mutated("schema_version 0", "unsupported_event", label(), set_env(schema_version=0)),
        _mutated("schema_version 99", "unsupported_event", label(), set_env(schema_version=99)),
        _mutated("missing correlation_id", "invalid_envelope", label(), _without("correlation_id")),
        _mutated("missing occurred_at", "invalid_envelope", label(), _without("occurred_at")),
        _mutated("extra envelope field", "invalid_envelope", label(), set_env(priority="high")),
        _mutated(
            "naive occurred_at",
            "invalid_envelope",
            label(),
            set_env(occurred_at="2026-01-05T09:30"),
        ),
    ]
    not_uuid = _mutated("event_id not a uuid", "invalid_envelope", label(), set_env(event_id="1"))
    rows.append(Record(not_uuid.name, not_uuid.value, not_uuid.headers, not_uuid.code))
    rows.append(
        _event(
            "envelope key is not the item",
            "invalid_envelope",
            factories.label_event(s.item, s.cat, "good-1", "1").model_copy(
                update={"key": s.ord_item}
            ),
        )
    )

    # --- payload shape (strict: unknown fields are errors)
    rows += [
        _mutated("unknown payload field", "invalid_payload", label(), _payload(colour="blue")),
        _mutated(
            "unknown field inside value",
            "invalid_payload",
            label(),
            _payload(value={"kind": "categorical", "label": "1", "certainty": 0.9}),
        ),
        _mutated(
            "missing annotator_id", "invalid_payload", label(), _without("payload", "annotator_id")
        ),
        _mutated("revision 0", "invalid_payload", label(), _payload(revision=0)),
        _mutated(
            "unknown value kind",
            "invalid_payload",
            label(),
            _payload(value={"kind": "freehand", "label": "1"}),
        ),
        _mutated("item id with spaces", "invalid_payload", label(), _payload(item_id="item 1")),
        _mutated(
            "numeric NaN token",
            "invalid_payload",
            on(s.num_item, s.num_task, NumericValue(measurement=1.0)),
            _payload(value={"kind": "numeric", "measurement": float("nan"), "unit": "mm"}),
        ),
        _mutated(
            "numeric Infinity token",
            "invalid_payload",
            on(s.num_item, s.num_task, NumericValue(measurement=1.0)),
            _payload(value={"kind": "numeric", "measurement": float("inf"), "unit": "mm"}),
        ),
        _mutated(
            "box -Infinity token",
            "invalid_payload",
            boxes(Box(x0=0.1, y0=0.1, x1=0.2, y1=0.2)),
            _payload(
                value={
                    "kind": "boxes",
                    "boxes": [{"x0": float("-inf"), "y0": 0.1, "x1": 0.2, "y1": 0.2}],
                }
            ),
        ),
    ]
    oversized = label()
    rows.append(
        _mutated("oversized payload", "oversized", oversized, _payload(padding="x" * 300_000))
    )

    # --- PHI (field names, free text); the bytes are not kept
    rows += [
        _mutated("PHI field name", "phi_suspected", label(), _payload(patient_name="Jane Doe")),
        _mutated("PHI envelope field", "phi_suspected", label(), set_env(mrn="12345678")),
        _event("PHI name in comment", "phi_suspected", label(comment="Mr. John Smith, left side")),
        _event("PHI MRN in comment", "phi_suspected", label(comment="see MRN 0048812 prior")),
        _event(
            "PHI date of birth in comment",
            "phi_suspected",
            label(comment="DOB 1961-04-02, compare old film"),
        ),
    ]

    # --- authenticity
    honest = label()
    honest_bytes = honest.encode()
    tampered = honest_bytes.replace(b'"label":"1"', b'"label":"0"')
    assert tampered != honest_bytes
    fresh = label()
    fresh_bytes = fresh.encode()
    sig = factories.sign(fresh_bytes)
    now = datetime.now(UTC)
    bare = label()
    rows += [Record("unsigned", bare.encode(), [], "unsigned", bare.event_id)]
    dup = label()
    rows += [
        Record(
            "duplicate key-id header",
            dup.encode(),
            [*factories.sign(dup.encode()), (HEADER_KEY_ID, factories.KEY_ID.encode())],
            "unsigned",
            dup.event_id,
        ),
    ]
    non_utf8 = label()
    good_headers = dict(factories.sign(non_utf8.encode()))
    rows += [
        Record(
            "non-UTF-8 key-id header",
            non_utf8.encode(),
            [
                (HEADER_KEY_ID, b"\xff\xfe" + factories.KEY_ID.encode()),
                (HEADER_SIGNED_AT, good_headers[HEADER_SIGNED_AT]),
                (HEADER_SIGNATURE, good_headers[HEADER_SIGNATURE]),
            ],
            "unsigned",
            non_utf8.event_id,
        ),
    ]
    unknown = label()
    forged = label()
    stale = label()
    future = label()
    malformed = label()
    malformed_headers = [
        (k, b"2026-01-05T09:30:00Z" if k == HEADER_SIGNED_AT else v)
        for k, v in factories.sign(malformed.encode())
    ]
    rows += [
        Record(
            "unknown key id",
            unknown.encode(),
            factories.sign(unknown.encode(), SigningKey("nobody.k000", b"s" * 32)),
            "unknown_key",
            unknown.event_id,
        ),
        Record(
            "forged signature (wrong secret)",
            forged.encode(),
            factories.sign(forged.encode(), SigningKey(factories.KEY_ID, b"guess")),
            "bad_signature",
            forged.event_id,
        ),
        Record(
            "value tampered after signing",
            tampered,
            factories.sign(honest_bytes),
            "bad_signature",
            honest.event_id,
        ),
        Record(
            "signature of other bytes",
            fresh_bytes + b" ",
            sig,
            "bad_signature",
            fresh.event_id,
        ),
        Record(
            "malformed signed-at",
            malformed.encode(),
            malformed_headers,
            "bad_signature",
            malformed.event_id,
        ),
        Record(
            "signed an hour ago",
            stale.encode(),
            factories.sign(stale.encode(), signed_at=now - timedelta(hours=1)),
            "signature_expired",
            stale.event_id,
        ),
        Record(
            "signed an hour ahead",
            future.encode(),
            factories.sign(future.encode(), signed_at=now + timedelta(hours=1)),
            "signature_expired",
            future.event_id,
        ),
    ]
    assert s.limited is not None and s.revoked is not None
    by_revoked = label(client_id=s.revoked_client)
    for_other = label("good-2", client_id=s.limited_client)
    rows += [
        Record(
            "revoked key",
            by_revoked.encode(),
            factories.sign(by_revoked.encode(), s.revoked),
            "key_revoked",
            by_revoked.event_id,
        ),
        Record(
            "client may not speak for the annotator",
            for_other.encode(),
            factories.sign(for_other.encode(), s.limited),
            "annotator_not_allowed",
            for_other.event_id,
        ),
        _event("payload names another client", "client_mismatch", label(client_id="viewer-9")),
    ]

    # --- target and value
    rows += [
        _event(
            "unknown task",
            "unknown_task",
            factories.label_event(s.item, f"no-task-{nonce[:6].decode()}", "good-1", "1"),
        ),
        _event("task version mismatch", "task_version_mismatch", label(task_version=2)),
        _event(
            "unknown item",
            "unknown_item",
            factories.label_event(f"no-item-{nonce[:8].decode()}", s.cat, "good-1", "1"),
        ),
        _event(
            "item of another task",
            "item_task_mismatch",
            factories.label_event(s.ord_item, s.cat, "good-1", "1"),
        ),
        _event(
            "ordinal value for a categorical task",
            "wrong_label_kind",
            label(label_value=OrdinalValue(grade=1)),
        ),
        _event(
            "boxes for an ordinal task",
            "wrong_label_kind",
            on(s.ord_item, s.ord_task, BoxesValue(boxes=())),
        ),
        _event("class not in the task", "value_not_allowed", label(value="7")),
        _event(
            "ordinal above range",
            "value_not_allowed",
            on(s.ord_item, s.ord_task, OrdinalValue(grade=9)),
        ),
        _event(
            "ordinal below range",
            "value_not_allowed",
            on(s.ord_item, s.ord_task, OrdinalValue(grade=0)),
        ),
        _event(
            "numeric out of range",
            "value_not_allowed",
            on(s.num_item, s.num_task, NumericValue(measurement=250.0, unit="mm")),
        ),
        _event(
            "box label not in classes",
            "value_not_allowed",
            boxes(Box(x0=0.1, y0=0.1, x1=0.2, y1=0.2, label="tumour")),
        ),
        _event("box x0 >= x1", "invalid_geometry", boxes(Box(x0=0.5, y0=0.1, x1=0.5, y1=0.2))),
        _event("box inverted y", "invalid_geometry", boxes(Box(x0=0.1, y0=0.6, x1=0.2, y1=0.2))),
        _event("box negative", "invalid_geometry", boxes(Box(x0=-0.1, y0=0.1, x1=0.2, y1=0.2))),
        _event("box beyond 1.0", "invalid_geometry", boxes(Box(x0=0.1, y0=0.1, x1=1.2, y1=0.2))),
        _event(
            "too many boxes",
            "invalid_geometry",
            boxes(*(Box(x0=0.1 * i, y0=0.1, x1=0.1 * i + 0.05, y1=0.2) for i in range(3))),
        ),
    ]

    # --- assignments
    rows += [
        _event("annotator without assignment", "no_assignment", label("stray-1")),
        _event("expired assignment", "assignment_expired", label("late-1")),
        _event(
            "another annotator's assignment",
            "assignment_mismatch",
            label("intruder-1", assignment_id=s.assignments["good-1"]),
        ),
        _event(
            "assignment of another item",
            "assignment_mismatch",
            factories.label_event(
                s.ord_item,
                s.ord_task,
                "good-1",
                "",
                label_value=OrdinalValue(grade=3),
                assignment_id=s.assignments["good-1"],
            ),
        ),
    ]
    return rows


@dataclass
class Valid:
    """The valid events, and the hostile records that need one of them accepted first."""

    records: list[Record]
    dependent: list[list[Record]]


def _valid(scene: Scene) -> Valid:
    s = scene
    a1, a2, a3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def label(annotator: str, value: str, annotation: uuid.UUID, revision: int = 1) -> Record:
        event = factories.label_event(
            s.item, s.cat, annotator, value, annotation_id=annotation, revision=revision
        )
        return _event(f"valid {annotator} r{revision}", None, event)

    def retraction(
        name: str, code: str | None, annotator: str, annotation: uuid.UUID, revision: int
    ) -> Record:
        event = factories.retraction_event(s.item, s.cat, annotator, annotation, revision)
        return _event(name, code, event)

    first = label("good-1", "1", a1)
    second = label("good-2", "0", a2)
    third = label("good-3", "1", a3)
    records = [
        first,
        second,
        third,
        label("good-1", "0", a1, revision=2),
        label("good-4", "1", uuid.uuid4()),
        retraction("valid retraction good-2 r2", None, "good-2", a2, 2),
        # A retraction may overtake a label that is parked waiting for its assignment, so a
        # retraction of an annotation not (yet) stored is accepted and remembered.
        retraction("valid retraction of an unseen annotation", None, "good-3", uuid.uuid4(), 2),
    ]
    conflict = factories.label_event(s.item, s.cat, "good-1", "0", annotation_id=a1, revision=1)
    stolen = factories.label_event(s.item, s.cat, "good-3", "0", annotation_id=a1, revision=5)
    dependent: list[list[Record]] = [
        [_event("revision number reused by another event", "revision_conflict", conflict)],
        [_event("revision of another annotator's annotation", "annotation_mismatch", stolen)],
        [
            retraction(
                "retraction of another annotator's annotation",
                "annotation_mismatch",
                "good-2",
                a3,
                2,
            ),
            Record(
                "replayed copy at another offset",
                third.value,
                third.headers,
                "replayed",
                _event_id(third.value),
            ),
        ],
    ]
    return Valid(records, dependent)


def _event_id(value: bytes) -> uuid.UUID:
    return uuid.UUID(json.loads(value)["event_id"])


def _interleave(valid: Valid, bad: list[Record]) -> list[Record]:
    """valid[0], some bad, valid[1], some bad, ...; records that depend on an accepted
    event follow the first three valid ones."""
    gaps = len(valid.records) - 1
    chunk = -(-len(bad) // gaps)
    out: list[Record] = []
    for index, record in enumerate(valid.records):
        out.append(record)
        if index == 2:
            for group in valid.dependent:
                out.extend(group)
        out.extend(bad[index * chunk : (index + 1) * chunk])
    return out


async def test_a_table_of_hostile_labels_is_rejected_and_valid_ones_flow_in_order(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    scene = await _scene(kafka)
    valid = _valid(scene)
    bad = _bad_records(scene)
    sequence = _interleave(valid, bad)
    hostile = [r for r in sequence if r.code is not None]
    assert len(hostile) >= 40
    assert len({r.sha256 for r in hostile if r.code != "replayed"}) == len(hostile) - 1

    # One publish of the whole table, every record keyed by the same item: one partition,
    # one order (the idempotent producer keeps it).
    topic = LABELS_SUBMITTED.qualified(kafka.stack.topic_prefix)
    sent = [
        await kafka.producer.send(topic, r.value, key=scene.item.encode(), headers=r.headers)
        for r in sequence
    ]
    await asyncio.gather(*sent)

    wanted_rejected = {r.sha256 for r in hostile}
    wanted_accepted = [r.sha256 for r in valid.records]
    rejected: dict[str, list[Any]] = {}
    accepted: list[Any] = []
    async with kafka.reader(LABELS_REJECTED, LABELS_ACCEPTED) as reader:

        def keep(record: Any) -> bool:
            event = REGISTRY.decode(record.value)
            sha = event.payload.raw_sha256
            if event.event_type == "label.rejected" and sha in wanted_rejected:
                rejected.setdefault(sha, []).append(event.payload)
            elif event.event_type != "label.rejected" and sha in wanted_accepted:
                accepted.append(event)
            return False

        await _collect(
            reader,
            keep,
            lambda: set(rejected) == wanted_rejected and len(accepted) >= len(wanted_accepted),
            timeout=90,
        )

    problems = []
    for record in hostile:
        answers = rejected.get(record.sha256, [])
        codes = [str(a.code) for a in answers]
        if record.code not in codes:
            problems.append(f"{record.name}: expected {record.code}, got {codes or 'nothing'}")
            continue
        answer = next(a for a in answers if str(a.code) == record.code)
        assert answer.message, record.name
        if record.event_id is not None:
            assert answer.rejected_event_id == record.event_id, record.name
        if record.code == "phi_suspected":
            assert answer.item_id is None and answer.annotator_id is None, record.name
    assert not problems, "\n".join(problems)
    # Exactly one answer per hostile record, and nothing hostile was accepted.
    assert sorted(len(v) for v in rejected.values()) == [1] * len(rejected)
    assert [e.payload.raw_sha256 for e in accepted] == wanted_accepted
    assert [e.event_type for e in accepted] == ["label.accepted"] * 5 + ["label.retracted"] * 2
    assert not any(e.payload.superseded for e in accepted)
    assert {e.payload.item_id for e in accepted} == {scene.item}


async def _collect(
    reader: Any, keep: Callable[[Any], bool], done: Callable[[], bool], timeout: float
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not every record was answered in time")
        for record in await reader.drain(0.5):
            keep(record)
