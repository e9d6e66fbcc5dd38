"""The walking-skeleton majority rule and the item state it folds labels into."""

from __future__ import annotations

import uuid

from services.consensus.rule import CurrentLabel, decide
from services.consensus.state import ItemState
from shared.events import ConsensusPolicy, LabelAccepted
from tests import factories

POLICY = ConsensusPolicy(min_labels=3, max_labels=5)


def _labels(*values: str) -> list[CurrentLabel]:
    return [CurrentLabel(uuid.UUID(int=i + 1), f"r{i}", v) for i, v in enumerate(values)]


def test_two_of_three_agreeing_labels_reach_consensus() -> None:
    decision = decide(_labels("1", "0", "1"), POLICY)
    assert (decision.outcome, decision.label) == ("reached", "1")
    assert decision.confidence == 2 / 3
    assert decision.distribution == {"0": 1 / 3, "1": 2 / 3}


def test_fewer_than_min_labels_need_more_even_when_unanimous() -> None:
    decision = decide(_labels("1", "1"), POLICY)
    assert decision.outcome == "needs_more" and decision.label is None


def test_a_tie_is_never_broken_by_guessing() -> None:
    assert decide(_labels("1", "0", "1", "0"), POLICY).outcome == "needs_more"


def test_no_majority_at_the_label_budget_is_contested() -> None:
    decision = decide(_labels("a", "b", "c", "a", "b"), ConsensusPolicy(min_labels=3, max_labels=5))
    assert decision.outcome == "contested"


def test_a_disputed_critical_finding_escalates_at_min_labels() -> None:
    policy = ConsensusPolicy(min_labels=3, max_labels=5, critical_labels=("1",))
    assert decide(_labels("0", "0", "1"), policy).outcome == "contested"
    assert decide(_labels("1", "1", "1"), policy).outcome == "reached"


def test_the_decision_does_not_depend_on_label_order() -> None:
    labels = _labels("1", "0", "1", "1")
    assert decide(labels, POLICY) == decide(list(reversed(labels)), POLICY)


def _accepted(annotation: uuid.UUID, revision: int, value: str) -> LabelAccepted:
    submitted = factories.label_event(
        "i", "t", "r1", value, annotation_id=annotation, revision=revision
    ).payload
    return LabelAccepted(
        label_id=uuid.uuid4(),
        received_at=factories.NOW,
        raw_sha256="0" * 64,
        **submitted.model_dump(exclude={"time_spent_ms"}),
    )


def test_a_later_revision_replaces_the_earlier_and_a_stale_one_is_ignored() -> None:
    annotation = uuid.uuid4()
    state = ItemState()
    assert state.apply(_accepted(annotation, 1, "0"))
    assert state.apply(_accepted(annotation, 3, "1"))
    assert not state.apply(_accepted(annotation, 2, "0"))
    assert [label.value for label in state.current()] == ["1"]
    assert ItemState.from_json(state.to_json()) == state
