"""An expired lease through the running services and Kafka: the sweeper cancels it and
reissues the item to another reader, and submission rejects the late label for it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.assignment.admin import register_annotators
from shared.events import REGISTRY, AssignmentRules
from shared.runtime import ServiceRuntime
from shared.topics import (
    ASSIGNMENTS_ISSUED,
    ITEMS_REGISTERED,
    LABELS_REJECTED,
    LABELS_SUBMITTED,
    TASKS_DEFINED,
)
from tests import factories
from tests.integration.conftest import Kafka, dsn_for

pytestmark = pytest.mark.integration


def _about(item_id: str) -> Any:
    return lambda record: REGISTRY.decode(record.value).payload.item_id == item_id


async def test_an_expired_lease_is_reissued_to_someone_else_and_its_late_label_rejected(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    task = factories.task(initial_overlap=1, assignment=AssignmentRules(lease_seconds=2))
    run = uuid.uuid4().hex[:6]
    late, reissued = f"late-{run}", f"next-{run}"  # in this order: ids break the tie
    await register_annotators(dsn_for("assignment"), task.task_id, [late, reissued], "reader")
    await kafka.publish(TASKS_DEFINED, factories.task_event(task))
    item = factories.item_event(task.task_id)
    item_id = item.payload.item_id
    await kafka.publish(ITEMS_REGISTERED, item)

    async with kafka.reader(ASSIGNMENTS_ISSUED) as reader:
        records = await reader.until(_about(item_id), count=3)
    # Keyed by annotator: each reader's events are in order, the two readers' are not.
    events = {(r.key.decode(), REGISTRY.decode(r.value).event_type): r for r in records}
    first = REGISTRY.decode(events[late, "assignment.issued"].value).payload
    cancelled = REGISTRY.decode(events[late, "assignment.cancelled"].value).payload
    second = REGISTRY.decode(events[reissued, "assignment.issued"].value).payload
    assert (cancelled.assignment_id, cancelled.reason) == (first.assignment_id, "expired")
    assert second.assignment_id != first.assignment_id
    assert second.lease_expires_at > first.lease_expires_at

    # The running service serves the reissued assignment over HTTP too.
    settings = services["assignment"].settings
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}") as client:
        pulled = await client.get(f"/annotators/{reissued}/next")
    assert pulled.status_code == 200
    assert pulled.json()["assignment_id"] == str(second.assignment_id)

    # The broker stamps the label after the lease's deadline: it is late whatever its sender says.
    label = factories.label_event(
        item_id, task.task_id, late, "1", assignment_id=first.assignment_id
    )
    await kafka.publish(LABELS_SUBMITTED, label)
    async with kafka.reader(LABELS_REJECTED) as reader:
        (record,) = await reader.until(
            lambda r: REGISTRY.decode(r.value).payload.rejected_event_id == label.event_id
        )
    assert REGISTRY.decode(record.value).payload.code == "assignment_expired"
