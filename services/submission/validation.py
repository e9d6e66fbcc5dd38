"""Pure rules that decide whether a submitted label is acceptable (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import LabelSubmitted, RejectionCode, TaskDefined


@dataclass(frozen=True)
class Rejection:
    code: RejectionCode
    message: str


def check_label(
    label: LabelSubmitted,
    task: TaskDefined | None,
    item_task_id: str | None,
    latest_revision: int | None,
) -> Rejection | None:
    """Why `label` must be rejected, or None when it is acceptable.

    The label must name a known item of a known task version, carry the task's label kind
    with an allowed value, and be newer than any stored revision of the same annotation.
    """
    if task is None:
        return Rejection(
            RejectionCode.UNKNOWN_TASK, f"task {label.task_id} v{label.task_version} is unknown"
        )
    if item_task_id is None:
        return Rejection(RejectionCode.UNKNOWN_ITEM, f"item {label.item_id} is not registered")
    if item_task_id != label.task_id:
        return Rejection(
            RejectionCode.ITEM_TASK_MISMATCH,
            f"item {label.item_id} belongs to task {item_task_id}, not {label.task_id}",
        )
    value = label.value
    if value.kind != task.label_kind:
        return Rejection(
            RejectionCode.WRONG_LABEL_KIND,
            f"task {task.task_id} expects {task.label_kind} labels, got {value.kind}",
        )
    problem = _value_problem(label, task)
    if problem is not None:
        return Rejection(RejectionCode.VALUE_NOT_ALLOWED, problem)
    if latest_revision is not None and label.revision <= latest_revision:
        return Rejection(
            RejectionCode.STALE_REVISION,
            f"annotation {label.annotation_id} already has revision {latest_revision}",
        )
    return None


def _value_problem(label: LabelSubmitted, task: TaskDefined) -> str | None:
    value = label.value
    if value.kind == "categorical" and value.label not in task.classes:
        return f"{value.label!r} is not one of {', '.join(task.classes)}"
    if value.kind == "ordinal" and task.ordinal_range is not None:
        low, high = task.ordinal_range
        if not low <= value.grade <= high:
            return f"grade {value.grade} is outside {low}..{high}"
    if value.kind == "numeric" and task.numeric_range is not None:
        low_f, high_f = task.numeric_range
        if not low_f <= value.measurement <= high_f:
            return f"measurement {value.measurement} is outside {low_f}..{high_f}"
    return None
