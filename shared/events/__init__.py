"""The v1 events of every topic, and the registry that decodes them."""

from __future__ import annotations

from shared.envelope import EventRegistry, EventSpec
from shared.events.consensus import (
    AdjudicationRequested,
    AnnotatorSkillEstimated,
    ConsensusPublished,
    ConsensusReached,
    DecisionRecord,
)
from shared.events.items import (
    AssignmentCancelled,
    AssignmentIssued,
    AssignmentRequested,
    ItemRegistered,
)
from shared.events.labels import (
    AdjudicationRationale,
    Box,
    BoxesValue,
    CategoricalValue,
    LabelAccepted,
    LabelRejected,
    LabelRetracted,
    LabelRetractionSubmitted,
    LabelSubmitted,
    LabelValue,
    MultiLabelValue,
    NumericValue,
    OrdinalValue,
    RejectionCode,
)
from shared.events.tasks import AssignmentRules, ConsensusPolicy, TaskDefined
from shared.topics import (
    ADJUDICATION_REQUESTED,
    ANNOTATORS_SKILL,
    ASSIGNMENTS_ISSUED,
    ASSIGNMENTS_REQUESTED,
    CONSENSUS_LABELS,
    CONSENSUS_REACHED,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    LABELS_REJECTED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
    Topic,
)

TASK_DEFINED = EventSpec("task.defined", 1, TaskDefined)
ITEM_REGISTERED = EventSpec("item.registered", 1, ItemRegistered)
ASSIGNMENT_REQUESTED = EventSpec("assignment.requested", 1, AssignmentRequested)
ASSIGNMENT_ISSUED = EventSpec("assignment.issued", 1, AssignmentIssued)
ASSIGNMENT_CANCELLED = EventSpec("assignment.cancelled", 1, AssignmentCancelled)
LABEL_SUBMITTED = EventSpec("label.submitted", 1, LabelSubmitted, ingress=True)
LABEL_RETRACTION_SUBMITTED = EventSpec(
    "label.retraction_submitted", 1, LabelRetractionSubmitted, ingress=True
)
LABEL_ACCEPTED = EventSpec("label.accepted", 1, LabelAccepted)
LABEL_RETRACTED = EventSpec("label.retracted", 1, LabelRetracted)
LABEL_REJECTED = EventSpec("label.rejected", 1, LabelRejected)
CONSENSUS_REACHED_EVENT = EventSpec("consensus.reached", 1, ConsensusReached)
ADJUDICATION_REQUESTED_EVENT = EventSpec("adjudication.requested", 1, AdjudicationRequested)
ANNOTATOR_SKILL_ESTIMATED = EventSpec("annotator.skill_estimated", 1, AnnotatorSkillEstimated)
CONSENSUS_PUBLISHED = EventSpec("consensus.published", 1, ConsensusPublished)

REGISTRY = EventRegistry(
    [
        TASK_DEFINED,
        ITEM_REGISTERED,
        ASSIGNMENT_REQUESTED,
        ASSIGNMENT_ISSUED,
        ASSIGNMENT_CANCELLED,
        LABEL_SUBMITTED,
        LABEL_RETRACTION_SUBMITTED,
        LABEL_ACCEPTED,
        LABEL_RETRACTED,
        LABEL_REJECTED,
        CONSENSUS_REACHED_EVENT,
        ADJUDICATION_REQUESTED_EVENT,
        ANNOTATOR_SKILL_ESTIMATED,
        CONSENSUS_PUBLISHED,
    ]
)

# Which event each topic carries; the JSON Schema of a topic is its envelope's schema.
TOPIC_EVENTS: dict[str, EventSpec] = {  # type: ignore[type-arg]
    TASKS_DEFINED.name: TASK_DEFINED,
    ITEMS_REGISTERED.name: ITEM_REGISTERED,
    ASSIGNMENTS_REQUESTED.name: ASSIGNMENT_REQUESTED,
    ASSIGNMENTS_ISSUED.name: ASSIGNMENT_ISSUED,
    LABELS_SUBMITTED.name: LABEL_SUBMITTED,
    LABELS_ACCEPTED.name: LABEL_ACCEPTED,
    LABELS_REJECTED.name: LABEL_REJECTED,
    CONSENSUS_REACHED.name: CONSENSUS_REACHED_EVENT,
    ADJUDICATION_REQUESTED.name: ADJUDICATION_REQUESTED_EVENT,
    ANNOTATORS_SKILL.name: ANNOTATOR_SKILL_ESTIMATED,
    CONSENSUS_LABELS.name: CONSENSUS_PUBLISHED,
}


# Further event types a topic carries besides its main one (same key, same order).
TOPIC_EXTRA_EVENTS: dict[str, tuple[EventSpec, ...]] = {  # type: ignore[type-arg]
    LABELS_SUBMITTED.name: (LABEL_RETRACTION_SUBMITTED,),
    LABELS_ACCEPTED.name: (LABEL_RETRACTED,),
    # Keyed by annotator like the assignment it cancels, so a front-end sees both in order.
    ASSIGNMENTS_ISSUED.name: (ASSIGNMENT_CANCELLED,),
}


def topic_of(spec: EventSpec) -> Topic:  # type: ignore[type-arg]
    """The topic an event type is published on."""
    from shared.topics import by_name

    for name, candidate in TOPIC_EVENTS.items():
        if candidate is spec or spec in TOPIC_EXTRA_EVENTS.get(name, ()):
            return by_name(name)
    raise KeyError(spec.event_type)


__all__ = [
    "REGISTRY",
    "TOPIC_EVENTS",
    "TOPIC_EXTRA_EVENTS",
    "AdjudicationRationale",
    "AdjudicationRequested",
    "AnnotatorSkillEstimated",
    "AssignmentCancelled",
    "AssignmentIssued",
    "AssignmentRequested",
    "AssignmentRules",
    "Box",
    "BoxesValue",
    "CategoricalValue",
    "ConsensusPolicy",
    "ConsensusPublished",
    "ConsensusReached",
    "DecisionRecord",
    "ItemRegistered",
    "LabelAccepted",
    "LabelRejected",
    "LabelRetracted",
    "LabelRetractionSubmitted",
    "LabelSubmitted",
    "LabelValue",
    "MultiLabelValue",
    "NumericValue",
    "OrdinalValue",
    "RejectionCode",
    "TaskDefined",
    "topic_of",
]
