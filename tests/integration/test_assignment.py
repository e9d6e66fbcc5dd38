"""The assignment service on the real PostgreSQL and Redis: overlap, skills, sites, gold
items, leases (expiry, decline, cancellation), adjudication queues and the pull API."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.assignment.admin import AnnotatorProfile, register_annotators
from services.assignment.api import create_api
from services.assignment.leases import lease_key
from shared.events import AssignmentRules, CategoricalValue, TaskDefined
from shared.metrics import METRICS
from shared.settings import StackSettings
from tests import factories
from tests.integration.assignment_harness import AssignmentHarness, assignment_harness
from tests.integration.conftest import dsn_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def harness(stack: StackSettings) -> AsyncIterator[AssignmentHarness]:
    async with assignment_harness(stack) as h:
        yield h


async def define(h: AssignmentHarness, **rules: Any) -> TaskDefined:
    task = factories.task(initial_overlap=2, assignment=AssignmentRules(**rules))
    h.tasks.append(task.task_id)
    await h.handle(factories.task_event(task))
    return task


async def annotators(
    task: TaskDefined, ids: list[str], role: str = "reader", **profile: Any
) -> list[str]:
    await register_annotators(
        dsn_for("assignment"), task.task_id, ids, role, AnnotatorProfile(**profile)
    )
    return ids


def ids(prefix: str, n: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{prefix}{k}-{run}" for k in range(n)]


async def open_of(h: AssignmentHarness, task: TaskDefined, item_id: str) -> list[Any]:
    return [
        r
        for r in await h.assignments(task.task_id)
        if r["item_id"] == item_id and r["status"] == "open"
    ]


async def test_initial_overlap_goes_to_the_most_skilled_readers_not_from_the_items_site(
    harness: AssignmentHarness,
) -> None:
    task = await define(harness, forbid_same_site=True)
    local, expert, good, fair = ids("r", 4)
    await annotators(task, [local], site="site-a")
    await annotators(task, [expert, good, fair], site="site-b")
    for reader, skill in ((local, 0.99), (expert, 0.95), (good, 0.9), (fair, 0.8)):
        await harness.estimate_skill(reader, task.task_id, skill)
    item = factories.item_event(task.task_id, site="site-a")
    await harness.handle(item)
    chosen = {r["annotator_id"] for r in await open_of(harness, task, item.payload.item_id)}
    assert chosen == {expert, good}
    await harness.request_more(item.payload.item_id, task.task_id, labels_so_far=2)
    chosen = {r["annotator_id"] for r in await open_of(harness, task, item.payload.item_id)}
    assert chosen == {expert, good, fair}


async def test_an_expired_lease_is_cancelled_and_the_item_reissued_to_someone_else(
    harness: AssignmentHarness,
) -> None:
    task = await define(harness, lease_seconds=60)
    readers = await annotators(task, ids("r", 3))
    item = factories.item_event(task.task_id)
    await harness.handle(item)
    first = await open_of(harness, task, item.payload.item_id)
    await harness.accept_label(first[0])  # answered: its lease no longer runs
    expiries = METRICS.lease_expiries.labels("label")._value.get()
    harness.advance(61)
    report = await harness.sweeper.sweep()
    assert report.expired == 1
    assert METRICS.lease_expiries.labels("label")._value.get() == expiries + 1
    rows = {r["annotator_id"]: r for r in await harness.assignments(task.task_id)}
    assert rows[first[0]["annotator_id"]]["status"] == "answered"
    assert rows[first[1]["annotator_id"]]["status"] == "expired"
    (third,) = set(readers) - {r["annotator_id"] for r in first}
    assert rows[third]["status"] == "open"
    cancelled = [
        e for e in await harness.events(task.task_id) if e.event_type.endswith("cancelled")
    ]
    assert [(c.payload.annotator_id, c.payload.reason) for c in cancelled] == [
        (first[1]["annotator_id"], "expired")
    ]
    assert cancelled[0].key == first[1]["annotator_id"]


async def test_a_decided_item_cancels_its_open_leases_and_says_why(
    harness: AssignmentHarness,
) -> None:
    task = await define(harness)
    await annotators(task, ids("r", 2))
    plain, adjudicated = factories.item_event(task.task_id), factories.item_event(task.task_id)
    await harness.handle(plain)
    await harness.handle(adjudicated)
    await harness.reach_consensus(plain.payload.item_id, task.task_id, adjudicator=None)
    await harness.reach_consensus(adjudicated.payload.item_id, task.task_id, adjudicator="adj-x")
    reasons = Counter(
        (e.payload.item_id, e.payload.reason)
        for e in await harness.events(task.task_id)
        if e.event_type.endswith("cancelled")
    )
    assert reasons == {
        (plain.payload.item_id, "consensus_reached"): 2,
        (adjudicated.payload.item_id, "adjudicated"): 2,
    }
    assert not [r for r in await harness.assignments(task.task_id) if r["status"] == "open"]


async def test_gold_items_are_interleaved_at_the_share_and_look_like_any_assignment(
    harness: AssignmentHarness,
) -> None:
    task = await define(harness, gold_share=0.25, max_open_per_annotator=100)
    readers = await annotators(task, ids("r", 2))
    gold = [
        factories.item_event(task.task_id, gold_value=CategoricalValue(label="1")) for _ in range(3)
    ]
    for event in gold:
        await harness.handle(event)
    assert not await harness.assignments(task.task_id)  # no overlap of their own
    for _ in range(6):
        await harness.handle(factories.item_event(task.task_id))
    rows = await harness.assignments(task.task_id)
    gold_ids = {e.payload.item_id for e in gold}
    for reader in readers:
        mine = [r for r in rows if r["annotator_id"] == reader]
        got = [r["item_id"] for r in mine if r["item_id"] in gold_ids]
        assert len(mine) == 8 and len(got) == 2 == len(set(got))
    issued = [e for e in await harness.events(task.task_id) if e.event_type.endswith("issued")]
    shapes = {frozenset(e.payload.model_dump(exclude_none=True)) for e in issued}
    assert len(shapes) == 1  # gold and regular assignments carry the same fields


async def test_a_contested_item_goes_to_a_free_adjudicator_who_did_not_read_it_then_up_a_tier(
    harness: AssignmentHarness,
) -> None:
    task = await define(harness, adjudication_sla_seconds=100, adjudication_tiers=2)
    readers = await annotators(task, ids("r", 2))
    item = factories.item_event(task.task_id)
    await harness.handle(item)
    # A reader of the item becomes an adjudicator; they must never adjudicate it.
    await annotators(task, [readers[0]], "adjudicator")
    (first_tier,) = await annotators(task, ids("adj1-", 1), "adjudicator")
    (second_tier,) = await annotators(task, ids("adj2-", 1), "adjudicator", tier=2)
    await harness.contest(item.payload.item_id, task.task_id, tuple(readers))
    (adjudication,) = [r for r in await harness.assignments(task.task_id) if r["kind"] != "label"]
    assert (adjudication["annotator_id"], adjudication["tier"]) == (first_tier, 1)
    issued = [e for e in await harness.events(task.task_id) if e.payload.annotator_id == first_tier]
    assert issued[0].payload.kind == "adjudication"
    assert issued[0].payload.evidence.contributing_annotators == tuple(readers)

    harness.advance(101)
    assert (await harness.sweeper.sweep()).escalated == 1
    rows = {r["annotator_id"]: r for r in await harness.assignments(task.task_id)}
    assert (rows[first_tier]["status"], rows[first_tier]["end_reason"]) == (
        "cancelled",
        "escalated",
    )
    assert (rows[second_tier]["status"], rows[second_tier]["tier"]) == ("open", 2)

    breaches = METRICS.adjudication_sla_breaches.labels(task.task_id, "general")._value.get()
    harness.advance(101)
    assert (await harness.sweeper.sweep()).breached == 1
    assert (await harness.sweeper.sweep()).breached == 0  # counted once
    assert METRICS.adjudication_sla_breaches.labels(task.task_id, "general")._value.get() == (
        breaches + 1
    )
    await harness.reach_consensus(item.payload.item_id, task.task_id, adjudicator=second_tier)
    entry = await harness.pool.fetchrow(
        "SELECT status FROM adjudication_queue WHERE item_id = $1", item.payload.item_id
    )
    assert entry is not None and entry["status"] == "closed"


async def test_a_contested_item_waits_for_an_adjudicator_and_is_pulled_by_the_first_free_one(
    harness: AssignmentHarness,
) -> None:
    task = await define(harness, specialty="chest")
    await annotators(task, ids("r", 2))
    (busy,) = await annotators(task, ids("adj-", 1), "adjudicator", specialty="chest", max_open=1)
    (other_specialty,) = await annotators(task, ids("neuro-", 1), "adjudicator")
    first, second = factories.item_event(task.task_id), factories.item_event(task.task_id)
    for event in (first, second):
        await harness.handle(event)
        await harness.contest(event.payload.item_id, task.task_id, ())
    await harness.sweeper.sweep()
    assert METRICS.adjudication_waiting.labels(task.task_id, "chest", "1")._value.get() == 1
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(create_api(harness.pull)), base_url="http://x"
    )
    async with api:
        assert (await api.get(f"/annotators/{other_specialty}/next")).status_code == 204
        held = (await api.get(f"/annotators/{busy}/next")).json()
        assert (held["item_id"], held["kind"]) == (first.payload.item_id, "adjudication")
        rows = await harness.assignments(task.task_id)
        (label,) = [r for r in rows if r["annotator_id"] == busy]
        await harness.accept_label(label)
        pulled = await api.get(f"/annotators/{busy}/next")
        assert pulled.status_code == 200
        assert pulled.json()["item_id"] == second.payload.item_id


async def test_the_pull_api_serves_the_oldest_live_assignment_and_takes_declines(
    harness: AssignmentHarness,
) -> None:
    task = await define(harness, max_open_per_annotator=10)
    readers = await annotators(task, ids("r", 3))
    items = [factories.item_event(task.task_id) for _ in range(2)]
    for event in items:
        await harness.handle(event)
        harness.advance(1)
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(create_api(harness.pull)), base_url="http://x"
    )
    async with api:
        holder = readers[0]
        first = (await api.get(f"/annotators/{holder}/next")).json()
        assert first["item_id"] == items[0].payload.item_id
        # Redis lost the lease: the pull rebuilds it from PostgreSQL.
        await harness.redis.delete(lease_key(uuid.UUID(first["assignment_id"])))
        again = (await api.get(f"/annotators/{holder}/next")).json()
        assert again == first
        assert await harness.redis.get(lease_key(uuid.UUID(first["assignment_id"]))) is not None
        url = f"/annotators/{holder}/assignments/{first['assignment_id']}/decline"
        assert (
            await api.post(f"/annotators/{readers[1]}/assignments/{first['assignment_id']}/decline")
        ).status_code == 404
        declined = await api.post(url)
        assert declined.status_code == 200
        assert (await api.post(url)).status_code == 409
        nxt = (await api.get(f"/annotators/{holder}/next")).json()
        assert nxt["item_id"] == items[1].payload.item_id
    rows = await open_of(harness, task, items[0].payload.item_id)
    assert {r["annotator_id"] for r in rows} == {readers[1], readers[2]}
    cancelled = [
        e for e in await harness.events(task.task_id) if e.event_type.endswith("cancelled")
    ]
    assert [c.payload.reason for c in cancelled] == ["declined"]


async def test_a_starved_item_gets_a_reader_as_soon_as_one_answers(
    harness: AssignmentHarness,
) -> None:
    task = await define(harness, max_open_per_annotator=1)
    readers = await annotators(task, ids("r", 2))
    first, waiting = factories.item_event(task.task_id), factories.item_event(task.task_id)
    await harness.handle(first)
    await harness.handle(waiting)  # both readers are at their cap of one
    item = await harness.pool.fetchrow(
        "SELECT starved FROM items WHERE item_id = $1", waiting.payload.item_id
    )
    assert item is not None and item["starved"]
    held = await open_of(harness, task, first.payload.item_id)
    await harness.accept_label(held[0])
    (given,) = await open_of(harness, task, waiting.payload.item_id)
    assert given["annotator_id"] == held[0]["annotator_id"]
    await harness.accept_label(held[1])
    assert {r["annotator_id"] for r in await open_of(harness, task, waiting.payload.item_id)} == (
        set(readers)
    )


async def test_an_older_skill_estimate_arriving_late_does_not_replace_a_newer_one(
    harness: AssignmentHarness,
) -> None:
    task = await define(harness)
    (reader,) = await annotators(task, ids("r", 1))
    await harness.estimate_skill(reader, task.task_id, 0.9)
    harness.advance(-60)  # an estimate made a minute earlier, delivered after
    await harness.estimate_skill(reader, task.task_id, 0.6)
    skill = await harness.pool.fetchval(
        "SELECT skill FROM skills WHERE annotator_id = $1 AND task_id = $2", reader, task.task_id
    )
    assert skill == 0.9


async def test_an_item_nobody_else_may_take_waits_for_a_new_reader_not_for_the_sweeper(
    harness: AssignmentHarness,
) -> None:
    task = await define(harness)
    (only,) = await annotators(task, ids("r", 1))
    item = factories.item_event(task.task_id)
    await harness.handle(item)  # wants two readers, there is one
    starved = "SELECT starved FROM items WHERE item_id = $1"
    assert await harness.pool.fetchval(starved, item.payload.item_id) is False
    (newcomer,) = await annotators(task, ids("new", 1))
    assert await harness.pool.fetchval(starved, item.payload.item_id) is True
    assert (await harness.sweeper.sweep()).refilled == 1
    readers = {r["annotator_id"] for r in await open_of(harness, task, item.payload.item_id)}
    assert readers == {only, newcomer}
    assert await harness.pool.fetchval(starved, item.payload.item_id) is False


async def test_queues_nobody_serves_do_not_starve_the_sweepers_dispatch(
    harness: AssignmentHarness,
) -> None:
    """Older, higher-priority entries of a queue without adjudicators fill no batch."""
    unserved = await define(harness, specialty="neuro")
    served = await define(harness, specialty="chest")
    for _ in range(3):
        item = factories.item_event(unserved.task_id, priority=90)
        await harness.handle(item)
        await harness.contest(item.payload.item_id, unserved.task_id, ())
    (adjudicator,) = await annotators(served, ids("adj-", 1), "adjudicator", specialty="chest")
    waiting = factories.item_event(served.task_id)
    await harness.handle(waiting)
    await harness.pool.execute(
        "UPDATE annotators SET active = false WHERE annotator_id = $1", adjudicator
    )
    await harness.contest(waiting.payload.item_id, served.task_id, ())
    await harness.pool.execute(
        "UPDATE annotators SET active = true WHERE annotator_id = $1", adjudicator
    )
    harness.sweeper.batch = 2  # smaller than the unserved queue
    assert (await harness.sweeper.sweep()).dispatched == 1
    (held,) = [r for r in await harness.assignments(served.task_id) if r["kind"] != "label"]
    assert (held["item_id"], held["annotator_id"]) == (waiting.payload.item_id, adjudicator)
