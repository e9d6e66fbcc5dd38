"""Batch re-estimation over many items, sharing the incremental path's code.

recount: the ledger is, by construction, the sum of every item's stored contribution;
recount rebuilds it from item states alone. Summing the deltas returned by `step`
(in any order) gives exactly the same integers and digest: the check that incremental
bookkeeping and batch agree.

reestimate: EM sweeps (Dawid & Skene 1979) over all items. The E-step scores every item
with `posterior_units` and `finish`, the very functions `step` uses; the M-step is the
recount. Started from the current states it polishes the incremental answer (incremental
EM, Neal & Hinton 1998, followed by full sweeps); started from empty contributions
(`from_scratch=True`) it depends only on the set of labels, so any arrival order and any
duplication give the identical result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.consensus.engine import item_categorical
from services.consensus.engine.categorical import posterior_units
from services.consensus.engine.decision import Decision
from services.consensus.engine.fixedpoint import SCALE, FloatArray, IntArray
from services.consensus.engine.policy import CATEGORICAL_KINDS, ConsensusPolicy
from services.consensus.engine.reliability import (
    EntryKey,
    ReliabilitySnapshot,
    ReliabilityView,
)
from services.consensus.engine.state import ItemState
from services.consensus.engine.step import rescore


def recount(states: Sequence[ItemState]) -> ReliabilitySnapshot:
    """The reliability snapshot implied by the items' stored contributions."""
    totals: dict[EntryKey, IntArray] = {}
    for state in states:
        for key, units in state.contribution:
            current = totals.get(key)
            totals[key] = units.copy() if current is None else current + units
    return ReliabilitySnapshot.from_entries({k: v for k, v in totals.items() if v.any()})


def e_step(
    policy: ConsensusPolicy, states: Sequence[ItemState], view: ReliabilityView
) -> list[tuple[ItemState, Decision]]:
    """Score every item under one snapshot; row i equals rescore(policy, states[i], view)."""
    if policy.kind not in CATEGORICAL_KINDS:
        results = [rescore(policy, s, view) for s in states]
        return [(r.state, r.decision) for r in results]
    votes = [item_categorical.votes_of(policy, s) for s in states]
    units = posterior_units(policy, "", votes, view, policy.n_classes)
    share_prior = item_categorical.share_prior_of(policy, view)
    crowd = item_categorical.crowd_of(policy, view)
    cold = item_categorical.is_cold(policy, view)
    out: list[tuple[ItemState, Decision]] = []
    for state, item_votes, row in zip(states, votes, units, strict=True):
        decision, contribution = item_categorical.finish(
            policy, state, item_votes, row, view.version, share_prior, crowd, cold
        )
        out.append((state.with_contribution(contribution), decision))
    return out


def _signature(decision: Decision) -> list[float]:
    """The numbers whose movement means the E-step has not settled for this item."""
    values = [float(v) for v in decision.distribution.values()]
    if isinstance(decision.label, float | int) and not isinstance(decision.label, bool):
        values.append(float(decision.label))
    return [*values, decision.confidence]


@dataclass(frozen=True)
class BatchResult:
    states: tuple[ItemState, ...]
    decisions: tuple[Decision, ...]
    reliability: ReliabilitySnapshot
    iterations: int
    converged: bool


def reestimate(
    policy: ConsensusPolicy,
    states: Sequence[ItemState],
    *,
    from_scratch: bool = False,
    max_iterations: int = 100,
    tolerance_units: int = 10,
) -> BatchResult:
    """EM to a fixed point: stop when no posterior moves more than tolerance_units.

    What must settle: every item's distribution, its confidence, and a numeric label.
    """
    current = [s.with_contribution(()) for s in states] if from_scratch else list(states)
    snapshot = recount(current)
    previous: FloatArray | None = None
    decisions: list[Decision] = []
    converged = False
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007  # reported after the loop
        scored = e_step(policy, current, snapshot)
        current = [s for s, _ in scored]
        decisions = [d for _, d in scored]
        posterior = np.array([x for d in decisions for x in _signature(d)], dtype=np.float64)
        snapshot = recount(current)
        if previous is not None and posterior.shape == previous.shape:
            moved = np.abs(posterior - previous).max(initial=0.0) * SCALE
            if moved <= tolerance_units:
                converged = True
                break
        previous = posterior
    return BatchResult(tuple(current), tuple(decisions), snapshot, iterations, converged)
