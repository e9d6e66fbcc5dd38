"""One evaluation run: the engine's methods (fixed or dynamic) and crowd-kit's, same answers."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from services.consensus.engine import ConsensusPolicy
from services.consensus.evaluation.baselines import CROWDKIT_METHODS, run_crowdkit
from services.consensus.evaluation.dataset import Dataset
from services.consensus.evaluation.replay import (
    Replay,
    accuracy,
    gold_tasks,
    policy_for,
    replay,
    same_budget_order,
    seeded_order,
)
from services.consensus.evaluation.settings import DynamicSettings

ENGINE_METHODS = ("mv", "weighted", "ds")


def _cost(step_ns: list[int]) -> dict[str, float]:
    if not step_ns:
        return {}
    ordered = sorted(step_ns)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "median_us": round(statistics.median(ordered) / 1000, 1),
        "p99_us": round(p99 / 1000, 1),
    }


def _round(x: float) -> float:
    return round(x, 4)


def _scored(run: Replay, truth: dict[str, str]) -> dict[str, Any]:
    """What every engine run reports: its answers scored against `truth`, and its cost."""
    return {
        "accuracy": _round(accuracy(run.final, truth)),
        "labels_used": run.labels_used,
        "seconds": round(run.seconds, 3),
        "online_accuracy": _round(accuracy(run.online, truth)),
    }


def evaluate(
    dataset: Dataset,
    *,
    seed: int = 0,
    dynamic: DynamicSettings | None = None,
    crowdkit: bool = True,
    gold_share: float = 0.0,
) -> dict[str, Any]:
    """The report document: {"dataset", "labels", "results": {method: {...}}, ...}.

    gold_share: the share of the tasks with truth given to the engine as control items
    (`gold_tasks`); every method, crowd-kit's too, is then scored on the other tasks.
    """
    if dataset.kind == "numeric":
        if gold_share:
            raise ValueError("gold items need a categorical dataset")
        return _evaluate_numeric(dataset, seed)
    order = seeded_order(dataset, seed)
    gold = gold_tasks(dataset, order, gold_share)
    truth = {task: value for task, value in dataset.truth.items() if task not in gold}
    results: dict[str, dict[str, Any]] = {}
    checks: dict[str, Any] = {}
    for method in ENGINE_METHODS:
        shared = {} if dynamic is None else dynamic.method_params(method)
        fixed_policy = policy_for(dataset, method, params=shared)
        run = replay(dataset, fixed_policy, order, dynamic=False, gold=gold)
        agree = sum(run.online[t].label == run.final[t].label for t in run.final)
        results[f"consilium-{method}"] = {
            **_scored(run, truth),
            "update_cost": _cost(run.step_ns),
        }
        checks[method] = {
            "ledger_equals_recount": run.ledger_matches_recount,
            "online_vs_batch_label_agreement": _round(agree / max(len(run.final), 1)),
            "batch_iterations": run.batch_iterations,
        }
        if method == "mv":
            results["consilium-mv"]["ties"] = sum(
                1 for d in run.final.values() if _is_tie(d.distribution)
            )
        if dynamic is not None:
            policy = dynamic_policy(dataset, method, dynamic)
            live = replay(dataset, policy, order, dynamic=True, assign=dynamic.assign, gold=gold)
            outcomes = [d.outcome for d in live.online.values()]
            share = live.labels_used / len(dataset.answers)
            # What the same budget buys without the policy: the baseline it must beat.
            uniform = replay(
                dataset,
                fixed_policy,
                same_budget_order(order, live.labels_used, keep=gold),
                dynamic=False,
                gold=gold,
            )
            results[f"consilium-{method}-dynamic"] = {
                **_scored(live, truth),
                "label_share": _round(share),
                "contested": outcomes.count("contested"),
                "reached": outcomes.count("reached"),
                "needs_more": outcomes.count("needs_more"),
                # Which rule closed each item: the threshold, the gain rule, max_labels...
                "reasons": dict(sorted(Counter(d.reason for d in live.online.values()).items())),
            }
            results[f"consilium-{method}-same-budget"] = {
                **_scored(uniform, truth),
                "label_share": _round(uniform.labels_used / len(dataset.answers)),
            }
    if crowdkit:
        for name in CROWDKIT_METHODS:
            predicted, seconds = run_crowdkit(dataset, name, seed)
            hits = sum(1 for t, v in truth.items() if predicted.get(t) == v)
            results[f"crowdkit-{name}"] = {
                "accuracy": _round(hits / len(truth)) if truth else None,
                "labels_used": len(dataset.answers),
                "seconds": round(seconds, 3),
            }
    return {
        "dataset": dataset.name,
        "labels": len(dataset.answers),
        "tasks": len(dataset.tasks),
        "workers": len({a.worker for a in dataset.answers}),
        "classes": list(dataset.classes),
        "repeated_worker_task_answers": dataset.repeats,
        # Scored as wrong: no method can answer a task nobody labelled.
        "truth_tasks_without_answers": len(set(dataset.truth) - set(dataset.tasks)),
        # Control items: their labels are all used and teach reliability against the
        # known answer; the accuracies are over the other tasks with truth.
        "gold_share": gold_share,
        "gold_tasks": len(gold),
        "scored_tasks": len(truth),
        "seed": seed,
        "dynamic": None if dynamic is None else dynamic.__dict__,
        "results": results,
        "checks": checks,
    }


def dynamic_policy(dataset: Dataset, method: str, dynamic: DynamicSettings) -> ConsensusPolicy:
    """The policy `--policy dynamic` collects with: the fixed run's plus the stopping rules."""
    return policy_for(
        dataset,
        method,
        min_labels=dynamic.min_labels,
        max_labels=dynamic.max_labels or dataset.overlap,
        threshold=dynamic.threshold,
        params={**dynamic.method_params(method), **dynamic.stopping_params()},
    )


def _is_tie(distribution: Any) -> bool:
    values = sorted(distribution.values(), reverse=True)
    return len(values) > 1 and values[0] == values[1]


def _evaluate_numeric(dataset: Dataset, seed: int) -> dict[str, Any]:
    from services.consensus.evaluation.numeric import baseline, engine_numeric

    order = seeded_order(dataset, seed)
    results: dict[str, dict[str, Any]] = {
        "baseline-mean": baseline(dataset, "mean"),
        "baseline-median": baseline(dataset, "median"),
    }
    for method in ("median", "robust"):
        try:
            results[f"consilium-{method}"] = engine_numeric(dataset, method, order)
        except (ValueError, ImportError) as error:  # numeric kind not available
            results[f"consilium-{method}"] = {"error": str(error)}
    return {
        "dataset": dataset.name,
        "labels": len(dataset.answers),
        "tasks": len(dataset.tasks),
        "kind": "numeric",
        "seed": seed,
        "results": results,
    }
