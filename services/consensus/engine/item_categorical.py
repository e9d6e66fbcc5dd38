"""Decide one binary, categorical or ordinal item from its posterior units."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from services.consensus.engine.categorical import (
    crowd_confusion,
    keeps_pooled_counts,
    pooled_counts,
    posterior_units,
    stops_on_gain,
)
from services.consensus.engine.curtail import agreement_units, flip_risk, learned_share_prior
from services.consensus.engine.decision import (
    Decision,
    Outcome,
    holds_for_dissent,
    make_decision,
    minority_share,
    outcome_for,
)
from services.consensus.engine.fixedpoint import SCALE, FloatArray, IntArray
from services.consensus.engine.horizon import horizon_gain
from services.consensus.engine.policy import ConsensusPolicy
from services.consensus.engine.reliability import (
    AGREEMENT_COLUMN,
    CLASS_KEY,
    POOLED_COLUMN_OFFSET,
    ReliabilityView,
)
from services.consensus.engine.state import Contribution, ItemState
from services.consensus.engine.votes import Vote, adjudicated, gold_value, item_votes


def votes_of(policy: ConsensusPolicy, state: ItemState) -> tuple[Vote, ...]:
    return item_votes(policy, state.labels, lambda obs: policy.class_index(str(obs.value)))


def _one_hot(k: int, index: int) -> IntArray:
    units = np.zeros(k, dtype=np.int64)
    units[index] = SCALE
    return units


def is_cold(policy: ConsensusPolicy, view: ReliabilityView, scope: str = "") -> bool:
    """True while the snapshot holds no consensus in this scope, or less than
    `cold_start_items` items' worth."""
    counts = view.entry((scope, CLASS_KEY, 0))
    if counts is None:
        return True
    return int(counts.sum()) < policy.float_param("cold_start_items") * SCALE


def vote_mass_of(votes: Sequence[Vote], k: int) -> list[float]:
    """Votes per class, a split repeat counting 1/m."""
    mass = [0.0] * k
    for v in votes:
        mass[v.column] += 1.0 / v.multiplicity
    return mass


def majority_units(vote_mass: Sequence[float]) -> IntArray:
    """The majority vote as class units, a tie shared equally.

    What an item teaches a cold ledger. Under the bare prior a reader's "no" leaves 1 -
    prior_accuracy of the item on "yes"; learned, that mass makes a "yes" class on which
    readers say "no", which then explains the next "no"s too: a degenerate fixed point
    that EM iterated from scratch leaves and one-pass updates do not (docs/CONSENSUS.md,
    "Cold start"). Batch Dawid-Skene starts EM from the majority vote for the same reason.
    """
    best = max(vote_mass)
    winners = [i for i, mass in enumerate(vote_mass) if mass == best]
    units = np.zeros(len(vote_mass), dtype=np.int64)
    units[winners] = SCALE // len(winners)
    return units


def taught_units(units: IntArray, vote_mass: Sequence[float], cold: bool) -> IntArray:
    """What an item teaches the ledger: its majority vote while the snapshot is cold (and
    the item has votes), its posterior units otherwise."""
    return majority_units(vote_mass) if cold and any(vote_mass) else units


def contribution_of(
    scope: str, votes: Sequence[Vote], units: IntArray, learn: bool, pooled: bool = False
) -> Contribution:
    """Ledger entries this item adds: q // m into each voter's column, q into classes.

    pooled: also the same q // m into the crowd's column (reserved key, column 1 + l).
    """
    if not learn:
        return ()
    entries = [((scope, v.annotator, v.column), units // v.multiplicity) for v in votes]
    entries.append(((scope, CLASS_KEY, 0), units.copy()))
    if pooled:
        crowd: dict[int, IntArray] = {}
        for v in votes:
            share = units // v.multiplicity
            crowd[v.column] = share if v.column not in crowd else crowd[v.column] + share
        entries.extend(
            ((scope, CLASS_KEY, POOLED_COLUMN_OFFSET + column), crowd[column])
            for column in sorted(crowd)
        )
    return tuple(entries)


def finish(
    policy: ConsensusPolicy,
    state: ItemState,
    votes: Sequence[Vote],
    units: IntArray,
    reliability_version: str,
    share_prior: float = 1.0,
    crowd: FloatArray | None = None,
    cold: bool = False,
) -> tuple[Decision, Contribution]:
    """Apply adjudication/gold overrides and the decision rule; shared by step and batch.

    share_prior: the curtailment's Dirichlet alpha (`share_prior_of` the snapshot used);
    crowd: the future reader's confusion matrix for the horizon gain (`crowd_of`);
    cold: the snapshot has learned too little in this scope yet (`is_cold`), so the item
    teaches the ledger its majority vote instead of its posterior (`majority_units`).
    """
    k = policy.n_classes
    method: str | None = None
    reason_override: str | None = None
    label_ids = [v.label_id for v in votes]
    adjudication = adjudicated(state.labels)
    gold = gold_value(state.labels)
    if adjudication is not None:
        units = _one_hot(k, policy.class_index(str(adjudication.value)))
        method, reason_override = "adjudication", "adjudicated"
        label_ids.append(adjudication.label_id)
    elif gold is not None:
        units = _one_hot(k, policy.class_index(gold))
        method, reason_override = "gold", "gold item"
    index = int(np.argmax(units))
    confidence = float(units[index]) / SCALE
    vote_mass = vote_mass_of(votes, k)
    columns = [v.column for v in votes]
    n_annotators = len({v.annotator for v in votes})
    critical = False
    if policy.critical is not None:
        critical_idx = {policy.class_index(c) for c in policy.critical.values}
        reported = any(c in critical_idx for c in columns)
        critical = reported and (policy.critical.mode == "any" or index not in critical_idx)
    spread = (max(columns) - min(columns)) if columns else 0
    too_wide = policy.kind == "ordinal" and policy.max_spread is not None
    too_wide = too_wide and spread > (policy.max_spread or 0)
    outcome: Outcome
    stopping: dict[str, float] = {}
    if reason_override is not None:
        outcome, reason = "reached", reason_override
    else:
        risk = gain = None
        remaining = policy.max_labels - n_annotators
        if curtails(policy):
            risk = _recorded(
                stopping, "flip_risk", partial(flip_risk, tuple(vote_mass), remaining, share_prior)
            )
        if crowd is not None:
            gain = _recorded(
                stopping, "horizon_gain", partial(horizon_gain, units / SCALE, crowd, remaining)
            )
        dissent = None
        if holds_for_dissent(policy):
            dissent = stopping["dissent_share"] = minority_share(vote_mass)
        outcome, reason = outcome_for(
            policy, n_annotators, confidence, critical, too_wide, risk, gain, dissent
        )
    learn = bool(policy.param("learn_from_consensus")) or reason_override is not None
    decision = make_decision(
        policy,
        state.item_id,
        outcome,
        reason,
        label=policy.classes[index],
        confidence=confidence,
        distribution={c: float(u) / SCALE for c, u in zip(policy.classes, units, strict=True)},
        votes=dict(zip(policy.classes, vote_mass, strict=True)),
        n_annotators=n_annotators,
        label_ids=label_ids,
        reliability_version=reliability_version,
        method=method,
        details=_details(policy, spread, stopping),
    )
    taught = taught_units(units, vote_mass, cold and reason_override is None)
    contribution = contribution_of("", votes, taught, learn, keeps_pooled_counts(policy))
    if learns_share_prior(policy) and votes:
        key = ("", CLASS_KEY, AGREEMENT_COLUMN)
        contribution = (*contribution, (key, agreement_units(vote_mass)))
    return decision, contribution


def _recorded(
    evidence: dict[str, float], name: str, compute: Callable[[], float]
) -> Callable[[], float]:
    """`compute`, keeping its value under `name` when the decision rule asks for it."""

    def call() -> float:
        evidence[name] = compute()
        return evidence[name]

    return call


def _details(
    policy: ConsensusPolicy, spread: int, stopping: dict[str, float]
) -> dict[str, Any] | None:
    """An ordinal item's spread; the stopping rules' values when the rule computed them."""
    details: dict[str, Any] = {"spread": spread} if policy.kind == "ordinal" else {}
    if stopping:
        details["stopping"] = dict(sorted(stopping.items()))
    return details or None


def curtails(policy: ConsensusPolicy) -> bool:
    return float(policy.params.get("stop_flip_risk", 0.0)) > 0.0


def learns_share_prior(policy: ConsensusPolicy) -> bool:
    return curtails(policy) and policy.float_param("stop_share_prior") == 0.0


def share_prior_of(policy: ConsensusPolicy, view: ReliabilityView) -> float:
    """The curtailment's alpha: fixed, or learned from the crowd's agreement."""
    if not curtails(policy):
        return 1.0
    if not learns_share_prior(policy):
        return policy.float_param("stop_share_prior")
    agreement = view.entry(("", CLASS_KEY, AGREEMENT_COLUMN))
    return learned_share_prior(agreement, policy.n_classes)


def crowd_of(policy: ConsensusPolicy, view: ReliabilityView) -> FloatArray | None:
    """The future reader's confusion matrix, for policies that stop on the horizon gain."""
    if not stops_on_gain(policy):
        return None
    return crowd_confusion(policy, pooled_counts(view, "", policy.n_classes))


def evaluate(
    policy: ConsensusPolicy, state: ItemState, view: ReliabilityView
) -> tuple[Decision, Contribution]:
    """Posterior, decision and ledger contribution of one item under a snapshot."""
    votes = votes_of(policy, state)
    units = posterior_units(policy, "", [votes], view, policy.n_classes)[0]
    return finish(
        policy,
        state,
        votes,
        units,
        view.version,
        share_prior_of(policy, view),
        crowd_of(policy, view),
        is_cold(policy, view),
    )
