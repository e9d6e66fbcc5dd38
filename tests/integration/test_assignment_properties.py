"""Under any sequence of arrivals, requests, answers, declines, expiries, contested and
decided items and Redis losses, the assignment rules are never broken.

Hypothesis drives the real handlers, sweeper and pull service on the real PostgreSQL and
Redis with an injected clock. Each example starts from a fresh state: its own task,
annotators and items (the sweeper is scoped to the example's task).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.assignment.admin import AnnotatorProfile, register_annotators
from services.assignment.leases import lease_key
from services.assignment.rules import refusal
from services.assignment.store import PgAssignmentStore
from shared.events import AssignmentRules, CategoricalValue, DecisionRecord
from shared.settings import StackSettings
from tests import factories
from tests.integration.assignment_harness import AssignmentHarness, assignment_harness
from tests.integration.conftest import dsn_for

pytestmark = pytest.mark.integration

RULES = AssignmentRules(
    lease_seconds=100,
    forbid_same_site=True,
    max_open_per_annotator=2,
    gold_share=0.25,
    adjudication_sla_seconds=60,
    adjudication_tiers=2,
)
SITES = (None, "site-a", "site-b")
# reader: (site, own cap); adjudicator: (site, tier)
READERS = (("site-a", None), ("site-a", None), ("site-b", 1), (None, None), ("site-b", None))
ADJUDICATORS = (("site-a", 1), (None, 1), ("site-b", 2))

operations = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.sampled_from(SITES), st.booleans()),
        st.tuples(st.just("request"), st.integers(0, 30)),
        st.tuples(st.just("advance"), st.integers(1, 150)),
        st.tuples(st.just("answer"), st.integers(0, 30)),
        st.tuples(st.just("decline"), st.integers(0, 30)),
        st.tuples(st.just("contest"), st.integers(0, 30)),
        st.tuples(st.just("reach"), st.integers(0, 30), st.booleans()),
        st.tuples(st.just("flush")),
    ),
    min_size=8,
    max_size=30,
)


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(operations)
async def test_no_assignment_rule_is_ever_broken(
    stack: StackSettings, ops: list[tuple[Any, ...]]
) -> None:
    async with assignment_harness(stack) as h:
        world = await World.create(h)
        for op in ops:
            await world.apply(op)
            await world.check()


class World:
    """One example's task, annotators and items, and the invariants over them."""

    def __init__(self, h: AssignmentHarness, run: str) -> None:
        self.h = h
        self.task = factories.task(
            initial_overlap=2,
            policy=factories.task().policy.model_copy(update={"max_labels": 4}),
            assignment=RULES,
        )
        self.items: list[str] = []
        self.sites: dict[str, str | None] = {}
        self.caps: dict[str, int] = {}
        self.tiers: dict[str, int] = {}
        self.run = run

    @classmethod
    async def create(cls, h: AssignmentHarness) -> World:
        world = cls(h, uuid.uuid4().hex[:8])
        h.tasks[:] = [world.task.task_id]
        await h.handle(factories.task_event(world.task))
        for n, (site, cap) in enumerate(READERS):
            reader = f"r{n}-{world.run}"
            await world._register(reader, "reader", AnnotatorProfile(site=site, max_open=cap))
            world.caps[reader] = cap or RULES.max_open_per_annotator
        for n, (site, tier) in enumerate(ADJUDICATORS):
            adjudicator = f"adj{n}-{world.run}"
            await world._register(adjudicator, "adjudicator", AnnotatorProfile(site, tier))
            world.caps[adjudicator] = RULES.max_open_per_annotator
            world.tiers[adjudicator] = tier
        return world

    async def _register(self, annotator: str, role: str, profile: AnnotatorProfile) -> None:
        await register_annotators(
            dsn_for("assignment"), self.task.task_id, [annotator], role, profile
        )
        self.sites[annotator] = profile.site

    async def open_rows(self) -> list[Any]:
        return [r for r in await self.h.assignments(self.task.task_id) if r["status"] == "open"]

    async def apply(self, op: tuple[Any, ...]) -> None:
        h, task_id = self.h, self.task.task_id
        kind = op[0]
        if kind == "register":
            gold = CategoricalValue(label="1") if op[2] else None
            event = factories.item_event(task_id, site=op[1], gold_value=gold)
            self.items.append(event.payload.item_id)
            await h.handle(event)
        elif kind == "advance":
            h.advance(op[1])
            await h.sweeper.sweep()
            assert all(r["lease_expires_at"] > h.now for r in await self.open_rows())
        elif kind == "flush":
            rows = await self.open_rows()
            if rows:
                await h.redis.delete(*(lease_key(r["assignment_id"]) for r in rows))
            for annotator in self.sites:
                issued = await h.pull.next_for(annotator)
                if issued is not None:
                    assert await h.redis.exists(lease_key(issued.assignment_id))
        elif kind in ("answer", "decline"):
            rows = await self.open_rows()
            if rows:
                row = rows[op[1] % len(rows)]
                if kind == "answer":
                    await h.accept_label(row)
                else:
                    assert await h.pull.decline(row["annotator_id"], row["assignment_id"]) == (
                        "declined"
                    )
        elif self.items:
            item_id = self.items[op[1] % len(self.items)]
            rows = [r for r in await h.assignments(task_id) if r["item_id"] == item_id]
            if kind == "request":
                answered = sum(r["status"] == "answered" for r in rows)
                await h.request_more(item_id, task_id, labels_so_far=answered)
            elif kind == "contest":
                readers = tuple(r["annotator_id"] for r in rows if r["kind"] == "label")
                await h.contest(item_id, task_id, readers)
            else:
                adjudicators = [r["annotator_id"] for r in rows if r["kind"] == "adjudication"]
                adjudicator = adjudicators[-1] if op[2] and adjudicators else None
                await h.reach_consensus(item_id, task_id, adjudicator)

    async def check(self) -> None:
        """Every rule, over everything the example has done so far."""
        h, task_id = self.h, self.task.task_id
        store = PgAssignmentStore(h.pool)  # type: ignore[arg-type]  # a pool runs queries too
        rows = await h.assignments(task_id)
        items = {
            r["item_id"]: r
            for r in await h.pool.fetch("SELECT * FROM items WHERE task_id = $1", task_id)
        }
        queue = {
            r["item_id"]: r
            for r in await h.pool.fetch(
                "SELECT * FROM adjudication_queue WHERE task_id = $1", task_id
            )
        }
        # Never the same item twice.
        assert len({(r["item_id"], r["annotator_id"]) for r in rows}) == len(rows)
        open_rows = [r for r in rows if r["status"] == "open"]
        # Caps, and no lease outlives its deadline past a sweep.
        load = Counter(r["annotator_id"] for r in open_rows)
        assert all(load[a] <= self.caps[a] for a in load), load
        for row in rows:
            item = items[row["item_id"]]
            site = self.sites[row["annotator_id"]]
            # Conflict of interest: never a case from one's own site.
            assert site is None or site != item["site"]
            if row["kind"] == "adjudication":
                readers = {
                    r["annotator_id"]
                    for r in rows
                    if r["item_id"] == row["item_id"] and r["kind"] == "label"
                }
                evidence = DecisionRecord.model_validate(queue[row["item_id"]]["evidence"])
                assert row["annotator_id"] not in readers | set(evidence.contributing_annotators)
                assert self.tiers[row["annotator_id"]] == row["tier"]
            else:
                assert row["annotator_id"] not in self.tiers
                assert row["gold"] == item["gold"]
        for item_id, item in items.items():
            mine = [r for r in rows if r["item_id"] == item_id]
            if item["gold"]:
                continue
            used = [r for r in mine if r["kind"] == "label" and r["status"] in ("open", "answered")]
            assert len(used) <= max(item["wanted"], 0)
            if item["status"] == "open" and len(used) < item["wanted"] and not item["starved"]:
                # Not waiting for a free slot: then nobody may ever take it.
                facts = await store.item_facts(item_id, item["site"])
                for reader in await store.candidates(task_id, "reader"):
                    assert refusal(reader, facts, RULES) not in (None, "at_cap")
            if item["status"] == "decided":
                assert not [r for r in mine if r["status"] == "open"]
                assert item_id not in queue or queue[item_id]["status"] == "closed"
        # The gold share of each reader's assignments stays at or under the task's.
        for reader in {r["annotator_id"] for r in rows if r["kind"] == "label"}:
            labels = [r for r in rows if r["annotator_id"] == reader and r["kind"] == "label"]
            assert sum(r["gold"] for r in labels) <= RULES.gold_share * len(labels) + 1e-9
        for entry in queue.values():
            assert 1 <= entry["tier"] <= RULES.adjudication_tiers
            if entry["status"] == "assigned":
                (held,) = [r for r in rows if r["assignment_id"] == entry["assignment_id"]]
                assert (held["status"], held["kind"], held["tier"]) == (
                    "open",
                    "adjudication",
                    entry["tier"],
                )
        # Every lease is published once, every ending once with its reason; labels are blind.
        events = await h.events(task_id)
        issued = Counter(e.payload.assignment_id for e in events if e.event_type.endswith("issued"))
        ended = Counter(
            (e.payload.assignment_id, e.payload.reason)
            for e in events
            if e.event_type.endswith("cancelled")
        )
        assert issued == Counter(r["assignment_id"] for r in rows)
        assert ended == Counter(
            (r["assignment_id"], r["end_reason"])
            for r in rows
            if r["status"] in ("expired", "declined", "cancelled")
        )
        for event in events:
            if event.event_type.endswith("issued") and event.payload.kind == "label":
                assert event.payload.evidence is None
