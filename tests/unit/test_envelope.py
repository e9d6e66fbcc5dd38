"""The envelope codec: round trips, strict ingress, tolerant internal reading, upcasting."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from shared.envelope import DecodeError, EventRegistry, EventSpec
from shared.events import LABEL_SUBMITTED, REGISTRY, ItemRegistered
from tests import factories


def test_an_envelope_round_trips_through_the_wire_format() -> None:
    event = factories.label_event("item-1", "task-1", "reader-a", "1")
    decoded = REGISTRY.decode(event.encode())
    assert decoded == event
    assert decoded.payload.value.label == "1"


def test_occurred_at_is_normalised_to_utc() -> None:
    data = json.loads(factories.item_event("task-1").encode())
    data["occurred_at"] = "2026-01-05T10:30:00+01:00"
    decoded = REGISTRY.decode(json.dumps(data).encode())
    assert decoded.occurred_at.isoformat() == "2026-01-05T09:30:00+00:00"


def test_ingress_events_reject_unknown_fields_in_envelope_and_payload() -> None:
    data = json.loads(factories.label_event("item-1", "task-1", "reader-a", "1").encode())
    with pytest.raises(DecodeError) as in_payload:
        REGISTRY.decode(json.dumps({**data, "payload": {**data["payload"], "mrn": "123"}}).encode())
    assert in_payload.value.code == "invalid_payload"
    with pytest.raises(DecodeError) as in_envelope:
        REGISTRY.decode(json.dumps({**data, "patient": "x"}).encode())
    assert in_envelope.value.code == "invalid_envelope"


def test_internal_events_ignore_unknown_fields() -> None:
    data = json.loads(factories.item_event("task-1").encode())
    data["added_later"] = 1
    data["payload"]["also_added_later"] = "x"
    decoded = REGISTRY.decode(json.dumps(data).encode())
    assert isinstance(decoded.payload, ItemRegistered)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\xff\xfe", "undecodable"),
        (b"[1, 2]", "undecodable"),
        (b'{"event_type": "label.nope", "schema_version": 1}', "unsupported_event"),
        (b'{"event_type": "label.submitted", "schema_version": 9}', "unsupported_event"),
        (b'{"event_type": "label.submitted", "schema_version": 1}', "invalid_envelope"),
    ],
)
def test_bad_bytes_raise_a_decode_error_with_a_machine_readable_code(raw: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as error:
        REGISTRY.decode(raw)
    assert error.value.code == code


def test_decoding_can_insist_on_the_event_type_a_topic_carries() -> None:
    raw = factories.item_event("task-1").encode()
    with pytest.raises(DecodeError) as error:
        REGISTRY.decode(raw, expect={LABEL_SUBMITTED.event_type})
    assert error.value.code == "unsupported_event"


class _GreetingV2(BaseModel):
    text: str
    language: str


def test_older_versions_are_upcast_step_by_step_never_dropped() -> None:
    spec: EventSpec[Any] = EventSpec(
        "greeting.sent", 2, _GreetingV2, upcasters={1: lambda p: {**p, "language": "en"}}
    )
    registry = EventRegistry([spec])
    old = {
        "event_id": str(uuid.uuid4()),
        "event_type": "greeting.sent",
        "schema_version": 1,
        "occurred_at": "2026-01-05T09:30:00Z",
        "producer": "p",
        "key": "k",
        "correlation_id": str(uuid.uuid4()),
        "payload": {"text": "hello"},
    }
    decoded = registry.decode(json.dumps(old).encode())
    assert decoded.schema_version == 2
    assert decoded.payload == _GreetingV2(text="hello", language="en")


def test_an_envelope_is_frozen() -> None:
    event = factories.item_event("task-1")
    with pytest.raises(Exception, match="frozen"):
        event.key = "other"  # type: ignore[misc]
