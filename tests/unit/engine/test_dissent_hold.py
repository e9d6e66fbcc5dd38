"""The dissent hold: a confident item is not reached while enough of its readers dissent."""

from __future__ import annotations

import pytest

from services.consensus.engine import ConsensusPolicy, LabelObservation, ReliabilitySnapshot
from services.consensus.engine.decision import minority_share

from .helpers import fold, label

EMPTY = ReliabilitySnapshot.empty()


def policy(**params: object) -> ConsensusPolicy:
    return ConsensusPolicy(
        method="mv",
        kind="categorical",
        classes=("a", "b", "c"),
        min_labels=2,
        max_labels=10,
        threshold=0.9,
        params=params,  # type: ignore[arg-type]
    )


def votes(*values: str) -> list[LabelObservation]:
    return [label(str(i), f"r{i}", v) for i, v in enumerate(values)]


HOLD = {"hold_dissent_share": 0.2, "hold_dissent_until": 0.8}  # until 8 of 10 labels


def test_one_dissenter_in_five_holds_an_item_the_threshold_would_reach() -> None:
    four_to_one = votes("a", "a", "a", "a", "b")
    _, free = fold(policy(), four_to_one, EMPTY)
    _, held = fold(policy(**HOLD), four_to_one, EMPTY)
    assert free is not None and held is not None
    assert (free.outcome, free.label) == ("reached", "a") and free.confidence >= 0.9
    assert (held.outcome, held.reason) == ("needs_more", "readers split")
    assert held.details["stopping"]["dissent_share"] == pytest.approx(0.2)
    assert "stopping" not in free.details  # off by default: nothing computed, nothing kept


def test_a_unanimous_or_barely_split_item_is_not_held() -> None:
    for values in (("a", "a", "a"), ("a",) * 7 + ("b",)):  # no dissent; 1 in 8 < 0.2
        _, decision = fold(policy(**HOLD), votes(*values), EMPTY)
        assert decision is not None and decision.outcome == "reached", values


def test_the_hold_ends_at_its_share_of_max_labels() -> None:
    five_to_two = votes("a", "a", "a", "a", "a", "b", "b")  # 7 labels, 2/7 dissent
    six_to_two = votes("a", "a", "a", "a", "a", "b", "b", "a")  # 8 = 0.8 x 10
    _, held = fold(policy(**HOLD), five_to_two, EMPTY)
    _, released = fold(policy(**HOLD), six_to_two, EMPTY)
    assert held is not None and released is not None
    assert held.outcome == "needs_more"
    assert released.outcome == "reached" and released.details["stopping"]["dissent_share"] == 0.25


def test_at_max_labels_the_usual_rule_decides() -> None:
    eight_to_two = votes(*("a",) * 8, "b", "b")
    _, decision = fold(policy(hold_dissent_share=0.2, hold_dissent_until=1.0), eight_to_two, EMPTY)
    assert decision is not None and decision.outcome == "reached"


def test_the_minority_share_is_of_the_vote_mass() -> None:
    assert minority_share([4.0, 1.0, 0.0]) == pytest.approx(0.2)
    assert minority_share([2.5, 0.5]) == pytest.approx(1 / 6)  # a split repeat counts 1/m
    assert minority_share([0.0, 0.0]) == 0.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hold_dissent_share": 1.0}, "hold_dissent_share must be in"),
        ({"hold_dissent_share": -0.1}, "hold_dissent_share must be in"),
        ({"hold_dissent_until": 0.0}, "hold_dissent_until must be in"),
        ({"hold_dissent_until": 1.5}, "hold_dissent_until must be in"),
    ],
)
def test_the_settings_are_validated(params: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy(**params)


def test_the_hold_belongs_to_single_label_categorical_kinds() -> None:
    with pytest.raises(ValueError, match="unknown params"):
        ConsensusPolicy(
            method="ds", kind="multilabel", classes=("x",), params={"hold_dissent_share": 0.2}
        )
