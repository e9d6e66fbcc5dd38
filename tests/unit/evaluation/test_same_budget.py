"""The fixed design a dynamic run's budget buys: each item's first labels, same order."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.consensus.evaluation.dataset import Answer
from services.consensus.evaluation.replay import same_budget_order


def _answers(counts: dict[str, int]) -> list[Answer]:
    rows = [(task, w) for task, n in counts.items() for w in range(n)]
    return [Answer(row=i, worker=f"w{w}", task=t, label="0") for i, (t, w) in enumerate(rows)]


def test_each_item_keeps_its_share_of_its_own_labels_in_the_given_order() -> None:
    order = _answers({"a": 10, "b": 10, "c": 4})
    order = order[::-1]  # a replay order, not the file's
    kept = same_budget_order(order, 12)
    counts = Counter(a.task for a in kept)
    assert counts == {"a": 5, "b": 5, "c": 2}
    assert kept == [a for a in order if a in kept]  # the replay's order kept
    for task, n in counts.items():  # each item's first labels, not any n of them
        assert [a for a in kept if a.task == task] == [a for a in order if a.task == task][:n]


def test_remainders_go_to_the_largest_fractions_and_every_item_keeps_one() -> None:
    # 7 of 13 labels: one each, then 4 of the other 10 at 0.4 each: a 2.4, b 1.6, c 0
    # -> 2, 1, 0, and the spare label to b, the largest fraction.
    kept = same_budget_order(_answers({"a": 7, "b": 5, "c": 1}), 7)
    assert Counter(a.task for a in kept) == {"a": 3, "b": 3, "c": 1}


def test_gold_items_keep_every_label_out_of_the_same_budget() -> None:
    order = _answers({"gold": 6, "a": 10, "b": 10})[::-1]
    kept = same_budget_order(order, 16, keep={"gold"})
    assert Counter(a.task for a in kept) == {"gold": 6, "a": 5, "b": 5}
    assert kept == [a for a in order if a in kept]


def test_a_budget_outside_the_answers_is_refused() -> None:
    order = _answers({"a": 3, "b": 1})
    for bad in (1, 5):  # fewer labels than items, more than the answers
        with pytest.raises(ValueError, match=r"labels must be in 2\.\.4"):
            same_budget_order(order, bad)


@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    fraction=st.floats(0.0, 1.0),
)
def test_the_budget_is_spent_exactly_and_every_item_keeps_a_label(
    counts: list[int], fraction: float
) -> None:
    order = _answers({f"t{i}": n for i, n in enumerate(counts)})
    labels = max(len(counts), round(fraction * len(order)))
    kept = same_budget_order(order, labels)
    assert len(kept) == labels
    assert {a.task for a in kept} == {a.task for a in order}
