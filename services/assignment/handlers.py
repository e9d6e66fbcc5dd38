"""Assignment handlers: decode -> assigner use case, in the consumed event's transaction."""

from __future__ import annotations

from services.assignment.assigner import Assigner
from services.assignment.store import PgAssignmentStore
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
    AdjudicationRequested,
    AnnotatorSkillEstimated,
    AssignmentRequested,
    ConsensusReached,
    ItemRegistered,
    LabelAccepted,
    LabelRetracted,
    TaskDefined,
)
from shared.kafka.consumer import HandlerContext, Route
from shared.topics import (
    ADJUDICATION_REQUESTED,
    ANNOTATORS_SKILL,
    ASSIGNMENTS_REQUESTED,
    CONSENSUS_REACHED,
    ITEMS_REGISTERED,
    LABELS_ACCEPTED,
    TASKS_DEFINED,
)


class AssignmentHandlers:
    def __init__(self, assigner: Assigner, namespace: str = "") -> None:
        self.assigner = assigner
        # The topic prefix: the sweeper of this deployment sweeps the items it registered.
        self.namespace = namespace

    async def on_task_defined(self, ctx: HandlerContext, event: Envelope[TaskDefined]) -> None:
        task = event.payload
        await ctx.conn.execute(
            """INSERT INTO tasks (task_id, version, definition) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING""",
            task.task_id,
            task.version,
            task.model_dump(mode="json"),
        )
        waiting = await ctx.conn.fetch(
            """UPDATE items SET status = 'open', wanted = $2
               WHERE task_id = $1 AND status = 'waiting_for_task' RETURNING item_id, priority""",
            task.task_id,
            task.initial_overlap,
        )
        for row in sorted(waiting, key=lambda r: (-r["priority"], r["item_id"])):
            await self.assigner.fill(ctx, row["item_id"])

    async def on_item_registered(
        self, ctx: HandlerContext, event: Envelope[ItemRegistered]
    ) -> None:
        """A new item gets its task's initial overlap; a gold item joins its task's gold pool
        instead (it is handed out between other items, never on its own)."""
        item = event.payload
        task = await PgAssignmentStore(ctx.conn).task(item.task_id)
        gold = item.gold_value is not None
        status = "gold" if gold else "open" if task is not None else "waiting_for_task"
        inserted = await ctx.conn.fetchval(
            """INSERT INTO items (item_id, task_id, case_ref, priority, site, status,
                   registered_at, gold, wanted, namespace)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT DO NOTHING RETURNING true""",
            item.item_id,
            item.task_id,
            item.case_ref,
            item.priority,
            item.site,
            status,
            ctx.now,
            gold,
            task.initial_overlap if task is not None and not gold else 0,
            self.namespace,
        )
        if inserted and status == "open":
            await self.assigner.fill(ctx, item.item_id)

    async def on_assignment_requested(
        self, ctx: HandlerContext, event: Envelope[AssignmentRequested]
    ) -> None:
        """Consensus asks for exactly one more label, from its preferred readers first."""
        unfilled = await self.assigner.request_more(ctx, event.payload)
        if unfilled is not None:
            await ctx.conn.execute(
                "INSERT INTO unfilled_requests (item_id, reason, requested_at) VALUES ($1, $2, $3)",
                event.payload.item_id,
                unfilled,
                ctx.now,
            )

    async def on_label_accepted(self, ctx: HandlerContext, event: Envelope[LabelAccepted]) -> None:
        """An answered assignment's lease is over: it no longer counts as open work."""
        label = event.payload
        await self.assigner.answered(ctx, label.assignment_id, label.item_id, label.annotator_id)

    async def on_label_retracted(
        self, ctx: HandlerContext, event: Envelope[LabelRetracted]
    ) -> None:
        """A withdrawn label does not reopen its assignment: if consensus needs another
        label it asks for one."""

    async def on_consensus_reached(
        self, ctx: HandlerContext, event: Envelope[ConsensusReached]
    ) -> None:
        await self.assigner.close(ctx, event.payload)

    async def on_adjudication_requested(
        self, ctx: HandlerContext, event: Envelope[AdjudicationRequested]
    ) -> None:
        refused = await self.assigner.enqueue(ctx, event.payload)
        if refused is not None:
            await ctx.conn.execute(
                "INSERT INTO unfilled_requests (item_id, reason, requested_at) VALUES ($1, $2, $3)",
                event.payload.item_id,
                refused,
                ctx.now,
            )

    async def on_skill_estimated(
        self, ctx: HandlerContext, event: Envelope[AnnotatorSkillEstimated]
    ) -> None:
        """Keep the newest estimate per annotator and task (the topic is compacted and may
        deliver an older one after a newer)."""
        skill = event.payload
        await ctx.conn.execute(
            """INSERT INTO skills (annotator_id, task_id, skill, labels, gold_labels,
                   gold_accuracy, estimated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (annotator_id, task_id) DO UPDATE SET skill = EXCLUDED.skill,
                   labels = EXCLUDED.labels, gold_labels = EXCLUDED.gold_labels,
                   gold_accuracy = EXCLUDED.gold_accuracy, estimated_at = EXCLUDED.estimated_at
               WHERE skills.estimated_at <= EXCLUDED.estimated_at""",
            skill.annotator_id,
            skill.task_id,
            skill.skill,
            skill.labels,
            skill.gold_labels,
            skill.gold_accuracy,
            event.occurred_at,
        )

    def routes(self) -> list[Route]:
        return [
            Route(TASKS_DEFINED, TASK_DEFINED, self.on_task_defined),
            Route(ITEMS_REGISTERED, ITEM_REGISTERED, self.on_item_registered),
            Route(ASSIGNMENTS_REQUESTED, ASSIGNMENT_REQUESTED, self.on_assignment_requested),
            Route(LABELS_ACCEPTED, LABEL_ACCEPTED, self.on_label_accepted),
            Route(LABELS_ACCEPTED, LABEL_RETRACTED, self.on_label_retracted),
            Route(CONSENSUS_REACHED, CONSENSUS_REACHED_EVENT, self.on_consensus_reached),
            Route(
                ADJUDICATION_REQUESTED, ADJUDICATION_REQUESTED_EVENT, self.on_adjudication_requested
            ),
            Route(ANNOTATORS_SKILL, ANNOTATOR_SKILL_ESTIMATED, self.on_skill_estimated),
        ]
