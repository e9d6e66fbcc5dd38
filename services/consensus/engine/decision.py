"""The decision after each label, and the record that lets anyone replay it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from services.consensus.engine.observation import freeze, thaw
from services.consensus.engine.policy import ConsensusPolicy
from services.consensus.engine.version import ENGINE_VERSION

Outcome = Literal["reached", "needs_more", "contested"]
OUTCOME_SEVERITY: Mapping[str, int] = {"reached": 0, "needs_more": 1, "contested": 2}


@dataclass(frozen=True)
class Decision:
    """Everything needed to explain and replay one consensus decision.

    distribution: posterior probability per class (exact multiples of 1/SCALE);
    votes: annotator votes per class (a split repeat counts 1/m); agreement: observed
    pairwise agreement among the item's annotators (1.0 when fewer than two);
    parameters: the complete policy; reliability_version: digest of the snapshot used.
    """

    item_id: str
    outcome: Outcome
    label: Any
    confidence: float
    distribution: Mapping[str, float]
    votes: Mapping[str, float]
    agreement: float
    n_annotators: int
    contributing_label_ids: tuple[str, ...]
    method: str
    method_version: str
    parameters: Mapping[str, Any]
    policy_digest: str
    reliability_version: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        label = thaw(self.label)
        return {
            "item_id": self.item_id,
            "outcome": self.outcome,
            "label": label,
            "confidence": self.confidence,
            "distribution": dict(self.distribution),
            "votes": dict(self.votes),
            "agreement": self.agreement,
            "n_annotators": self.n_annotators,
            "contributing_label_ids": list(self.contributing_label_ids),
            "method": self.method,
            "method_version": self.method_version,
            "parameters": dict(self.parameters),
            "policy_digest": self.policy_digest,
            "reliability_version": self.reliability_version,
            "reason": self.reason,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        label = data["label"]
        return cls(
            item_id=data["item_id"],
            outcome=data["outcome"],
            label=freeze(label),
            confidence=float(data["confidence"]),
            distribution=dict(data["distribution"]),
            votes=dict(data["votes"]),
            agreement=float(data["agreement"]),
            n_annotators=int(data["n_annotators"]),
            contributing_label_ids=tuple(data["contributing_label_ids"]),
            method=data["method"],
            method_version=data["method_version"],
            parameters=dict(data["parameters"]),
            policy_digest=data["policy_digest"],
            reliability_version=data["reliability_version"],
            reason=data["reason"],
            details=dict(data.get("details", {})),
        )


def pairwise_agreement(votes: Sequence[float]) -> float:
    """Fleiss' per-item agreement P_i = sum n_c (n_c - 1) / (n (n - 1)); 1.0 if n < 2."""
    n = sum(votes)
    if n < 2.0 - 1e-12:
        return 1.0
    return float(sum(v * (v - 1.0) for v in votes) / (n * (n - 1.0)))


def outcome_for(
    policy: ConsensusPolicy,
    n_annotators: int,
    confidence: float,
    critical: bool,
    spread_too_wide: bool,
    flip_risk: Callable[[], float] | None = None,
    horizon_gain: Callable[[], float] | None = None,
    dissent: float | None = None,
) -> tuple[Outcome, str]:
    """The decision rule, in order: critical finding, ordinal spread, confidence, count.

    flip_risk (curtailing policies only): computed once a reaching rule is met; reaching
    also needs it at most stop_flip_risk. horizon_gain (policies with stop_gain): below
    the threshold, an item at least stop_gain_floor confident is also reached when the
    labels up to max_labels would raise its expected accuracy by at most stop_gain and
    by at most stop_gain_share of its remaining error (engine/horizon.py). dissent
    (policies with hold_dissent_share): the minority's share of the item's votes; at
    least hold_dissent_share holds a reaching item back until hold_dissent_until.
    """
    if critical:
        return "contested", "critical finding reported"
    if spread_too_wide:
        return "contested", "ordinal spread exceeds max_spread"
    unsettled = False
    if n_annotators >= policy.min_labels:
        reason = None
        if confidence >= policy.threshold:
            reason = "confidence threshold met"
        elif (
            horizon_gain is not None
            and n_annotators < policy.max_labels
            and confidence >= policy.float_param("stop_gain_floor")
            and _horizon_cannot_fix_it(policy, confidence, horizon_gain())
        ):
            reason = "more labels would not change it"
        if reason is not None:
            if dissent is not None and _held_for_dissent(policy, n_annotators, dissent):
                return "needs_more", "readers split"
            if flip_risk is None or flip_risk() <= policy.float_param("stop_flip_risk"):
                return "reached", reason
            unsettled = True
    if n_annotators < policy.max_labels:
        if unsettled:
            return "needs_more", "majority not settled"
        return "needs_more", (
            "below min_labels" if n_annotators < policy.min_labels else "below threshold"
        )
    return "contested", "max_labels reached without confidence"


def holds_for_dissent(policy: ConsensusPolicy) -> bool:
    return float(policy.params.get("hold_dissent_share", 0.0)) > 0.0


def minority_share(votes: Sequence[float]) -> float:
    """The share of the votes not for the leading class (0.0 without votes)."""
    total = float(sum(votes))
    return 0.0 if total <= 0.0 else 1.0 - float(max(votes)) / total


def _held_for_dissent(policy: ConsensusPolicy, n_annotators: int, dissent: float) -> bool:
    # The 1e-9s keep exact values exact: 1 of 5 votes is a share of 0.2, not 0.19999...,
    # and 0.6 of 10 labels is 6, not 6.000...1 rounded up to 7.
    until = math.ceil(policy.float_param("hold_dissent_until") * policy.max_labels - 1e-9)
    split = dissent >= policy.float_param("hold_dissent_share") - 1e-9
    return split and n_annotators < until  # until <= max_labels: hold_dissent_until <= 1


def _horizon_cannot_fix_it(policy: ConsensusPolicy, confidence: float, gain: float) -> bool:
    """The labels to come add at most stop_gain, and at most stop_gain_share of the error."""
    fixable = policy.float_param("stop_gain_share") * (1.0 - confidence)
    return gain <= policy.float_param("stop_gain") and gain <= fixable


def make_decision(
    policy: ConsensusPolicy,
    item_id: str,
    outcome: Outcome,
    reason: str,
    label: Any,
    confidence: float,
    distribution: Mapping[str, float],
    votes: Mapping[str, float],
    n_annotators: int,
    label_ids: Sequence[str],
    reliability_version: str,
    method: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Decision:
    """Assemble the record (agreement computed from the votes)."""
    return Decision(
        item_id=item_id,
        outcome=outcome,
        label=label,
        confidence=confidence,
        distribution=dict(distribution),
        votes=dict(votes),
        agreement=pairwise_agreement(list(votes.values())),
        n_annotators=n_annotators,
        contributing_label_ids=tuple(sorted(label_ids)),
        method=method or policy.method,
        method_version=ENGINE_VERSION,
        parameters=policy.to_dict(),
        policy_digest=policy.digest,
        reliability_version=reliability_version,
        reason=reason,
        details=dict(details or {}),
    )
