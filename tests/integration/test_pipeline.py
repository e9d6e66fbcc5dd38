"""End to end through the four services on the real Kafka, PostgreSQL and Redis."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from services.assignment.admin import register_annotators
from services.submission.handlers import label_id_for
from shared.db.pool import connect
from shared.events import REGISTRY, TaskDefined
from shared.runtime import ServiceRuntime
from shared.topics import (
    ASSIGNMENTS_ISSUED,
    CONSENSUS_LABELS,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    LABELS_REJECTED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
)
from tests import factories
from tests.integration.conftest import Kafka, dsn_for, wait_until

pytestmark = pytest.mark.integration
READERS = ("reader-a", "reader-b", "reader-c", "reader-d")


async def _known_to_submission(item_id: str) -> bool:
    conn = await connect(dsn_for("submission"), "submission")
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM items WHERE item_id = $1", item_id))
    finally:
        await conn.close()


async def _setup_item(kafka: Kafka, **task_overrides: Any) -> tuple[TaskDefined, str]:
    definition = factories.task(**task_overrides)
    await register_annotators(dsn_for("assignment"), definition.task_id, list(READERS), "reader")
    await kafka.publish(TASKS_DEFINED, factories.task_event(definition))
    item = factories.item_event(definition.task_id)
    await kafka.publish(ITEMS_REGISTERED, item)
    await wait_until(lambda: _known_to_submission(item.payload.item_id))
    return definition, item.payload.item_id


async def _assigned(kafka: Kafka, item_id: str, count: int = 3) -> list[str]:
    """The readers the assignment service gave the item to (a front-end shows them it)."""
    async with kafka.reader(ASSIGNMENTS_ISSUED) as reader:
        records = await reader.until(lambda r: _decoded(r).payload.item_id == item_id, count=count)
    return [_decoded(r).payload.annotator_id for r in records]


def _decoded(record: Any) -> Any:
    return REGISTRY.decode(record.value)


async def test_three_labels_come_out_as_one_consensus_on_the_hospital_topic(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    definition, item_id = await _setup_item(kafka)
    readers = await _assigned(kafka, item_id)
    labels = [
        factories.label_event(item_id, definition.task_id, reader, value)
        for reader, value in zip(readers, ("1", "0", "1"), strict=True)
    ]
    for label in labels:
        await kafka.publish(LABELS_SUBMITTED, label)

    async with kafka.reader(CONSENSUS_LABELS) as reader:
        (record,) = await reader.until(lambda r: r.key == item_id.encode())
    published = _decoded(record).payload
    assert published.label == "1"
    assert published.version == 1 and published.supersedes_version is None
    assert published.distribution["1"] == pytest.approx(0.75)  # mv, 2 of 3 at accuracy 0.75
    assert published.method == "mv" and published.method_version.startswith("consilium-engine/")
    assert set(published.contributing_label_ids) == {label_id_for(e.event_id) for e in labels}
    assert len(published.provenance_sha256) == 64


async def test_registering_an_item_issues_the_initial_overlap_with_leases_in_redis(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    definition, item_id = await _setup_item(kafka)
    async with kafka.reader(ASSIGNMENTS_ISSUED) as reader:
        records = await reader.until(
            lambda r: _decoded(r).payload.item_id == item_id, count=definition.initial_overlap
        )
    issued = [_decoded(r).payload for r in records]
    assert len({a.annotator_id for a in issued}) == definition.initial_overlap
    assert all(r.key == a.annotator_id.encode() for r, a in zip(records, issued, strict=True))
    client = aioredis.from_url(services["assignment"].stack.redis_url)
    try:
        for assignment in issued:
            key = f"consilium:lease:{assignment.assignment_id}"
            assert await client.get(key) == assignment.annotator_id.encode()
            assert await client.ttl(key) > 0
    finally:
        await client.aclose()


def _with_payload(event: Any, **changes: Any) -> bytes:
    data = json.loads(event.encode())
    data["payload"].update(changes)
    return json.dumps(data).encode()


InvalidCase = Callable[[str, str], bytes]
INVALID_CASES: dict[str, InvalidCase] = {
    "undecodable": lambda item, task: b"\xff\xfe not json",
    "invalid_envelope": lambda item, task: json.dumps(
        {"event_type": "label.submitted", "schema_version": 1}
    ).encode(),
    "unsupported_event": lambda item, task: json.dumps(
        {
            **json.loads(factories.label_event(item, task, "reader-a", "1").encode()),
            "event_type": "label.deleted",
        }
    ).encode(),
    "invalid_payload": lambda item, task: _with_payload(
        factories.label_event(item, task, "reader-a", "1"), colour="blue"
    ),
    "phi_suspected": lambda item, task: _with_payload(
        factories.label_event(item, task, "reader-a", "1"), patient_name="Jane Doe"
    ),
    "value_not_allowed": lambda item, task: factories.label_event(
        item, task, "reader-a", "7"
    ).encode(),
    "unknown_item": lambda item, task: factories.label_event(
        "no-such-item", task, "reader-a", "1"
    ).encode(),
    "unknown_task": lambda item, task: factories.label_event(
        item, "no-such-task", "reader-a", "1"
    ).encode(),
    "oversized": lambda item, task: _with_payload(
        factories.label_event(item, task, "reader-a", "1"), padding="x" * 300_000
    ),
}


@pytest.mark.parametrize("code", sorted(INVALID_CASES))
async def test_an_invalid_label_is_rejected_with_a_machine_readable_reason_and_kept(
    services: dict[str, ServiceRuntime], kafka: Kafka, code: str
) -> None:
    definition, item_id = await _setup_item(kafka)
    raw = INVALID_CASES[code](item_id, definition.task_id)
    digest = hashlib.sha256(raw).hexdigest()
    # Signed by the registered test front-end: what is wrong is the content, not the sender.
    await kafka.publish_raw(
        LABELS_SUBMITTED, raw, key=item_id.encode(), headers=factories.sign(raw)
    )

    async with kafka.reader(LABELS_REJECTED) as reader:
        (record,) = await reader.until(lambda r: _decoded(r).payload.raw_sha256 == digest)
    rejection = _decoded(record).payload
    assert rejection.code == code
    assert rejection.message
    conn = await connect(dsn_for("submission"), "submission")
    try:
        kept = await conn.fetchrow(
            "SELECT code, raw, raw_redacted FROM rejections WHERE raw_sha256 = $1", digest
        )
    finally:
        await conn.close()
    assert kept is not None and kept["code"] == code
    if code == "phi_suspected":  # the bytes are not kept: the database is no PHI store
        assert kept["raw_redacted"] and bytes(kept["raw"]) == b""
        assert "Jane" not in rejection.message
    else:
        assert bytes(kept["raw"]) == raw


async def test_the_same_event_sent_three_times_is_counted_once(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    definition, item_id = await _setup_item(kafka)
    first, second, third = await _assigned(kafka, item_id)
    repeated = factories.label_event(item_id, definition.task_id, first, "1")
    others = [
        factories.label_event(item_id, definition.task_id, second, "1"),
        factories.label_event(item_id, definition.task_id, third, "0"),
    ]
    for event in (repeated, repeated, others[0], repeated, others[1]):
        await kafka.publish(LABELS_SUBMITTED, event)

    async with kafka.reader(CONSENSUS_LABELS) as reader:
        (record,) = await reader.until(lambda r: r.key == item_id.encode())
    assert len(_decoded(record).payload.contributing_label_ids) == 3
    async with kafka.reader(LABELS_ACCEPTED) as reader:
        accepted = [r for r in await reader.drain(2.0) if r.key == item_id.encode()]
    assert len(accepted) == 3
    # The two extra copies sit at other offsets: answered as replays, with no effect.
    async with kafka.reader(LABELS_REJECTED) as reader:
        replays = await reader.until(
            lambda r: _decoded(r).payload.rejected_event_id == repeated.event_id, count=2
        )
    assert {_decoded(r).payload.code for r in replays} == {"replayed"}
    conn = await connect(dsn_for("submission"), "submission")
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM labels WHERE event_id = $1", repeated.event_id
        )
    finally:
        await conn.close()
    assert stored == 1


async def test_every_service_reports_healthy_ready_and_metrics(
    services: dict[str, ServiceRuntime],
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name, runtime in services.items():
            base = f"http://127.0.0.1:{runtime.settings.http_port}"
            assert (await client.get(f"{base}/healthz")).json()["status"] == "ok"
            ready = await client.get(f"{base}/readyz")
            assert ready.status_code == 200, (name, ready.json())
            assert set(ready.json()["checks"]) == {
                "postgres",
                "redis",
                "kafka",
                "migrations",
                "consumer",
            }
            metrics = (await client.get(f"{base}/metrics")).text
            assert "consilium_events_in_total" in metrics
            assert (await client.get(f"{base}/nope")).status_code == 404


def _counter(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter's samples whose labels include `labels`."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_move_as_events_flow(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    """Consumers' counters (this session's groups, so this process) count the flow."""
    url = f"http://127.0.0.1:{services['export'].settings.http_port}/metrics"
    prefix = kafka.stack.topic_prefix
    watched = {
        "submission": f"{prefix}labels.submitted.v1",
        "consensus": f"{prefix}labels.accepted.v1",
        "export": f"{prefix}consensus.reached.v1",
    }

    async def counts(client: httpx.AsyncClient) -> dict[str, float]:
        text = (await client.get(url)).text
        counted = {
            consumer: _counter(text, "consilium_events_in_total", consumer=consumer, topic=topic)
            for consumer, topic in watched.items()
        }
        counted["label handler calls"] = _counter(
            text, "consilium_handler_seconds_count", consumer="consensus",
            event_type="label.accepted",
        )  # fmt: skip
        return counted

    async with httpx.AsyncClient(timeout=10) as client:
        before = await counts(client)
        definition, item_id = await _setup_item(kafka)
        for annotator in await _assigned(kafka, item_id):
            await kafka.publish(
                LABELS_SUBMITTED,
                factories.label_event(item_id, definition.task_id, annotator, "1"),
            )
        async with kafka.reader(CONSENSUS_LABELS) as reader_:
            await reader_.until(lambda r: r.key == item_id.encode())
        after = await counts(client)
    assert after["submission"] >= before["submission"] + 3
    assert after["consensus"] >= before["consensus"] + 3
    assert after["export"] >= before["export"] + 1
    assert after["label handler calls"] >= before["label handler calls"] + 3
