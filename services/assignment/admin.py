"""Operator actions on the assignment schema."""

from __future__ import annotations

from dataclasses import dataclass

from shared.db.pool import connect


@dataclass(frozen=True)
class AnnotatorProfile:
    """What the rules know about an annotator on a task (docs/ASSIGNMENT.md).

    site: where they work (conflict of interest); tier and specialty: the adjudication
    queues they serve; max_open: their own concurrency cap instead of the task's.
    """

    site: str | None = None
    tier: int = 1
    specialty: str = "general"
    max_open: int | None = None


async def register_annotators(
    dsn: str,
    task_id: str,
    annotator_ids: list[str],
    role: str,
    profile: AnnotatorProfile | None = None,
) -> None:
    """Make annotators available for a task's assignments (idempotent: registering again
    updates the role and profile and reactivates them)."""
    if role not in ("reader", "adjudicator"):
        raise ValueError("role must be reader or adjudicator")
    profile = profile or AnnotatorProfile()
    if profile.tier < 1 or (profile.max_open is not None and profile.max_open < 1):
        raise ValueError("tier and max_open must be at least 1")
    conn = await connect(dsn, "assignment")
    try:
        await conn.executemany(
            """INSERT INTO annotators (annotator_id, task_id, role, site, tier, specialty,
                   max_open) VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (annotator_id, task_id) DO UPDATE SET role = EXCLUDED.role,
                   site = EXCLUDED.site, tier = EXCLUDED.tier, specialty = EXCLUDED.specialty,
                   max_open = EXCLUDED.max_open, active = true""",
            [
                (
                    annotator,
                    task_id,
                    role,
                    profile.site,
                    profile.tier,
                    profile.specialty,
                    profile.max_open,
                )
                for annotator in annotator_ids
            ],
        )
        # Items short of readers that nobody could take may find one among the newcomers.
        await conn.execute(
            """UPDATE items i SET starved = true
               WHERE task_id = $1 AND status = 'open' AND NOT starved
                 AND wanted > (SELECT count(*) FROM assignments a
                               WHERE a.item_id = i.item_id AND a.kind = 'label' AND NOT a.gold
                                 AND a.status IN ('open', 'answered', 'closed'))""",
            task_id,
        )
    finally:
        await conn.close()
