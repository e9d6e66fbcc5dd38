"""The AsyncAPI 3.0 document of Consilium, generated from the code: topics, their event
models' JSON Schemas, and the topics each service declares it consumes and produces."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from services.cli.registry import definition
from services.cli.schemas import topic_schemas
from shared.events import TOPIC_EVENTS
from shared.settings import SERVICES
from shared.topics import ALL_TOPICS, CONSENSUS_FHIR

VERBS = {"receive": "consumes", "send": "produces"}
_HEADER_NAMES = (
    "event_id", "event_type", "schema_version", "item_id", "task_id", "version",
    "supersedes_version", "provenance_sha256", "correlation_id", "causation_id",
)  # fmt: skip
# Topics whose records are not envelopes: raw FHIR JSON with the metadata in headers.
RAW_MESSAGES: dict[str, tuple[str, dict[str, Any]]] = {
    CONSENSUS_FHIR.name: (
        "fhir_bundle",
        {
            "name": "FHIR R4 Bundle",
            "contentType": "application/fhir+json",
            "payload": {
                "type": "object",
                "description": "A collection Bundle (FHIR R4, validated with the R4B models): "
                "Observation or DiagnosticReport + Observations, and Provenance.",
                "properties": {"resourceType": {"const": "Bundle"}},
                "required": ["resourceType"],
            },
            "headers": {
                "type": "object",
                "properties": {name: {"type": "string"} for name in _HEADER_NAMES},
            },
        },
    )
}


def asyncapi_document() -> dict[str, Any]:
    schemas = topic_schemas()
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        spec = TOPIC_EVENTS.get(topic.name)
        channel_id = topic.name.replace(".", "_")
        if topic.name in RAW_MESSAGES:
            message_id, messages[message_id] = RAW_MESSAGES[topic.name]
        else:
            message_id = (spec.event_type if spec else "dead_letter").replace(".", "_")
            messages[message_id] = {
                "name": spec.event_type if spec else "dead letter",
                "contentType": "application/json" if spec else "application/octet-stream",
                "payload": (
                    schemas[topic.name] if spec else {"type": "string", "format": "binary"}
                ),
            }
        channels[channel_id] = {
            "address": topic.name,
            "description": f"{topic.description} Key: {topic.key}.",
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
            "bindings": {
                "kafka": {"partitions": topic.partitions, "topicConfiguration": dict(topic.config)}
            },
        }
    operations: dict[str, Any] = {}
    for service in SERVICES:
        spec_def = definition(service)
        for action, topics in (("receive", spec_def.consumes), ("send", spec_def.produces)):
            for topic in topics:
                channel_id = topic.name.replace(".", "_")
                operations[f"{service}_{action}_{channel_id}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel_id}"},
                    "summary": f"{service} {VERBS[action]} {topic.name}",
                }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Consilium",
            "version": version("consilium"),
            "description": "Multi-expert consensus for medical AI labeling: its Kafka topics.",
        },
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
