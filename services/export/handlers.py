"""Export handlers: publish each new consensus version on the hospital topic (and, when
configured, as FHIR on its own topic), in the transaction that records it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import asyncpg

from services.export import fhir
from services.export.provenance import provenance_digest
from shared.envelope import Envelope
from shared.events import (
    CONSENSUS_PUBLISHED,
    CONSENSUS_REACHED_EVENT,
    ConsensusPublished,
    ConsensusReached,
)
from shared.kafka.consumer import BatchScope, HandlerContext, Route
from shared.telemetry import inject_headers
from shared.topics import CONSENSUS_FHIR, CONSENSUS_LABELS, CONSENSUS_REACHED

FHIR_EVENT_TYPE = "consensus.fhir"


def _adjudication_of(reached: ConsensusReached) -> dict[str, Any] | None:
    if reached.adjudicator_id is None and reached.adjudication is None:
        return None
    rationale = reached.adjudication.model_dump(mode="json") if reached.adjudication else None
    return {"adjudicator_id": reached.adjudicator_id, "rationale": rationale}


def is_new_version(reached: ConsensusReached, previous: dict[str, Any] | None) -> bool:
    """A version is published when the label, the labels behind it or the adjudication
    changed; a decision that repeats the current version is not published again."""
    if previous is None:
        return True
    decision = reached.decision
    rationale = reached.adjudication.model_dump(mode="json") if reached.adjudication else None
    return (
        previous["label"] != decision.label
        or sorted(previous["contributing_label_ids"])
        != sorted(str(i) for i in decision.contributing_label_ids)
        or previous.get("adjudicator_id") != reached.adjudicator_id
        or previous.get("adjudication") != rationale
    )


def published_version(
    reached: ConsensusReached, version: int, supersedes: int | None
) -> ConsensusPublished:
    """The hospital-facing record of one consensus version."""
    decision = reached.decision
    return ConsensusPublished(
        item_id=reached.item_id,
        task_id=reached.task_id,
        task_version=reached.task_version,
        guideline_version=reached.guideline_version,
        version=version,
        supersedes_version=supersedes,
        label=decision.label,
        confidence=decision.confidence,
        distribution=decision.distribution,
        agreement=decision.agreement,
        method=decision.method,
        method_version=decision.method_version,
        parameters=decision.parameters,
        contributing_label_ids=decision.contributing_label_ids,
        contributing_annotators=decision.contributing_annotators,
        reason=decision.reason,
        reliability_version=decision.reliability_version,
        decided_at=reached.decided_at,
        adjudicator_id=reached.adjudicator_id,
        adjudication=reached.adjudication,
        provenance_sha256=provenance_digest(
            reached.item_id,
            reached.task_id,
            reached.task_version,
            decision.model_dump(mode="json"),
            _adjudication_of(reached),
        ),
    )


def fhir_record(
    published: ConsensusPublished, cause: Envelope[Any]
) -> tuple[bytes, dict[str, str]]:
    """The FHIR topic's record: the Bundle as raw FHIR JSON, our metadata in headers."""
    bundle = fhir.event_bundle(published)
    value = json.dumps(
        bundle.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
    ).encode()
    headers = {
        "content-type": "application/fhir+json; fhirVersion=4.0",
        "event_type": FHIR_EVENT_TYPE,
        "schema_version": "1",
        # Derived from (item, version): a consumer can deduplicate without parsing FHIR.
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{bundle.id}|fhir-event")),
        "item_id": published.item_id,
        "task_id": published.task_id,
        "version": str(published.version),
        "supersedes_version": str(published.supersedes_version or ""),
        "provenance_sha256": published.provenance_sha256,
        "correlation_id": str(cause.correlation_id),
        "causation_id": str(cause.event_id),
        **inject_headers(),
    }
    return value, headers


_INSERT_PUBLISHED = (
    "INSERT INTO published (item_id, version, payload, published_at) VALUES ($1, $2, $3, $4)"
)
_SCOPE_KEY = "export.published"


@dataclass
class PublishedBatch:
    """On the batch fast path: the latest published version of every item of the batch,
    loaded in one query and kept current as the batch publishes, and the new versions,
    inserted in order at the batch's end (nothing else writes `published` meanwhile)."""

    conn: asyncpg.Connection
    latest: dict[str, tuple[int, dict[str, Any]] | None]
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    async def flush(self) -> None:
        if self.rows:
            await self.conn.executemany(_INSERT_PUBLISHED, self.rows)
            self.rows.clear()


async def prefetch(
    conn: asyncpg.Connection, scope: BatchScope, envelopes: Sequence[Envelope[Any]]
) -> None:
    """The route's batch hook."""
    item_ids = sorted({e.payload.item_id for e in envelopes if e.event_type == "consensus.reached"})
    latest: dict[str, tuple[int, dict[str, Any]] | None] = dict.fromkeys(item_ids)
    for row in await conn.fetch(
        """SELECT DISTINCT ON (item_id) item_id, version, payload FROM published
           WHERE item_id = ANY($1::text[]) ORDER BY item_id, version DESC""",
        item_ids,
    ):
        latest[row["item_id"]] = (row["version"], row["payload"])
    batch = PublishedBatch(conn, latest)
    scope.values[_SCOPE_KEY] = batch
    scope.finish_with(_SCOPE_KEY, batch.flush)


async def _current(ctx: HandlerContext, item_id: str) -> tuple[int, dict[str, Any]] | None:
    """The item's latest published version and payload."""
    batch: PublishedBatch | None = ctx.batch.values.get(_SCOPE_KEY) if ctx.batch else None
    if batch is not None and item_id in batch.latest:
        return batch.latest[item_id]
    row = await ctx.conn.fetchrow(
        """SELECT version, payload FROM published WHERE item_id = $1
           ORDER BY version DESC LIMIT 1""",
        item_id,
    )
    return (row["version"], row["payload"]) if row else None


async def on_consensus_reached(
    ctx: HandlerContext, event: Envelope[ConsensusReached], *, publish_fhir: bool = False
) -> None:
    reached = event.payload
    current = await _current(ctx, reached.item_id)
    if not is_new_version(reached, current[1] if current else None):
        return
    supersedes = current[0] if current else None
    published = published_version(reached, (supersedes or 0) + 1, supersedes)
    row = (reached.item_id, published.version, published.model_dump(mode="json"), ctx.now)
    batch: PublishedBatch | None = ctx.batch.values.get(_SCOPE_KEY) if ctx.batch else None
    if batch is not None:
        batch.rows.append(row)
        # What the stored row reads back as (jsonb through the JSON codec).
        batch.latest[reached.item_id] = (published.version, json.loads(json.dumps(row[2])))
    else:
        await ctx.conn.execute(_INSERT_PUBLISHED, *row)
    ctx.emitter.emit(CONSENSUS_PUBLISHED, CONSENSUS_LABELS, published, key=reached.item_id)
    if publish_fhir:
        value, headers = fhir_record(published, event)
        ctx.emitter.outbox.add_raw(CONSENSUS_FHIR, reached.item_id.encode(), value, headers)


def routes(*, publish_fhir: bool = False) -> list[Route]:
    handler = partial(on_consensus_reached, publish_fhir=publish_fhir)
    return [Route(CONSENSUS_REACHED, CONSENSUS_REACHED_EVENT, handler, prefetch=prefetch)]
