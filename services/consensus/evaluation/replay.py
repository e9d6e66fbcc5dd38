"""Replay a dataset's answers through the engine, one label at a time, in a seeded order."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from services.consensus.engine import (
    ConsensusPolicy,
    Decision,
    ItemState,
    LabelObservation,
    ReliabilityLedger,
    ReliabilitySnapshot,
    ReliabilityView,
    reestimate,
    step,
)
from services.consensus.engine.policy import Kind
from services.consensus.evaluation.dataset import Answer, Dataset

FIXED_MAX_LABELS = 1_000_000
"""Fixed overlap: the policy never stops an item, every answer is used."""


def seeded_order(dataset: Dataset, seed: int) -> list[Answer]:
    """A permutation of the answers from numpy's PCG64 seeded with `seed`."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(dataset.answers))
    return [dataset.answers[i] for i in order]


def gold_tasks(dataset: Dataset, order: Sequence[Answer], share: float) -> dict[str, str]:
    """Control items: the first `share` of the labelled tasks with truth, in `order`,
    with their known answers (rounded to a whole number of tasks)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"the gold share must be in [0, 1), not {share}")
    with_truth = [task for task in dict.fromkeys(a.task for a in order) if task in dataset.truth]
    if share > 0.0 and not with_truth:
        raise ValueError("gold items need a truth.csv that names labelled tasks")
    return {task: dataset.truth[task] for task in with_truth[: round(share * len(with_truth))]}


def same_budget_order(
    order: Sequence[Answer], labels: int, keep: Collection[str] = ()
) -> list[Answer]:
    """The fixed design `labels` labels buy: each item's first labels in `order`.

    Every item keeps one label and the same share of its others, the remainders going to
    the largest fractions (first-seen items on a tie): the uniform overlap a platform
    would set for the same budget, revealed in the same order. Items in `keep` (gold
    items) keep all their labels, out of the same budget.
    """
    if keep:
        whole = [answer for answer in order if answer.task in keep]
        shared = same_budget_order(
            [answer for answer in order if answer.task not in keep], labels - len(whole)
        )
        rows = {answer.row for answer in whole} | {answer.row for answer in shared}
        return [answer for answer in order if answer.row in rows]
    per_task = Counter(answer.task for answer in order)
    if not len(per_task) <= labels <= len(order):
        raise ValueError(f"labels must be in {len(per_task)}..{len(order)}, not {labels}")
    others = len(order) - len(per_task)
    share = (labels - len(per_task)) / others if others else 0.0
    exact = {task: share * (n - 1) for task, n in per_task.items()}
    quota = {task: 1 + math.floor(x) for task, x in exact.items()}
    by_fraction = sorted(exact, key=lambda task: -(exact[task] - math.floor(exact[task])))
    for task in by_fraction[: labels - sum(quota.values())]:
        quota[task] += 1
    kept: list[Answer] = []
    for answer in order:
        if quota[answer.task] > 0:
            quota[answer.task] -= 1
            kept.append(answer)
    return kept


def observation(answer: Answer, gold: str | None = None) -> LabelObservation:
    """Each answer row is its own annotation; label_id is the row number in the file.

    gold: the task's known answer when it is a control item.
    """
    label_id = f"row-{answer.row:09d}"
    return LabelObservation(
        label_id=label_id, annotator_id=answer.worker, value=answer.label, gold=gold
    )


def policy_for(
    dataset: Dataset,
    method: str,
    *,
    min_labels: int = 1,
    max_labels: int = FIXED_MAX_LABELS,
    threshold: float = 1.0,
    params: dict[str, float | bool] | None = None,
) -> ConsensusPolicy:
    kind: Kind = "binary" if len(dataset.classes) == 2 else "categorical"
    return ConsensusPolicy(
        method=method,  # type: ignore[arg-type]  # validated by ConsensusPolicy
        kind=kind,
        classes=dataset.classes,
        min_labels=min_labels,
        max_labels=max_labels,
        threshold=threshold,
        params=params or {},
    )


@dataclass
class Replay:
    """What one replay produced: online decisions, final (re-estimated) decisions, costs."""

    policy: ConsensusPolicy
    online: dict[str, Decision]
    final: dict[str, Decision]
    labels_used: int
    step_ns: list[int] = field(default_factory=list)
    seconds: float = 0.0
    batch_iterations: int = 0
    ledger_matches_recount: bool = True
    # The batch re-estimate's reliability (None without the batch).
    reliability: ReliabilitySnapshot | None = None


def replay(
    dataset: Dataset,
    policy: ConsensusPolicy,
    order: Sequence[Answer],
    *,
    dynamic: bool,
    batch: bool = True,
    refresh_every: int = 0,
    refresh_iterations: int = 10,
    assign: str = "seeded",
    known_reliability: ReliabilityView | None = None,
    gold: Mapping[str, str] | None = None,
) -> Replay:
    """Feed answers in `order`; in dynamic mode skip answers for items already decided.

    known_reliability: decide every label under this snapshot and learn nothing (no
    batch re-estimate either), to measure a policy apart from what it learns.
    gold: control items and their known answers. Every label of a control item is
    revealed, in `order` (a platform shows them to every reader to measure them), and
    teaches reliability against the known answer.
    """
    from services.consensus.engine import recount

    gold = gold or {}

    start = time.perf_counter()
    ledger = ReliabilityLedger()
    states: dict[str, ItemState] = {}
    online: dict[str, Decision] = {}
    closed: set[str] = set()
    step_ns: list[int] = []
    used = 0
    pending: dict[str, list[Answer]] = {}
    if assign == "informed":
        for answer in order:
            pending.setdefault(answer.task, []).append(answer)
    for slot in order:
        if dynamic and slot.task in closed:
            continue
        state = states.get(slot.task) or ItemState.new(slot.task)
        view = ledger if known_reliability is None else known_reliability
        answer = (
            slot
            if assign != "informed" or slot.task in gold
            else _most_informative(policy, state, pending[slot.task], view)
        )
        t0 = time.perf_counter_ns()
        result = step(policy, state, observation(answer, gold.get(answer.task)), view)
        if known_reliability is None:
            ledger.apply(result.delta)
        step_ns.append(time.perf_counter_ns() - t0)
        used += 1
        states[answer.task] = result.state
        online[answer.task] = result.decision
        if dynamic and result.decision.outcome != "needs_more" and answer.task not in gold:
            closed.add(answer.task)
        if refresh_every and used % refresh_every == 0:
            # The periodic batch re-estimate a live deployment runs: same states, same code.
            ordered = sorted(states)
            refreshed = reestimate(
                policy, [states[t] for t in ordered], max_iterations=refresh_iterations
            )
            states = dict(zip(ordered, refreshed.states, strict=True))
            ledger = ReliabilityLedger(refreshed.reliability.entries)
    item_states = [states[t] for t in sorted(states)]
    # Nothing is learned under a known reliability, so there is no ledger to check.
    matches = known_reliability is not None or recount(item_states).version == ledger.version
    final = dict(online)
    iterations = 0
    learned = None
    if batch and known_reliability is None:
        estimate = reestimate(policy, item_states)
        final = {d.item_id: d for d in estimate.decisions}
        iterations = estimate.iterations
        learned = estimate.reliability
    return Replay(
        policy=policy,
        online=online,
        final=final,
        labels_used=used,
        step_ns=step_ns,
        seconds=time.perf_counter() - start,
        batch_iterations=iterations,
        ledger_matches_recount=matches,
        reliability=learned,
    )


def _most_informative(
    policy: ConsensusPolicy, state: ItemState, candidates: list[Answer], ledger: ReliabilityView
) -> Answer:
    """Reveal the pending answer whose annotator the engine would ask first (EIG).

    Equally informative readers are taken in the replay order, as a live queue would be.
    """
    from services.consensus.engine import preferred_annotators

    on_item = {obs.annotator_id for obs in state.labels}
    fresh = [a for a in candidates if a.worker not in on_item]
    chosen = candidates[0]
    if fresh:
        ranked = preferred_annotators(policy, state, [a.worker for a in fresh], ledger, limit=1)
        best = ranked[0][0]
        chosen = next(a for a in fresh if a.worker == best)
    candidates.remove(chosen)
    return chosen


def accuracy(decisions: dict[str, Decision], truth: dict[str, str]) -> float:
    """Share of truth tasks whose decision label equals the truth (missing = wrong)."""
    if not truth:
        return float("nan")
    hits = sum(
        1 for task, value in truth.items() if task in decisions and decisions[task].label == value
    )
    return hits / len(truth)
