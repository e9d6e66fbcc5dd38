"""`consilium demo`: replay a real multi-reader dataset through the running services.

The demo plays the annotation front-end: it defines the tasks, registers the readers, its
own front-end client (allowed to speak for them) and the items, then does what a real
front-end does: it consumes `assignments.issued.v1` and answers each of its readers'
assignments with that reader's label from the dataset, as a signed `labels.submitted.v1`
event (the first wave in a seeded random order, later assignments as they come). Items
start with two readers; consensus asks for a third where two do not settle it, and
escalates what three do not settle to adjudication. A simulated adjudicator answers its
adjudication assignments with the dataset's reference standard and a signed rationale.
The demo reads the hospital topic and the adjudication topic and scores the published
consensus against the dataset's truth. Ids derive from the dataset and the
Kafka cluster's id, so running it twice against the same stack has no second effect (the
second run reports the same result), while a new stack gets a run of its own even if
PostgreSQL kept an older one's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.assignment.admin import register_annotators
from services.cli.datasets import Answer, read_answers, read_truth, safe_id
from services.cli.demo_plan import DemoPlan, Method, majority_vote, make_plan, stable_uuid
from services.cli.launcher import Launcher
from services.cli.publish import producer, publish_task, send, topic_reader
from services.submission.clients import register_client
from services.submission.settings import SubmissionConfig
from shared.db.pool import connect
from shared.events import (
    ITEM_REGISTERED,
    LABEL_SUBMITTED,
    REGISTRY,
    AdjudicationRationale,
    CategoricalValue,
    ItemRegistered,
    LabelSubmitted,
)
from shared.kafka.clients import client_options
from shared.settings import StackSettings, service_settings
from shared.signing import SigningKey, sign
from shared.topics import (
    ADJUDICATION_REQUESTED,
    ASSIGNMENTS_ISSUED,
    CONSENSUS_LABELS,
    ITEMS_REGISTERED,
    LABELS_SUBMITTED,
)

console = Console()
CLIENT_ID = "demo-frontend"
# The demo's key is derived from the master key and a fixed salt, so every run (and every
# machine with the same master key) signs with the same registered key.
KEY_ID = f"{CLIENT_ID}.demo"
KEY_SALT = "consilium-demo"
# The simulated adjudicator: it answers with the dataset's reference standard.
ADJUDICATOR = "demo-adjudicator"
STALL_S = 120.0  # give up waiting when the services publish nothing for this long
FIRST_WAVE_QUIET_S = 30.0  # answer a first wave that stays incomplete this long anyway
READ_TO_END_S = 60.0  # reading the assignment topic to its end takes a second or two


@dataclass
class DemoResult:
    items: int
    labels: int
    reached: int = 0
    escalated: int = 0
    correct: int = 0
    scored: int = 0
    escalated_majority_correct: int = 0
    majority_correct: int = 0
    majority_scored: int = 0
    versions_published: int = 0
    adjudicated: int = 0
    labels_used: int = 0
    readers_per_item: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.reached + self.adjudicated + self.escalated == self.items

    @staticmethod
    def ratio(correct: int, total: int) -> str:
        return f"{correct / total:.4f} ({correct}/{total})" if total else "n/a"


async def run_demo(
    dataset: Path,
    *,
    studies: int | None,
    seed: int,
    timeout: float,
    start_services: bool,
    method: Method = "ds",
    threshold: float = 0.9,
    run_tag: str = "",
    initial_overlap: int = 2,
    adjudicate: bool = True,
) -> DemoResult:
    stack = StackSettings()
    answers = read_answers(dataset)
    truth = read_truth(dataset)
    if studies is not None:
        kept = set(sorted({a.task.split("|")[0] for a in answers})[:studies])
        answers = [a for a in answers if a.task.split("|")[0] in kept]
    plan = make_plan(
        safe_id(dataset.name)[:40],
        answers,
        await _cluster_run_id(stack) + (f"-{safe_id(run_tag)[:20]}" if run_tag else ""),
        method=method,
        threshold=threshold,
        initial_overlap=initial_overlap,
    )
    result = DemoResult(items=len(plan.item_task), labels=len(plan.answers))
    console.print(
        f"[bold]Consilium demo[/bold]: {dataset.name}: {result.items} items in "
        f"{len(plan.tasks)} task(s), {result.labels} labels from {len(plan.readers)} readers; "
        f"method {method}, threshold {threshold}"
    )
    launcher = Launcher(Path(".stack/logs"))
    started = time.monotonic()
    try:
        if start_services:
            newly = await launcher.ensure_running()
            console.print(f"services: {'started ' + ', '.join(newly) if newly else 'running'}")
        for task in plan.tasks.values():
            await register_annotators(
                service_settings("assignment").database_url,
                task.task_id,
                list(plan.readers),
                "reader",
            )
            if adjudicate:
                await register_annotators(
                    service_settings("assignment").database_url,
                    task.task_id,
                    [ADJUDICATOR],
                    "adjudicator",
                )
            await publish_task(stack, task, producer_name=CLIENT_ID)
        key = await _register_frontend(plan)
        await _register_items(stack, plan)
        await _wait_for_items(plan, timeout)
        frontend = asyncio.create_task(_frontend(stack, plan, seed, key, truth))
        try:
            await _collect(stack, plan, truth, result, timeout, adjudicate)
        finally:
            frontend.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await frontend
        readers = await readers_assigned(stack, plan)
        result.readers_per_item = Counter(len(readers[item]) for item in plan.item_task)
        result.labels_used = sum(len(readers[item]) for item in plan.item_task)
    finally:
        await launcher.stop()
    result.seconds = time.monotonic() - started
    _print(result, dataset.name)
    return result


async def _cluster_run_id(stack: StackSettings) -> str:
    """A short id of the Kafka cluster: the demo's ids are scoped to it."""
    admin = AIOKafkaAdminClient(**client_options(stack), client_id=CLIENT_ID)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return safe_id(str(cluster["cluster_id"]))[:10]


async def _register_items(stack: StackSettings, plan: DemoPlan) -> None:
    now = datetime.now(UTC)
    async with producer(stack) as client:
        futures = []
        for item_id, task_id in sorted(plan.item_task.items()):
            event = ITEM_REGISTERED.wrap(
                ItemRegistered(item_id=item_id, task_id=task_id, case_ref=f"case:{item_id}"),
                key=item_id,
                producer=CLIENT_ID,
                event_id=stable_uuid("item", item_id),
                occurred_at=now,
                correlation_id=stable_uuid("run", plan.run),
            )
            futures.append(await send(client, stack, ITEMS_REGISTERED, event))
        await asyncio.gather(*futures)


async def _wait_for_items(plan: DemoPlan, timeout: float) -> None:
    """Labels for items submission has not seen yet would be rejected: wait for them."""
    conn = await connect(service_settings("submission").database_url, "submission")
    task_ids = list(plan.tasks)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = await conn.fetchval(
                "SELECT count(*) FROM items WHERE task_id = ANY($1::text[])", task_ids
            )
            tasks = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE task_id = ANY($1::text[])", task_ids
            )
            if items >= len(plan.item_task) and tasks >= len(task_ids):
                return
            await asyncio.sleep(0.5)
        raise TimeoutError("submission did not register the demo's tasks and items in time")
    finally:
        await conn.close()


async def _register_frontend(plan: DemoPlan) -> SigningKey:
    """Register the demo's front-end client for the plan's readers (idempotent)."""
    conn = await connect(service_settings("submission").database_url, "submission")
    try:
        issued = await register_client(
            conn,
            SubmissionConfig().master,
            CLIENT_ID,
            annotators=[safe_id(reader) for reader in plan.readers] + [ADJUDICATOR],
            description="consilium demo: replays a multi-reader dataset",
            key_id=KEY_ID,
            salt=KEY_SALT,
        )
    finally:
        await conn.close()
    return issued.signing_key


async def _already_answered(plan: DemoPlan) -> set[Any]:
    """Event ids of labels submission already stored (a front-end remembers what it sent)."""
    ids = [stable_uuid("label", a.worker, plan.item_id(a.task)) for a in plan.answers]
    ids += [stable_uuid("adjudication", item_id) for item_id in plan.item_task]
    conn = await connect(service_settings("submission").database_url, "submission")
    try:
        rows = await conn.fetch("SELECT event_id FROM labels WHERE event_id = ANY($1::uuid[])", ids)
    finally:
        await conn.close()
    return {r["event_id"] for r in rows}


async def _frontend(
    stack: StackSettings,
    plan: DemoPlan,
    seed: int,
    key: SigningKey,
    truth: dict[str, str],
) -> None:
    """Answer the readers' assignments with their labels from the dataset, signed, and
    the adjudicator's with the reference standard.

    The first wave (the initial overlap of every item) is collected whole, then answered
    in a seeded random order; later assignments (consensus asking for one more reader,
    adjudication) are answered as they arrive. Labels stored by an earlier run are not
    sent again; cancelled assignments (the item was decided meanwhile) are dropped.
    """
    first_wave_size = sum(
        min(plan.tasks[task_id].initial_overlap, len(plan.readers))
        for task_id in plan.item_task.values()
    )
    leased = 0
    answers: dict[tuple[str, str], Answer] = {
        (safe_id(a.worker), plan.item_id(a.task)): a for a in plan.answers
    }
    position = {id(answer): index for index, answer in enumerate(plan.answers)}
    done = await _already_answered(plan)
    consumer = topic_reader(stack, ASSIGNMENTS_ISSUED)
    await consumer.start()
    try:
        async with producer(stack) as client:
            wave: list[tuple[Answer, Any]] = []
            quiet_since = time.monotonic()
            first_wave = True
            while True:
                batches = await consumer.getmany(timeout_ms=250, max_records=5000)
                for records in batches.values():
                    quiet_since = time.monotonic()
                    for record in records:
                        lease = _issued_lease(record, plan)
                        if lease is None:
                            continue
                        if lease.kind == "adjudication":
                            sent = stable_uuid("adjudication", lease.item_id)
                            if lease.annotator_id == ADJUDICATOR and sent not in done:
                                done.add(sent)
                                await _adjudicate(client, stack, plan, lease, truth, key)
                            continue
                        leased += 1
                        answer = answers.pop((safe_id(lease.annotator_id), lease.item_id), None)
                        if answer is not None:
                            wave.append((answer, lease.assignment_id))
                quiet = time.monotonic() - quiet_since > FIRST_WAVE_QUIET_S
                if first_wave and leased < first_wave_size and not quiet:
                    continue
                if first_wave:
                    # The dataset's order, then the seeded shuffle: the same order as a
                    # replay of the whole dataset, whatever order the leases came in.
                    wave.sort(key=lambda pair: position[id(pair[0])])
                    random.Random(seed).shuffle(wave)
                    first_wave = False
                if wave:
                    await _publish(client, stack, plan, wave, key, done)
                    wave = []
    finally:
        await consumer.stop()


def _issued_lease(record: Any, plan: DemoPlan) -> Any:
    """The assignment a record issues for one of the plan's items, else None (a
    cancellation: an answer already sent is still kept; another run's item)."""
    event = REGISTRY.decode(record.value)
    if event.event_type != "assignment.issued" or event.payload.item_id not in plan.item_task:
        return None
    return event.payload


async def readers_assigned(stack: StackSettings, plan: DemoPlan) -> dict[str, set[str]]:
    """Who was asked to read each item: the reader assignments issued for the plan's
    items, read from the beginning of the topic to its end as of now.

    Counted here rather than by the front-end, which stops once every item is settled: on
    a repeat run that is before it has read the assignments an earlier run was issued.
    """
    readers: dict[str, set[str]] = defaultdict(set)

    def take(batches: dict[Any, list[Any]]) -> None:
        for records in batches.values():
            for record in records:
                lease = _issued_lease(record, plan)
                if lease is not None and lease.kind != "adjudication":
                    readers[lease.item_id].add(lease.annotator_id)

    consumer = topic_reader(stack, ASSIGNMENTS_ISSUED)
    await consumer.start()
    try:
        deadline = time.monotonic() + READ_TO_END_S
        # Without a group every partition is assigned once the metadata is in; polling
        # is what fetches it.
        while not consumer.assignment() and time.monotonic() < deadline:
            take(await consumer.getmany(timeout_ms=100))
        partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        pending = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
        while pending and time.monotonic() < deadline:
            take(await consumer.getmany(*pending, timeout_ms=500, max_records=5000))
            pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
        if pending:
            console.print("[red]reader counts incomplete[/red]: assignments still unread")
    finally:
        await consumer.stop()
    return readers


async def _adjudicate(
    client: Any,
    stack: StackSettings,
    plan: DemoPlan,
    lease: Any,
    truth: dict[str, str],
    key: SigningKey,
) -> None:
    """The simulated adjudicator decides with the reference standard (or, without one,
    the readers' majority) and signs what its decision means."""
    source = plan.item_source[lease.item_id]
    decided = truth[source] if source in truth else majority_vote(plan.answers)[source]
    task = plan.tasks[plan.item_task[lease.item_id]]
    now = datetime.now(UTC)
    label = LabelSubmitted(
        annotation_id=stable_uuid("adjudication", lease.item_id),
        item_id=lease.item_id,
        task_id=task.task_id,
        task_version=task.version,
        annotator_id=ADJUDICATOR,
        client_id=CLIENT_ID,
        assignment_id=lease.assignment_id,
        value=CategoricalValue(label=decided),
        labeled_at=now,
        adjudication=AdjudicationRationale(
            reason_code="reference_standard",
            guideline_clause="demo: reference panel",
            signature_meaning=f"I adjudicate this case as {task.title} = {decided}",
        ),
    )
    await _send_signed(client, stack, plan, label, stable_uuid("adjudication", lease.item_id), key)


async def _send_signed(
    client: Any,
    stack: StackSettings,
    plan: DemoPlan,
    label: LabelSubmitted,
    event_id: Any,
    key: SigningKey,
) -> Any:
    """Queue one signed label event; returns its delivery future."""
    now = datetime.now(UTC)
    event = LABEL_SUBMITTED.wrap(
        label,
        key=label.item_id,
        producer=CLIENT_ID,
        event_id=event_id,
        occurred_at=now,
        correlation_id=stable_uuid("run", plan.run),
    )
    value = event.encode()
    return await client.send(
        LABELS_SUBMITTED.qualified(stack.topic_prefix),
        value,
        key=label.item_id.encode(),
        headers=[
            ("content-type", b"application/json"),
            ("event_type", event.event_type.encode()),
            *sign(value, key, now),
        ],
    )


async def _publish(
    client: Any,
    stack: StackSettings,
    plan: DemoPlan,
    wave: list[tuple[Answer, Any]],
    key: SigningKey,
    done: set[Any],
) -> None:
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("answering assignments", total=len(wave))
        futures: list[Any] = []
        for answer, assignment_id in wave:
            item_id = plan.item_id(answer.task)
            event_id = stable_uuid("label", answer.worker, item_id)
            progress.advance(bar)
            if event_id in done:
                continue
            task = plan.tasks[plan.item_task[item_id]]
            now = datetime.now(UTC)
            label = LabelSubmitted(
                annotation_id=stable_uuid("annotation", answer.worker, item_id),
                item_id=item_id,
                task_id=task.task_id,
                task_version=task.version,
                annotator_id=safe_id(answer.worker),
                client_id=CLIENT_ID,
                assignment_id=assignment_id,
                value=CategoricalValue(label=answer.label),
                labeled_at=now,
            )
            futures.append(await _send_signed(client, stack, plan, label, event_id, key))
            if len(futures) >= 1000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)


async def _collect(
    stack: StackSettings,
    plan: DemoPlan,
    truth: dict[str, str],
    result: DemoResult,
    timeout: float,
    adjudicate: bool,
) -> None:
    """Read the hospital and adjudication topics from the start until every item is in:
    published, or escalated (and, when the demo adjudicates, adjudicated)."""
    latest: dict[str, tuple[int, Any, str | None]] = {}
    escalated: set[str] = set()

    def settled() -> int:
        adjudicated = {i for i, (_, _, adjudicator) in latest.items() if adjudicator}
        waiting = escalated - adjudicated if adjudicate else escalated - latest.keys()
        return len(latest.keys() - waiting) + (0 if adjudicate else len(waiting))

    # No group: every partition is read from its beginning, nothing is committed.
    consumer = topic_reader(stack, CONSENSUS_LABELS, ADJUDICATION_REQUESTED)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("waiting for consensus", total=result.items)
            while time.monotonic() < deadline and settled() < result.items:
                if time.monotonic() - last_progress > STALL_S:
                    console.print(
                        f"[red]nothing new for {STALL_S:.0f}s[/red]: see .stack/logs/ and "
                        "`deploy/local/stack.sh status`"
                    )
                    break
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    last_progress = time.monotonic()
                    for record in records:
                        event = REGISTRY.decode(record.value)
                        payload: Any = event.payload
                        if payload.item_id not in plan.item_task:
                            continue
                        if event.event_type == "consensus.published":
                            result.versions_published += 1
                            if payload.version > latest.get(payload.item_id, (0, None, None))[0]:
                                latest[payload.item_id] = (
                                    payload.version,
                                    payload.label,
                                    payload.adjudicator_id,
                                )
                        else:
                            escalated.add(payload.item_id)
                progress.update(bar, completed=settled())
    finally:
        await consumer.stop()
    _score(plan, truth, latest, escalated, result)


def _score(
    plan: DemoPlan,
    truth: dict[str, str],
    latest: dict[str, tuple[int, Any, str | None]],
    escalated: set[str],
    result: DemoResult,
) -> None:
    """Readers' consensus is scored on the items it decided; adjudicated items are
    counted apart (the simulated adjudicator answers with the truth itself)."""
    majority = majority_vote(plan.answers)
    by_readers = {i for i, (_, _, adjudicator) in latest.items() if not adjudicator}
    result.reached = len(by_readers)
    result.adjudicated = len(latest.keys() - by_readers)
    result.escalated = len(escalated - latest.keys())
    for item_id, source in plan.item_source.items():
        expected = truth.get(source)
        if expected is None:
            continue
        result.majority_scored += 1
        result.majority_correct += int(majority[source] == expected)
        if item_id in by_readers:
            result.scored += 1
            result.correct += int(latest[item_id][1] == expected)
        elif item_id in escalated:
            result.escalated_majority_correct += int(majority[source] == expected)


def _print(result: DemoResult, name: str) -> None:
    table = Table(title=f"Consilium demo: {name}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("items", str(result.items))
    table.add_row("labels available", str(result.labels))
    table.add_row("labels used (readers assigned)", str(result.labels_used))
    for readers, items in sorted(result.readers_per_item.items()):
        table.add_row(f"items given {readers} reader(s)", str(items))
    table.add_row("consensus reached by the readers", str(result.reached))
    table.add_row("escalated, then adjudicated", str(result.adjudicated))
    table.add_row("escalated, awaiting adjudication", str(result.escalated))
    table.add_row("consensus versions published", str(result.versions_published))
    table.add_row(
        "pending", str(result.items - result.reached - result.adjudicated - result.escalated)
    )
    table.add_row("accuracy of the readers' consensus", result.ratio(result.correct, result.scored))
    table.add_row(
        "majority vote on the escalated items",
        result.ratio(result.escalated_majority_correct, result.adjudicated + result.escalated),
    )
    table.add_row(
        "majority vote on every item (baseline)",
        result.ratio(result.majority_correct, result.majority_scored),
    )
    table.add_row("wall time", f"{result.seconds:.1f} s")
    console.print(table)
