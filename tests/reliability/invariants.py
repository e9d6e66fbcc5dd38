"""Quiet detection and the invariants every scenario must leave intact.

Quiet: every consumer group has committed the end of every partition it reads, every
outbox is drained, and the topics stopped growing. Then, for the run's task:
  1. every acknowledged label is stored exactly once, and nothing else is;
  2. each item's consensus state holds exactly the latest revision of each stored
     annotation, its published label is the majority recomputed from those labels, and
     `consilium replay` re-derives every published version;
  3. every outbox is drained;
  4. every rejection is on labels.rejected with its reason, every expected rejection and
     dead letter happened, and nothing valid was rejected but as a replayed copy;
  5. every audit chain verifies;
  6. the hospital topic holds each consensus version exactly once, versions 1..n with n
     the item's consensus version, the same versions export recorded as published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.cli.export_cmd import replay_published
from services.cli.registry import definition
from services.consensus.engine.state import ItemState
from shared.audit import PgAuditLog, chains
from shared.db.pool import connect
from shared.events import REGISTRY
from shared.settings import SERVICES
from shared.topics import (
    CONSENSUS_LABELS,
    DEAD_LETTERS,
    LABELS_ACCEPTED,
    LABELS_REJECTED,
    Topic,
)
from tests.reliability.load import ACCEPTED, DEAD_LETTER, Workload
from tests.reliability.servers import PrivateServers


@dataclass
class Findings:
    """What a run came to: broken invariants (must be none) and facts for the report."""

    violations: list[str] = field(default_factory=list)
    facts: Counter[str] = field(default_factory=Counter)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.violations.append(message)


async def _connect(servers: PrivateServers, service: str) -> asyncpg.Connection:
    return await connect(servers.postgres.dsn(service), service)


async def _unsent(servers: PrivateServers) -> dict[str, int]:
    counts = {}
    for service in SERVICES:
        conn = await _connect(servers, service)
        try:
            counts[service] = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
        finally:
            await conn.close()
    return counts


@dataclass
class GroupLag:
    """End offsets minus committed offsets, per consumer group, over the topics it reads."""

    bootstrap: str
    admin: AIOKafkaAdminClient | None = None
    reader: AIOKafkaConsumer | None = None

    async def measure(self) -> tuple[dict[str, int], dict[TopicPartition, int]]:
        if self.admin is None or self.reader is None:
            self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            self.reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
            await self.admin.start()
            await self.reader.start()
        lag: dict[str, int] = {}
        ends: dict[TopicPartition, int] = {}
        for service in SERVICES:
            partitions = [
                TopicPartition(topic.qualified(""), p)
                for topic in definition(service).consumes
                for p in range(topic.partitions)
            ]
            end = await self.reader.end_offsets(partitions)
            committed = await self.admin.list_consumer_group_offsets(f"consilium-{service}")
            lag[service] = sum(
                max(0, end[tp] - (committed[tp].offset if tp in committed else 0))
                for tp in partitions
            )
            ends.update(end)
        return lag, ends

    async def close(self) -> None:
        admin, reader, self.admin, self.reader = self.admin, self.reader, None, None
        with contextlib.suppress(Exception):
            if reader is not None:
                await reader.stop()
            if admin is not None:
                await admin.close()


async def wait_for_quiet(
    servers: PrivateServers, timeout: float = 120.0, settle_s: float = 1.5
) -> float:
    """Seconds until quiet; fails with what is still moving after `timeout`.

    Quiet must hold for `settle_s` without a break: one quiet-looking measurement can fall
    between a service's restart and its first batch."""
    started = time.monotonic()
    previous: dict[TopicPartition, int] | None = None
    quiet_since: float | None = None
    state: Any = None
    groups = GroupLag(servers.kafka.bootstrap)
    try:
        while time.monotonic() - started < timeout:
            try:
                lag, ends = await groups.measure()
                unsent = await _unsent(servers)
                state = {"lag": lag, "unsent": unsent}
                if not any(lag.values()) and not any(unsent.values()) and ends == previous:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= settle_s:
                        return quiet_since - started
                else:
                    quiet_since = None
                previous = ends
            except Exception as exc:  # a server may still be coming back
                state = repr(exc)
                previous = quiet_since = None
                await groups.close()
            await asyncio.sleep(0.3)
    finally:
        await groups.close()
    raise AssertionError(f"not quiet after {timeout:.0f}s: {state}; {await _stuck(servers)}")


async def _stuck(servers: PrivateServers) -> dict[str, Any]:
    """Unsent outbox rows per service and topic, with the oldest one's age."""
    stuck: dict[str, Any] = {}
    for service in SERVICES:
        with contextlib.suppress(Exception):
            conn = await _connect(servers, service)
            try:
                rows = await conn.fetch(
                    """SELECT topic, count(*) AS n, min(id) AS first,
                              round(extract(epoch FROM now() - min(created_at))) AS age_s
                       FROM outbox WHERE published_at IS NULL GROUP BY topic"""
                )
            finally:
                await conn.close()
            if rows:
                stuck[service] = [dict(row) for row in rows]
    return stuck


@dataclass
class TopicLog:
    """Every committed record of a topic, read from the beginning once and then followed:
    each `read` fetches what was added since (a consumer broken by a broker restart is
    replaced by a fresh one that reads from the beginning again)."""

    bootstrap: str
    topic: Topic
    records: list[Any] = field(default_factory=list)
    consumer: AIOKafkaConsumer | None = None

    async def read(self) -> list[Any]:
        try:
            return await self._catch_up()
        except KafkaError:
            await self.close()
            return await self._catch_up()

    async def _catch_up(self) -> list[Any]:
        name = self.topic.qualified("")
        partitions = [TopicPartition(name, p) for p in range(self.topic.partitions)]
        if self.consumer is None:
            self.records = []
            self.consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                max_partition_fetch_bytes=4 * 1024 * 1024,
            )
            await self.consumer.start()
            self.consumer.assign(partitions)
            await self.consumer.seek_to_beginning(*partitions)
        end = await self.consumer.end_offsets(partitions)
        deadline = time.monotonic() + 30
        while [tp for tp in partitions if await self.consumer.position(tp) < end[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {name} to its end")
            for batch in (await self.consumer.getmany(timeout_ms=200)).values():
                self.records.extend(batch)
        return self.records

    async def close(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            with contextlib.suppress(Exception):
                await consumer.stop()


@dataclass
class Topics:
    """The topics the invariants read, followed for the whole session."""

    rejected: TopicLog
    dead_letters: TopicLog
    hospital: TopicLog

    @classmethod
    def following(cls, bootstrap: str) -> Topics:
        return cls(
            TopicLog(bootstrap, LABELS_REJECTED),
            TopicLog(bootstrap, DEAD_LETTERS),
            TopicLog(bootstrap, CONSENSUS_LABELS),
        )

    async def close(self) -> None:
        for log in (self.rejected, self.dead_letters, self.hospital):
            await log.close()


async def check(servers: PrivateServers, topics: Topics, workload: Workload) -> Findings:
    findings = Findings()
    submission = await _connect(servers, "submission")
    consensus = await _connect(servers, "consensus")
    export = await _connect(servers, "export")
    try:
        latest = await _labels_stored_once(findings, submission, workload)
        versions = await _consensus_matches_labels(findings, consensus, workload, latest)
        await _replay(findings, servers, workload)
        unsent = await _unsent(servers)
        findings.expect(not any(unsent.values()), f"outbox not drained: {unsent}")
        await _rejections(findings, topics, submission, consensus, workload)
        await _audit(findings, submission)
        await _hospital(findings, topics, export, workload, versions)
    finally:
        for conn in (submission, consensus, export):
            await conn.close()
    return findings


async def _labels_stored_once(
    findings: Findings, conn: asyncpg.Connection, workload: Workload
) -> dict[str, dict[str, tuple[str, str]]]:
    """Invariant 1; returns item -> annotation -> (label id, value) of the latest revisions."""
    rows = await conn.fetch(
        """SELECT event_id, label_id::text, annotation_id::text, revision, item_id,
                  value->>'label' AS value, superseded
           FROM labels WHERE task_id = $1""",
        workload.task_id,
    )
    stored = Counter(row["event_id"] for row in rows)
    acknowledged = {r.event_id for r in workload.labels if r.acked}
    findings.expect(
        all(r.acked for r in workload.records), "a record was never acknowledged by Kafka"
    )
    missing = acknowledged - set(stored)
    extra = set(stored) - acknowledged
    twice = [e for e, n in stored.items() if n > 1]
    findings.expect(not missing, f"{len(missing)} acknowledged labels not stored")
    findings.expect(not extra, f"{len(extra)} stored labels that were never sent")
    findings.expect(not twice, f"{len(twice)} labels stored more than once")
    findings.facts["labels stored"] += len(rows)
    findings.facts["late revisions kept as superseded"] += sum(r["superseded"] for r in rows)
    latest: dict[str, dict[str, tuple[int, str, str]]] = defaultdict(dict)
    for row in rows:
        held = latest[row["item_id"]].get(row["annotation_id"])
        if held is None or row["revision"] > held[0]:
            latest[row["item_id"]][row["annotation_id"]] = (
                row["revision"],
                row["label_id"],
                row["value"],
            )
    return {
        item: {a: (label_id, value) for a, (_, label_id, value) in held.items()}
        for item, held in latest.items()
    }


async def _consensus_matches_labels(
    findings: Findings,
    conn: asyncpg.Connection,
    workload: Workload,
    latest: dict[str, dict[str, tuple[str, str]]],
) -> dict[str, int]:
    """Invariant 2 against the consensus state; returns item -> consensus version."""
    rows = await conn.fetch(
        "SELECT item_id, state, consensus_version FROM item_state WHERE task_id = $1",
        workload.task_id,
    )
    by_item = {row["item_id"]: row for row in rows}
    versions: dict[str, int] = {}
    wrong_labels = wrong_decision = 0
    for item_id in workload.truth:
        row = by_item.get(item_id)
        if row is None:
            findings.violations.append(f"no consensus state for {item_id}")
            continue
        versions[item_id] = row["consensus_version"]
        state = json.loads(row["state"]) if isinstance(row["state"], str) else row["state"]
        held = {obs.label_id for obs in ItemState.from_dict(state["engine"]).labels}
        expected = {label_id for label_id, _ in latest.get(item_id, {}).values()}
        wrong_labels += held != expected
        votes = Counter(value for _, value in latest.get(item_id, {}).values())
        majority = votes.most_common(1)[0][0] if votes else None
        wrong_decision += state.get("published_label") != majority
    findings.expect(not wrong_labels, f"{wrong_labels} items hold other labels than stored")
    findings.expect(not wrong_decision, f"{wrong_decision} items decided against the majority")
    return versions


async def _replay(findings: Findings, servers: PrivateServers, workload: Workload) -> None:
    dsns = {name: servers.postgres.dsn(name) for name in SERVICES}
    report = await replay_published(workload.task_id, dsns)
    findings.expect(report.ok, f"replay: {report.mismatches[:3]}")
    findings.facts["versions replayed"] += report.checked


async def _rejections(
    findings: Findings,
    topics: Topics,
    submission: asyncpg.Connection,
    consensus: asyncpg.Connection,
    workload: Workload,
) -> None:
    """Invariant 4: kept rejections = answered rejections, and each as expected."""
    by_sha: dict[str, list[Any]] = defaultdict(list)
    for record in workload.records:
        by_sha[record.sha256].append(record)
    rows = await submission.fetch(
        """SELECT raw_sha256, code, partition, "offset" FROM rejections
           WHERE raw_sha256 = ANY($1::text[])""",
        list(by_sha),
    )
    kept = {(r["raw_sha256"], r["partition"], r["offset"], r["code"]) for r in rows}
    answered = set()
    for record in await topics.rejected.read():
        payload = REGISTRY.decode(record.value).payload
        if payload.raw_sha256 in by_sha:
            answered.add(
                (payload.raw_sha256, payload.source_partition, payload.source_offset, payload.code)
            )
    findings.expect(kept == answered, f"rejections kept {len(kept)} != answered {len(answered)}")
    codes: dict[str, Counter[str]] = defaultdict(Counter)
    for sha, _, _, code in kept:
        codes[sha][code] += 1
    for sha, records in by_sha.items():
        expects = [r.expect for r in records]
        if DEAD_LETTER in expects:
            continue
        copies = sum(r.acked for r in records)
        retried = any(r.failed for r in records)
        wanted = {e for e in expects if e not in (ACCEPTED, "replayed")}
        got = codes.get(sha, Counter())
        if wanted:  # invalid bytes: rejected with their reason, each copy
            (code,) = wanted
            ok = set(got) == {code} and (got[code] == copies or (retried and got[code] >= copies))
            findings.expect(ok, f"expected {code} x{copies} for {sha[:12]}, got {dict(got)}")
            findings.facts[f"rejected {code}"] += got[code]
        else:  # a valid label: stored once, every further copy answered as replayed
            replays = copies - 1
            ok = set(got) <= {"replayed"} and (
                got["replayed"] == replays or (retried and got["replayed"] >= replays)
            )
            findings.expect(ok, f"expected {replays} replays of {sha[:12]}, got {dict(got)}")
            findings.facts["rejected replayed"] += got["replayed"]
    await _dead_letters(findings, topics, consensus, workload)


async def _dead_letters(
    findings: Findings, topics: Topics, conn: asyncpg.Connection, workload: Workload
) -> None:
    poison = [r for r in workload.records if r.expect == DEAD_LETTER]
    if not poison:
        return
    rows = await conn.fetch(
        """SELECT partition, "offset" FROM dead_letters
           WHERE topic = $1 AND value = ANY($2::bytea[])""",
        LABELS_ACCEPTED.qualified(""),
        [r.raw for r in poison],
    )
    findings.expect(
        len(rows) >= sum(r.acked for r in poison), f"{len(rows)} dead letters kept of {len(poison)}"
    )
    kept = {(str(r["partition"]), str(r["offset"])) for r in rows}
    on_topic = set()
    for record in await topics.dead_letters.read():
        headers = {k: v.decode() for k, v in record.headers}
        if headers.get("dlq.source.topic") == LABELS_ACCEPTED.qualified("") and headers.get(
            "dlq.error.message"
        ):
            on_topic.add((headers["dlq.source.partition"], headers["dlq.source.offset"]))
    findings.expect(kept <= on_topic, f"{len(kept - on_topic)} dead letters not on the topic")
    findings.facts["dead-lettered"] += len(rows)


async def _audit(findings: Findings, conn: asyncpg.Connection) -> None:
    for chain in await chains(conn):
        report = await PgAuditLog(conn, chain).verify()
        findings.expect(report.ok, f"audit chain {chain} broken at {report.broken_seq}")


async def _hospital(
    findings: Findings,
    topics: Topics,
    export: asyncpg.Connection,
    workload: Workload,
    versions: dict[str, int],
) -> None:
    seen: Counter[tuple[str, int]] = Counter()
    for record in await topics.hospital.read():
        payload = REGISTRY.decode(record.value).payload
        if payload.task_id == workload.task_id:
            seen[(payload.item_id, payload.version)] += 1
    twice = [k for k, n in seen.items() if n > 1]
    findings.expect(not twice, f"{len(twice)} consensus versions on the hospital topic twice")
    expected = {(item, v) for item, n in versions.items() for v in range(1, n + 1)}
    findings.expect(
        set(seen) == expected,
        f"hospital topic has {len(set(seen))} versions, consensus state says {len(expected)}",
    )
    published = await export.fetch(
        "SELECT item_id, version FROM published WHERE payload->>'task_id' = $1", workload.task_id
    )
    findings.expect(
        {(r["item_id"], r["version"]) for r in published} == expected,
        "export's published versions differ from the consensus state",
    )
    findings.expect(
        all(n >= 1 for n in versions.values()) and len(versions) == len(workload.truth),
        "an item reached no consensus",
    )
    findings.facts["hospital versions"] += len(seen)
