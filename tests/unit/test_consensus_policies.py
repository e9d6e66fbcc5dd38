"""From task definitions and accepted labels to the engine, and back to events."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from services.consensus import engine
from services.consensus.engine.reliability import ReliabilityDelta, ReliabilitySnapshot
from services.consensus.policies import decision_record, engine_policy, observation
from services.consensus.scoped import TaskView, engine_scopes, scoped_delta, task_annotators
from shared.events import ConsensusPolicy, LabelAccepted
from tests import factories


def test_a_two_class_categorical_task_is_a_binary_engine_policy() -> None:
    policy = engine_policy(factories.task("t", policy=ConsensusPolicy(method="ds")))
    assert (policy.kind, policy.method, policy.classes) == ("binary", "ds", ("0", "1"))


def test_an_ordinal_task_lists_its_grades_as_classes() -> None:
    task = factories.task("birads", label_kind="ordinal", classes=(), ordinal_range=(1, 5))
    assert engine_policy(task).classes == ("1", "2", "3", "4", "5")


def test_critical_labels_become_the_engines_critical_rule() -> None:
    task = factories.task(
        "ptx", policy=ConsensusPolicy(critical_labels=("1",), critical_mode="dissent")
    )
    assert engine_policy(task).critical == engine.CriticalRule(("1",), "dissent")


def test_a_policy_the_engine_cannot_apply_is_refused() -> None:
    with pytest.raises(ValueError, match="does not apply"):
        engine_policy(factories.task("t", policy=ConsensusPolicy(method="median")))


def _accepted(value: str, reader: str = "reader-a") -> LabelAccepted:
    submitted = factories.label_event("item-1", "t", reader, value).payload
    return LabelAccepted(
        label_id=uuid.uuid4(),
        received_at=factories.NOW,
        raw_sha256="0" * 64,
        **submitted.model_dump(exclude={"time_spent_ms"}),
    )


def test_a_decision_travels_with_its_complete_record() -> None:
    task = factories.task("t", policy=ConsensusPolicy(method="mv", min_labels=1, threshold=0.5))
    policy = engine_policy(task)
    label = _accepted("1")
    result = engine.step(
        policy, engine.ItemState.new("item-1"), observation(label), ReliabilitySnapshot.empty()
    )
    record = decision_record(result.decision, result.state)
    assert record.outcome == "reached" and record.label == "1"
    assert record.contributing_label_ids == (label.label_id,)
    assert record.contributing_annotators == ("reader-a",)
    assert record.parameters == policy.to_dict()
    assert record.policy_digest == policy.digest
    assert record.reliability_version == ReliabilitySnapshot.empty().version
    assert record.stopping == {}


def test_a_reach_below_the_threshold_carries_the_gain_it_was_reached_on() -> None:
    task = factories.task(
        "t",
        policy=ConsensusPolicy(
            method="mv", min_labels=2, max_labels=3, threshold=0.999, params={"stop_gain": 0.05}
        ),
    )
    policy = engine_policy(task)
    state = engine.ItemState.new("item-1")
    for reader in ("reader-a", "reader-b"):
        label = observation(_accepted("1", reader))
        result = engine.step(policy, state, label, ReliabilitySnapshot.empty())
        state = result.state
    record = decision_record(result.decision, result.state)
    assert (record.outcome, record.reason) == ("reached", "more labels would not change it")
    assert record.stopping == dict(result.decision.details["stopping"])
    assert 0.0 <= record.stopping["horizon_gain"] <= 0.05


def test_each_task_reads_and_writes_its_own_reliability_scope() -> None:
    delta = ReliabilityDelta({("", "reader-a", 1): np.asarray([5, 0], dtype=np.int64)})
    snapshot = ReliabilitySnapshot.from_entries(scoped_delta("chest", delta).entries)
    assert TaskView(snapshot, "chest").entry(("", "reader-a", 1)) is not None
    assert TaskView(snapshot, "other").entry(("", "reader-a", 1)) is None
    assert TaskView(snapshot, "other").version == snapshot.version


def test_a_tasks_known_annotators_are_read_from_its_own_scopes_only() -> None:
    units = np.asarray([5, 0], dtype=np.int64)
    keys = [
        ("chest", "whole-item", 1),
        ("chest/effusion", "finding-reader", 0),
        ("chest/effusion", "", 0),  # the finding's class counts, not an annotator
        ("chest/unlisted", "stray", 0),
        ("other", "elsewhere", 1),
        ("other/effusion", "elsewhere-too", 1),
    ]
    snapshot = ReliabilitySnapshot.from_entries({key: units for key in keys})
    whole = engine.ConsensusPolicy(method="ds", kind="binary", classes=("0", "1"))
    per_finding = engine.ConsensusPolicy(
        method="ds", kind="multilabel", classes=("effusion", "edema")
    )
    assert engine_scopes(per_finding) == ("effusion", "edema")
    assert task_annotators(snapshot.entries, "chest", engine_scopes(whole)) == ["whole-item"]
    findings = task_annotators(snapshot.entries, "chest", engine_scopes(per_finding))
    assert findings == ["finding-reader"]


def test_boxes_and_findings_keep_their_structure_in_events() -> None:
    from services.consensus.policies import consensus_value

    boxes = ((10.0, 12.0, 50.0, 58.5, "nodule"), (1, 2, 3, 4))
    assert consensus_value(boxes) == [[10.0, 12.0, 50.0, 58.5, "nodule"], [1.0, 2.0, 3.0, 4.0]]
    assert consensus_value(("Edema", "Effusion")) == ["Edema", "Effusion"]
    assert consensus_value(3) == 3.0 and consensus_value("1") == "1"
    assert consensus_value(None) is None
