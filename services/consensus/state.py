"""An item's consensus state as stored (pure): the current label of each annotation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from services.consensus.rule import CurrentLabel
from shared.events import LabelAccepted


def value_key(label: LabelAccepted) -> str:
    """The label's value as the text the rule votes on."""
    value = label.value
    if value.kind == "categorical":
        return value.label
    if value.kind == "ordinal":
        return str(value.grade)
    return repr(value.measurement)


@dataclass
class ItemState:
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    requested_extra: int = 0
    escalated: bool = False
    last_label: str | None = None
    last_contributors: list[str] = field(default_factory=list)

    def apply(self, label: LabelAccepted) -> bool:
        """Take a label; a later revision of an annotation replaces it. False if stale."""
        key = str(label.annotation_id)
        current = self.labels.get(key)
        if current is not None and current["revision"] >= label.revision:
            return False
        self.labels[key] = {
            "label_id": str(label.label_id),
            "annotator_id": label.annotator_id,
            "revision": label.revision,
            "value": value_key(label),
        }
        return True

    def current(self) -> list[CurrentLabel]:
        return [
            CurrentLabel(UUID(entry["label_id"]), entry["annotator_id"], entry["value"])
            for entry in self.labels.values()
        ]

    def annotators(self) -> tuple[str, ...]:
        return tuple(sorted({entry["annotator_id"] for entry in self.labels.values()}))

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "requested_extra": self.requested_extra,
            "escalated": self.escalated,
            "last_label": self.last_label,
            "last_contributors": self.last_contributors,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemState:
        return cls(
            labels=dict(data.get("labels", {})),
            requested_extra=int(data.get("requested_extra", 0)),
            escalated=bool(data.get("escalated", False)),
            last_label=data.get("last_label"),
            last_contributors=list(data.get("last_contributors", [])),
        )
