"""Who may hold an assignment of an item, and who gets it (pure: no I/O, deterministic).

The rules that are never broken (docs/ASSIGNMENT.md):
- an annotator never holds two assignments of the same item;
- with `forbid_same_site`, nobody gets a case from their own site (conflict of interest);
- an adjudicator is never one of the item's readers;
- nobody holds more open assignments of a task than their cap (their own, else the
  task's);
- only annotators registered for the task in the right role (and, for adjudication, the
  queue's tier and specialty) qualify.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.events import AssignmentRules

Kind = Literal["label", "adjudication"]


@dataclass(frozen=True)
class Annotator:
    """An annotator registered for a task, with their open assignments of it and their
    skill on it."""

    annotator_id: str
    role: Literal["reader", "adjudicator"] = "reader"
    site: str | None = None
    tier: int = 1
    specialty: str = "general"
    max_open: int | None = None
    open_count: int = 0
    skill: float | None = None


@dataclass(frozen=True)
class ItemFacts:
    """What the rules need to know about an item.

    had: everyone who ever held an assignment of it (in any state); readers: everyone who
    labeled it or holds a label assignment of it, and the readers named in its evidence.
    """

    item_id: str
    site: str | None = None
    had: frozenset[str] = frozenset()
    readers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Slot:
    """The assignment to fill: a reader's label, or an adjudication at a queue's tier."""

    kind: Kind = "label"
    tier: int = 1
    specialty: str = "general"


READER_SLOT = Slot()


def cap_of(annotator: Annotator, rules: AssignmentRules) -> int:
    """An annotator's own cap when they have one, else the task's."""
    return annotator.max_open if annotator.max_open is not None else rules.max_open_per_annotator


def refusal(
    annotator: Annotator,
    item: ItemFacts,
    rules: AssignmentRules,
    slot: Slot = READER_SLOT,
    exclude: Collection[str] = (),
) -> str | None:
    """Why `annotator` may not take `slot` of `item`, or None when they may."""
    if slot.kind == "label" and annotator.role != "reader":
        return "not_a_reader"
    if slot.kind == "adjudication":
        if annotator.role != "adjudicator":
            return "not_an_adjudicator"
        if annotator.tier != slot.tier or annotator.specialty != slot.specialty:
            return "other_tier_or_specialty"
        if annotator.annotator_id in item.readers:
            return "reader_of_item"
    if annotator.annotator_id in item.had:
        return "had_item"
    if annotator.annotator_id in exclude:
        return "excluded"
    if rules.forbid_same_site and annotator.site is not None and annotator.site == item.site:
        return "same_site"
    if annotator.open_count >= cap_of(annotator, rules):
        return "at_cap"
    return None


def rank_key(
    annotator: Annotator, preferred: Sequence[str] = ()
) -> tuple[int, int, float, int, str]:
    """Best first: consensus's preferred order, then highest skill (an annotator without
    an estimate after those with one), then least open work, then id."""
    order = (
        preferred.index(annotator.annotator_id)
        if annotator.annotator_id in preferred
        else len(preferred)
    )
    unknown = 1 if annotator.skill is None else 0
    return (order, unknown, -(annotator.skill or 0.0), annotator.open_count, annotator.annotator_id)


def choose(
    candidates: Iterable[Annotator],
    item: ItemFacts,
    rules: AssignmentRules,
    count: int,
    *,
    slot: Slot = READER_SLOT,
    preferred: Sequence[str] = (),
    exclude: Collection[str] = (),
) -> list[Annotator]:
    """Up to `count` eligible annotators for `slot` of `item`, best first."""
    eligible = [a for a in candidates if refusal(a, item, rules, slot, exclude) is None]
    eligible.sort(key=lambda a: rank_key(a, preferred))
    return eligible[: max(0, count)]


def gold_due(assigned: int, gold: int, share: float) -> bool:
    """Whether a reader who has had `assigned` label assignments of a task, `gold` of them
    gold items, gets a gold item next: as long as one more keeps their gold share at or
    under `share`."""
    return share > 0 and gold + 1 <= math.floor(share * (assigned + 1) + 1e-9)


def pick_gold(annotator_id: str, pool: Iterable[str]) -> str | None:
    """The gold item a reader gets from those they may have: a fixed pseudo-random order
    per reader (so readers see gold items in different orders), the same on every run."""

    def order(item_id: str) -> str:
        return hashlib.sha256(f"{annotator_id}\x1f{item_id}".encode()).hexdigest()

    return min(pool, key=order, default=None)


def next_tier(tier: int, tiers: int) -> int | None:
    """The tier an overdue adjudication moves to, or None past the last one."""
    return tier + 1 if tier < tiers else None
