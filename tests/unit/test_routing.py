"""Who gets an item's next assignment."""

from __future__ import annotations

from services.assignment.routing import choose_annotators


def test_the_least_loaded_annotators_not_on_the_item_are_chosen() -> None:
    load = {"a": 3, "b": 0, "c": 1, "d": 0}
    assert choose_annotators(load, exclude={"b"}, count=2) == ["d", "c"]


def test_ties_are_broken_by_id_so_the_choice_is_deterministic() -> None:
    assert choose_annotators({"z": 0, "m": 0, "a": 0}, exclude=(), count=3) == ["a", "m", "z"]


def test_no_more_than_the_eligible_annotators_are_returned() -> None:
    assert choose_annotators({"a": 0, "b": 0}, exclude={"a", "b"}, count=2) == []
