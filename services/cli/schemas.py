"""JSON Schema of every topic's events, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.events import TOPIC_EVENTS
from shared.topics import ALL_TOPICS


def topic_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per topic that carries envelopes (dead letters carry raw bytes)."""
    schemas: dict[str, dict[str, Any]] = {}
    for topic in ALL_TOPICS:
        spec = TOPIC_EVENTS.get(topic.name)
        if spec is None:
            continue
        schema = spec.envelope.model_json_schema(
            mode="serialization" if not spec.ingress else "validation"
        )
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"urn:consilium:topic:{topic.name}"
        schema["title"] = f"{topic.name}: {spec.event_type} v{spec.version}"
        schema["description"] = f"{topic.description} Kafka key: {topic.key}."
        schemas[topic.name] = schema
    return schemas


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in topic_schemas().items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
