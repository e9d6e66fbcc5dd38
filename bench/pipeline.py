"""End-to-end pipeline benchmark: the four real services against a raw Kafka pass-through.

One run (everything on 127.0.0.1, everything bounded in count and time):

1. A fresh topic prefix and consumer groups; the `consilium_test` database (the dev database
   is untouched); the four services started as subprocesses (`consilium serve NAME`).
2. One binary task (online Dawid-Skene), three readers, a front-end client key, the items;
   the bench waits until submission holds every item's three assignments, so the timed
   phases measure labels only.
3. Signed `labels.submitted.v1` events (3 readers per item, ~85% reader accuracy, seeded)
   published at full speed, then at 25/50/75% of the measured maximum (and at 1,000/s when
   that is below 90% of the maximum). A reader thread consumes `consensus.labels.v1` with
   `read_committed` and stamps when each item's consensus appears; an item's latency is
   that time minus the publish time of its deciding (last) label.
4. Peak memory (VmHWM) of each service process; then the services stop.
5. The baseline in the same run: three raw aiokafka pass-through processes
   (labels.submitted -> labels.accepted -> consensus.reached -> consensus.labels, on their
   own prefixed topics, same partitions, keys and message sizes as the real records, one
   output per item on the fan-in hop like consensus, manual commits after each batch's
   sends are acknowledged), fed the same label bytes at full speed.

Usage:
    .venv/bin/python -m bench.pipeline [--labels N] [--rates 0.25,0.5,0.75]
        [--out docs/BENCHMARKS.md] [--profile DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.assignment.admin import register_annotators
from services.submission.clients import register_client
from services.submission.settings import SubmissionConfig
from shared.db.migrate import migrate
from shared.db.pool import connect
from shared.events import (
    ITEM_REGISTERED,
    LABEL_SUBMITTED,
    AssignmentRules,
    CategoricalValue,
    ConsensusPolicy,
    ItemRegistered,
    LabelSubmitted,
    TaskDefined,
)
from shared.kafka.admin import delete_topics, ensure_topics
from shared.settings import SERVICES, StackSettings
from shared.signing import SigningKey, derive_secret, sign
from shared.topics import (
    ADJUDICATION_REQUESTED,
    CONSENSUS_LABELS,
    CONSENSUS_REACHED,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    LABELS_REJECTED,
    LABELS_SUBMITTED,
    Topic,
)

HOST = "127.0.0.1"
DATABASE = "consilium_test"
CLIENT_ID = "bench-frontend"
KEY_ID = f"{CLIENT_ID}.bench"
KEY_SALT = "consilium-bench"
READERS = 3
ACCURACY = 0.85
WARMUP_ITEMS = 300
RATE_PHASE_S = 20.0  # each fixed-rate phase sends for about this long
MAX_PHASE_S = 600.0  # no phase waits longer than this for its consensus
STALL_S = 60.0  # a phase gives up when nothing new arrives for this long
BASELINE_HOPS = (LABELS_SUBMITTED, LABELS_ACCEPTED, CONSENSUS_REACHED, CONSENSUS_LABELS)
ROOT = Path(__file__).resolve().parents[1]


def dsn_for(service: str, sslmode: str | None = None) -> str:
    query = f"?sslmode={sslmode}" if sslmode else ""
    return f"postgresql://consilium_{service}:consilium_{service}@{HOST}:5432/{DATABASE}{query}"


def use_database(name: str) -> None:
    """Point every connection of this run at `name` (consilium_test by default)."""
    global DATABASE
    if not re.fullmatch(r"consilium_[a-z0-9_]+", name) or name == "consilium":
        raise SystemExit("--database must be consilium_<something>, never the dev database")
    DATABASE = name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size of a process (VmHWM), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


_FOREIGN = (b"consilium", b"services.cli", b"pytest", b"bench.pipeline", b"/work/main")


def foreign_cpu_s(ours: set[int]) -> dict[int, float]:
    """CPU seconds used so far, per process, by Consilium processes this bench did not
    start (another engineer's demo, services or test run on the same machine): the noise
    to report."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            cmdline = (entry / "cmdline").read_bytes()
            if not any(mark in cmdline for mark in _FOREIGN):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_delta(before: dict[Any, float], after: dict[Any, float]) -> float:
    """CPU seconds between two snapshots (processes that exited in between are not
    counted; never negative)."""
    return sum(max(0.0, seconds - before.get(key, 0.0)) for key, seconds in after.items())


def cpu_by_group(services: dict[str, int]) -> dict[tuple[str, int], float]:
    """CPU seconds used so far, by process group: each service of ours, PostgreSQL, Kafka,
    Redis, this bench, other Consilium processes and everything else."""
    tick = os.sysconf("SC_CLK_TCK")
    by_pid = {pid: name for name, pid in services.items()}
    used: dict[tuple[str, int], float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
            comm = head.split("(", 1)[1]
            fields = tail.split()
            seconds = (int(fields[11]) + int(fields[12])) / tick
            pid = int(entry.name)
            if pid in by_pid:
                group = by_pid[pid]
            elif pid == os.getpid():
                group = "bench (load generator + reader)"
            elif comm.startswith("postgres"):
                group = "postgresql"
            elif comm == "java":
                group = "kafka"
            elif comm.startswith("redis"):
                group = "redis"
            else:
                cmdline = (entry / "cmdline").read_bytes()
                other = any(mark in cmdline for mark in _FOREIGN)
                group = "other consilium processes" if other else "other"
            used[group, pid] = seconds
    return used


def cpu_percent(
    before: dict[tuple[str, int], float], after: dict[tuple[str, int], float], seconds: float
) -> dict[str, float]:
    """% of one CPU per group between two cpu_by_group snapshots."""
    groups: dict[str, float] = {}
    for key, used in after.items():
        groups[key[0]] = groups.get(key[0], 0.0) + max(0.0, used - before.get(key, 0.0))
    return {group: 100 * used / seconds for group, used in groups.items()}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Label:
    item_id: str
    value: bytes


@dataclass
class Phase:
    name: str
    items: list[str]
    labels: list[Label]
    rate: float | None = None  # labels/s; None = full speed
    sent_at: dict[str, float] = field(default_factory=dict)  # item -> its last label's send
    first_send: float = 0.0
    last_send: float = 0.0
    foreign_cpu_s: float = 0.0  # CPU used by other Consilium processes during the phase


@dataclass
class Workload:
    run: str
    task: TaskDefined
    readers: list[str]
    rng: random.Random
    counter: int = 0

    def phase(self, name: str, n_items: int, rate: float | None = None) -> Phase:
        """`n_items` new items with their three labels, shuffled in blocks of 300 items so
        that items complete all through the phase (a steady state), not only at its end."""
        items = [f"bench-{self.run}-{name}-{i:06d}" for i in range(n_items)]
        labels: list[Label] = []
        block = 300
        for start in range(0, n_items, block):
            chunk: list[Label] = []
            for item_id in items[start : start + block]:
                truth = self.rng.choice("01")
                for reader in self.readers:
                    correct = self.rng.random() < ACCURACY
                    value = truth if correct else ("1" if truth == "0" else "0")
                    chunk.append(Label(item_id, self._encode(item_id, reader, value)))
            self.rng.shuffle(chunk)
            labels.extend(chunk)
        return Phase(name, items, labels, rate)

    def _encode(self, item_id: str, reader: str, value: str) -> bytes:
        self.counter += 1
        now = datetime.now(UTC)
        event = LABEL_SUBMITTED.wrap(
            LabelSubmitted(
                annotation_id=uuid.uuid4(),
                item_id=item_id,
                task_id=self.task.task_id,
                task_version=self.task.version,
                annotator_id=reader,
                client_id=CLIENT_ID,
                value=CategoricalValue(label=value),
                labeled_at=now,
                time_spent_ms=self.rng.randint(5_000, 60_000),
            ),
            key=item_id,
            producer=CLIENT_ID,
            event_id=uuid.uuid4(),
            occurred_at=now,
            correlation_id=uuid.uuid4(),
        )
        return event.encode()


# ---------------------------------------------------------------------------- collector


@dataclass
class Collector:
    """A thread with its own event loop that stamps when each item's outcome appears."""

    stack: StackSettings
    topics: list[str]
    arrivals: dict[str, float] = field(default_factory=dict)  # item -> consensus seen
    escalated: dict[str, float] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    sizes: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="collector", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the collector's consumer did not start")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def _main(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.stack.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=20,
        )
        await consumer.start()
        self._ready.set()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=50, max_records=5000)
                now = time.perf_counter()
                for tp, records in batches.items():
                    for record in records:
                        self._record(tp.topic, record, now)
        finally:
            await consumer.stop()

    def _record(self, topic: str, record: Any, now: float) -> None:
        key = record.key.decode() if record.key else ""
        self.sizes.setdefault(topic, len(record.value or b""))
        if topic.endswith(CONSENSUS_LABELS.name):
            self.arrivals.setdefault(key, now)
        elif topic.endswith(ADJUDICATION_REQUESTED.name):
            self.escalated.setdefault(key, now)
        elif topic.endswith(LABELS_REJECTED.name):
            try:
                code = json.loads(record.value)["payload"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "?"
            self.rejected[str(code)] += 1

    def done(self, items: list[str]) -> int:
        return sum(1 for i in items if i in self.arrivals or i in self.escalated)


# ---------------------------------------------------------------------------- publishing


async def publish(
    producer: AIOKafkaProducer, topic: str, phase: Phase, key: SigningKey | None
) -> None:
    """Send the phase's labels at full speed or paced at `phase.rate`, stamping each item's
    last send; signatures are made at send time (they are valid for a window)."""
    futures: list[Any] = []
    labels = phase.labels
    started = time.perf_counter()
    phase.first_send = started
    budget = (len(labels) / phase.rate * 2 + 60) if phase.rate else MAX_PHASE_S
    sent = 0
    while sent < len(labels):
        if time.perf_counter() - started > budget:
            raise TimeoutError(f"{phase.name}: publishing took longer than {budget:.0f}s")
        due = len(labels)
        if phase.rate:
            due = min(len(labels), int((time.perf_counter() - started) * phase.rate) + 1)
        while sent < due:
            label = labels[sent]
            headers = [
                ("content-type", b"application/json"),
                ("event_type", LABEL_SUBMITTED.event_type.encode()),
            ]
            if key is not None:
                headers.extend(sign(label.value, key))
            now = time.perf_counter()
            phase.sent_at[label.item_id] = now
            futures.append(
                await producer.send(topic, label.value, key=label.item_id.encode(), headers=headers)
            )
            sent += 1
            if len(futures) >= 2000:
                await asyncio.gather(*futures)
                futures.clear()
        if phase.rate:
            futures = [f for f in futures if not f.done()]
            await asyncio.sleep(0.002)
    phase.last_send = time.perf_counter()
    await asyncio.gather(*futures)


async def wait_phase(collector: Collector, phase: Phase) -> bool:
    """Until every item of the phase has an outcome; False when it stalled or timed out."""
    deadline = time.monotonic() + MAX_PHASE_S
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        if collector.error is not None:
            raise RuntimeError("the collector failed") from collector.error
        done = collector.done(phase.items)
        if done >= len(phase.items):
            return True
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > STALL_S:
            return False
        await asyncio.sleep(0.05)
    return False


@dataclass
class PhaseResult:
    name: str
    labels: int
    items: int
    target_rate: float | None
    send_rate: float
    complete: bool
    reached: int
    escalated: int
    seconds: float  # first send -> last consensus
    end_to_end_rate: float  # labels / seconds
    steady_rate: float  # labels/s between 10% and 90% of the items' completions
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    foreign_cpu_pct: float = 0.0  # of one CPU, by Consilium processes not ours


def summarise(phase: Phase, arrivals: dict[str, float], escalated: dict[str, float]) -> PhaseResult:
    reached_at = [arrivals[i] for i in phase.items if i in arrivals]
    finished = sorted(reached_at + [escalated[i] for i in phase.items if i in escalated])
    latencies = [(arrivals[i] - phase.sent_at[i]) * 1000 for i in phase.items if i in arrivals]
    seconds = (finished[-1] - phase.first_send) if finished else float("nan")
    steady = float("nan")
    if len(finished) >= 20:
        lo, hi = finished[len(finished) // 10], finished[(9 * len(finished)) // 10]
        count = (9 * len(finished)) // 10 - len(finished) // 10
        if hi > lo:
            steady = count * READERS / (hi - lo)
    send_span = max(phase.last_send - phase.first_send, 1e-9)
    return PhaseResult(
        name=phase.name,
        labels=len(phase.labels),
        items=len(phase.items),
        target_rate=phase.rate,
        send_rate=len(phase.labels) / send_span,
        complete=len(finished) == len(phase.items),
        reached=len(reached_at),
        escalated=len(finished) - len(reached_at),
        seconds=seconds,
        end_to_end_rate=len(phase.labels) / seconds if finished else float("nan"),
        steady_rate=steady,
        p50_ms=percentile(latencies, 0.50),
        p95_ms=percentile(latencies, 0.95),
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies) if latencies else float("nan"),
        foreign_cpu_pct=100 * phase.foreign_cpu_s / seconds if finished else float("nan"),
    )


# ---------------------------------------------------------------------------- services


@dataclass
class Services:
    stack: StackSettings
    run: str
    log_dir: Path
    sslmode: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CONSILIUM_TOPIC_PREFIX"] = self.stack.topic_prefix
        env["CONSILIUM_KAFKA_BOOTSTRAP"] = self.stack.kafka_bootstrap
        env["CONSILIUM_REDIS_URL"] = self.stack.redis_url
        env.update(self.extra_env)
        for name in SERVICES:
            upper = name.upper()
            self.ports[name] = free_port()
            env[f"CONSILIUM_{upper}_DATABASE_URL"] = dsn_for(name, self.sslmode)
            env[f"CONSILIUM_{upper}_HTTP_HOST"] = HOST
            env[f"CONSILIUM_{upper}_HTTP_PORT"] = str(self.ports[name])
            env[f"CONSILIUM_{upper}_CONSUMER_GROUP"] = f"bench-{self.run}-{name}"
        return env

    def spawn(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        for name in SERVICES:
            with (self.log_dir / f"{name}.log").open("ab") as log:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "services.cli", "serve", name],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    async def start(self, ready_timeout_s: float = 120.0) -> None:
        self.spawn()
        deadline = time.monotonic() + ready_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with {process.returncode}; see {self.log_dir}"
                        )
                statuses = []
                for name in SERVICES:
                    try:
                        url = f"http://{HOST}:{self.ports[name]}/readyz"
                        statuses.append((await client.get(url)).status_code)
                    except httpx.HTTPError:
                        statuses.append(0)
                if all(status == 200 for status in statuses):
                    return
                await asyncio.sleep(0.5)
        raise TimeoutError(f"services not ready after {ready_timeout_s:.0f}s; see {self.log_dir}")

    def peak_memory(self) -> dict[str, int | None]:
        return {name: vm_hwm_kib(p.pid) for name, p in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def prepare_database() -> None:
    from services.cli.registry import definition

    for name in SERVICES:
        await migrate(dsn_for(name), name, definition(name).migrations)
    conn = await connect(dsn_for("submission"), "submission")
    try:
        await register_client(
            conn,
            SubmissionConfig().master,
            CLIENT_ID,
            all_annotators=True,
            description="consilium bench: synthetic front-end",
            key_id=KEY_ID,
            salt=KEY_SALT,
        )
    finally:
        await conn.close()


async def publish_items(
    stack: StackSettings, producer: AIOKafkaProducer, phase: Phase, task_id: str
) -> None:
    now = datetime.now(UTC)
    futures = []
    for item_id in phase.items:
        event = ITEM_REGISTERED.wrap(
            ItemRegistered(item_id=item_id, task_id=task_id, case_ref=f"case:{item_id}"),
            key=item_id,
            producer=CLIENT_ID,
            event_id=uuid.uuid4(),
            occurred_at=now,
            correlation_id=uuid.uuid4(),
        )
        futures.append(
            await producer.send(
                ITEMS_REGISTERED.qualified(stack.topic_prefix),
                event.encode(),
                key=item_id.encode(),
                headers=[("content-type", b"application/json")],
            )
        )
    await asyncio.gather(*futures)


async def wait_assignments(phase: Phase, wait_s: float = 600.0) -> float:
    """Until submission holds every item's assignments; returns the seconds it took."""
    started = time.monotonic()
    conn = await connect(dsn_for("submission"), "submission")
    try:
        while time.monotonic() - started < wait_s:
            count = await conn.fetchval(
                "SELECT count(*) FROM assignments WHERE item_id = ANY($1::text[])", phase.items
            )
            if count >= READERS * len(phase.items):
                return time.monotonic() - started
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    raise TimeoutError(f"{phase.name}: assignments not all stored after {wait_s:.0f}s")


# ---------------------------------------------------------------------------- profiling


@dataclass
class Profiler:
    out_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, pids: dict[str, int], rate: int = 67) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).parent / "py-spy"
        for name, pid in pids.items():
            self.processes[name] = subprocess.Popen(
                [str(spy), "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking",
                 "--format", "raw", "--output", str(self.out_dir / f"{name}.folded")],
                stdout=subprocess.DEVNULL,
                stderr=(self.out_dir / f"{name}.py-spy.log").open("wb"),
            )  # fmt: skip

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
        for process in self.processes.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


_LINE = re.compile(r":\d+\)")


def profile_summary(folded: Path, top: int = 25) -> tuple[int, list[tuple[str, float, float]]]:
    """Total samples and the functions with the most inclusive samples (with self %)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    rows = [
        (frame, 100 * n / total, 100 * own[frame] / total)
        for frame, n in inclusive.most_common(top * 4)
    ]
    return total, rows[:top]


# ---------------------------------------------------------------------------- baseline


async def run_stage(args: argparse.Namespace, value: bytes) -> None:
    """One raw pass-through hop: consume `--stage-in`, produce `--stage-out` with the
    same key and a fixed value of the real record's size; `--fan-in 3` forwards one record
    per key every third input (as consensus does per item); commits after each batch."""
    stack = StackSettings()
    consumer = AIOKafkaConsumer(
        args.stage_in,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=args.stage_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=True, acks="all", linger_ms=2
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    await producer.start()
    await consumer.start()
    seen: Counter[bytes] = Counter()
    headers = [
        ("content-type", b"application/json"),
        ("event_type", b"bench.raw"),
        ("schema_version", b"1"),
    ]
    deadline = time.monotonic() + args.stage_max_s
    announced = False
    try:
        while not stopping.is_set() and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=50, max_records=500)
            if not announced and consumer.assignment():
                sys.stdout.write("ready\n")
                sys.stdout.flush()
                announced = True
            futures = []
            for records in batches.values():
                for record in records:
                    key = record.key or b""
                    seen[key] += 1
                    if seen[key] % args.fan_in:
                        continue
                    futures.append(
                        await producer.send(args.stage_out, value, key=key, headers=headers)
                    )
            if futures:
                await asyncio.gather(*futures)
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


@dataclass
class Baseline:
    stack: StackSettings
    run: str
    work_dir: Path
    values: dict[str, bytes]  # hop topic name -> a real record value of that topic
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def topic(self, hop: Topic) -> str:
        return f"{self.stack.topic_prefix}raw.{hop.name}"

    async def start(self) -> None:
        raw = tuple(Topic(f"raw.{h.name}", h.partitions, h.key, "bench", {}) for h in BASELINE_HOPS)
        await ensure_topics(self.stack, raw)
        self.spawn()
        for process in self.processes:
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)  # type: ignore[union-attr]
            if line.strip() != b"ready":
                raise RuntimeError(f"a baseline stage did not start; see {self.work_dir}")

    def spawn(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for index, (source, target) in enumerate(itertools.pairwise(BASELINE_HOPS), 1):
            value_file = self.work_dir / f"stage{index}.value"
            value_file.write_bytes(self.values[target.name])
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.pipeline", "--stage",
                     "--stage-in", self.topic(source), "--stage-out", self.topic(target),
                     "--stage-group", f"bench-{self.run}-raw{index}",
                     "--stage-value", str(value_file),
                     "--fan-in", str(READERS if target is CONSENSUS_REACHED else 1)],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=(self.work_dir / f"stage{index}.log").open("wb"),
                    env={**os.environ, "CONSILIUM_KAFKA_BOOTSTRAP": self.stack.kafka_bootstrap},
                )
            )  # fmt: skip

    def peak_memory(self) -> list[int | None]:
        return [vm_hwm_kib(p.pid) for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


async def sample_values(stack: StackSettings, topics: list[Topic]) -> dict[str, bytes]:
    """One real record value per topic (the baseline sends records of the same size)."""
    found: dict[str, bytes] = {}
    consumer = AIOKafkaConsumer(
        *[t.qualified(stack.topic_prefix) for t in topics],
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while len(found) < len(topics) and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                name = tp.topic[len(stack.topic_prefix) :]
                for record in records:
                    if record.value and name not in found:
                        found[name] = record.value
    finally:
        await consumer.stop()
    missing = [t.name for t in topics if t.name not in found]
    if missing:
        raise RuntimeError(f"no record to size the baseline on: {missing}")
    return found


# ---------------------------------------------------------------------------- the run


@dataclass
class Report:
    command: str
    labels: int
    phases: list[PhaseResult] = field(default_factory=list)
    baseline: PhaseResult | None = None
    memory_kib: dict[str, int | None] = field(default_factory=dict)
    baseline_memory_kib: list[int | None] = field(default_factory=list)
    setup_s: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    profiles: dict[str, tuple[int, list[tuple[str, float, float]]]] = field(default_factory=dict)
    cpu_full: dict[str, float] = field(default_factory=dict)  # CPU % during full speed
    cpu_baseline: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


async def run(args: argparse.Namespace) -> Report:
    run_id = uuid.uuid4().hex[:8]
    stack = StackSettings(topic_prefix=f"bench{run_id}.")
    if not stack.kafka_bootstrap.startswith(HOST):
        raise SystemExit(f"the bench talks to {HOST} only (CONSILIUM_KAFKA_BOOTSTRAP)")
    n_items = max(1, args.labels // READERS)
    report = Report(command=" ".join(["python -m bench.pipeline", *sys.argv[1:]]), labels=0)
    work = Path(args.work_dir) / f"bench-{run_id}"
    rng = random.Random(args.seed)
    task = TaskDefined(
        task_id=f"bench-{run_id}",
        version=1,
        title="bench: finding present?",
        label_kind="categorical",
        classes=("0", "1"),
        initial_overlap=READERS,
        policy=ConsensusPolicy(
            method=args.method, min_labels=READERS, max_labels=READERS, threshold=args.threshold
        ),
        # Every item of a phase is assigned before its labels are sent (not timed), so each
        # reader holds a whole phase of open assignments at once.
        assignment=AssignmentRules(max_open_per_annotator=10_000),
    )
    readers = [f"bench-{run_id}-r{i}" for i in range(READERS)]
    workload = Workload(run_id, task, readers, rng)
    key = SigningKey(KEY_ID, derive_secret(SubmissionConfig().master, KEY_ID, KEY_SALT))
    print(f"run {run_id}: prefix {stack.topic_prefix}, database {DATABASE}, logs in {work}")

    t0 = time.monotonic()
    await ensure_topics(stack)
    await prepare_database()
    await register_annotators(dsn_for("assignment"), task.task_id, readers, "reader")
    extra = dict(item.split("=", 1) for item in args.service_env)
    if any(not name.startswith("CONSILIUM_") for name in extra):
        raise SystemExit("--service-env takes CONSILIUM_* variables only")
    services = Services(stack, run_id, work / "logs", args.db_sslmode, extra)
    collector = Collector(
        stack,
        [
            CONSENSUS_LABELS.qualified(stack.topic_prefix),
            ADJUDICATION_REQUESTED.qualified(stack.topic_prefix),
            LABELS_REJECTED.qualified(stack.topic_prefix),
        ],
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=True, acks="all", linger_ms=2
    )
    baseline: Baseline | None = None
    try:
        await services.start()
        report.setup_s["services ready"] = time.monotonic() - t0
        collector.start()
        await producer.start()
        from services.cli.publish import publish_task

        await publish_task(stack, task, producer_name=CLIENT_ID)

        async def prepared(name: str, items: int, rate: float | None = None) -> Phase:
            phase = workload.phase(name, items, rate)
            started = time.monotonic()
            await publish_items(stack, producer, phase, task.task_id)
            await wait_assignments(phase)
            report.setup_s[f"{name}: {items} items registered + assigned"] = (
                time.monotonic() - started
            )
            return phase

        async def play(phase: Phase) -> PhaseResult:
            ours = {os.getpid(), *(p.pid for p in services.processes.values())}
            before = foreign_cpu_s(ours)
            await publish(producer, LABELS_SUBMITTED.qualified(stack.topic_prefix), phase, key)
            complete = await wait_phase(collector, phase)
            phase.foreign_cpu_s = cpu_delta(before, foreign_cpu_s(ours))
            result = summarise(phase, collector.arrivals, collector.escalated)
            report.labels += len(phase.labels)
            if not complete:
                report.notes.append(
                    f"{phase.name}: incomplete ({collector.done(phase.items)} of "
                    f"{len(phase.items)} items; the services' relays share the database's "
                    "outbox with any other session using it, and a row for a deleted topic "
                    "stalls them: see --database)"
                )
            print(_row(result))
            await asyncio.sleep(2.0)  # let the trailing relays and commits settle
            return result

        warmup = await prepared("warmup", min(WARMUP_ITEMS, n_items))
        await play(warmup)
        full = await prepared("full", n_items)
        profiler = Profiler(Path(args.profile)) if args.profile else None
        if profiler is not None:
            profiler.start({name: p.pid for name, p in services.processes.items()})
        pids = {name: p.pid for name, p in services.processes.items()}
        cpu_before = cpu_by_group(pids)
        try:
            maximum = await play(full)
            cpu_after = cpu_by_group(pids)
            report.cpu_full = cpu_percent(cpu_before, cpu_after, maximum.seconds)
        finally:
            if profiler is not None:
                profiler.stop()
        report.phases.append(maximum)
        if profiler is not None:
            for name in SERVICES:
                folded = Path(args.profile) / f"{name}.folded"
                if folded.exists():
                    report.profiles[name] = profile_summary(folded)
        peak = maximum.steady_rate if maximum.steady_rate == maximum.steady_rate else 0.0
        peak = min(peak, maximum.end_to_end_rate) if peak else maximum.end_to_end_rate
        targets = [(f"{int(f * 100)}% of max", f * peak) for f in args.rates]
        if 0.9 * peak >= 1000.0:
            targets.append(("1000/s", 1000.0))
        else:
            report.notes.append(
                f"1,000 labels/s not run: above 90% of the measured maximum ({peak:.0f}/s)"
            )
        for name, rate in targets:
            if rate <= 0:
                continue
            count = min(n_items, max(30, int(rate * RATE_PHASE_S / READERS)))
            phase = await prepared(f"rate{int(rate)}", count, rate)
            result = await play(phase)
            result.name = name
            report.phases.append(result)
        report.memory_kib = services.peak_memory()
        report.rejected = dict(collector.rejected)
        values = await sample_values(stack, list(BASELINE_HOPS[1:]))
        report.sizes = {name: len(v) for name, v in values.items()}
        report.sizes[LABELS_SUBMITTED.name] = len(full.labels[0].value)
        services.stop()

        # The baseline: same label bytes, keys and sizes through three raw hops.
        baseline = Baseline(stack, run_id, work / "baseline", values)
        await baseline.start()
        raw = Collector(stack, [baseline.topic(CONSENSUS_LABELS)])
        raw.start()
        try:
            copy = Phase("baseline", full.items, full.labels)
            ours = {os.getpid(), *(p.pid for p in baseline.processes)}
            stages = {f"stage {i}": p.pid for i, p in enumerate(baseline.processes, 1)}
            before, cpu_before = foreign_cpu_s(ours), cpu_by_group(stages)
            await publish(producer, baseline.topic(LABELS_SUBMITTED), copy, key)
            complete = await wait_phase(raw, copy)
            copy.foreign_cpu_s = cpu_delta(before, foreign_cpu_s(ours))
            cpu_after = cpu_by_group(stages)
            span = max(time.perf_counter() - copy.first_send, 1e-9)
            report.cpu_baseline = cpu_percent(cpu_before, cpu_after, span)
            if not complete:
                report.notes.append(f"baseline incomplete ({raw.done(copy.items)} items)")
            report.baseline = summarise(copy, raw.arrivals, raw.escalated)
            report.baseline.name = "raw pass-through"
            print(_row(report.baseline))
            report.baseline_memory_kib = baseline.peak_memory()
        finally:
            raw.stop()
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
        collector.stop()
        if baseline is not None:
            baseline.stop()
        services.stop()
        if not args.keep_topics:
            with contextlib.suppress(Exception):
                await delete_topics(stack)
    return report


# ---------------------------------------------------------------------------- output


def _fmt(value: float, digits: int = 0) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def _row(r: PhaseResult) -> str:
    return (
        f"{r.name:>18}: {r.labels} labels, sent {_fmt(r.send_rate)}/s, end-to-end "
        f"{_fmt(r.end_to_end_rate)}/s, steady {_fmt(r.steady_rate)}/s, p50 {_fmt(r.p50_ms, 1)} "
        f"p95 {_fmt(r.p95_ms, 1)} p99 {_fmt(r.p99_ms, 1)} ms, reached {r.reached}, "
        f"escalated {r.escalated}, other Consilium processes {_fmt(r.foreign_cpu_pct)}% CPU"
    )


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "nproc": str(os.cpu_count()),
        "memory": memory,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def markdown(report: Report) -> str:
    m = machine()
    out = [
        "## Pipeline benchmark run",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; Kafka, PostgreSQL, Redis, the four services, the baseline "
        "and the load generator all on this machine.",
        "",
        f"Command: `.venv/bin/{report.command}`",
        "",
        "| phase | labels | target /s | sent /s | end-to-end labels/s | steady labels/s "
        "| p50 ms | p95 ms | p99 ms | max ms | reached | escalated | noise % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [*report.phases, *([report.baseline] if report.baseline else [])]
    for r in rows:
        out.append(
            f"| {r.name} | {r.labels:,} | {_fmt(r.target_rate) if r.target_rate else 'max'} "
            f"| {_fmt(r.send_rate)} | {_fmt(r.end_to_end_rate)} | {_fmt(r.steady_rate)} "
            f"| {_fmt(r.p50_ms, 1)} | {_fmt(r.p95_ms, 1)} | {_fmt(r.p99_ms, 1)} "
            f"| {_fmt(r.max_ms, 1)} | {r.reached:,} | {r.escalated:,} | {_fmt(r.foreign_cpu_pct)} |"
        )
    out += [
        "",
        "End-to-end = labels / (first publish to the last consensus.labels record of the "
        "phase's items); steady = labels/s while the middle 80% of the items completed; "
        "latency = consensus.labels record seen (read_committed) minus the publish of the "
        "item's last label. Noise % = CPU used during the phase by Consilium processes this "
        "bench did not start (e.g. a demo), in % of one CPU.",
    ]
    if report.phases and report.baseline:
        full, base = report.phases[0], report.baseline
        e2e = full.end_to_end_rate / base.end_to_end_rate
        steady = full.steady_rate / base.steady_rate
        out += ["", f"Pipeline / raw pass-through: end-to-end {e2e:.1%}, steady {steady:.1%}."]
    out += ["", "Peak memory (VmHWM): " + ", ".join(
        f"{name} {kib / 1024:.0f} MiB" if kib else f"{name} n/a"
        for name, kib in report.memory_kib.items()
    ) + "; baseline stages " + ", ".join(
        f"{kib / 1024:.0f} MiB" if kib else "n/a" for kib in report.baseline_memory_kib
    ) + "."]  # fmt: skip
    for title, cpu in (("full-speed pipeline", report.cpu_full), ("baseline", report.cpu_baseline)):
        if cpu:
            parts = ", ".join(
                f"{group} {pct:.0f}%" for group, pct in sorted(cpu.items(), key=lambda kv: -kv[1])
                if pct >= 0.5
            )  # fmt: skip
            out += ["", f"CPU during the {title} phase (% of one CPU, 200% = machine): {parts}."]
    if report.sizes:
        out += ["", "Record sizes (bytes): " + ", ".join(
            f"{name} {size}" for name, size in sorted(report.sizes.items())) + "."]  # fmt: skip
    if report.setup_s:
        setup = "; ".join(f"{name} {seconds:.1f} s" for name, seconds in report.setup_s.items())
        out += ["", f"Setup (not timed): {setup}."]
    if report.rejected:
        out += ["", f"Rejections seen: {report.rejected}."]
    for note in report.notes:
        out += ["", f"Note: {note}."]
    for name, (total, rows_) in report.profiles.items():
        out += ["", f"Profile of {name} ({total} samples; inclusive %, self %):", "", "```"]
        out += [f"{incl:5.1f} {own:5.1f}  {frame[:150]}" for frame, incl, own in rows_]
        out += ["```"]
    return "\n".join(out) + "\n"


MARKER = "<!-- bench/pipeline.py writes the latest run below this line -->"


def write_report(path: Path, text: str) -> None:
    """Write the report; in a file with MARKER, replace only what follows the marker (so
    docs/BENCHMARKS.md keeps its hand-written analysis above it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    head, found, _ = old.partition(MARKER)
    path.write_text(f"{head}{MARKER}\n\n{text}" if found else text)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, default=15_000, help="labels in the full-speed phase")
    parser.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",") if x.strip()],
        default=[0.25, 0.5, 0.75],
        help="fixed-rate phases as fractions of the measured maximum",
    )
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--profile", help="py-spy the services during the full-speed phase")
    parser.add_argument("--method", default="ds", choices=["mv", "weighted", "ds"])
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--work-dir", default="/tmp")
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument(
        "--database",
        default=DATABASE,
        help="PostgreSQL database for the services (consilium_test by default; a database "
        "of its own, e.g. consilium_bench, keeps test sessions' outbox rows out of the run)",
    )
    parser.add_argument(
        "--db-sslmode",
        choices=["disable", "prefer", "require"],
        help="sslmode in the services' database URLs (default: none, i.e. libpq's prefer)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the services (e.g. CONSILIUM_SUBMISSION_BATCH_MAX_RECORDS)",
    )
    # Internal: one baseline stage (started by the bench itself).
    parser.add_argument("--stage", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage-in", help=argparse.SUPPRESS)
    parser.add_argument("--stage-out", help=argparse.SUPPRESS)
    parser.add_argument("--stage-group", help=argparse.SUPPRESS)
    parser.add_argument("--stage-value", help=argparse.SUPPRESS)
    parser.add_argument("--stage-max-s", type=float, default=1800.0, help=argparse.SUPPRESS)
    parser.add_argument("--fan-in", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    use_database(args.database)
    if args.stage:
        asyncio.run(run_stage(args, Path(args.stage_value).read_bytes()))
        return
    report = asyncio.run(run(args))
    text = markdown(report)
    print(text)
    if args.out:
        write_report(args.out, text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "phases": [r.__dict__ for r in report.phases],
                    "baseline": report.baseline.__dict__ if report.baseline else None,
                    "memory_kib": report.memory_kib,
                    "baseline_memory_kib": report.baseline_memory_kib,
                    "sizes": report.sizes,
                    "notes": report.notes,
                    "rejected": report.rejected,
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
