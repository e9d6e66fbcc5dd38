"""One accepted label as the engine sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from services.consensus.engine.canonical import canonical_json

Scalar = str | float | int
LabelValue = (
    str | float | int | tuple[str, ...] | tuple[float, ...] | tuple[tuple[float | str, ...], ...]
)
"""A class name, a number, a list of findings, a list of boxes, or an encoded mask."""
Role = Literal["annotator", "adjudicator"]


def _scalar(value: Any) -> Scalar:
    if isinstance(value, bool):
        raise ValueError("booleans are not label values; use class names")
    if isinstance(value, str | int | float):
        return value
    raise ValueError(f"unsupported label value {value!r}")


def _freeze(value: Any) -> LabelValue:
    """Lists become tuples (one level of nesting: boxes, or a 2-D mask given as rows)."""
    if isinstance(value, list | tuple):
        return tuple(
            tuple(_scalar(x) for x in v) if isinstance(v, list | tuple) else _scalar(v)
            for v in value
        )  # type: ignore[return-value]  # a homogeneous tuple; the kind validates its shape
    return _scalar(value)


def thaw(value: Any) -> Any:
    """Tuples back to lists, recursively: the JSON form of a label value."""
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def freeze(value: Any) -> Any:
    """Lists to tuples, recursively: the inverse of `thaw`."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class LabelObservation:
    """A label from an annotator (or an adjudicator) on one item.

    annotation_id names what an annotator may revise: a later revision of the same
    annotation replaces the earlier one. label_id is unique per revision. Re-delivery of
    the same observation is a no-op, and which of two observations wins never depends on
    arrival order: the greater (revision, label_id, canonical JSON) is kept.

    gold: the item's known true value when it is a control (gold) item, else None.
    role "adjudicator": the label closes the item with this value.
    """

    label_id: str
    annotator_id: str
    value: LabelValue
    annotation_id: str = ""
    revision: int = 0
    role: Role = "annotator"
    gold: str | None = None

    def __post_init__(self) -> None:
        if not self.label_id or not self.annotator_id:
            raise ValueError("label_id and annotator_id must be non-empty")
        object.__setattr__(self, "value", _freeze(self.value))
        if not self.annotation_id:
            object.__setattr__(self, "annotation_id", self.label_id)

    def to_dict(self) -> dict[str, Any]:
        value = thaw(self.value)
        return {
            "label_id": self.label_id,
            "annotator_id": self.annotator_id,
            "annotation_id": self.annotation_id,
            "revision": self.revision,
            "role": self.role,
            "value": value,
            "gold": self.gold,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelObservation:
        role = data.get("role", "annotator")
        if role not in ("annotator", "adjudicator"):
            raise ValueError(f"unknown role {role!r}")
        gold = data.get("gold")
        return cls(
            label_id=str(data["label_id"]),
            annotator_id=str(data["annotator_id"]),
            value=data["value"],
            annotation_id=str(data.get("annotation_id") or data["label_id"]),
            revision=int(data.get("revision", 0)),
            role=role,
            gold=None if gold is None else str(gold),
        )

    def precedence(self) -> tuple[int, str, str]:
        """Total order deciding which observation of an annotation is current."""
        return (self.revision, self.label_id, canonical_json(self.to_dict()))
