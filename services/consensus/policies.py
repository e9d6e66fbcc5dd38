"""From a task definition to the engine's policy, and from events to observations (pure)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import TypeAdapter

from services.consensus import engine
from shared.events import LabelAccepted, LabelValue, TaskDefined
from shared.events.consensus import ConsensusValue, DecisionRecord


def engine_policy(task: TaskDefined) -> engine.ConsensusPolicy:
    """The engine policy a task's definition asks for."""
    policy = task.policy
    kind: engine.policy.Kind
    classes: tuple[str, ...] = task.classes
    if task.label_kind == "categorical":
        kind = "binary" if len(task.classes) == 2 else "categorical"
    elif task.label_kind == "ordinal":
        kind = "ordinal"
        low, high = task.ordinal_range or (0, 0)
        classes = tuple(str(grade) for grade in range(low, high + 1))
    else:
        kind = task.label_kind
    method: engine.policy.Method = "mv" if policy.method == "majority" else policy.method
    critical = (
        engine.CriticalRule(policy.critical_labels, policy.critical_mode)
        if policy.critical_labels
        else None
    )
    return engine.ConsensusPolicy(
        method=method,
        kind=kind,
        classes=classes,
        min_labels=policy.min_labels,
        max_labels=policy.max_labels,
        threshold=policy.threshold,
        critical=critical,
        max_spread=policy.max_spread,
        params=dict(policy.params),
    )


def engine_value(value: LabelValue) -> engine.LabelValue:
    """A label value as the engine reads it."""
    if value.kind == "categorical":
        return value.label
    if value.kind == "ordinal":
        return str(value.grade)
    if value.kind == "numeric":
        return value.measurement
    if value.kind == "multilabel":
        return tuple(value.findings)
    return tuple(
        (box.x0, box.y0, box.x1, box.y1, *((box.label,) if box.label else ()))
        for box in value.boxes
    )


def observation(label: LabelAccepted, gold: str | None = None) -> engine.LabelObservation:
    """An accepted label as the engine sees it: an adjudicator's decision closes the item;
    `gold` is the item's known answer when it is a gold item (see gold_key)."""
    return engine.LabelObservation(
        label_id=str(label.label_id),
        annotator_id=label.annotator_id,
        value=engine_value(label.value),
        annotation_id=str(label.annotation_id),
        revision=label.revision,
        role="adjudicator" if label.role == "adjudicator" else "annotator",
        gold=gold,
    )


_VALUE: TypeAdapter[LabelValue] = TypeAdapter(LabelValue)


def gold_key(gold_value: dict[str, Any] | None) -> str | None:
    """A gold item's known answer as the engine reads gold (a class or a grade).

    Only the classifying kinds have an exact right answer the engine scores readers
    against; a gold item of another kind is kept from publication but teaches nothing."""
    if gold_value is None:
        return None
    value = _VALUE.validate_python(gold_value)
    if value.kind in ("categorical", "ordinal"):
        return str(engine_value(value))
    return None


def is_right(label: LabelAccepted, gold_value: dict[str, Any] | None) -> bool | None:
    """Whether a reader's label matches a gold item's answer (None: not a scored gold item)."""
    key = gold_key(gold_value)
    return None if key is None else str(engine_value(label.value)) == key


def consensus_value(value: Any) -> ConsensusValue | None:
    """An engine decision's label as events carry it (tuples become JSON lists)."""
    if value is None:
        return None
    if isinstance(value, tuple):
        if value and isinstance(value[0], tuple):
            return [[v if isinstance(v, str) else float(v) for v in box] for box in value]
        return [str(v) for v in value]
    if isinstance(value, float | int):
        return float(value)
    return str(value)


def decision_record(decision: engine.Decision, state: engine.ItemState) -> DecisionRecord:
    """The engine's decision as it travels in events, naming the readers behind it."""
    contributing = set(decision.contributing_label_ids)
    readers = sorted({obs.annotator_id for obs in state.labels if obs.label_id in contributing})
    label = consensus_value(decision.label)
    return DecisionRecord(
        outcome=decision.outcome,
        label=label,
        confidence=decision.confidence,
        distribution=dict(decision.distribution),
        agreement=decision.agreement,
        contributing_label_ids=tuple(UUID(i) for i in decision.contributing_label_ids),
        method=decision.method,
        method_version=decision.method_version,
        parameters=dict(decision.parameters),
        reliability_version=decision.reliability_version,
        votes=dict(decision.votes),
        n_annotators=decision.n_annotators,
        reason=decision.reason,
        policy_digest=decision.policy_digest,
        contributing_annotators=tuple(readers),
        stopping=dict(decision.details.get("stopping", {})),
    )
