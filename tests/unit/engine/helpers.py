"""Small builders for engine tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.consensus.engine import (
    ConsensusPolicy,
    Decision,
    ItemState,
    LabelObservation,
    LabelValue,
    ReliabilityLedger,
    ReliabilityView,
    step,
)


def binary_policy(method: str = "ds", **kwargs: object) -> ConsensusPolicy:
    return ConsensusPolicy(method=method, kind="binary", classes=("0", "1"), **kwargs)  # type: ignore[arg-type]


def label(label_id: str, annotator: str, value: LabelValue, **kwargs: object) -> LabelObservation:
    return LabelObservation(label_id=label_id, annotator_id=annotator, value=value, **kwargs)  # type: ignore[arg-type]


def fold(
    policy: ConsensusPolicy,
    labels: Iterable[LabelObservation],
    reliability: ReliabilityView,
    item_id: str = "item-1",
) -> tuple[ItemState, Decision | None]:
    """Fold labels into one item under a fixed snapshot."""
    state = ItemState.new(item_id)
    decision: Decision | None = None
    for obs in labels:
        state, decision, _ = step(policy, state, obs, reliability)
    return state, decision


def stream(
    policy: ConsensusPolicy, events: Sequence[tuple[str, LabelObservation]]
) -> tuple[dict[str, ItemState], ReliabilityLedger, dict[str, Decision]]:
    """Stream (item_id, label) events through step, applying every delta to one ledger."""
    ledger = ReliabilityLedger()
    states: dict[str, ItemState] = {}
    decisions: dict[str, Decision] = {}
    for item_id, obs in events:
        result = step(policy, states.get(item_id) or ItemState.new(item_id), obs, ledger)
        ledger.apply(result.delta)
        states[item_id] = result.state
        decisions[item_id] = result.decision
    return states, ledger, decisions
