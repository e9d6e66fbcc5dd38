"""`consilium status`: one screen with the stack's health, consumer lag and queue depths."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.table import Table

from shared.db.pool import connect
from shared.kafka.clients import client_options
from shared.settings import SERVICES, StackSettings, service_settings

console = Console()

# Counts an SRE watches, per service schema: (label, SQL returning one number).
QUEUES: dict[str, list[tuple[str, str]]] = {
    service: [
        ("outbox backlog", "SELECT count(*) FROM outbox WHERE published_at IS NULL"),
        ("dead letters pending", "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL"),
    ]
    for service in SERVICES
}
QUEUES["consensus"] += [
    ("items open", "SELECT count(*) FROM item_state WHERE status = 'open'"),
    ("items reached", "SELECT count(*) FROM item_state WHERE status = 'reached'"),
    (
        "items contested (adjudication)",
        "SELECT count(*) FROM item_state WHERE status = 'contested'",
    ),
]
QUEUES["submission"] += [
    ("labels stored", "SELECT count(*) FROM labels"),
    ("rejections", "SELECT count(*) FROM rejections"),
]
QUEUES["assignment"] += [
    ("assignments open", "SELECT count(*) FROM assignments WHERE status = 'open'"),
    ("items waiting for a reader", "SELECT count(*) FROM items WHERE starved"),
    ("requests unfilled", "SELECT count(*) FROM unfilled_requests"),
    (
        "adjudications waiting or assigned",
        "SELECT count(*) FROM adjudication_queue WHERE status IN ('waiting', 'assigned')",
    ),
    (
        "oldest open adjudication (s)",
        """SELECT coalesce(round(extract(epoch FROM now() - min(enqueued_at))), 0)
           FROM adjudication_queue WHERE status IN ('waiting', 'assigned')""",
    ),
    (
        "adjudications past their SLA",
        """SELECT count(*) FROM adjudication_queue
           WHERE status IN ('waiting', 'assigned') AND breached_at IS NOT NULL""",
    ),
]


async def _service_health(service: str) -> str:
    settings = service_settings(service)
    # A service bound to every interface is reached on loopback.
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            response = await client.get(f"http://{host}:{settings.http_port}/readyz")
    except httpx.HTTPError:
        return "[red]down[/red]"
    checks = response.json().get("checks", {})
    if response.status_code == 200:
        return "[green]ready[/green]"
    failing = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
    return f"[yellow]not ready[/yellow] ({failing})"


async def _infrastructure(stack: StackSettings) -> list[tuple[str, str]]:
    rows = []
    try:
        admin = AIOKafkaAdminClient(**client_options(stack), request_timeout_ms=3000)
        await asyncio.wait_for(admin.start(), 5)
        cluster = await admin.describe_cluster()
        await admin.close()
        rows.append(
            ("kafka", f"[green]up[/green] {stack.kafka_bootstrap} ({cluster['cluster_id']})")
        )
    except Exception as exc:
        rows.append(("kafka", f"[red]down[/red] {exc!r}"[:120]))
    try:
        client = aioredis.from_url(stack.redis_url)
        await asyncio.wait_for(client.ping(), 3)  # type: ignore[arg-type]  # async client
        await client.aclose()
        rows.append(("redis", "[green]up[/green]"))
    except Exception as exc:
        rows.append(("redis", f"[red]down[/red] {exc!r}"[:120]))
    return rows


async def _lag(stack: StackSettings) -> list[tuple[str, str, int]]:
    """Per consumer group and topic: end offsets minus committed offsets."""
    admin = AIOKafkaAdminClient(**client_options(stack))
    reader = AIOKafkaConsumer(**client_options(stack), group_id=None)
    await admin.start()
    await reader.start()
    try:
        rows = []
        for service in SERVICES:
            group = service_settings(service).consumer_group
            committed = await admin.list_consumer_group_offsets(group)
            if not committed:
                continue
            ends = await reader.end_offsets(list(committed))
            per_topic: dict[str, int] = {}
            for partition, meta in committed.items():
                assert isinstance(partition, TopicPartition)
                per_topic[partition.topic] = per_topic.get(partition.topic, 0) + max(
                    0, ends[partition] - meta.offset
                )
            rows += [(group, topic, lag) for topic, lag in sorted(per_topic.items())]
        return rows
    finally:
        await reader.stop()
        await admin.close()


async def _queues() -> list[tuple[str, str, Any]]:
    rows: list[tuple[str, str, Any]] = []
    for service, queries in QUEUES.items():
        try:
            conn = await connect(service_settings(service).database_url, service)
        except Exception as exc:
            rows.append((service, "database", f"unreachable: {exc!r}"[:80]))
            continue
        try:
            for label, sql in queries:
                value: Any = "?"
                with contextlib.suppress(Exception):
                    value = await conn.fetchval(sql)
                rows.append((service, label, value))
        finally:
            await conn.close()
    return rows


async def status_screen() -> bool:
    """Print the screen; True when every service is ready."""
    stack = StackSettings()
    health = {service: await _service_health(service) for service in SERVICES}
    infrastructure = await _infrastructure(stack)
    services_table = Table("component", "state", title="Consilium")
    for name, state in infrastructure:
        services_table.add_row(name, state)
    for service, state in health.items():
        services_table.add_row(service, state)
    console.print(services_table)
    try:
        lag_rows = await _lag(stack)
        lag_table = Table("consumer group", "topic", "lag", title="Consumer lag")
        for group, topic, lag in lag_rows:
            lag_table.add_row(group, topic, str(lag))
        console.print(lag_table)
    except Exception as exc:
        console.print(f"[red]consumer lag unavailable[/red]: {exc!r}")
    queue_table = Table("service", "measure", "value", title="Queues")
    for service, label, value in await _queues():
        queue_table.add_row(service, label, str(value))
    console.print(queue_table)
    return all("ready" in state and "not" not in state for state in health.values())
