"""Submission's acceptance rules."""

from __future__ import annotations

from services.submission.validation import check_label
from shared.events import LabelSubmitted, NumericValue, OrdinalValue, RejectionCode
from tests import factories

TASK = factories.task("chest-1")


def _label(value: str = "1", item: str = "item-1", task: str = "chest-1") -> LabelSubmitted:
    return factories.label_event(item, task, "reader-a", value).payload


def test_a_label_with_an_allowed_value_for_a_known_item_is_accepted() -> None:
    assert check_label(_label(), TASK, "chest-1", None) is None


def test_each_broken_rule_is_named_by_its_code() -> None:
    assert check_label(_label(), None, "chest-1", None).code == RejectionCode.UNKNOWN_TASK  # type: ignore[union-attr]
    assert check_label(_label(), TASK, None, None).code == RejectionCode.UNKNOWN_ITEM  # type: ignore[union-attr]
    assert check_label(_label(), TASK, "other", None).code == RejectionCode.ITEM_TASK_MISMATCH  # type: ignore[union-attr]
    assert check_label(_label("7"), TASK, "chest-1", None).code == RejectionCode.VALUE_NOT_ALLOWED  # type: ignore[union-attr]
    assert check_label(_label(), TASK, "chest-1", 1).code == RejectionCode.STALE_REVISION  # type: ignore[union-attr]


def test_a_label_of_another_kind_than_the_task_is_rejected() -> None:
    label = _label().model_copy(update={"value": NumericValue(measurement=3.2)})
    assert check_label(label, TASK, "chest-1", None).code == RejectionCode.WRONG_LABEL_KIND  # type: ignore[union-attr]


def test_ordinal_grades_outside_the_scale_are_not_allowed() -> None:
    birads = factories.task("birads", label_kind="ordinal", classes=(), ordinal_range=(1, 5))
    good = _label(task="birads").model_copy(update={"value": OrdinalValue(grade=4)})
    bad = _label(task="birads").model_copy(update={"value": OrdinalValue(grade=6)})
    assert check_label(good, birads, "birads", None) is None
    assert check_label(bad, birads, "birads", None).code == RejectionCode.VALUE_NOT_ALLOWED  # type: ignore[union-attr]
