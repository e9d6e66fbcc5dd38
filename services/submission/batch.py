"""What a batch of labels needs from PostgreSQL, loaded with a few set-based queries.

On the consumer's batch fast path (shared/kafka/consumer.py), a batch that holds only
labels and retractions is prefetched once: the items, annotation histories and
assignments of all its records, and (looked up on first use) its tasks and client keys.
Nothing else this service consumes is handled during such a batch, so the prefetched rows
are what per-record queries would have read, provided handlers record their own writes
here: a stored revision extends its annotation's history at once and is inserted with the
others at the end of the batch. Any other batch, and the per-record path, query as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from services.submission.store import PgSubmissionStore, StoredRevision
from services.submission.validation import AnnotationHistory, Assignment, ClientKey, ItemInfo
from shared.envelope import Envelope
from shared.events import LabelRetractionSubmitted, LabelSubmitted, TaskDefined
from shared.kafka.consumer import BatchScope, HandlerContext

SCOPE_KEY = "submission.labels"


@dataclass
class LabelBatch:
    """The rows a label batch reads, kept current with the batch's own writes."""

    store: PgSubmissionStore
    items: dict[str, ItemInfo]
    histories: dict[UUID, AnnotationHistory]
    assignment_rows: list[Assignment]
    tasks: dict[tuple[str, int], TaskDefined | None] = field(default_factory=dict)
    keys: dict[tuple[str, str], ClientKey | None] = field(default_factory=dict)
    revisions: list[StoredRevision] = field(default_factory=list)

    @classmethod
    async def load(
        cls, conn: asyncpg.Connection, envelopes: Sequence[Envelope[Any]]
    ) -> LabelBatch | None:
        """None unless every record of the batch is a label or a retraction."""
        payloads = [e.payload for e in envelopes]
        if not all(isinstance(p, LabelSubmitted | LabelRetractionSubmitted) for p in payloads):
            return None
        store = PgSubmissionStore(conn)
        item_ids = sorted({p.item_id for p in payloads})
        pairs = sorted({(p.item_id, p.annotator_id) for p in payloads})
        return cls(
            store=store,
            items=await store.items(item_ids),
            histories=await store.histories(sorted({p.annotation_id for p in payloads})),
            assignment_rows=await store.assignments_of(
                sorted({p.assignment_id for p in payloads if p.assignment_id is not None}),
                [item for item, _ in pairs],
                [annotator for _, annotator in pairs],
            ),
        )

    def item(self, item_id: str) -> ItemInfo | None:
        return self.items.get(item_id)

    def history(self, annotation_id: UUID) -> AnnotationHistory:
        return self.histories.get(annotation_id, AnnotationHistory())

    def __post_init__(self) -> None:
        # Positions of the rows by id and by (item, annotator), so a lookup is not a scan.
        self._by_id: dict[UUID, list[int]] = {}
        self._by_pair: dict[tuple[str, str], list[int]] = {}
        for index, a in enumerate(self.assignment_rows):
            self._by_id.setdefault(a.assignment_id, []).append(index)
            self._by_pair.setdefault((a.item_id, a.annotator_id), []).append(index)

    def assignments(
        self, assignment_id: UUID | None, item_id: str, annotator_id: str
    ) -> list[Assignment]:
        """As PgSubmissionStore.assignments: by id, or for the item and annotator."""
        by_id = self._by_id.get(assignment_id, []) if assignment_id is not None else []
        found = set(by_id) | set(self._by_pair.get((item_id, annotator_id), []))
        return [self.assignment_rows[index] for index in sorted(found)]

    async def task(self, task_id: str, version: int) -> TaskDefined | None:
        if (task_id, version) not in self.tasks:
            self.tasks[task_id, version] = await self.store.task(task_id, version)
        return self.tasks[task_id, version]

    async def client_key(self, key_id: str, annotator_id: str) -> ClientKey | None:
        if (key_id, annotator_id) not in self.keys:
            self.keys[key_id, annotator_id] = await self.store.client_key(key_id, annotator_id)
        return self.keys[key_id, annotator_id]

    def save_revision(self, row: StoredRevision) -> None:
        """Queue the insert and extend the annotation's history as the insert would."""
        self.revisions.append(row)
        before = self.history(row.annotation_id)
        first = before.latest is None or row.revision < min(before.revisions)
        self.histories[row.annotation_id] = AnnotationHistory(
            before.revisions | {row.revision},
            row.annotator_id if first else before.annotator_id,
            row.item_id if first else before.item_id,
        )

    async def flush(self) -> None:
        await self.store.save_revisions(self.revisions)
        self.revisions.clear()


async def prefetch(
    conn: asyncpg.Connection, scope: BatchScope, envelopes: Sequence[Envelope[Any]]
) -> None:
    """The label routes' batch hook."""
    batch = await LabelBatch.load(conn, envelopes)
    if batch is not None:
        scope.values[SCOPE_KEY] = batch
        scope.finish_with(SCOPE_KEY, batch.flush)


def label_batch(ctx: HandlerContext) -> LabelBatch | None:
    """The prefetched rows of the batch being handled, if any."""
    if ctx.batch is None:
        return None
    batch: LabelBatch | None = ctx.batch.values.get(SCOPE_KEY)
    return batch
