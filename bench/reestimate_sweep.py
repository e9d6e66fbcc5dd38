"""The periodic reliability re-estimate against the real consensus schema: the sweep that
reads reached items a page at a time and locks only the ones that flip, against the
baseline of checking every item under its own lock in its own transaction.

One run, inside one transaction that is rolled back at the end (the database keeps
nothing):

1. One Dawid-Skene task; N items with three readers each, out of twenty, decided under an
   empty reliability (the majority decides) and stored as reached, as the service stores
   them. Two of the readers always err together.
2. The reliability learned afterwards (those two readers known to be wrong), under which
   the items they outvoted flip (a few percent; both sweeps must report the same count).
3. Each round times both sweeps over the same items, each in a savepoint rolled back after
   it, so both see the same flips: the baseline locks and loads every item in its own
   transaction; the page sweep reads pages without locks and locks only flipping items.
   Then both again once settled: a second sweep after a first has published every flip,
   the steady state of an hourly sweep.

Usage:
    .venv/bin/python -m bench.reestimate_sweep [--items 20000] [--rounds 3]
        [--database consilium_test]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from services.cli.registry import definition
from services.consensus import engine
from services.consensus.engine.reliability import (
    ReliabilityDelta,
    ReliabilityLedger,
    ReliabilitySnapshot,
)
from services.consensus.handlers import ConsensusHandlers
from services.consensus.policies import consensus_value, engine_policy
from services.consensus.reestimate import TaskCache, _reestimate_item, reestimate
from services.consensus.reliability_store import PgReliability
from services.consensus.scoped import TaskView, scoped_delta
from services.consensus.state import TrackedItem
from services.consensus.store import UPSERT_ITEM_STATE, PgConsensusStore
from shared.db.migrate import migrate
from shared.db.pool import connect
from shared.events import ConsensusPolicy, TaskDefined

READERS = tuple(f"reader-{n}" for n in range(20))
WRONG_TOGETHER = {"reader-18", "reader-19"}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def dsn(database: str) -> str:
    return (
        f"postgresql://consilium_consensus:consilium_consensus@127.0.0.1:5432/{database}"
        "?sslmode=disable"
    )


def said(reader: str, truth: str, rng: random.Random) -> str:
    if reader in WRONG_TOGETHER:
        return "1" if truth == "0" else "0"
    return truth if rng.random() < 0.95 else ("1" if truth == "0" else "0")


def decided_items(task: TaskDefined, count: int, seed: int) -> list[TrackedItem]:
    """Items decided under an empty reliability, as the service first decided them."""
    policy = engine_policy(task)
    empty = TaskView(ReliabilityLedger(), task.task_id)
    rng = random.Random(seed)
    items = []
    for index in range(count):
        truth = rng.choice("01")
        state = engine.ItemState.new(f"sweep-{index:07d}")
        decision = None
        for reader in rng.sample(READERS, 3):
            label = engine.LabelObservation(str(uuid.uuid4()), reader, said(reader, truth, rng))
            result = engine.step(policy, state, label, empty)
            state, decision = result.state, result.decision
        assert decision is not None and decision.outcome == "reached"
        items.append(TrackedItem(state, published_label=consensus_value(decision.label)))
    return items


def learned(task: TaskDefined, items: list[TrackedItem]) -> ReliabilitySnapshot:
    """The reliability the full EM learns from every item's labels."""
    estimate = engine.reestimate(engine_policy(task), [item.engine for item in items])
    unscoped = ReliabilityDelta(dict(estimate.reliability.entries))
    return ReliabilityLedger(scoped_delta(task.task_id, unscoped).entries).snapshot()


async def store_items(
    conn: asyncpg.Connection, task: TaskDefined, items: list[TrackedItem]
) -> None:
    await PgConsensusStore(conn).save_task(task)
    await conn.executemany(
        UPSERT_ITEM_STATE,
        [
            (item.engine.item_id, task.task_id, task.version, item.to_json(), "reached", 1, NOW)
            for item in items
        ],
    )


Sweep = Callable[[asyncpg.Connection, ConsensusHandlers, str], Awaitable[int]]


async def locked_sweep(conn: asyncpg.Connection, handlers: ConsensusHandlers, task_id: str) -> int:
    """The baseline: every reached item locked, loaded and decided in its own transaction."""
    flipped = 0
    tasks = TaskCache(PgConsensusStore(conn))
    after = ""
    while True:
        rows = await conn.fetch(
            """SELECT item_id FROM item_state WHERE status = 'reached' AND item_id > $1
               AND task_id = $2 ORDER BY item_id LIMIT 500""",
            after,
            task_id,
        )
        if not rows:
            return flipped
        for row in rows:
            flipped += await _reestimate_item(conn, handlers, tasks, row["item_id"], "", NOW)
        after = rows[-1]["item_id"]


async def page_sweep(conn: asyncpg.Connection, handlers: ConsensusHandlers, task_id: str) -> int:
    report = await reestimate(conn, handlers, task_id=task_id, topic_prefix="", now=lambda: NOW)
    return len(report.flipped)


async def timed(
    conn: asyncpg.Connection,
    sweep: Sweep,
    handlers: ConsensusHandlers,
    task_id: str,
    *,
    settled: bool = False,
) -> tuple[float, int]:
    """One sweep in a savepoint rolled back after it: every sweep finds the same flips.
    `settled`: time a second sweep, after a first has published every flip."""
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        if settled:
            await sweep(conn, handlers, task_id)
        start = time.perf_counter()
        flipped = await sweep(conn, handlers, task_id)
        return time.perf_counter() - start, flipped
    finally:
        await savepoint.rollback()


async def main(items: int, rounds: int, database: str) -> None:
    await migrate(dsn(database), "consensus", definition("consensus").migrations)
    task = TaskDefined(
        task_id=f"sweep-bench-{uuid.uuid4().hex[:8]}",
        version=1,
        title="Finding present?",
        label_kind="categorical",
        classes=("0", "1"),
        initial_overlap=3,
        policy=ConsensusPolicy(method="ds", min_labels=3, max_labels=3, threshold=0.6),
    )
    tracked = decided_items(task, items, seed=7)
    handlers = ConsensusHandlers(PgReliability())
    handlers.reliability.current = learned(task, tracked)
    conn = await connect(dsn(database), "consensus")
    outer = conn.transaction()
    await outer.start()
    try:
        await store_items(conn, task, tracked)
        runs: tuple[tuple[str, Sweep, bool], ...] = (
            ("locked", locked_sweep, False),
            ("page", page_sweep, False),
            ("locked, settled", locked_sweep, True),
            ("page, settled", page_sweep, True),
        )
        seconds: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        flips: dict[str, set[int]] = {name: set() for name, _, _ in runs}
        for _ in range(rounds):
            for name, sweep, settled in runs:
                elapsed, flipped = await timed(conn, sweep, handlers, task.task_id, settled=settled)
                seconds[name].append(elapsed)
                flips[name].add(flipped)
    finally:
        await outer.rollback()
        await conn.close()
    print(f"{items} reached items, {rounds} rounds; flipped per sweep: {flips}")
    median = {name: statistics.median(values) for name, values in seconds.items()}
    for name, value in median.items():
        print(f"{name:<16} {value:6.2f} s median, {items / value:8,.0f} items/s")
    print(
        f"speed-up: {median['locked'] / median['page']:.1f}x with the flips, "
        f"{median['locked, settled'] / median['page, settled']:.1f}x once settled"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="consilium_test")
    args = parser.parse_args()
    asyncio.run(main(args.items, args.rounds, args.database))
