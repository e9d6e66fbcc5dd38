"""Export handlers: publish each new consensus version on the hospital topic."""

from __future__ import annotations

from services.export.provenance import provenance_digest
from shared.envelope import Envelope
from shared.events import (
    CONSENSUS_PUBLISHED,
    CONSENSUS_REACHED_EVENT,
    ConsensusPublished,
    ConsensusReached,
)
from shared.kafka.consumer import HandlerContext, Route
from shared.topics import CONSENSUS_LABELS, CONSENSUS_REACHED


async def on_consensus_reached(ctx: HandlerContext, event: Envelope[ConsensusReached]) -> None:
    reached = event.payload
    decision = reached.decision
    current = await ctx.conn.fetchrow(
        """SELECT version, payload FROM published WHERE item_id = $1
           ORDER BY version DESC LIMIT 1""",
        reached.item_id,
    )
    if current is not None:
        previous = current["payload"]
        same_label = previous["label"] == decision.label
        same_labels = sorted(previous["contributing_label_ids"]) == sorted(
            str(i) for i in decision.contributing_label_ids
        )
        if same_label and same_labels:
            return
    version = (current["version"] if current else 0) + 1
    published = ConsensusPublished(
        item_id=reached.item_id,
        task_id=reached.task_id,
        task_version=reached.task_version,
        guideline_version=reached.guideline_version,
        version=version,
        supersedes_version=current["version"] if current else None,
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
        provenance_sha256=provenance_digest(
            reached.item_id, reached.task_id, reached.task_version, decision.model_dump(mode="json")
        ),
    )
    await ctx.conn.execute(
        "INSERT INTO published (item_id, version, payload, published_at) VALUES ($1, $2, $3, $4)",
        reached.item_id,
        version,
        published.model_dump(mode="json"),
        ctx.now,
    )
    ctx.emitter.emit(CONSENSUS_PUBLISHED, CONSENSUS_LABELS, published, key=reached.item_id)


def routes() -> list[Route]:
    return [Route(CONSENSUS_REACHED, CONSENSUS_REACHED_EVENT, on_consensus_reached)]
