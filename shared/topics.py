"""Every Kafka topic Consilium uses, in one place.

`python -m shared.topics` prints `<name> <partitions> [config=value ...]` per topic; the
local stack script and the compose init job create topics from that output.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True)
class Topic:
    """A versioned topic, its partitioning key and its broker-side configuration."""

    name: str
    partitions: int
    key: str
    description: str
    config: dict[str, str] = field(default_factory=dict)

    def qualified(self, prefix: str = "") -> str:
        """The topic's name on the broker; a prefix isolates test runs on a shared broker."""
        return f"{prefix}{self.name}"


TASKS_DEFINED: Final = Topic(
    "tasks.defined.v1",
    3,
    "task_id",
    "Task definitions (label kind, classes, consensus policy), every version (compacted).",
    {"cleanup.policy": "compact"},
)
ITEMS_REGISTERED: Final = Topic(
    "items.registered.v1", 6, "item_id", "Items registered for labeling by a data owner."
)
ASSIGNMENTS_REQUESTED: Final = Topic(
    "assignments.requested.v1", 6, "item_id", "Consensus asks for one more independent label."
)
ASSIGNMENTS_ISSUED: Final = Topic(
    "assignments.issued.v1", 6, "annotator_id", "A leased assignment for a front-end to show."
)
LABELS_SUBMITTED: Final = Topic(
    "labels.submitted.v1",
    6,
    "item_id",
    "Ingress: label events published by front-ends.",
    # The broker stamps each record: the signature window and assignment leases are judged
    # against when a label reached Kafka, which the sender cannot choose.
    {"message.timestamp.type": "LogAppendTime"},
)
LABELS_ACCEPTED: Final = Topic(
    "labels.accepted.v1", 6, "item_id", "Labels that passed validation and were stored."
)
LABELS_REJECTED: Final = Topic(
    "labels.rejected.v1", 6, "item_id", "Rejected label events with a machine-readable reason."
)
CONSENSUS_REACHED: Final = Topic(
    "consensus.reached.v1", 6, "item_id", "An item's consensus decision was reached."
)
ADJUDICATION_REQUESTED: Final = Topic(
    "adjudication.requested.v1", 6, "item_id", "A contested item escalated with its evidence."
)
ANNOTATORS_SKILL: Final = Topic(
    "annotators.skill.v1",
    3,
    "annotator_id",
    "Latest skill estimate per annotator (compacted).",
    {"cleanup.policy": "compact"},
)
CONSENSUS_LABELS: Final = Topic(
    "consensus.labels.v1", 6, "item_id", "Hospital topic: published, versioned consensus labels."
)
CONSENSUS_FHIR: Final = Topic(
    "consensus.fhir.v1",
    6,
    "item_id",
    "Opt-in hospital topic: each consensus version as a FHIR R4 Bundle (raw FHIR JSON; "
    "item, version and ids in headers).",
)
DEAD_LETTERS: Final = Topic(
    "deadletters.v1",
    3,
    "original key",
    "Messages a consumer could not process: original bytes and headers plus the error.",
    {"retention.ms": str(30 * 24 * 3600 * 1000)},
)

RELAY_CHECKPOINTS: Final = Topic(
    "relay.checkpoints.v1",
    1,
    "service",
    "Outbox ids each exactly-once relay committed in its last Kafka transaction (compacted).",
    {"cleanup.policy": "compact"},
)

ALL_TOPICS: Final[tuple[Topic, ...]] = (
    TASKS_DEFINED,
    ITEMS_REGISTERED,
    ASSIGNMENTS_REQUESTED,
    ASSIGNMENTS_ISSUED,
    LABELS_SUBMITTED,
    LABELS_ACCEPTED,
    LABELS_REJECTED,
    CONSENSUS_REACHED,
    ADJUDICATION_REQUESTED,
    ANNOTATORS_SKILL,
    CONSENSUS_LABELS,
    CONSENSUS_FHIR,
    DEAD_LETTERS,
    RELAY_CHECKPOINTS,
)


def by_name(name: str) -> Topic:
    """Look a topic up by its unprefixed name."""
    for topic in ALL_TOPICS:
        if topic.name == name:
            return topic
    raise KeyError(f"unknown topic {name!r}")


def main() -> None:
    for topic in ALL_TOPICS:
        extra = " ".join(f"{k}={v}" for k, v in sorted(topic.config.items()))
        sys.stdout.write(f"{topic.name} {topic.partitions}{' ' + extra if extra else ''}\n")


if __name__ == "__main__":
    main()
