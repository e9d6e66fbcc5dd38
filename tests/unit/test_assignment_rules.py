"""Who may hold an assignment and who gets it: the pure rules of services/assignment/rules.py."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from services.assignment.rules import (
    Annotator,
    ItemFacts,
    Slot,
    cap_of,
    choose,
    gold_due,
    next_tier,
    pick_gold,
    rank_key,
    refusal,
)
from shared.events import AssignmentRules

RULES = AssignmentRules(forbid_same_site=True, max_open_per_annotator=3)
ITEM = ItemFacts("item-1", site="site-a", had=frozenset({"r-had"}), readers=frozenset({"r-had"}))
ADJUDICATION = Slot("adjudication", tier=1, specialty="chest")


def reader(annotator_id: str, **fields: object) -> Annotator:
    return Annotator(annotator_id, "reader", **fields)  # type: ignore[arg-type]


def adjudicator(annotator_id: str, **fields: object) -> Annotator:
    defaults: dict[str, object] = {"tier": 1, "specialty": "chest"}
    return Annotator(annotator_id, "adjudicator", **{**defaults, **fields})  # type: ignore[arg-type]


def test_an_annotator_never_gets_an_item_they_already_had() -> None:
    assert refusal(reader("r-had"), ITEM, RULES) == "had_item"


def test_a_reader_from_the_item_site_is_refused_only_when_the_task_forbids_it() -> None:
    assert refusal(reader("r1", site="site-a"), ITEM, RULES) == "same_site"
    allowed = AssignmentRules(forbid_same_site=False)
    assert refusal(reader("r1", site="site-a"), ITEM, allowed) is None
    assert refusal(reader("r1", site="site-b"), ITEM, RULES) is None


def test_the_cap_is_the_annotators_own_when_set_else_the_tasks() -> None:
    assert cap_of(reader("r1"), RULES) == 3
    assert cap_of(reader("r1", max_open=1), RULES) == 1
    assert refusal(reader("r1", open_count=3), ITEM, RULES) == "at_cap"
    assert refusal(reader("r1", open_count=1, max_open=1), ITEM, RULES) == "at_cap"
    assert refusal(reader("r1", open_count=2), ITEM, RULES) is None


def test_an_adjudicator_is_never_one_of_the_items_readers() -> None:
    item = ItemFacts("item-1", readers=frozenset({"both"}), had=frozenset({"both"}))
    assert refusal(adjudicator("both"), item, RULES, ADJUDICATION) == "reader_of_item"


def test_adjudication_needs_an_adjudicator_of_the_queues_tier_and_specialty() -> None:
    assert refusal(reader("r1"), ITEM, RULES, ADJUDICATION) == "not_an_adjudicator"
    assert refusal(adjudicator("a1", tier=2), ITEM, RULES, ADJUDICATION) == (
        "other_tier_or_specialty"
    )
    assert refusal(adjudicator("a1", specialty="neuro"), ITEM, RULES, ADJUDICATION) == (
        "other_tier_or_specialty"
    )
    assert refusal(adjudicator("a1"), ITEM, RULES, ADJUDICATION) is None
    assert refusal(adjudicator("a1"), ITEM, RULES) == "not_a_reader"


def test_preferred_order_beats_skill_which_beats_open_work_which_beats_id() -> None:
    candidates = [
        reader("low-skill", skill=0.6),
        reader("high-skill-busy", skill=0.9, open_count=2),
        reader("high-skill-idle", skill=0.9),
        reader("unknown-skill"),
        reader("b-tie", skill=0.7),
        reader("a-tie", skill=0.7),
    ]
    ranked = choose(candidates, ITEM, RULES, 10, preferred=("low-skill",))
    assert [a.annotator_id for a in ranked] == [
        "low-skill",
        "high-skill-idle",
        "high-skill-busy",
        "a-tie",
        "b-tie",
        "unknown-skill",
    ]


def test_choose_returns_no_more_than_asked_and_skips_the_excluded() -> None:
    candidates = [reader("r1"), reader("r2"), reader("r3")]
    assert [a.annotator_id for a in choose(candidates, ITEM, RULES, 2, exclude={"r1"})] == [
        "r2",
        "r3",
    ]
    assert choose(candidates, ITEM, RULES, 0) == []


def hand_out(regular: int, share: float) -> tuple[int, int]:
    """Label assignments and gold ones a reader has after `regular` regular assignments,
    each followed by a gold item when one is due (as the assigner does)."""
    total = gold = 0
    for _ in range(regular):
        total += 1
        if gold_due(total, gold, share):
            gold += 1
            total += 1
    return total, gold


def test_gold_items_come_at_the_tasks_share_of_each_readers_assignments() -> None:
    assert hand_out(80, 0.2) == (100, 20)
    assert hand_out(4, 0.2) == (5, 1)
    assert hand_out(50, 0.0) == (50, 0)


def test_each_reader_gets_the_same_gold_item_every_run_but_readers_differ() -> None:
    pool = [f"gold-{n}" for n in range(20)]
    assert pick_gold("r1", pool) == pick_gold("r1", list(reversed(pool)))
    firsts = {pick_gold(f"r{n}", pool) for n in range(10)}
    assert len(firsts) > 1
    assert pick_gold("r1", []) is None


def test_an_overdue_adjudication_moves_up_until_the_last_tier() -> None:
    assert next_tier(1, 2) == 2
    assert next_tier(2, 2) is None
    assert next_tier(1, 1) is None


# --- properties

annotator_ids = st.sampled_from([f"a{n}" for n in range(8)])
sites = st.sampled_from([None, "site-a", "site-b"])
annotators = st.builds(
    Annotator,
    annotator_id=annotator_ids,
    role=st.sampled_from(["reader", "adjudicator"]),
    site=sites,
    tier=st.integers(1, 2),
    specialty=st.sampled_from(["general", "chest"]),
    max_open=st.one_of(st.none(), st.integers(1, 4)),
    open_count=st.integers(0, 5),
    skill=st.one_of(st.none(), st.floats(0, 1)),
)
rules = st.builds(
    AssignmentRules,
    forbid_same_site=st.booleans(),
    max_open_per_annotator=st.integers(1, 4),
)
items = st.builds(
    ItemFacts,
    item_id=st.just("item"),
    site=sites,
    had=st.frozensets(annotator_ids, max_size=4),
    readers=st.frozensets(annotator_ids, max_size=4),
)
slots = st.one_of(
    st.just(Slot()),
    st.builds(
        Slot,
        kind=st.just("adjudication"),
        tier=st.integers(1, 2),
        specialty=st.sampled_from(["general", "chest"]),
    ),
)


def unique(candidates: list[Annotator]) -> list[Annotator]:
    return list({a.annotator_id: a for a in candidates}.values())


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(annotators, max_size=8).map(unique),
    items,
    rules,
    slots,
    st.integers(0, 5),
    st.lists(annotator_ids, max_size=3, unique=True),
)
def test_whoever_is_chosen_breaks_no_rule_and_no_better_candidate_is_passed_over(
    candidates: list[Annotator],
    item: ItemFacts,
    task_rules: AssignmentRules,
    slot: Slot,
    count: int,
    preferred: list[str],
) -> None:
    chosen = choose(candidates, item, task_rules, count, slot=slot, preferred=preferred)
    eligible = [a for a in candidates if refusal(a, item, task_rules, slot) is None]
    assert len(chosen) == min(count, len(eligible))
    for annotator in chosen:
        assert annotator.annotator_id not in item.had
        assert annotator.open_count < cap_of(annotator, task_rules)
        if task_rules.forbid_same_site and annotator.site is not None:
            assert annotator.site != item.site
        if slot.kind == "adjudication":
            assert annotator.role == "adjudicator"
            assert annotator.annotator_id not in item.readers
            assert (annotator.tier, annotator.specialty) == (slot.tier, slot.specialty)
        else:
            assert annotator.role == "reader"
    passed_over = [a for a in eligible if a not in chosen]
    for annotator in chosen:
        for other in passed_over:
            assert rank_key(annotator, preferred) < rank_key(other, preferred)
    shuffled = choose(
        list(reversed(candidates)), item, task_rules, count, slot=slot, preferred=preferred
    )
    assert shuffled == chosen


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.floats(0.0, 0.5), st.integers(0, 200))
def test_a_readers_gold_share_never_exceeds_the_tasks_and_keeps_up_with_it(
    share: float, regular: int
) -> None:
    total, gold = hand_out(regular, share)
    assert gold <= share * total + 1e-9
    assert gold >= math.floor(share * (total + 1) + 1e-9) - 1
