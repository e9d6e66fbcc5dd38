"""One scenario = the same fault repeated over several runs, each with its own task, its
own seeded timing, and the invariants checked once the pipeline is quiet again."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.db.pool import connect
from tests.reliability.harness import Harness
from tests.reliability.invariants import check, wait_for_quiet
from tests.reliability.load import Mix, Workload, build
from tests.reliability.report import RunResult


@dataclass
class Injected:
    """What a fault did in one run: its kind (table column) and the particulars."""

    fault: str
    detail: str = ""
    # For faults aimed at a narrow window: whether the process died inside it.
    window: bool | None = None


# A fault gets the harness, the run's seeded random source and the running load; it returns
# once whatever it broke is restarted (the runner then waits for quiet).
Fault = Callable[[Harness, random.Random, "asyncio.Task[None]"], Awaitable[Injected]]


async def no_fault(harness: Harness, rng: random.Random, load: asyncio.Task[None]) -> Injected:
    await load
    return Injected("none")


async def run_scenario(
    harness: Harness,
    scenario: str,
    fault: Fault,
    *,
    labels: int = 150,
    mix: Mix | None = None,
    publish_s: float = 2.0,
) -> list[RunResult]:
    """Every run of a scenario; the caller asserts they all held."""
    results = []
    for run in range(harness.runs):
        began = time.monotonic()
        rng = random.Random(f"{scenario}/{run}")
        workload = build(rng, scenario, labels, mix or Mix())
        await harness.generator.define(workload, harness.servers.postgres.dsn("assignment"))
        await _defined(harness, workload)
        load = asyncio.create_task(harness.generator.publish(workload.records, publish_s))
        try:
            injected = await fault(harness, rng, load)
            await load
        finally:
            if not load.done():
                load.cancel()
        await harness.services.ensure_running()
        quiet_s = await wait_for_quiet(harness.servers)
        findings = await check(harness.servers, harness.topics, workload)
        result = RunResult(
            scenario,
            run,
            len(workload.labels),
            injected.fault,
            quiet_s,
            findings,
            injected.detail,
            time.monotonic() - began,
            injected.window,
        )
        harness.report.add(result)
        results.append(result)
    return results


async def _defined(harness: Harness, workload: Workload, timeout: float = 60.0) -> None:
    """Until submission knows every item and consensus knows the task: labels of this run
    never wait for their item (that path has its own tests)."""
    deadline = time.monotonic() + timeout
    submission = await connect(harness.servers.postgres.dsn("submission"), "submission")
    consensus = await connect(harness.servers.postgres.dsn("consensus"), "consensus")
    try:
        while time.monotonic() < deadline:
            items = await submission.fetchval(
                "SELECT count(*) FROM items WHERE task_id = $1", workload.task_id
            )
            task = await consensus.fetchval(
                "SELECT count(*) FROM tasks WHERE task_id = $1", workload.task_id
            )
            if items == len(workload.truth) and task:
                return
            await asyncio.sleep(0.1)
    finally:
        await submission.close()
        await consensus.close()
    raise AssertionError(f"task {workload.task_id} not known to the services in {timeout:.0f}s")


def violations(results: list[RunResult]) -> list[str]:
    return [f"run {r.run} ({r.detail}): {v}" for r in results for v in r.findings.violations]
