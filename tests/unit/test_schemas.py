"""Published JSON Schemas and the saved example of every topic."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from services.cli.schemas import topic_schemas, write_schemas
from shared.events import REGISTRY, TOPIC_EVENTS
from shared.topics import ALL_TOPICS, CONSENSUS_FHIR, DEAD_LETTERS, RELAY_CHECKPOINTS

EXAMPLES = sorted((Path(__file__).parents[1] / "schemas").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_saved_example_still_decodes(path: Path) -> None:
    topic = ".".join(path.name.split(".")[:3])
    event = REGISTRY.decode(path.read_bytes(), expect={TOPIC_EVENTS[topic].event_type})
    assert event.event_type == TOPIC_EVENTS[topic].event_type


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_saved_example_validates_against_its_topic_schema(path: Path) -> None:
    topic = ".".join(path.name.split(".")[:3])
    jsonschema.validate(json.loads(path.read_text()), topic_schemas()[topic])


def test_there_is_a_saved_example_for_every_envelope_topic() -> None:
    covered = {".".join(p.name.split(".")[:3]) for p in EXAMPLES}
    assert covered == set(TOPIC_EVENTS)


def test_one_schema_is_written_per_topic_that_carries_events(tmp_path: Path) -> None:
    written = write_schemas(tmp_path)
    # Dead letters and relay checkpoints carry raw bytes, the FHIR topic raw FHIR JSON.
    raw = (DEAD_LETTERS, RELAY_CHECKPOINTS, CONSENSUS_FHIR)
    expected = {t.name for t in ALL_TOPICS if t not in raw}
    assert {p.name.removesuffix(".schema.json") for p in written} == expected
    for path in written:
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_the_ingress_schema_forbids_unknown_fields() -> None:
    schema = topic_schemas()["labels.submitted.v1"]
    assert schema["additionalProperties"] is False
    payload = schema["$defs"]["LabelSubmitted"]
    assert payload["additionalProperties"] is False
