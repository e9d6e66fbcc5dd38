"""Consensus handlers: fold each accepted label into its item with the engine, then act
on the decision (publish, ask for one more label, or escalate)."""

from __future__ import annotations

from datetime import datetime

from services.consensus import engine
from services.consensus.policies import decision_record, engine_policy, observation
from services.consensus.reliability_store import PgReliability
from services.consensus.scoped import TaskView, scoped_delta
from services.consensus.state import TrackedItem
from services.consensus.store import PgConsensusStore
from shared.envelope import Envelope
from shared.events import (
    ADJUDICATION_REQUESTED_EVENT,
    ASSIGNMENT_REQUESTED,
    CONSENSUS_REACHED_EVENT,
    LABEL_ACCEPTED,
    LABEL_RETRACTED,
    TASK_DEFINED,
    AdjudicationRequested,
    AssignmentRequested,
    ConsensusReached,
    LabelAccepted,
    LabelRetracted,
    TaskDefined,
)
from shared.kafka.consumer import HandlerContext, Route
from shared.metrics import METRICS
from shared.topics import (
    ADJUDICATION_REQUESTED,
    ASSIGNMENTS_REQUESTED,
    CONSENSUS_REACHED,
    LABELS_ACCEPTED,
    TASKS_DEFINED,
)

WAITING = "waiting_for_task"
PREFERRED_LIMIT = 5


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

    async def on_label_accepted(self, ctx: HandlerContext, event: Envelope[LabelAccepted]) -> None:
        label = event.payload
        store = PgConsensusStore(ctx.conn)
        loaded = await store.load(label.item_id)
        tracked, _, version = loaded if loaded else (TrackedItem.new(label.item_id), "open", 0)
        observed = observation(label)
        if tracked.is_retracted(observed.annotation_id, observed.revision):
            return  # an older revision of an annotation its reader has retracted
        if tracked.engine.with_label(observed).labels == tracked.engine.labels:
            return  # a stale revision or a label the item already holds
        tracked.first_label_at = tracked.first_label_at or label.received_at.isoformat()
        task = await store.task(label.task_id, label.task_version)
        if task is None:
            tracked.engine = tracked.engine.with_label(observed)
            await store.save(
                label.item_id, label.task_id, label.task_version, tracked, WAITING, version, ctx.now
            )
            return
        await self._decide(ctx, store, task, tracked, observed, version)

    async def on_label_retracted(
        self, ctx: HandlerContext, event: Envelope[LabelRetracted]
    ) -> None:
        """The reader withdrew an annotation: decide the item again without it."""
        retraction = event.payload
        store = PgConsensusStore(ctx.conn)
        loaded = await store.load(retraction.item_id)
        tracked, status, version = (
            loaded if loaded else (TrackedItem.new(retraction.item_id), "open", 0)
        )
        changed = tracked.retract(str(retraction.annotation_id), retraction.revision)
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
    ) -> None:
        policy = engine_policy(task)
        view = TaskView(self.reliability.current, task.task_id)
        result = (
            engine.step(policy, tracked.engine, observed, view)
            if observed is not None
            else engine.rescore(policy, tracked.engine, view)
        )
        item_id = tracked.engine.item_id
        await self.reliability.record(ctx.conn, item_id, scoped_delta(task.task_id, result.delta))
        tracked.engine = result.state
        decision = result.decision
        record = decision_record(decision, tracked.engine)
        await store.record_decision(item_id, record, ctx.now)
        emit = ctx.emitter.emit
        if decision.outcome == "reached":
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
        if policy.kind not in ("binary", "categorical", "ordinal"):
            return ()
        known = sorted(
            {key[1] for key in self.reliability.current.entries if key[0] == view.task_id} - {""}
        )
        ranked = engine.preferred_annotators(
            policy, tracked.engine, known, view, limit=PREFERRED_LIMIT
        )
        return tuple(annotator for annotator, _ in ranked)

    def routes(self) -> list[Route]:
        return [
            Route(TASKS_DEFINED, TASK_DEFINED, self.on_task_defined),
            Route(LABELS_ACCEPTED, LABEL_ACCEPTED, self.on_label_accepted),
            Route(LABELS_ACCEPTED, LABEL_RETRACTED, self.on_label_retracted),
        ]
