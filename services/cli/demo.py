"""`consilium demo`: replay a real multi-reader dataset through the running services.

The demo plays the annotation front-end: it defines the task, registers the readers and
the items, publishes every reader's label as a `labels.submitted.v1` event, then reads the
hospital topic and the adjudication topic and scores the published consensus against the
dataset's truth. Ids derive from the dataset and the Kafka cluster's id, so running it
twice against the same stack has no second effect (the second run reports the same
result), while a new stack gets a run of its own even if PostgreSQL kept older state.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.assignment.admin import register_annotators
from services.cli.datasets import Answer, read_answers, read_truth, safe_id
from services.cli.launcher import Launcher
from services.cli.publish import producer, publish_task, send
from shared.events import (
    ITEM_REGISTERED,
    LABEL_SUBMITTED,
    REGISTRY,
    CategoricalValue,
    ConsensusPolicy,
    ItemRegistered,
    LabelSubmitted,
    TaskDefined,
)
from shared.settings import StackSettings, service_settings
from shared.topics import (
    ADJUDICATION_REQUESTED,
    CONSENSUS_LABELS,
    ITEMS_REGISTERED,
    LABELS_SUBMITTED,
)

console = Console()
_DEMO_NAMESPACE = uuid.UUID("3c0d9f4e-2a71-4b6c-9e0e-6d1f0c5a7b42")
CLIENT_ID = "demo-frontend"
STALL_S = 120.0  # give up waiting when the services publish nothing for this long


@dataclass
class DemoResult:
    items: int
    labels: int
    reached: int = 0
    escalated: int = 0
    correct: int = 0
    scored: int = 0
    versions_published: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def complete(self) -> bool:
        return self.reached + self.escalated == self.items

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored if self.scored else float("nan")


def _uuid(*parts: str) -> uuid.UUID:
    return uuid.uuid5(_DEMO_NAMESPACE, "|".join(parts))


def demo_task(name: str, classes: list[str], run: str) -> TaskDefined:
    return TaskDefined(
        task_id=f"demo-{safe_id(name)}-{run}",
        version=1,
        title=f"Demo replay of {name}",
        label_kind="categorical",
        classes=tuple(classes),
        initial_overlap=3,
        policy=ConsensusPolicy(method="majority", min_labels=3, max_labels=5, threshold=0.5),
    )


async def run_demo(
    dataset: Path,
    *,
    studies: int | None,
    seed: int,
    timeout: float,
    start_services: bool,
) -> DemoResult:
    stack = StackSettings()
    answers = read_answers(dataset)
    truth = read_truth(dataset)
    if studies is not None:
        keep = sorted({a.task.split("|")[0] for a in answers})[:studies]
        kept = set(keep)
        answers = [a for a in answers if a.task.split("|")[0] in kept]
    # A reader who answered the same task twice keeps the first answer (one label per reader).
    seen: set[tuple[str, str]] = set()
    unique = []
    for answer in answers:
        if (answer.worker, answer.task) not in seen:
            seen.add((answer.worker, answer.task))
            unique.append(answer)
    items = sorted({a.task for a in unique})
    run = await _cluster_run_id(stack)
    task = demo_task(dataset.name, sorted({a.label for a in unique}), run)
    result = DemoResult(items=len(items), labels=len(unique))
    console.print(
        f"[bold]Consilium demo[/bold]: {dataset.name}: {len(items)} items, "
        f"{len(unique)} labels from {len({a.worker for a in unique})} readers"
    )

    launcher = Launcher(Path(".stack/logs"))
    started = time.monotonic()
    try:
        if start_services:
            newly = await launcher.ensure_running()
            console.print(
                f"services: {'started ' + ', '.join(newly) if newly else 'already running'}"
            )
        await register_annotators(
            service_settings("assignment").database_url,
            task.task_id,
            sorted({a.worker for a in unique}),
            "reader",
        )
        await publish_task(stack, task, producer_name=CLIENT_ID)
        await _register_items(stack, task, items)
        await _wait_for_items(task, len(items), timeout)
        await _replay(stack, task, unique, seed)
        await _collect(stack, task, items, truth, result, timeout)
    finally:
        await launcher.stop()
    result.seconds = time.monotonic() - started
    _print(result, dataset.name)
    return result


async def _cluster_run_id(stack: StackSettings) -> str:
    """A short id of the Kafka cluster: the demo's ids are scoped to it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, client_id=CLIENT_ID)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return safe_id(str(cluster["cluster_id"]))[:10]


def _item_id(task: TaskDefined, dataset_task: str) -> str:
    return safe_id(f"{task.task_id}/{dataset_task}")


async def _register_items(stack: StackSettings, task: TaskDefined, items: list[str]) -> None:
    now = datetime.now(UTC)
    async with producer(stack) as client:
        futures = []
        for item in items:
            item_id = _item_id(task, item)
            event = ITEM_REGISTERED.wrap(
                ItemRegistered(item_id=item_id, task_id=task.task_id, case_ref=f"case:{item_id}"),
                key=item_id,
                producer=CLIENT_ID,
                event_id=_uuid("item", task.task_id, item_id),
                occurred_at=now,
                correlation_id=_uuid("run", task.task_id),
            )
            futures.append(await send(client, stack, ITEMS_REGISTERED, event))
        await asyncio.gather(*futures)


async def _wait_for_items(task: TaskDefined, count: int, timeout: float) -> None:
    """Labels for items submission has not seen yet would be rejected: wait for them."""
    from shared.db.pool import connect

    conn = await connect(service_settings("submission").database_url, "submission")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            known = await conn.fetchval(
                "SELECT count(*) FROM items WHERE task_id = $1", task.task_id
            )
            has_task = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE task_id = $1 AND version = $2",
                task.task_id,
                task.version,
            )
            if known >= count and has_task:
                return
            await asyncio.sleep(0.5)
        raise TimeoutError("submission did not register the demo items in time")
    finally:
        await conn.close()


async def _replay(
    stack: StackSettings, task: TaskDefined, answers: list[Answer], seed: int
) -> None:
    order = list(answers)
    random.Random(seed).shuffle(order)
    async with producer(stack) as client:
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("publishing labels", total=len(order))
            futures: list[Any] = []
            for answer in order:
                item_id = _item_id(task, answer.task)
                now = datetime.now(UTC)
                label = LabelSubmitted(
                    annotation_id=_uuid("annotation", task.task_id, answer.worker, item_id),
                    item_id=item_id,
                    task_id=task.task_id,
                    task_version=task.version,
                    annotator_id=safe_id(answer.worker),
                    client_id=CLIENT_ID,
                    value=CategoricalValue(label=answer.label),
                    labeled_at=now,
                )
                event = LABEL_SUBMITTED.wrap(
                    label,
                    key=item_id,
                    producer=CLIENT_ID,
                    event_id=_uuid("label", task.task_id, answer.worker, item_id),
                    occurred_at=now,
                    correlation_id=_uuid("run", task.task_id),
                )
                futures.append(await send(client, stack, LABELS_SUBMITTED, event))
                if len(futures) >= 1000:
                    await asyncio.gather(*futures)
                    progress.advance(bar, len(futures))
                    futures.clear()
            await asyncio.gather(*futures)
            progress.advance(bar, len(futures))


async def _collect(
    stack: StackSettings,
    task: TaskDefined,
    items: list[str],
    truth: dict[str, str],
    result: DemoResult,
    timeout: float,
) -> None:
    """Read the hospital and adjudication topics from the start until every item is in."""
    wanted = {_item_id(task, item): item for item in items}
    latest: dict[str, tuple[int, str | None]] = {}
    escalated: set[str] = set()
    topics = [
        CONSENSUS_LABELS.qualified(stack.topic_prefix),
        ADJUDICATION_REQUESTED.qualified(stack.topic_prefix),
    ]
    # No group: every partition is read from its beginning, nothing is committed.
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("waiting for consensus", total=len(wanted))
            while time.monotonic() < deadline and len(latest.keys() | escalated) < len(wanted):
                if time.monotonic() - last_progress > STALL_S:
                    console.print(
                        f"[red]no consensus arrived for {STALL_S:.0f}s[/red]: see .stack/logs/"
                        " and `deploy/local/stack.sh status`"
                    )
                    break
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                if batches:
                    last_progress = time.monotonic()
                for records in batches.values():
                    for record in records:
                        event = REGISTRY.decode(record.value)
                        payload: Any = event.payload
                        if payload.item_id not in wanted or payload.task_id != task.task_id:
                            continue
                        if event.event_type == "consensus.published":
                            result.versions_published += 1
                            if payload.version > latest.get(payload.item_id, (0, None))[0]:
                                latest[payload.item_id] = (payload.version, payload.label)
                        else:
                            escalated.add(payload.item_id)
                progress.update(bar, completed=len(latest.keys() | escalated))
    finally:
        await consumer.stop()
    result.reached = len(latest)
    result.escalated = len(escalated - latest.keys())
    for item_id, (_, label) in latest.items():
        expected = truth.get(wanted[item_id])
        if expected is not None:
            result.scored += 1
            result.correct += int(label == expected)


def _print(result: DemoResult, name: str) -> None:
    table = Table(title=f"Consilium demo: {name}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("items", str(result.items))
    table.add_row("labels replayed", str(result.labels))
    table.add_row("consensus reached", str(result.reached))
    table.add_row("consensus versions published", str(result.versions_published))
    table.add_row("escalated to adjudication", str(result.escalated))
    table.add_row("pending", str(result.items - result.reached - result.escalated))
    table.add_row(
        "accuracy vs truth (reached)", f"{result.accuracy:.4f} ({result.correct}/{result.scored})"
    )
    table.add_row("wall time", f"{result.seconds:.1f} s")
    console.print(table)
