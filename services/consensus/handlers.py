"""Consensus handlers: fold each accepted label into the item's state, then decide."""

from __future__ import annotations

from services.consensus.rule import decide
from services.consensus.state import ItemState
from services.consensus.store import PgConsensusStore
from shared.envelope import Envelope
from shared.events import (
    ADJUDICATION_REQUESTED_EVENT,
    ASSIGNMENT_REQUESTED,
    CONSENSUS_REACHED_EVENT,
    LABEL_ACCEPTED,
    TASK_DEFINED,
    AdjudicationRequested,
    AssignmentRequested,
    ConsensusReached,
    LabelAccepted,
    TaskDefined,
)
from shared.kafka.consumer import HandlerContext, Route
from shared.topics import (
    ADJUDICATION_REQUESTED,
    ASSIGNMENTS_REQUESTED,
    CONSENSUS_REACHED,
    LABELS_ACCEPTED,
    TASKS_DEFINED,
)

WAITING = "waiting_for_task"


async def on_task_defined(ctx: HandlerContext, event: Envelope[TaskDefined]) -> None:
    store = PgConsensusStore(ctx.conn)
    task = event.payload
    await store.save_task(task)
    # Labels that arrived before their task's definition are decided now.
    for item_id in await store.waiting_items(task.task_id, task.version):
        loaded = await store.load(item_id)
        if loaded is not None:
            state, _, version = loaded
            await _decide(ctx, store, item_id, task, state, WAITING, version)


async def on_label_accepted(ctx: HandlerContext, event: Envelope[LabelAccepted]) -> None:
    store = PgConsensusStore(ctx.conn)
    label = event.payload
    loaded = await store.load(label.item_id)
    state, status, version = loaded if loaded else (ItemState(), "open", 0)
    if not state.apply(label):
        return
    task = await store.task(label.task_id, label.task_version)
    if task is None:
        await store.save(
            label.item_id, label.task_id, label.task_version, state, WAITING, version, ctx.now
        )
        return
    await _decide(ctx, store, label.item_id, task, state, status, version)


async def _decide(
    ctx: HandlerContext,
    store: PgConsensusStore,
    item_id: str,
    task: TaskDefined,
    state: ItemState,
    status: str,
    version: int,
) -> None:
    decision = decide(state.current(), task.policy)
    await store.record_decision(item_id, decision, ctx.now)
    labels_so_far = len(state.labels)
    emit = ctx.emitter.emit
    if decision.outcome == "reached":
        contributors = sorted(str(i) for i in decision.contributing_label_ids)
        if decision.label != state.last_label or contributors != state.last_contributors:
            version += 1
            state.last_label, state.last_contributors = decision.label, contributors
            emit(
                CONSENSUS_REACHED_EVENT,
                CONSENSUS_REACHED,
                ConsensusReached(
                    item_id=item_id,
                    task_id=task.task_id,
                    task_version=task.version,
                    consensus_version=version,
                    decision=decision,
                    decided_at=ctx.now,
                ),
                key=item_id,
            )
        status = "reached"
    elif decision.outcome == "needs_more":
        # The initial overlap is already on its way; ask only when nothing is outstanding.
        outstanding = state.requested_extra - max(0, labels_so_far - task.initial_overlap)
        if labels_so_far >= task.initial_overlap and outstanding <= 0:
            state.requested_extra += 1
            emit(
                ASSIGNMENT_REQUESTED,
                ASSIGNMENTS_REQUESTED,
                AssignmentRequested(
                    item_id=item_id,
                    task_id=task.task_id,
                    reason="below the consensus threshold",
                    labels_so_far=labels_so_far,
                    exclude_annotators=state.annotators(),
                ),
                key=item_id,
            )
        status = "open"
    else:
        if not state.escalated:
            state.escalated = True
            emit(
                ADJUDICATION_REQUESTED_EVENT,
                ADJUDICATION_REQUESTED,
                AdjudicationRequested(
                    item_id=item_id,
                    task_id=task.task_id,
                    task_version=task.version,
                    reason="no consensus within the label budget",
                    decision=decision,
                ),
                key=item_id,
            )
        status = "contested"
    await store.save(item_id, task.task_id, task.version, state, status, version, ctx.now)


def routes() -> list[Route]:
    return [
        Route(TASKS_DEFINED, TASK_DEFINED, on_task_defined),
        Route(LABELS_ACCEPTED, LABEL_ACCEPTED, on_label_accepted),
    ]
