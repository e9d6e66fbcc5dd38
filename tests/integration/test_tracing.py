"""One trace follows a label from labels.submitted to the hospital topic, across services."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace

from shared.events import ConsensusPolicy
from shared.runtime import ServiceRuntime
from shared.topics import CONSENSUS_LABELS, LABELS_SUBMITTED
from tests import factories
from tests.integration.conftest import SPANS, Kafka, wait_until
from tests.integration.test_decisions import _item_with_policy

pytestmark = pytest.mark.integration


def _trace_spans(trace_id: int) -> list[Any]:
    return [s for s in SPANS.get_finished_spans() if s.context.trace_id == trace_id]


async def test_a_label_s_trace_spans_submission_consensus_assignment_and_export(
    services: dict[str, ServiceRuntime], kafka: Kafka
) -> None:
    task_id, item_id = await _item_with_policy(
        kafka, ConsensusPolicy(method="mv", min_labels=3, max_labels=5, threshold=0.7)
    )
    for annotator in ("reader-a", "reader-b"):
        await kafka.publish(
            LABELS_SUBMITTED, factories.label_event(item_id, task_id, annotator, "1")
        )
    with trace.get_tracer("tests").start_as_current_span("front-end submits") as root:
        await kafka.publish(
            LABELS_SUBMITTED, factories.label_event(item_id, task_id, "reader-c", "1")
        )
    trace_id = root.get_span_context().trace_id
    async with kafka.reader(CONSENSUS_LABELS) as reader:
        await reader.until(lambda r: r.key == item_id.encode())

    prefix = services["export"].stack.topic_prefix
    groups = {name: runtime.settings.consumer_group for name, runtime in services.items()}
    wanted = {
        (f"{prefix}labels.submitted.v1 process", groups["submission"]),
        (f"{prefix}labels.accepted.v1 publish", None),
        (f"{prefix}labels.accepted.v1 process", groups["consensus"]),
        (f"{prefix}consensus.reached.v1 publish", None),
        (f"{prefix}consensus.reached.v1 process", groups["export"]),
        (f"{prefix}consensus.reached.v1 process", groups["assignment"]),
        (f"{prefix}consensus.labels.v1 publish", None),
    }

    def seen() -> set[tuple[str, str | None]]:
        return {
            (s.name, s.attributes.get("messaging.consumer.group.name"))
            for s in _trace_spans(trace_id)
        }

    await wait_until(lambda: wanted <= seen(), timeout=30)
    database = [s for s in _trace_spans(trace_id) if s.attributes.get("db.system") == "postgresql"]
    assert database, "database calls are traced too"
    spans = {s.context.span_id: s for s in _trace_spans(trace_id)}
    for span in spans.values():
        if span is not root and span.parent is not None:
            assert (
                span.parent.span_id in spans
                or span.parent.span_id == root.get_span_context().span_id
            )
