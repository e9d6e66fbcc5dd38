"""Several seeded replays of one dataset, summarised per method and against the dynamic
target (docs/CONSENSUS.md, "Dynamic policy").

One replay order is one draw: on a dataset of a hundred items a single item moves the
accuracy by a point. The summary gives each method's mean, min and max accuracy over the
seeds and, for a dynamic run, its change against the same method's fixed run on the
same seed (with the standard error of its mean), how many seeds meet the dynamic
target and whether the means do, and its mean gain over the fixed overlap of the same
budget.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

TARGET_POINTS = 0.5
"""The dynamic target: at most this many accuracy points below the fixed run..."""
TARGET_SHARE = 0.6
"""...with at most this share of the labels."""


def parse_seeds(text: str) -> list[int]:
    """'0-4' or '0,2,5' (or a mix, '0-2,7'): distinct seeds in the given order."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        first, dash, last = part.partition("-")
        try:
            span = range(int(first), int(last) + 1) if dash else range(int(part), int(part) + 1)
        except ValueError:
            raise ValueError(f"--seeds takes 0-4 or 0,2,5, not {text!r}") from None
        if not span:
            raise ValueError(f"--seeds range {part!r} is empty")
        seeds.extend(s for s in span if s not in seeds)
    return seeds


def summarise(documents: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: accuracy over the seeds; dynamic methods also against their fixed run."""
    summary: dict[str, dict[str, Any]] = {}
    for method in documents[0]["results"]:
        rows = [doc["results"][method] for doc in documents]
        if any(row.get("accuracy") is None for row in rows):
            continue  # numeric results (MAE) and crowd-kit on a dataset without truth
        accuracies = [row["accuracy"] for row in rows]
        entry: dict[str, Any] = {
            "accuracy_mean": round(statistics.fmean(accuracies), 4),
            "accuracy_min": min(accuracies),
            "accuracy_max": max(accuracies),
        }
        fixed = method.removesuffix("-dynamic")
        if fixed != method:
            points = _points_over(fixed, rows, documents)
            shares = [row["label_share"] for row in rows]
            gained = _points_over(f"{fixed}-same-budget", rows, documents)
            entry |= {
                "points_vs_fixed": points,
                "points_vs_fixed_mean": round(statistics.fmean(points), 2),
                # How far the mean itself may be off: seed-to-seed spread / sqrt(seeds).
                "points_vs_fixed_stderr": _stderr(points),
                "label_share_mean": round(statistics.fmean(shares), 4),
                "seeds_meeting_target": sum(
                    _meets_target(p, s) for p, s in zip(points, shares, strict=True)
                ),
            }
            # The target for the method rather than for one replay order: the means.
            entry["mean_meets_target"] = _meets_target(
                entry["points_vs_fixed_mean"], entry["label_share_mean"]
            )
            if gained:
                # Against the fixed overlap the same labels buy (runner.py).
                entry["points_vs_same_budget_mean"] = round(statistics.fmean(gained), 2)
        summary[method] = entry
    return summary


def _points_over(
    baseline: str, rows: Sequence[dict[str, Any]], documents: Sequence[dict[str, Any]]
) -> list[float]:
    """Accuracy points of each seed's row over that seed's `baseline` run, where it ran."""
    return [
        round(100 * (row["accuracy"] - doc["results"][baseline]["accuracy"]), 2)
        for row, doc in zip(rows, documents, strict=True)
        if baseline in doc["results"]
    ]


def _meets_target(points: float, share: float) -> bool:
    return points >= -TARGET_POINTS and share <= TARGET_SHARE


def _stderr(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    return round(statistics.stdev(values) / math.sqrt(len(values)), 2)


def seeded_document(documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The report of several replays: what they share, the summary, then every run."""
    first = documents[0]
    return {
        "dataset": first["dataset"],
        "labels": first["labels"],
        "tasks": first["tasks"],
        "gold_share": first.get("gold_share", 0.0),
        "seeds": [doc["seed"] for doc in documents],
        "dynamic": first.get("dynamic"),
        "target": {"points": TARGET_POINTS, "label_share": TARGET_SHARE},
        "summary": summarise(documents),
        "runs": list(documents),
    }
