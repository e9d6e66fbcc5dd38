"""Per-task JSON Schemas for front-ends (shared/task_schema.py)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from shared.events import Box, BoxesValue, MultiLabelValue, OrdinalValue
from shared.task_schema import task_label_schema
from tests import factories


def _valid(schema: dict[str, Any], event: Any) -> bool:
    validator = jsonschema.Draft202012Validator(schema)
    return bool(validator.is_valid(json.loads(event.encode())))


def test_a_categorical_task_schema_fixes_the_task_and_its_classes() -> None:
    task = factories.task("chest", classes=("0", "1"))
    schema = task_label_schema(task)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert _valid(schema, factories.label_event("i", "chest", "r", "1"))
    assert not _valid(schema, factories.label_event("i", "chest", "r", "2"))
    assert not _valid(schema, factories.label_event("i", "other", "r", "1"))


def test_an_ordinal_task_schema_bounds_the_grade() -> None:
    task = factories.task("birads", label_kind="ordinal", classes=(), ordinal_range=(1, 5))
    schema = task_label_schema(task)

    def grade(g: int) -> Any:
        return factories.label_event("i", "birads", "r", "", label_value=OrdinalValue(grade=g))

    assert _valid(schema, grade(5)) and not _valid(schema, grade(6))


def test_a_multilabel_task_schema_lists_the_findings() -> None:
    task = factories.task("cx", label_kind="multilabel", classes=("Edema", "Effusion"))
    schema = task_label_schema(task)

    def findings(*names: str) -> Any:
        value = MultiLabelValue(findings=names)
        return factories.label_event("i", "cx", "r", "", label_value=value)

    assert _valid(schema, findings("Edema")) and _valid(schema, findings())
    assert not _valid(schema, findings("Fracture"))


def test_a_boxes_task_schema_bounds_normalized_coordinates_and_labels() -> None:
    task = factories.task("nod", label_kind="boxes", classes=("nodule",))
    schema = task_label_schema(task)

    def boxes(*items: Box) -> Any:
        value = BoxesValue(boxes=items)
        return factories.label_event("i", "nod", "r", "", label_value=value)

    assert _valid(schema, boxes(Box(x0=0.1, y0=0.1, x1=0.3, y1=0.4, label="nodule")))
    assert not _valid(schema, boxes(Box(x0=0.1, y0=0.1, x1=1.3, y1=0.4)))
    assert not _valid(schema, boxes(Box(x0=0.1, y0=0.1, x1=0.3, y1=0.4, label="mass")))
