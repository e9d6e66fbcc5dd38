"""The JSON Schema of a `labels.submitted.v1` event for one task version, for front-ends.

It is the topic's generated schema narrowed to the task: `task_id` and `task_version`
fixed, `value` reduced to the task's label kind with its allowed classes, findings,
grades, measurement range or box geometry. A front-end that validates against it
before publishing avoids `wrong_label_kind`, `value_not_allowed` and most
`invalid_geometry` rejections; what JSON Schema cannot express (x0 < x1, pixel bounds per
item, PHI, signatures, assignments) is still checked by submission.
"""

from __future__ import annotations

import copy
from typing import Any

from shared.events import LABEL_SUBMITTED, TaskDefined

_KIND_DEFS = {
    "categorical": "CategoricalValue",
    "ordinal": "OrdinalValue",
    "numeric": "NumericValue",
    "multilabel": "MultiLabelValue",
    "boxes": "BoxesValue",
}


def task_label_schema(task: TaskDefined) -> dict[str, Any]:
    """A Draft 2020-12 schema that accepts only labels this task version can accept."""
    schema = copy.deepcopy(LABEL_SUBMITTED.envelope.model_json_schema(mode="validation"))
    defs = schema["$defs"]
    payload = defs["LabelSubmitted"]["properties"]
    payload["task_id"] = {"const": task.task_id, "type": "string"}
    payload["task_version"] = {"const": task.version, "type": "integer"}
    kind_def = _KIND_DEFS[task.label_kind]
    value = copy.deepcopy(defs[kind_def])
    value["required"] = sorted({"kind", *value.get("required", [])})
    props = value["properties"]
    if task.label_kind == "categorical":
        props["label"] = {"enum": list(task.classes), "type": "string"}
    elif task.label_kind == "ordinal" and task.ordinal_range is not None:
        low, high = task.ordinal_range
        props["grade"] = {"minimum": low, "maximum": high, "type": "integer"}
    elif task.label_kind == "numeric" and task.numeric_range is not None:
        low_f, high_f = task.numeric_range
        props["measurement"] = {"minimum": low_f, "maximum": high_f, "type": "number"}
    elif task.label_kind == "multilabel":
        props["findings"] = {
            "items": {"enum": list(task.classes), "type": "string"},
            "uniqueItems": True,
            "type": "array",
        }
    elif task.label_kind == "boxes":
        props["boxes"]["maxItems"] = task.max_boxes
        box = copy.deepcopy(defs["Box"])
        if task.box_coordinates == "normalized":
            for corner in ("x0", "y0", "x1", "y1"):
                box["properties"][corner] = {"minimum": 0, "maximum": 1, "type": "number"}
        else:
            for corner in ("x0", "y0", "x1", "y1"):
                box["properties"][corner] = {"minimum": 0, "type": "number"}
        box["properties"]["label"] = (
            {"anyOf": [{"enum": list(task.classes), "type": "string"}, {"type": "null"}]}
            if task.classes
            else {"type": "null"}
        )
        defs["Box"] = box
    payload["value"] = {"$ref": f"#/$defs/Task{kind_def}"}
    defs[f"Task{kind_def}"] = value
    schema["properties"]["event_type"] = {"const": LABEL_SUBMITTED.event_type, "type": "string"}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:consilium:task:{task.task_id}:v{task.version}:labels.submitted.v1"
    schema["title"] = f"{task.title} (task {task.task_id} v{task.version}): label.submitted"
    schema["description"] = (
        f"A label for task {task.task_id} version {task.version} (guideline "
        f"{task.guideline_version}), {task.label_kind}. Publish on labels.submitted.v1, key = "
        "item_id, signed (docs/SUBMISSION.md)."
    )
    return schema
