"""Multi-label items: one binary decision per finding, combined into one record.

A label's value is the tuple of findings the reader reports; every finding in the policy
not listed is read as absent. Each finding is its own binary sub-problem (ledger scope =
finding name, classes ("absent", "present"), ties -> absent) decided with the categorical
machinery. The item is contested if any finding is, needs more if any finding does, else
reached; its confidence is the lowest finding confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from services.consensus.engine.categorical import posterior_units
from services.consensus.engine.decision import (
    OUTCOME_SEVERITY,
    Decision,
    Outcome,
    make_decision,
    outcome_for,
)
from services.consensus.engine.fixedpoint import SCALE
from services.consensus.engine.item_categorical import (
    contribution_of,
    is_cold,
    taught_units,
    vote_mass_of,
)
from services.consensus.engine.observation import LabelObservation
from services.consensus.engine.policy import ConsensusPolicy
from services.consensus.engine.reliability import ReliabilityView
from services.consensus.engine.state import Contribution, ItemState
from services.consensus.engine.votes import adjudicated, item_votes


def _present(value: Any, finding: str) -> int:
    if not isinstance(value, tuple):
        raise ValueError("a multilabel value is a list of findings")
    return int(finding in value)


def _column_for(finding: str) -> Callable[[LabelObservation], int]:
    def column(obs: LabelObservation) -> int:
        return _present(obs.value, finding)

    return column


def evaluate(
    policy: ConsensusPolicy, state: ItemState, view: ReliabilityView
) -> tuple[Decision, Contribution]:
    """Decide every finding; the record's details hold the per-finding decisions."""
    for obs in state.labels:
        listed = {str(v) for v in obs.value} if isinstance(obs.value, tuple) else set()
        unknown = listed - set(policy.classes)
        if unknown:
            raise ValueError(f"unknown findings {sorted(unknown)}")
    adjudication = adjudicated(state.labels)
    findings: dict[str, dict[str, Any]] = {}
    contribution: list[Any] = []
    worst: Outcome = "reached"
    worst_reason = "confidence threshold met"
    label_ids: set[str] = set()
    present: list[str] = []
    lowest = 1.0
    learn = bool(policy.param("learn_from_consensus")) or adjudication is not None
    for finding in policy.classes:
        votes = item_votes(policy, state.labels, _column_for(finding))
        vote_mass = vote_mass_of(votes, 2)
        label_ids.update(v.label_id for v in votes)
        units = posterior_units(policy, finding, [votes], view, 2)[0]
        if adjudication is not None:
            units = np.array([0, SCALE], dtype=np.int64)
            if not _present(adjudication.value, finding):
                units = units[::-1].copy()
        index = int(np.argmax(units))
        confidence = float(units[index]) / SCALE
        critical = False
        if policy.critical is not None and finding in policy.critical.values:
            reported = any(v.column == 1 for v in votes)
            critical = reported and (policy.critical.mode == "any" or index == 0)
        n = len({v.annotator for v in votes})
        outcome, reason = outcome_for(policy, n, confidence, critical, False)
        if adjudication is not None:
            outcome, reason = "reached", "adjudicated"
        if OUTCOME_SEVERITY[outcome] > OUTCOME_SEVERITY[worst]:
            worst, worst_reason = outcome, f"{finding}: {reason}"
        if index == 1:
            present.append(finding)
        lowest = min(lowest, confidence)
        findings[finding] = {
            "outcome": outcome,
            "present": bool(index),
            "confidence": confidence,
            "probability_present": float(units[1]) / SCALE,
            "votes_present": vote_mass[1],
        }
        cold = adjudication is None and is_cold(policy, view, finding)
        taught = taught_units(units, vote_mass, cold)
        contribution.extend(contribution_of(finding, votes, taught, learn))
    if adjudication is not None:
        label_ids.add(adjudication.label_id)
    annotators = {o.annotator_id for o in state.labels if o.role == "annotator"}
    decision = make_decision(
        policy,
        state.item_id,
        worst,
        worst_reason,
        label=tuple(present),
        confidence=lowest,
        distribution={f: d["probability_present"] for f, d in findings.items()},
        votes={f: d["votes_present"] for f, d in findings.items()},
        n_annotators=len(annotators),
        label_ids=sorted(label_ids),
        reliability_version=view.version,
        method="adjudication" if adjudication is not None else None,
        details={"findings": findings},
    )
    return decision, tuple(contribution)
