"""Who gets the next assignment of an item (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def choose_annotators(
    candidates: Mapping[str, int], exclude: Iterable[str], count: int
) -> list[str]:
    """Up to `count` annotators not in `exclude`, least open work first, then by id.

    `candidates` maps each qualified annotator to their number of open assignments; the id
    breaks ties so the choice is deterministic.
    """
    excluded = set(exclude)
    eligible = sorted(
        (open_count, annotator)
        for annotator, open_count in candidates.items()
        if annotator not in excluded
    )
    return [annotator for _, annotator in eligible[:count]]
