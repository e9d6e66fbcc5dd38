"""Annotator reliability as additive integer statistics, with an order-free digest.

The ledger is a sparse map (scope, key, column) -> vector of integer units. For the
categorical methods, key is an annotator id and (column l, row c) holds the mass of items
whose consensus class is c on which that annotator said l: a soft confusion-count matrix.
The reserved key CLASS_KEY holds the class-count vector (column 0) and, for policies with
a pooled prior, the crowd's summed confusion columns (columns 1..K). Scope separates sub-problems
(the findings of a multi-label task); it is "" otherwise.

Every change is a ReliabilityDelta. Deltas are added, never assigned, so instances that
own different items can add theirs in any order, any interleaving, and agree exactly.
The digest is an additive multiset hash (AdHash, Bellare & Micciancio 1997): the sum
mod 2**128 of a keyed BLAKE2b hash of every non-zero entry. It depends only on the
content, is updated in O(changed entries), and names the snapshot a decision used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from services.consensus.engine.fixedpoint import IntArray

CLASS_KEY = ""
"""Reserved ledger key for class counts (annotator ids are never empty)."""

POOLED_COLUMN_OFFSET = 1
"""Under CLASS_KEY, column 0 holds class counts and column 1 + l the crowd's pooled
confusion column l (kept only by policies with a pooled prior)."""

AGREEMENT_COLUMN = -1
"""Under CLASS_KEY: [agreeing ordered vote pairs, all ordered vote pairs] summed over
items (SCALE units), kept by curtailing policies that learn their vote-share prior."""

EntryKey = tuple[str, str, int]
_MOD = 1 << 128


def _entry_hash(key: EntryKey, units: IntArray) -> int:
    scope, name, column = key
    h = hashlib.blake2b(digest_size=16, person=b"consilium-rel")
    h.update(f"{scope}\x1f{name}\x1f{column}\x1f".encode())
    h.update(units.astype("<i8").tobytes())
    return int.from_bytes(h.digest(), "big")


def _version(value: int) -> str:
    return f"rel:{value:032x}"


class ReliabilityView(Protocol):
    """What the engine reads: entry vectors and the digest that names this content."""

    @property
    def version(self) -> str: ...

    def entry(self, key: EntryKey) -> IntArray | None: ...


@dataclass(frozen=True)
class ReliabilityDelta:
    """Integer units to add to the ledger, per (scope, key, column)."""

    entries: Mapping[EntryKey, IntArray] = field(default_factory=dict)

    @classmethod
    def between(
        cls, old: Iterable[tuple[EntryKey, IntArray]], new: Iterable[tuple[EntryKey, IntArray]]
    ) -> ReliabilityDelta:
        """new minus old, summed per entry; zero entries are dropped."""
        acc: dict[EntryKey, IntArray] = {}
        for sign, items in ((-1, old), (1, new)):
            for key, units in items:
                current = acc.get(key)
                acc[key] = sign * units if current is None else current + sign * units
        return cls({k: v for k, v in sorted(acc.items()) if v.any()})

    def is_empty(self) -> bool:
        return not self.entries

    def to_dict(self) -> dict[str, Any]:
        return {
            "entries": [
                [scope, key, column, [int(u) for u in units]]
                for (scope, key, column), units in sorted(self.entries.items())
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReliabilityDelta:
        return cls(
            {
                (str(s), str(k), int(c)): np.asarray(u, dtype=np.int64)
                for s, k, c, u in data["entries"]
            }
        )


class ReliabilityLedger:
    """The mutable running total of deltas (what PostgreSQL holds), with its digest."""

    def __init__(self, entries: Mapping[EntryKey, IntArray] | None = None) -> None:
        self._entries: dict[EntryKey, IntArray] = {}
        self._digest = 0
        if entries:
            self.apply(ReliabilityDelta(dict(entries)))

    @property
    def version(self) -> str:
        return _version(self._digest)

    def entry(self, key: EntryKey) -> IntArray | None:
        return self._entries.get(key)

    def keys(self) -> Iterator[EntryKey]:
        return iter(self._entries)

    def apply(self, delta: ReliabilityDelta) -> None:
        """Add a delta: O(entries in the delta), commutative with every other delta."""
        for key, units in delta.entries.items():
            old = self._entries.get(key)
            if old is not None:
                self._digest = (self._digest - _entry_hash(key, old)) % _MOD
                new = old + units
            else:
                new = units.astype(np.int64, copy=True)
            if new.any():
                self._entries[key] = new
                self._digest = (self._digest + _entry_hash(key, new)) % _MOD
            else:
                self._entries.pop(key, None)

    def snapshot(self) -> ReliabilitySnapshot:
        """A frozen copy (O(size)): what a decision's reliability_version names."""
        return ReliabilitySnapshot(
            {k: v.copy() for k, v in sorted(self._entries.items())}, self.version
        )


@dataclass(frozen=True)
class ReliabilitySnapshot:
    """Frozen reliability counts with their version digest (recomputed on load)."""

    entries: Mapping[EntryKey, IntArray] = field(default_factory=dict)
    version: str = _version(0)

    def entry(self, key: EntryKey) -> IntArray | None:
        return self.entries.get(key)

    @classmethod
    def empty(cls) -> ReliabilitySnapshot:
        return cls()

    @classmethod
    def from_entries(cls, entries: Mapping[EntryKey, IntArray]) -> ReliabilitySnapshot:
        return ReliabilityLedger(entries).snapshot()

    def to_dict(self) -> dict[str, Any]:
        doc = ReliabilityDelta(dict(self.entries)).to_dict()
        doc["version"] = self.version
        return doc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReliabilitySnapshot:
        """Load and verify: the stored version must match the recomputed digest."""
        snapshot = ReliabilityLedger(ReliabilityDelta.from_dict(data).entries).snapshot()
        stored = data.get("version")
        if stored is not None and stored != snapshot.version:
            raise ValueError(f"reliability digest mismatch: {stored} != {snapshot.version}")
        return snapshot
