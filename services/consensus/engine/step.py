"""The facade's pure functions: fold one label into an item, or re-score it."""

from __future__ import annotations

from typing import NamedTuple

from services.consensus.engine import item_categorical
from services.consensus.engine.decision import Decision
from services.consensus.engine.observation import LabelObservation
from services.consensus.engine.policy import CATEGORICAL_KINDS, ConsensusPolicy
from services.consensus.engine.reliability import ReliabilityDelta, ReliabilityView
from services.consensus.engine.state import Contribution, ItemState


class StepResult(NamedTuple):
    """New item state, the decision, and the delta to add to the reliability ledger."""

    state: ItemState
    decision: Decision
    delta: ReliabilityDelta


def _evaluate(
    policy: ConsensusPolicy, state: ItemState, view: ReliabilityView
) -> tuple[Decision, Contribution]:
    if policy.kind in CATEGORICAL_KINDS:
        return item_categorical.evaluate(policy, state, view)
    if policy.kind == "multilabel":
        from services.consensus.engine import multilabel

        return multilabel.evaluate(policy, state, view)
    if policy.kind == "numeric":
        from services.consensus.engine import numeric

        return numeric.evaluate(policy, state, view)
    if policy.kind == "boxes":
        from services.consensus.engine import boxes

        return boxes.evaluate(policy, state, view)
    if policy.kind == "mask":
        from services.consensus.engine import masks

        return masks.evaluate(policy, state, view)
    raise ValueError(f"unsupported kind {policy.kind!r}")


def rescore(policy: ConsensusPolicy, state: ItemState, reliability: ReliabilityView) -> StepResult:
    """Re-decide an item under a (newer) reliability snapshot, with no new label.

    The delta replaces this item's previous ledger contribution with the new one.
    """
    decision, contribution = _evaluate(policy, state, reliability)
    delta = ReliabilityDelta.between(state.contribution, contribution)
    return StepResult(state.with_contribution(contribution), decision, delta)


def step(
    policy: ConsensusPolicy,
    state: ItemState,
    label: LabelObservation,
    reliability: ReliabilityView,
) -> StepResult:
    """Fold one accepted label into an item and decide it.

    Cost is O(labels on this item x classes) (boxes: O(boxes on the item squared); masks:
    O(readers x voxels x STAPLE iterations)): independent of how many items or labels the
    system has seen. Pure and deterministic: the same (policy, state, label, snapshot)
    always gives the same bytes. A duplicate label leaves the labels unchanged.
    """
    return rescore(policy, state.with_label(label), reliability)
