"""Authenticity end to end: forged, tampered, replayed and stale events published on the
real Kafka are answered on labels.rejected.v1 with their code; the partition keeps flowing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.assignment.admin import register_annotators
from shared.db.pool import connect
from shared.events import REGISTRY
from shared.runtime import ServiceRuntime
from shared.signing import SigningKey
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


async def _item(kafka: Kafka) -> tuple[str, str, str]:
    """A task and item with one reader assigned; returns task id, item id, reader."""
    task = factories.task(initial_overlap=1)
    await register_annotators(dsn_for("assignment"), task.task_id, ["reader-s"], "reader")
    await kafka.publish(TASKS_DEFINED, factories.task_event(task))
    item = factories.item_event(task.task_id)
    await kafka.publish(ITEMS_REGISTERED, item)
    item_id = item.payload.item_id
    async with kafka.reader(ASSIGNMENTS_ISSUED) as reader:
        await reader.until(lambda r: REGISTRY.decode(r.value).payload.item_id == item_id)
    return task.task_id, item_id, "reader-s"


async def _answer(kafka: Kafka, raw: bytes) -> Any:
    digest = hashlib.sha256(raw).hexdigest()
    async with kafka.reader(LABELS_REJECTED, LABELS_ACCEPTED) as reader:
        (record,) = await reader.until(
            lambda r: REGISTRY.decode(r.value).payload.raw_sha256 == digest, timeout=60
        )
    return REGISTRY.decode(record.value)


async def test_forged_tampered_and_stale_events_are_rejected_and_an_honest_one_flows(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    task_id, item_id, reader = await _item(kafka)
    key = item_id.encode()

    forged = factories.label_event(item_id, task_id, reader, "1").encode()
    await kafka.publish_raw(
        LABELS_SUBMITTED, forged, key, factories.sign(forged, SigningKey(factories.KEY_ID, b"x"))
    )
    honest = factories.label_event(item_id, task_id, reader, "0").encode()
    tampered = honest.replace(b'"label":"0"', b'"label":"1"')
    await kafka.publish_raw(LABELS_SUBMITTED, tampered, key, factories.sign(honest))
    stale = factories.label_event(item_id, task_id, reader, "1").encode()
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await kafka.publish_raw(
        LABELS_SUBMITTED, stale, key, factories.sign(stale, signed_at=an_hour_ago)
    )
    unsigned = factories.label_event(item_id, task_id, reader, "1").encode()
    await kafka.publish_raw(LABELS_SUBMITTED, unsigned, key)
    good = factories.label_event(item_id, task_id, reader, "1").encode()
    await kafka.publish_raw(LABELS_SUBMITTED, good, key, factories.sign(good))

    codes = [(await _answer(kafka, raw)).payload for raw in (forged, tampered, stale, unsigned)]
    assert [c.code for c in codes] == [
        "bad_signature", "bad_signature", "signature_expired", "unsigned"
    ]  # fmt: skip
    assert all(c.message and c.rejected_event_id for c in codes)
    accepted = await _answer(kafka, good)
    assert accepted.event_type == "label.accepted"


async def test_a_replayed_copy_of_an_accepted_event_is_rejected_and_has_no_effect(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    task_id, item_id, reader = await _item(kafka)
    event = factories.label_event(item_id, task_id, reader, "1")
    raw = event.encode()
    headers = factories.sign(raw)
    await kafka.publish_raw(LABELS_SUBMITTED, raw, item_id.encode(), headers)
    first = await _answer(kafka, raw)
    assert first.event_type == "label.accepted", first.payload

    # An attacker (or a careless retry) publishes the very same signed record again.
    await kafka.publish_raw(LABELS_SUBMITTED, raw, item_id.encode(), headers)
    async with kafka.reader(LABELS_REJECTED) as reader_:
        (record,) = await reader_.until(
            lambda r: REGISTRY.decode(r.value).payload.rejected_event_id == event.event_id
        )
    rejection = REGISTRY.decode(record.value).payload
    assert rejection.code == "replayed" and "already received" in rejection.message

    async def stored() -> int:
        conn = await connect(dsn_for("submission"), "submission")
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM labels WHERE event_id = $1", event.event_id
            )
            return count
        finally:
            await conn.close()

    await wait_until(lambda: stored())
    assert await stored() == 1
