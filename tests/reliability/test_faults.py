"""Fault injection against real processes: no acknowledged label is lost or counted twice,
whatever dies, restarts or arrives malformed (invariants: tests/reliability/invariants.py).

Every scenario runs QUICK_RUNS times (LONG_RUNS with --long), each run with its own task
and seeded timing; a run passes only if every invariant holds once the pipeline is quiet.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal

import pytest
import redis.asyncio as aioredis

from shared.settings import SERVICES
from shared.topics import CONSENSUS_LABELS, LABELS_ACCEPTED
from tests.reliability.harness import Harness
from tests.reliability.load import Mix
from tests.reliability.processes import SESSION_TIMEOUT_MS, ServiceProcess
from tests.reliability.runner import Injected, no_fault, run_scenario, violations
from tests.reliability.windows import (
    Tail,
    kill_between_commits,
    kill_between_publish_and_mark,
)

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(1800)]
PUBLISH_S = 1.5


async def _mid_load(rng: random.Random, latest: float = 0.7) -> float:
    """Sleep to a random moment while the load is being published, at most `latest` of
    the way through it."""
    moment = rng.uniform(0.2, PUBLISH_S * latest)
    await asyncio.sleep(moment)
    return moment


def _hit(probe: int | None) -> str:
    return f"in the window at probe {probe}" if probe else "window missed"


@pytest.mark.parametrize("service", SERVICES)
async def test_kill_9_of_a_service_mid_batch(harness: Harness, service: str) -> None:
    """Killed while paused between its batch's database commit and its offset commit when
    that window can be caught: the batch comes again and the inbox absorbs it."""

    async def kill(h: Harness, rng: random.Random, load: asyncio.Task[None]) -> Injected:
        moment = await _mid_load(rng)
        probe = await kill_between_commits(h.services[service], h.servers, rng)
        h.services[service].spawn()
        return Injected(
            f"kill -9 {service}", f"at {moment:.2f}s, {_hit(probe)}", window=bool(probe)
        )

    results = await run_scenario(harness, f"kill -9 {service}", kill, publish_s=PUBLISH_S)
    assert not violations(results)


async def test_kill_9_of_the_outbox_relay_between_publish_and_marking_sent(
    harness: Harness,
) -> None:
    """Submission's relay (at least once: consensus's inbox absorbs the second copies) and
    export's (Kafka transactions: its checkpoint keeps a second copy off the hospital
    topic), in turn, each killed with published rows not yet marked sent."""

    async def kill(h: Harness, rng: random.Random, load: asyncio.Task[None]) -> Injected:
        service, topic = (
            ("submission", LABELS_ACCEPTED) if rng.random() < 0.5 else ("export", CONSENSUS_LABELS)
        )
        tail = Tail(h.servers.kafka.bootstrap, topic)
        await tail.start()
        try:
            # Early enough that labels are still arriving: once the load is over and the
            # relay has drained the outbox there is no unsent row left to hold.
            moment = await _mid_load(rng, latest=0.4)
            unmarked = await kill_between_publish_and_mark(h.services[service], h.servers, tail)
        finally:
            await tail.stop()
        h.services[service].spawn()
        return Injected(
            f"kill -9 {service} relay",
            f"at {moment:.2f}s, {unmarked} rows in Kafka and not marked sent",
            window=unmarked > 0,
        )

    results = await run_scenario(harness, "kill -9 outbox relay", kill, publish_s=PUBLISH_S)
    assert not violations(results)
    assert all(r.window for r in results), "a relay was not caught between publish and mark"


async def test_kafka_broker_kill_and_restart_under_load(harness: Harness) -> None:
    async def bounce(h: Harness, rng: random.Random, load: asyncio.Task[None]) -> Injected:
        moment = await _mid_load(rng)
        h.servers.kafka.kill()
        down = rng.uniform(0.2, 2.0)
        await asyncio.sleep(down)
        await h.servers.kafka.start()
        return Injected("kill -9 broker, restart", f"at {moment:.2f}s, down {down:.2f}s")

    results = await run_scenario(harness, "Kafka broker kill", bounce, publish_s=PUBLISH_S)
    assert not violations(results)


async def test_postgres_immediate_stop_and_start(harness: Harness) -> None:
    async def bounce(h: Harness, rng: random.Random, load: asyncio.Task[None]) -> Injected:
        moment = await _mid_load(rng)
        h.servers.postgres.stop("immediate")
        down = rng.uniform(0.2, 2.0)
        await asyncio.sleep(down)
        await h.servers.postgres.start()
        return Injected("pg_ctl stop -m immediate, start", f"at {moment:.2f}s, down {down:.2f}s")

    results = await run_scenario(harness, "PostgreSQL immediate stop", bounce, publish_s=PUBLISH_S)
    assert not violations(results)


async def test_redis_flush_and_restart(harness: Harness) -> None:
    async def bounce(h: Harness, rng: random.Random, load: asyncio.Task[None]) -> Injected:
        moment = await _mid_load(rng)
        client = aioredis.from_url(h.servers.redis.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()
        h.servers.redis.kill()
        down = rng.uniform(0.2, 1.5)
        await asyncio.sleep(down)
        await h.servers.redis.start()
        return Injected("FLUSHALL, kill -9, restart", f"at {moment:.2f}s, down {down:.2f}s")

    results = await run_scenario(harness, "Redis flush and restart", bounce, publish_s=PUBLISH_S)
    assert not violations(results)


async def test_consumer_paused_past_its_session_timeout(harness: Harness) -> None:
    """A second member of the group takes the partitions of the paused one; when it
    resumes, its batch may still commit to the database (the inbox keeps that to one
    effect) but its offsets are refused."""
    seconds = [harness.services.extra(service) for service in SERVICES]

    turns = itertools.cycle(SERVICES)  # each service paused in turn

    async def pause(h: Harness, rng: random.Random, load: asyncio.Task[None]) -> Injected:
        service = next(turns)
        moment = await _mid_load(rng)
        paused = SESSION_TIMEOUT_MS / 1000 + rng.uniform(1.0, 2.5)
        h.services[service].signal(signal.SIGSTOP)
        await asyncio.sleep(paused)
        h.services[service].signal(signal.SIGCONT)
        return Injected(f"SIGSTOP {service}", f"at {moment:.2f}s for {paused:.1f}s")

    try:
        await asyncio.gather(*(second.ready() for second in seconds))
        results = await run_scenario(harness, "consumer paused", pause, publish_s=PUBLISH_S)
    finally:
        for second in seconds:
            second.terminate()
    assert not violations(results)


async def test_rebalance_storm(harness: Harness) -> None:
    """Extra members join and leave every group while labels flow: some leave cleanly,
    some are killed."""

    async def storm(h: Harness, rng: random.Random, load: asyncio.Task[None]) -> Injected:
        extras: list[ServiceProcess] = []
        events = 0
        try:
            while not load.done():
                extras.append(h.services.extra(rng.choice(SERVICES)))
                events += 1
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                if len(extras) > 2:
                    leaving = extras.pop(rng.randrange(len(extras)))
                    leaving.kill() if rng.random() < 0.5 else leaving.terminate()
                    events += 1
        finally:
            for extra in extras:
                extra.kill() if rng.random() < 0.5 else extra.terminate()
        return Injected("members join and leave", f"{events + len(extras)} joins and leaves")

    results = await run_scenario(harness, "rebalance storm", storm, publish_s=PUBLISH_S * 2)
    assert not violations(results)


async def test_duplicate_events(harness: Harness) -> None:
    results = await run_scenario(harness, "duplicate events", no_fault, mix=Mix(duplicates=0.2))
    assert not violations(results)
    assert all(r.findings.facts["rejected replayed"] > 0 for r in results)


async def test_out_of_order_revisions(harness: Harness) -> None:
    """A second revision published before the first: both are kept, the second counts."""
    results = await run_scenario(
        harness, "out-of-order revisions", no_fault, mix=Mix(revisions=0.2)
    )
    assert not violations(results)
    assert all(r.findings.facts["late revisions kept as superseded"] > 0 for r in results)


async def test_poison_and_oversized_events(harness: Harness) -> None:
    results = await run_scenario(
        harness, "poison and oversized", no_fault, mix=Mix(poison=3, oversized=2)
    )
    assert not violations(results)
    assert all(r.findings.facts["dead-lettered"] >= 3 for r in results)
    assert all(r.findings.facts["rejected oversized"] >= 2 for r in results)
    assert all(r.findings.facts["rejected undecodable"] >= 3 for r in results)
