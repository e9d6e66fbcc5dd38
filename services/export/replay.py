"""Re-derive published consensus from the raw labels and the recorded parameters.

For each published version: the contributing labels are read back from submission's
append-only store, the policy from the recorded parameters, the annotator reliability
from the snapshot the decision named; the engine decides again, and the label,
confidence, posterior and method must come out bit for bit as published. The label of
the adjudicator a version names is fed as the adjudicator's (it closes the item), so an
adjudicated version reproduces only if that adjudicator's label is among its labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from services.consensus import engine
from services.consensus.engine.observation import Role
from services.consensus.engine.reliability import ReliabilitySnapshot
from services.consensus.policies import consensus_value, engine_value
from services.consensus.scoped import TaskView
from shared.events import ConsensusPublished, LabelValue


@dataclass(frozen=True)
class StoredLabel:
    label_id: str
    annotation_id: str
    revision: int
    annotator_id: str
    value: Mapping[str, Any]  # the LabelValue JSON as stored by submission


@dataclass
class ReplayReport:
    checked: int = 0
    reproduced: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.checked == self.reproduced


_VALUE = TypeAdapter(LabelValue)


def _observed(value: Mapping[str, Any]) -> engine.LabelValue:
    return engine_value(_VALUE.validate_python(value))


def _role(published: ConsensusPublished, label: StoredLabel) -> Role:
    if published.adjudicator_id is not None and label.annotator_id == published.adjudicator_id:
        return "adjudicator"
    return "annotator"


def rederive(
    published: ConsensusPublished,
    labels: list[StoredLabel],
    snapshot: ReliabilitySnapshot,
) -> engine.Decision:
    """The decision the engine takes again from the same inputs."""
    policy = engine.ConsensusPolicy.from_dict(published.parameters)
    state = engine.ItemState.new(published.item_id)
    for label in labels:
        state = state.with_label(
            engine.LabelObservation(
                label_id=label.label_id,
                annotator_id=label.annotator_id,
                value=_observed(label.value),
                annotation_id=label.annotation_id,
                revision=label.revision,
                role=_role(published, label),
            )
        )
    return engine.rescore(policy, state, TaskView(snapshot, published.task_id)).decision


def compare(published: ConsensusPublished, decision: engine.Decision) -> dict[str, Any] | None:
    """The differences between a published version and its re-derivation, if any."""
    expected = {
        "label": published.label,
        "confidence": published.confidence,
        "distribution": dict(published.distribution),
        "contributing_label_ids": sorted(str(i) for i in published.contributing_label_ids),
        "method": published.method,
        "outcome": "reached",
    }
    actual = {
        "label": consensus_value(decision.label),
        "confidence": decision.confidence,
        "distribution": dict(decision.distribution),
        "contributing_label_ids": sorted(decision.contributing_label_ids),
        "method": decision.method,
        "outcome": decision.outcome,
    }
    differing = {
        k: {"published": expected[k], "replayed": actual[k]}
        for k in expected
        if expected[k] != actual[k]
    }
    if differing and published.method_version != decision.method_version:
        # Decided by another engine version: the likely cause, named beside the symptoms.
        differing["method_version"] = {
            "published": published.method_version,
            "replayed": decision.method_version,
        }
    return differing or None
