"""Operator actions on the assignment schema."""

from __future__ import annotations

from shared.db.pool import connect


async def register_annotators(dsn: str, task_id: str, annotator_ids: list[str], role: str) -> None:
    """Make annotators available for a task's assignments (idempotent)."""
    if role not in ("reader", "adjudicator"):
        raise ValueError("role must be reader or adjudicator")
    conn = await connect(dsn, "assignment")
    try:
        await conn.executemany(
            """INSERT INTO annotators (annotator_id, task_id, role) VALUES ($1, $2, $3)
               ON CONFLICT (annotator_id, task_id) DO UPDATE SET role = EXCLUDED.role,
                   active = true""",
            [(annotator, task_id, role) for annotator in annotator_ids],
        )
    finally:
        await conn.close()
