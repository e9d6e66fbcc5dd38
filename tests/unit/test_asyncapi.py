"""The AsyncAPI document generated from the code."""

from __future__ import annotations

from services.cli.asyncapi import asyncapi_document
from services.cli.registry import definition
from shared.settings import SERVICES
from shared.topics import ALL_TOPICS


def test_every_topic_is_a_channel_with_its_message_schema() -> None:
    document = asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {topic.name for topic in ALL_TOPICS}
    labels = document["components"]["messages"]["consensus_published"]["payload"]
    assert "payload" in labels["properties"]


def test_operations_follow_what_each_service_declares() -> None:
    operations = asyncapi_document()["operations"]
    for service in SERVICES:
        spec = definition(service)
        received = {
            op["channel"]["$ref"].split("/")[-1]
            for name, op in operations.items()
            if name.startswith(f"{service}_receive_")
        }
        assert received == {t.name.replace(".", "_") for t in spec.consumes}
        assert spec.produces, f"{service} declares what it produces"
