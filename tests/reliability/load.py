"""The load generator: one task per run, items with a known truth, signed label events with
unique ids, and the ledger of what was sent, what Kafka acknowledged and what each event
should come to (stored, or rejected with a given reason, or dead-lettered)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.assignment.admin import register_annotators
from shared.events import ConsensusPolicy
from shared.topics import ITEMS_REGISTERED, LABELS_ACCEPTED, LABELS_SUBMITTED, TASKS_DEFINED, Topic
from tests import factories

READERS = tuple(f"reader-{n}" for n in range(1, 7))
ACCEPTED = "accepted"
DEAD_LETTER = "dead_letter"


@dataclass
class Sent:
    """One record the generator publishes, and what it must come to."""

    topic: Topic
    key: bytes
    raw: bytes
    expect: str  # ACCEPTED, DEAD_LETTER, or the rejection code
    item_id: str
    event_id: uuid.UUID | None = None
    annotation_id: uuid.UUID | None = None
    revision: int = 1
    value: str | None = None
    acked: int = 0  # copies Kafka acknowledged
    failed: int = 0  # sends that raised (the record may or may not be in Kafka)
    signed: bool = True

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True)
class Mix:
    """What a run's load contains beside plain labels (fractions of the labels)."""

    duplicates: float = 0.0
    revisions: float = 0.0
    poison: int = 0
    oversized: int = 0


@dataclass
class Workload:
    task_id: str
    truth: dict[str, str]
    records: list[Sent]

    @property
    def labels(self) -> list[Sent]:
        return [r for r in self.records if r.expect == ACCEPTED]


def build(rng: random.Random, tag: str, labels: int, mix: Mix) -> Workload:
    """Items of three readers each; a reader gives the truth four times in five."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", tag).strip("-")
    task_id = f"rel-{slug}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}"
    truth = {f"{task_id}-i{n:04d}": rng.choice("01") for n in range(max(1, labels // 3))}
    records: list[Sent] = []
    for item_id, answer in truth.items():
        for reader in rng.sample(READERS, 3):
            value = answer if rng.random() < 0.8 else ("1" if answer == "0" else "0")
            records.append(_label(rng, task_id, item_id, reader, value))
    items = list(truth)
    # Out of order: a second revision published before the first; the second counts.
    for first in rng.sample(records, int(len(records) * mix.revisions)):
        revised = "1" if first.value == "0" else "0"
        second = _label(rng, task_id, first.item_id, "", revised, first, revision=2)
        records.append(second)
    for original in rng.sample(records, int(len(records) * mix.duplicates)):
        records.append(_copy(original))
    for _ in range(mix.poison):
        item_id = rng.choice(items)
        garbage = b"\xff\x00 not an event " + uuid.UUID(int=rng.getrandbits(128)).bytes
        records.append(Sent(LABELS_SUBMITTED, item_id.encode(), garbage, "undecodable", item_id))
        # Internal topics are read tolerantly but still must decode: dead letters.
        internal = b"\xff\x01 not an event " + uuid.UUID(int=rng.getrandbits(128)).bytes
        records.append(
            Sent(LABELS_ACCEPTED, item_id.encode(), internal, DEAD_LETTER, item_id, signed=False)
        )
    for _ in range(mix.oversized):
        item_id = rng.choice(items)
        event = factories.label_event(item_id, task_id, rng.choice(READERS), "1")
        document = json.loads(event.encode())
        document["payload"]["padding"] = "x" * 300_000
        raw = json.dumps(document).encode()
        records.append(Sent(LABELS_SUBMITTED, item_id.encode(), raw, "oversized", item_id))
    rng.shuffle(records)
    _second_revisions_first(records)
    return Workload(task_id, truth, records)


def _label(
    rng: random.Random,
    task_id: str,
    item_id: str,
    reader: str,
    value: str,
    of: Sent | None = None,
    revision: int = 1,
) -> Sent:
    event_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    annotation_id = of.annotation_id if of else uuid.UUID(int=rng.getrandbits(128), version=4)
    annotator = _annotator(of) if of else reader
    event = factories.label_event(
        item_id,
        task_id,
        annotator,
        value,
        event_id=event_id,
        annotation_id=annotation_id,
        revision=revision,
    )
    return Sent(
        LABELS_SUBMITTED,
        item_id.encode(),
        event.encode(),
        ACCEPTED,
        item_id,
        event_id=event_id,
        annotation_id=annotation_id,
        revision=revision,
        value=value,
    )


def _annotator(sent: Sent) -> str:
    return str(json.loads(sent.raw)["payload"]["annotator_id"])


def _copy(original: Sent) -> Sent:
    """The same bytes again: a front-end that resends after a lost acknowledgement."""
    return Sent(
        original.topic, original.key, original.raw, "replayed", original.item_id,
        event_id=original.event_id, annotation_id=original.annotation_id,
        revision=original.revision, value=original.value,
    )  # fmt: skip


def _second_revisions_first(records: list[Sent]) -> None:
    """Swap each pair so that revision 2 is published before revision 1."""
    position = {(r.annotation_id, r.revision, r.expect): i for i, r in enumerate(records)}
    for (annotation, revision, expect), second in list(position.items()):
        if revision != 2 or expect != ACCEPTED:
            continue
        first = position[(annotation, 1, ACCEPTED)]
        if first < second:
            records[first], records[second] = records[second], records[first]
            position[(annotation, 1, ACCEPTED)], position[(annotation, 2, ACCEPTED)] = second, first


@dataclass
class Generator:
    """Publishes workloads to the private broker through an idempotent producer."""

    bootstrap: str
    producer: AIOKafkaProducer | None = None
    sent_total: int = field(default=0)

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=10_000,
            max_request_size=2 * 1024 * 1024,
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def define(self, workload: Workload, assignment_dsn: str) -> None:
        """The task and its items, published before any label (labels never wait here)."""
        definition = factories.task(
            workload.task_id,
            require_assignment=False,
            policy=ConsensusPolicy(method="mv", min_labels=3, max_labels=5, threshold=0.7),
        )
        await register_annotators(assignment_dsn, workload.task_id, list(READERS), "reader")
        task = factories.task_event(definition)
        await self._send(TASKS_DEFINED, definition.task_id.encode(), task.encode())
        for item_id in workload.truth:
            event = factories.item_event(workload.task_id, item_id)
            await self._send(ITEMS_REGISTERED, item_id.encode(), event.encode())

    async def publish(self, records: list[Sent], seconds: float) -> None:
        """Every record, spread over about `seconds`, in order per key (sends are queued in
        order, then acknowledged together); a send that fails (the broker is down) is sent
        again until acknowledged, as a front-end would."""
        assert self.producer is not None
        chunk = 10
        pause = seconds / max(1, len(records) / chunk)
        for start in range(0, len(records), chunk):
            began = time.monotonic()
            queued: list[tuple[Sent, asyncio.Future[object] | None]] = []
            for record in records[start : start + chunk]:
                try:
                    future = await self.producer.send(
                        record.topic.qualified(""), record.raw, key=record.key,
                        headers=self._headers(record),
                    )  # fmt: skip
                    queued.append((record, future))
                except KafkaError:
                    queued.append((record, None))
            for record, future in queued:
                try:
                    if future is None:
                        raise KafkaError("not queued")
                    await future
                    record.acked += 1
                except KafkaError:
                    record.failed += 1
                    await self.deliver(record)
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - began)))

    @staticmethod
    def _headers(record: Sent) -> list[tuple[str, bytes]]:
        return list(factories.sign(record.raw)) if record.signed else []

    async def deliver(self, record: Sent, deadline_s: float = 90.0) -> None:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                await self._send(record.topic, record.key, record.raw, self._headers(record))
                record.acked += 1
                return
            except KafkaError:
                record.failed += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _send(
        self, topic: Topic, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        assert self.producer is not None
        await self.producer.send_and_wait(
            topic.qualified(""), value, key=key, headers=headers or []
        )
        self.sent_total += 1
