"""Per-item state: the current labels and what this item added to the reliability ledger.

The state is a small sufficient statistic: it grows with the labels on this item (bounded
by the policy's max_labels), never with the number of items or annotators seen. Labels are
kept sorted by annotation_id, so the state (and its JSON) does not depend on the order in
which labels arrived.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from services.consensus.engine.fixedpoint import IntArray
from services.consensus.engine.observation import LabelObservation
from services.consensus.engine.reliability import EntryKey

STATE_SCHEMA = 1

Contribution = tuple[tuple[EntryKey, IntArray], ...]


@dataclass(frozen=True)
class ItemState:
    """An item's current labels (one per annotation) and its ledger contribution."""

    item_id: str
    labels: tuple[LabelObservation, ...] = ()
    contribution: Contribution = ()

    @classmethod
    def new(cls, item_id: str) -> ItemState:
        return cls(item_id=item_id)

    def with_label(self, label: LabelObservation) -> ItemState:
        """Merge one observation: new annotation, later revision, or an ignored duplicate."""
        current = {obs.annotation_id: obs for obs in self.labels}
        existing = current.get(label.annotation_id)
        if existing is not None and existing.precedence() >= label.precedence():
            return self
        current[label.annotation_id] = label
        return replace(self, labels=tuple(current[k] for k in sorted(current)))

    def with_contribution(self, contribution: Contribution) -> ItemState:
        return replace(self, contribution=contribution)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types in a fixed key order (store as JSON in PostgreSQL)."""
        return {
            "schema": STATE_SCHEMA,
            "item_id": self.item_id,
            "labels": [obs.to_dict() for obs in self.labels],
            "contribution": [
                [scope, key, column, [int(u) for u in units]]
                for (scope, key, column), units in self.contribution
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemState:
        if data.get("schema", STATE_SCHEMA) != STATE_SCHEMA:
            raise ValueError(f"unsupported item state schema {data.get('schema')}")
        return cls(
            item_id=str(data["item_id"]),
            labels=tuple(LabelObservation.from_dict(d) for d in data["labels"]),
            contribution=tuple(
                ((str(s), str(k), int(c)), np.asarray(u, dtype=np.int64))
                for s, k, c, u in data["contribution"]
            ),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemState):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable-looking numpy payload: unhashable
