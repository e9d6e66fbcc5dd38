"""FHIR per event on the real broker: each consensus version arrives on consensus.fhir.v1
once, as raw FHIR JSON that validates as an R4 Bundle, with the adjudicator's rationale."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from fhir.resources.R4B.bundle import Bundle

from shared.envelope import Envelope
from shared.events import CONSENSUS_REACHED_EVENT, ConsensusReached, DecisionRecord
from shared.runtime import ServiceRuntime
from shared.settings import StackSettings
from shared.topics import CONSENSUS_FHIR, CONSENSUS_LABELS, CONSENSUS_REACHED, Topic
from tests import factories
from tests.integration.conftest import Kafka

pytestmark = pytest.mark.integration


def _reached(item_id: str, label: str, version: int, adjudicated: bool) -> Envelope[Any]:
    """A hand-built decision as consensus would publish it."""
    label_ids = (uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    decision = DecisionRecord(
        outcome="reached", label=label, confidence=1.0 if adjudicated else 0.93,
        distribution={"0": 0.0, "1": 1.0} if label == "1" else {"0": 1.0, "1": 0.0},
        agreement=0.5, contributing_label_ids=label_ids,
        method="adjudication" if adjudicated else "ds", method_version="consilium-engine/1",
        parameters={}, reason="adjudicated" if adjudicated else "confident",
        contributing_annotators=("adj-1", "reader-a", "reader-b") if adjudicated else (
            "reader-a", "reader-b", "reader-c"),
    )  # fmt: skip
    payload = ConsensusReached(
        item_id=item_id, task_id="chest-fhir", task_version=1, consensus_version=version,
        decision=decision, decided_at=factories.NOW,
        adjudicator_id="adj-1" if adjudicated else None,
        adjudication=factories.rationale("1") if adjudicated else None,
    )  # fmt: skip
    return CONSENSUS_REACHED_EVENT.wrap(
        payload,
        key=item_id,
        producer="consensus",
        event_id=uuid.uuid4(),
        occurred_at=factories.NOW,
        correlation_id=uuid.uuid4(),
    )


async def _committed(
    stack: StackSettings, topic: Topic, keys: set[bytes] | None, count: int
) -> list[Any]:
    """Records of `keys` (None: all) as a hospital integration reads them
    (read_committed), once the expected count is in and a further second brings nothing."""
    consumer = AIOKafkaConsumer(
        topic.qualified(stack.topic_prefix),
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        records: list[Any] = []
        idle = 0
        for _ in range(120):
            batches = await consumer.getmany(timeout_ms=500)
            new = [r for batch in batches.values() for r in batch if keys is None or r.key in keys]
            records += new
            idle = 0 if new or len(records) < count else idle + 1
            if idle >= 2:
                break
        return records
    finally:
        await consumer.stop()


async def test_each_consensus_version_is_published_once_as_a_valid_fhir_bundle(
    services: dict[str, ServiceRuntime], kafka: Kafka, stack: StackSettings
) -> None:
    plain, contested = (f"fhir-{uuid.uuid4().hex[:8]}" for _ in range(2))
    # The contested item: a confident "0", then an adjudicator's "1" that supersedes it.
    events = [
        _reached(plain, "1", 1, adjudicated=False),
        _reached(contested, "0", 1, adjudicated=False),
        _reached(contested, "1", 2, adjudicated=True),
    ]
    for event in events:
        await kafka.publish(CONSENSUS_REACHED, event)
    await kafka.publish(CONSENSUS_REACHED, events[-1])  # a redelivery has no second effect
    keys = {plain.encode(), contested.encode()}

    records = await _committed(stack, CONSENSUS_FHIR, keys, count=3)
    assert len(records) == 3
    versions = []
    for record in records:
        bundle = Bundle.model_validate_json(record.value)  # raw FHIR JSON, nothing else
        headers = {name: value.decode() for name, value in record.headers}
        assert headers["content-type"].startswith("application/fhir+json")
        assert headers["item_id"] == record.key.decode()
        assert bundle.identifier is not None
        assert bundle.identifier.value == f"{headers['item_id']}|v{headers['version']}"
        versions.append((headers["item_id"], headers["version"], headers["supersedes_version"]))
        kinds = [
            entry.resource.get_resource_type() for entry in bundle.entry or [] if entry.resource
        ]
        assert kinds == ["Observation", "Provenance"]
    assert sorted(versions) == sorted(
        [(plain, "1", ""), (contested, "1", ""), (contested, "2", "1")]
    )

    adjudicated = next(
        json.loads(r.value)
        for r in records
        if r.key == contested.encode() and dict(r.headers)["version"] == b"2"
    )
    observation, provenance = (entry["resource"] for entry in adjudicated["entry"])
    assert observation["status"] == "amended"
    rationale = {p["url"]: p for p in observation["extension"][0]["extension"]}
    assert rationale["signatureMeaning"]["valueString"] == "I adjudicate this case as 1"
    verifier = [a for a in provenance["agent"] if a["type"]["coding"][0]["code"] == "verifier"]
    assert [a["who"]["identifier"]["value"] for a in verifier] == ["adj-1"]

    labels = await _committed(stack, CONSENSUS_LABELS, {contested.encode()}, count=2)
    latest = max((json.loads(r.value)["payload"] for r in labels), key=lambda p: p["version"])
    assert len(labels) == 2
    assert latest["adjudicator_id"] == "adj-1"
    assert latest["adjudication"]["reason_code"] == "reader_error"


async def test_every_record_on_the_fhir_topic_validates_as_r4(
    services: dict[str, ServiceRuntime], kafka: Kafka, stack: StackSettings
) -> None:
    item = f"fhir-{uuid.uuid4().hex[:8]}"
    await kafka.publish(CONSENSUS_REACHED, _reached(item, "1", 1, adjudicated=False))
    await _committed(stack, CONSENSUS_FHIR, {item.encode()}, count=1)
    records = await _committed(stack, CONSENSUS_FHIR, None, count=1)
    assert item.encode() in {r.key for r in records}
    for record in records:
        Bundle.model_validate_json(record.value)
