"""The demo's replay plan."""

from __future__ import annotations

from services.cli.datasets import Answer
from services.cli.demo_plan import majority_vote, make_plan

ANSWERS = [
    Answer("bc4", "patient1/study1|Edema", "1"),
    Answer("bc6", "patient1/study1|Edema", "0"),
    Answer("bc8", "patient1/study1|Edema", "1"),
    Answer("bc4", "patient1/study1|Edema", "0"),  # a repeat: the first answer is kept
    Answer("bc4", "patient1/study1|Fracture", "0"),
    Answer("bc6", "patient1/study1|Fracture", "0"),
]


def test_case_finding_datasets_get_one_task_per_finding() -> None:
    plan = make_plan("chexpert", ANSWERS, "run1")
    assert sorted(t.title for t in plan.tasks.values()) == ["chexpert: Edema", "chexpert: Fracture"]
    assert len(plan.answers) == 5


def test_the_label_budget_is_the_number_of_readers() -> None:
    plan = make_plan("chexpert", ANSWERS, "run1")
    assert {t.policy.max_labels for t in plan.tasks.values()} == {3}


def test_a_finding_seen_with_one_value_still_gets_every_class() -> None:
    plan = make_plan("chexpert", ANSWERS, "run1")
    fracture = next(t for t in plan.tasks.values() if t.title.endswith("Fracture"))
    assert fracture.classes == ("0", "1")


def test_ids_depend_on_the_run_so_a_new_stack_gets_new_items() -> None:
    first, second = make_plan("c", ANSWERS, "run1"), make_plan("c", ANSWERS, "run2")
    assert set(first.item_task).isdisjoint(second.item_task)
    assert make_plan("c", ANSWERS, "run1").item_task == first.item_task


def test_majority_vote_breaks_ties_towards_the_smallest_label() -> None:
    votes = majority_vote((Answer("a", "t", "1"), Answer("b", "t", "0")))
    assert votes == {"t": "0"}


def test_items_start_with_the_initial_overlap_and_may_grow_to_every_reader() -> None:
    plan = make_plan("chexpert", ANSWERS, "run1", initial_overlap=2)
    assert {(t.initial_overlap, t.policy.min_labels) for t in plan.tasks.values()} == {(2, 2)}
    assert {t.policy.max_labels for t in plan.tasks.values()} == {3}
    capped = make_plan("chexpert", ANSWERS, "run1", initial_overlap=7)
    assert {t.initial_overlap for t in capped.tasks.values()} == {3}
