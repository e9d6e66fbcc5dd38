"""What the service keeps per item: the engine's state plus what it already asked for."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from services.consensus import engine


@dataclass
class TrackedItem:
    """The engine state and the service's own bookkeeping (requests, escalation, last
    published consensus), stored together as the item's JSON."""

    engine: engine.ItemState
    requested_extra: int = 0
    escalated: bool = False
    published_label: Any = None
    published_contributors: list[str] = field(default_factory=list)
    first_label_at: str | None = None  # ISO time the first label was received
    # annotation id -> highest retracted revision: lower revisions arriving late stay out.
    retracted: dict[str, int] = field(default_factory=dict)
    # The known answer of a gold item (LabelValue JSON): its labels measure the readers and
    # it is never published, extended or escalated.
    gold: dict[str, Any] | None = None
    # adjudicator label id -> the rationale they signed (AdjudicationRationale JSON), kept
    # so that every later decision of the item still names it.
    rationales: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def new(cls, item_id: str) -> TrackedItem:
        return cls(engine.ItemState.new(item_id))

    def retract(self, annotation_id: str, revision: int) -> bool:
        """Drop an annotation unless a higher revision of it is held; True if it changed."""
        self.retracted[annotation_id] = max(revision, self.retracted.get(annotation_id, 0))
        kept = tuple(
            obs
            for obs in self.engine.labels
            if obs.annotation_id != annotation_id or obs.revision > revision
        )
        changed = len(kept) != len(self.engine.labels)
        self.engine = replace(self.engine, labels=kept)
        return changed

    def is_retracted(self, annotation_id: str, revision: int) -> bool:
        return revision <= self.retracted.get(annotation_id, 0)

    def stamp_gold(self, gold: str | None) -> None:
        """Mark every label with the item's gold value, as the engine reads gold items."""
        labels = tuple(replace(obs, gold=gold) for obs in self.engine.labels)
        self.engine = replace(self.engine, labels=labels)

    def annotators(self) -> tuple[str, ...]:
        return tuple(sorted({obs.annotator_id for obs in self.engine.labels}))

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine.to_dict(),
            "requested_extra": self.requested_extra,
            "escalated": self.escalated,
            "published_label": self.published_label,
            "published_contributors": self.published_contributors,
            "first_label_at": self.first_label_at,
            "retracted": self.retracted,
            "gold": self.gold,
            "rationales": self.rationales,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackedItem:
        return cls(
            engine=engine.ItemState.from_dict(data["engine"]),
            requested_extra=int(data.get("requested_extra", 0)),
            escalated=bool(data.get("escalated", False)),
            published_label=data.get("published_label"),
            published_contributors=list(data.get("published_contributors", [])),
            first_label_at=data.get("first_label_at"),
            retracted={k: int(v) for k, v in data.get("retracted", {}).items()},
            gold=data.get("gold"),
            rationales=dict(data.get("rationales", {})),
        )
