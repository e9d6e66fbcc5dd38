"""Builders of valid events for tests (each call gets fresh ids unless given)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.envelope import Envelope
from shared.events import (
    ITEM_REGISTERED,
    LABEL_SUBMITTED,
    TASK_DEFINED,
    CategoricalValue,
    ConsensusPolicy,
    ItemRegistered,
    LabelSubmitted,
    TaskDefined,
)

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def task(task_id: str | None = None, **overrides: Any) -> TaskDefined:
    fields: dict[str, Any] = {
        "task_id": task_id or f"task-{uuid.uuid4().hex[:8]}",
        "version": 1,
        "title": "Pneumothorax present?",
        "label_kind": "categorical",
        "classes": ("0", "1"),
        "initial_overlap": 3,
        # Majority vote at 0.7: two of three agreeing readers settle an item.
        "policy": ConsensusPolicy(method="mv", min_labels=3, max_labels=5, threshold=0.7),
    }
    fields.update(overrides)
    return TaskDefined(**fields)


def task_event(definition: TaskDefined) -> Envelope[TaskDefined]:
    return TASK_DEFINED.wrap(
        definition,
        key=definition.task_id,
        producer="tests",
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


def item_event(task_id: str, item_id: str | None = None) -> Envelope[ItemRegistered]:
    item_id = item_id or f"item-{uuid.uuid4().hex[:10]}"
    return ITEM_REGISTERED.wrap(
        ItemRegistered(item_id=item_id, task_id=task_id, case_ref=f"case:{item_id}"),
        key=item_id,
        producer="tests",
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )


def label_event(
    item_id: str,
    task_id: str,
    annotator: str,
    value: str,
    *,
    event_id: uuid.UUID | None = None,
    annotation_id: uuid.UUID | None = None,
    revision: int = 1,
) -> Envelope[LabelSubmitted]:
    return LABEL_SUBMITTED.wrap(
        LabelSubmitted(
            annotation_id=annotation_id or uuid.uuid4(),
            revision=revision,
            item_id=item_id,
            task_id=task_id,
            task_version=1,
            annotator_id=annotator,
            client_id="viewer-1",
            value=CategoricalValue(label=value),
            labeled_at=NOW,
            time_spent_ms=41_000,
        ),
        key=item_id,
        producer="viewer-1",
        event_id=event_id or uuid.uuid4(),
        occurred_at=NOW,
        correlation_id=uuid.uuid4(),
    )
