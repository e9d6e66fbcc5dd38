"""Consensus handlers: fold each accepted label into its item with the engine, then act
on the decision (publish, ask for one more label, or escalate). An adjudicator's label
closes its item; a gold item's labels only measure its readers; every reader label
updates that reader's skill estimate (published at a bounded rate)."""

from __future__ import annotations

from datetime import datetime

from services.consensus import engine, skills
from services.consensus.batch import BatchedConsensusStore, prefetch, store_for
from services.consensus.engine.votes import adjudicated
from services.consensus.policies import (
    decision_record,
    engine_policy,
    gold_key,
    is_right,
    observation,
)
from services.consensus.reliability_store import PgReliability
from services.consensus.scoped import TaskView, engine_scopes, scoped_delta, task_annotators
from services.consensus.state import TrackedItem
from services.consensus.store import PgConsensusStore
from shared.envelope import Envelope
from shared.events import (
    ADJUDICATION_REQUESTED_EVENT,
    ANNOTATOR_SKILL_ESTIMATED,
    ASSIGNMENT_REQUESTED,
    CONSENSUS_REACHED_EVENT,
    ITEM_REGISTERED,
    LABEL_ACCEPTED,
    LABEL_RETRACTED,
    TASK_DEFINED,
    AdjudicationRationale,
    AdjudicationRequested,
    AssignmentRequested,
    ConsensusReached,
    ItemRegistered,
    LabelAccepted,
    LabelRetracted,
    TaskDefined,
)
from shared.kafka.consumer import HandlerContext, Route
from shared.logging import get_logger
from shared.metrics import METRICS
from shared.topics import (
    ADJUDICATION_REQUESTED,
    ANNOTATORS_SKILL,
    ASSIGNMENTS_REQUESTED,
    CONSENSUS_REACHED,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    TASKS_DEFINED,
)

log = get_logger(__name__)

WAITING = "waiting_for_task"
# A gold item: decided against its known answer to measure readers, never published.
GOLD = "gold"
PREFERRED_LIMIT = 5
# Kinds whose readers the engine ranks by expected information (engine/information.py).
RANKED_KINDS = frozenset({"binary", "categorical", "ordinal", "multilabel"})


class ConsensusHandlers:
    def __init__(self, reliability: PgReliability) -> None:
        self.reliability = reliability

    async def on_task_defined(self, ctx: HandlerContext, event: Envelope[TaskDefined]) -> None:
        task = event.payload
        engine_policy(task)  # a task the engine cannot decide is refused here, not per label
        store = PgConsensusStore(ctx.conn)
        await store.save_task(task)
        # Labels that arrived before their task's definition are decided now.
        for item_id in await store.waiting_items(task.task_id, task.version):
            loaded = await store.load(item_id)
            if loaded is not None:
                tracked, _, version = loaded
                await self._decide(ctx, store, task, tracked, None, version)

    async def on_item_registered(
        self, ctx: HandlerContext, event: Envelope[ItemRegistered]
    ) -> None:
        """Remember a gold item's known answer; labels that came first are re-marked."""
        item = event.payload
        if item.gold_value is None:
            return
        gold = item.gold_value.model_dump(mode="json")
        store = PgConsensusStore(ctx.conn)
        await store.save_gold(item.item_id, item.task_id, gold)
        loaded = await store.load(item.item_id)
        if loaded is None:
            return
        tracked, status, version = loaded
        if tracked.gold is not None:
            return
        if version > 0:
            log.warning("gold_item_registered_after_publication", item_id=item.item_id)
        tracked.gold = gold
        tracked.stamp_gold(gold_key(gold))
        task_version = await store.task_version_of(item.item_id)
        task = await store.task(item.task_id, task_version) if status != WAITING else None
        if task is None:
            await store.save(
                item.item_id, item.task_id, task_version, tracked, status, version, ctx.now
            )
            return
        await self._decide(ctx, store, task, tracked, None, version)

    async def on_label_accepted(self, ctx: HandlerContext, event: Envelope[LabelAccepted]) -> None:
        label = event.payload
        store = store_for(ctx)
        loaded = await store.load(label.item_id)
        if loaded is not None:
            tracked, _, version = loaded
        else:
            tracked, version = TrackedItem.new(label.item_id), 0
            tracked.gold = await store.gold(label.item_id)
        observed = observation(label, gold_key(tracked.gold))
        if tracked.is_retracted(observed.annotation_id, observed.revision):
            return  # an older revision of an annotation its reader has retracted
        if tracked.engine.with_label(observed).labels == tracked.engine.labels:
            return  # a stale revision or a label the item already holds
        first_reading = observed.role == "annotator" and observed.annotation_id not in {
            obs.annotation_id for obs in tracked.engine.labels
        }
        if label.adjudication is not None and observed.role == "adjudicator":
            tracked.rationales[observed.label_id] = label.adjudication.model_dump(mode="json")
        tracked.first_label_at = tracked.first_label_at or label.received_at.isoformat()
        task = await store.task(label.task_id, label.task_version)
        if task is None:
            tracked.engine = tracked.engine.with_label(observed)
            await store.save(
                label.item_id, label.task_id, label.task_version, tracked, WAITING, version, ctx.now
            )
        else:
            await self._decide(ctx, store, task, tracked, observed, version)
        if first_reading:
            await self._count_reading(ctx, store, label, tracked, task)

    async def _count_reading(
        self,
        ctx: HandlerContext,
        store: PgConsensusStore,
        label: LabelAccepted,
        tracked: TrackedItem,
        task: TaskDefined | None,
    ) -> None:
        """Count a reader's new label (scored when the item is gold) and publish their skill
        estimate when it moved materially or enough labels went by (skills.py)."""
        counts, last = await store.count_label(
            label.annotator_id, label.task_id, is_right(label, tracked.gold)
        )
        if task is None:
            return
        view = TaskView(self.reliability.current, task.task_id)
        estimate = skills.estimate(
            engine_policy(task), view, label.annotator_id, task.task_id, counts
        )
        if estimate is None or not skills.should_publish(estimate, last):
            return
        ctx.emitter.emit(
            ANNOTATOR_SKILL_ESTIMATED, ANNOTATORS_SKILL, estimate, key=label.annotator_id
        )
        await store.mark_published(estimate, ctx.now)

    async def on_label_retracted(
        self, ctx: HandlerContext, event: Envelope[LabelRetracted]
    ) -> None:
        """The reader withdrew an annotation: decide the item again without it."""
        retraction = event.payload
        store = store_for(ctx)
        loaded = await store.load(retraction.item_id)
        tracked, status, version = (
            loaded if loaded else (TrackedItem.new(retraction.item_id), "open", 0)
        )
        decided_before = adjudicated(tracked.engine.labels)
        changed = tracked.retract(str(retraction.annotation_id), retraction.revision)
        if decided_before is not None and adjudicated(tracked.engine.labels) is None:
            tracked.escalated = False  # the adjudicator withdrew: a contested item goes back
        task = await store.task(retraction.task_id, retraction.task_version)
        if not changed or task is None:
            await store.save(
                retraction.item_id, retraction.task_id, retraction.task_version, tracked,
                status if task else WAITING, version, ctx.now,
            )  # fmt: skip
            return
        await self._decide(ctx, store, task, tracked, None, version)

    async def _decide(
        self,
        ctx: HandlerContext,
        store: PgConsensusStore,
        task: TaskDefined,
        tracked: TrackedItem,
        observed: engine.LabelObservation | None,
        version: int,
        reason: str | None = None,
    ) -> None:
        policy = engine_policy(task)
        view = TaskView(self.reliability.current, task.task_id)
        result = (
            engine.step(policy, tracked.engine, observed, view)
            if observed is not None
            else engine.rescore(policy, tracked.engine, view)
        )
        item_id = tracked.engine.item_id
        delta = scoped_delta(task.task_id, result.delta)
        if isinstance(store, BatchedConsensusStore):
            store.record_delta(item_id, delta)
        else:
            await self.reliability.record(ctx.conn, item_id, delta)
        tracked.engine = result.state
        decision = result.decision
        record = decision_record(decision, tracked.engine)
        if reason is not None:  # why the item was decided again, instead of the engine's
            record = record.model_copy(update={"reason": reason})
        await store.record_decision(item_id, record, ctx.now)
        emit = ctx.emitter.emit
        if tracked.gold is not None:
            # The known answer decided it and its readers were measured (the delta above);
            # a control item is no case for the hospital, needs no more labels and is
            # never escalated.
            status = GOLD
        elif decision.outcome == "reached":
            contributors = sorted(decision.contributing_label_ids)
            if (record.label, contributors) != (
                tracked.published_label,
                tracked.published_contributors,
            ):
                if version == 0 and tracked.first_label_at is not None:
                    waited = ctx.now - datetime.fromisoformat(tracked.first_label_at)
                    seconds = max(0.0, waited.total_seconds())
                    ctx.after_commit(lambda: METRICS.time_to_consensus.observe(seconds))
                version += 1
                tracked.published_label, tracked.published_contributors = record.label, contributors
                adjudicator_id, rationale = _adjudication(tracked)
                emit(
                    CONSENSUS_REACHED_EVENT,
                    CONSENSUS_REACHED,
                    ConsensusReached(
                        item_id=item_id,
                        task_id=task.task_id,
                        task_version=task.version,
                        guideline_version=task.guideline_version,
                        consensus_version=version,
                        decision=record,
                        decided_at=ctx.now,
                        adjudicator_id=adjudicator_id,
                        adjudication=rationale,
                    ),
                    key=item_id,
                )
            status = "reached"
        elif decision.outcome == "needs_more":
            if self._should_request(tracked, task):
                tracked.requested_extra += 1
                emit(
                    ASSIGNMENT_REQUESTED,
                    ASSIGNMENTS_REQUESTED,
                    AssignmentRequested(
                        item_id=item_id,
                        task_id=task.task_id,
                        reason=decision.reason,
                        labels_so_far=len(tracked.engine.labels),
                        exclude_annotators=tracked.annotators(),
                        preferred_annotators=self._preferred(policy, tracked, view),
                    ),
                    key=item_id,
                )
            status = "open"
        else:
            if not tracked.escalated:
                tracked.escalated = True
                emit(
                    ADJUDICATION_REQUESTED_EVENT,
                    ADJUDICATION_REQUESTED,
                    AdjudicationRequested(
                        item_id=item_id,
                        task_id=task.task_id,
                        task_version=task.version,
                        reason=decision.reason,
                        decision=record,
                    ),
                    key=item_id,
                )
            status = "contested"
        await store.save(item_id, task.task_id, task.version, tracked, status, version, ctx.now)

    async def redecide(
        self,
        ctx: HandlerContext,
        store: PgConsensusStore,
        task: TaskDefined,
        tracked: TrackedItem,
        version: int,
        *,
        reason: str,
    ) -> None:
        """Decide a loaded item again under the current reliability, as a retraction does
        (services/consensus/reestimate.py); `reason` is recorded as the decision's."""
        await self._decide(ctx, store, task, tracked, None, version, reason=reason)

    @staticmethod
    def _should_request(tracked: TrackedItem, task: TaskDefined) -> bool:
        """Ask for one more label only when the initial overlap is in and nothing extra
        is outstanding, so a slow reader does not cause a flood of requests."""
        labels = len(tracked.engine.labels)
        outstanding = tracked.requested_extra - max(0, labels - task.initial_overlap)
        return labels >= task.initial_overlap and outstanding <= 0

    def _preferred(
        self, policy: engine.ConsensusPolicy, tracked: TrackedItem, view: TaskView
    ) -> tuple[str, ...]:
        """Known annotators not on the item, highest expected information first."""
        if policy.kind not in RANKED_KINDS:
            return ()
        known = task_annotators(
            self.reliability.current.entries, view.task_id, engine_scopes(policy)
        )
        ranked = engine.preferred_annotators(
            policy, tracked.engine, known, view, limit=PREFERRED_LIMIT
        )
        return tuple(annotator for annotator, _ in ranked)

    def routes(self) -> list[Route]:
        return [
            Route(TASKS_DEFINED, TASK_DEFINED, self.on_task_defined),
            Route(ITEMS_REGISTERED, ITEM_REGISTERED, self.on_item_registered),
            Route(LABELS_ACCEPTED, LABEL_ACCEPTED, self.on_label_accepted, prefetch=prefetch),
            Route(LABELS_ACCEPTED, LABEL_RETRACTED, self.on_label_retracted, prefetch=prefetch),
        ]


def _adjudication(tracked: TrackedItem) -> tuple[str | None, AdjudicationRationale | None]:
    """Who decided the item and the rationale they signed, when an adjudicator did (the
    adjudicator label the engine follows: the one with the greatest precedence)."""
    decided = adjudicated(tracked.engine.labels)
    if decided is None:
        return None, None
    rationale = tracked.rationales.get(decided.label_id)
    return decided.annotator_id, (
        AdjudicationRationale.model_validate(rationale) if rationale is not None else None
    )
