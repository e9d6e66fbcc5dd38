"""Numeric datasets (no classes): consensus value per task, scored by MAE and correlation.

Methods: mean and median (baselines) and the engine's robust numeric aggregators fed one
label at a time (`consilium-median`, `consilium-robust`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from services.consensus.evaluation.dataset import Answer, Dataset


def _scores(predicted: dict[str, float], truth: dict[str, str]) -> dict[str, float]:
    import numpy as np

    tasks = [t for t in truth if t in predicted]
    est = np.array([predicted[t] for t in tasks], dtype=np.float64)
    ref = np.array([float(truth[t]) for t in tasks], dtype=np.float64)
    mae = float(np.abs(est - ref).mean()) if tasks else float("nan")
    corr = float(np.corrcoef(est, ref)[0, 1]) if len(tasks) > 1 else float("nan")
    return {"mae": round(mae, 4), "correlation": round(corr, 4)}


def baseline(dataset: Dataset, name: str) -> dict[str, Any]:
    start = time.perf_counter()
    by_task: dict[str, list[float]] = {}
    for a in dataset.answers:
        by_task.setdefault(a.task, []).append(float(a.label))
    agg = statistics.fmean if name == "mean" else statistics.median
    predicted = {t: float(agg(v)) for t, v in by_task.items()}
    seconds = time.perf_counter() - start
    return {
        **_scores(predicted, dataset.truth),
        "labels_used": len(dataset.answers),
        "seconds": round(seconds, 3),
    }


def engine_numeric(dataset: Dataset, method: str, order: Sequence[Answer]) -> dict[str, Any]:
    """Replay through the engine's numeric kind, then the batch re-estimate."""
    from services.consensus.engine import (
        ConsensusPolicy,
        ItemState,
        LabelObservation,
        ReliabilityLedger,
        reestimate,
        step,
    )

    policy = ConsensusPolicy(
        method=method,  # type: ignore[arg-type]  # "median" or "robust"
        kind="numeric",
        min_labels=1,
        max_labels=1_000_000,
        threshold=1.0,
    )
    start = time.perf_counter()
    ledger = ReliabilityLedger()
    states: dict[str, ItemState] = {}
    for a in order:
        obs = LabelObservation(f"row-{a.row:09d}", a.worker, float(a.label))
        result = step(policy, states.get(a.task) or ItemState.new(a.task), obs, ledger)
        ledger.apply(result.delta)
        states[a.task] = result.state
    estimate = reestimate(policy, [states[t] for t in sorted(states)])
    predicted = {d.item_id: float(d.label) for d in estimate.decisions}
    seconds = time.perf_counter() - start
    return {
        **_scores(predicted, dataset.truth),
        "labels_used": len(order),
        "seconds": round(seconds, 3),
    }
