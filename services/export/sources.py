"""Reading what snapshots and replay need from the services' schemas (operator tools)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from services.consensus.engine.reliability import ReliabilitySnapshot
from services.export.coco import BoxTask, Coordinates, ImageInfo, reader_boxes
from services.export.replay import StoredLabel
from shared.events import ConsensusPublished, TaskDefined


async def current_versions(
    conn: asyncpg.Connection, *, task_id: str | None, after_item: str | None, page: int = 500
) -> AsyncIterator[list[ConsensusPublished]]:
    """The current published version of every item, in item order, a page at a time."""
    cursor_item = after_item or ""
    while True:
        rows = await conn.fetch(
            """SELECT DISTINCT ON (item_id) payload FROM published
               WHERE item_id > $1 AND ($2::text IS NULL OR payload->>'task_id' = $2)
               ORDER BY item_id, version DESC LIMIT $3""",
            cursor_item,
            task_id,
            page,
        )
        if not rows:
            return
        batch = [ConsensusPublished.model_validate(r["payload"]) for r in rows]
        yield batch
        cursor_item = batch[-1].item_id


async def count_items(conn: asyncpg.Connection, task_id: str | None) -> int:
    count: int = await conn.fetchval(
        """SELECT count(DISTINCT item_id) FROM published
           WHERE $1::text IS NULL OR payload->>'task_id' = $1""",
        task_id,
    )
    return count


async def all_versions(
    conn: asyncpg.Connection, *, task_id: str | None, page: int = 500
) -> AsyncIterator[list[ConsensusPublished]]:
    """Every published version (replay checks each one), a page at a time."""
    last = ("", 0)
    while True:
        rows = await conn.fetch(
            """SELECT item_id, version, payload FROM published
               WHERE (item_id, version) > ($1, $2)
                 AND ($3::text IS NULL OR payload->>'task_id' = $3)
               ORDER BY item_id, version LIMIT $4""",
            last[0],
            last[1],
            task_id,
            page,
        )
        if not rows:
            return
        yield [ConsensusPublished.model_validate(r["payload"]) for r in rows]
        last = (rows[-1]["item_id"], rows[-1]["version"])


async def raw_labels(
    conn: asyncpg.Connection, item_ids: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    """Each item's current label per annotation, as (worker, label) for crowd-kit files.

    Readers only: an adjudicator's decision is not one more crowd answer."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (annotation_id) item_id, annotator_id, value FROM labels
           WHERE item_id = ANY($1::text[]) AND role = 'reader'
           ORDER BY annotation_id, revision DESC""",
        list(item_ids),
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for row in sorted(rows, key=lambda r: (r["item_id"], r["annotator_id"])):
        out.setdefault(row["item_id"], []).append((row["annotator_id"], _label_text(row["value"])))
    return out


def _label_text(value: dict[str, Any]) -> str:
    for key in ("label", "grade", "measurement"):
        if key in value:
            return str(value[key])
    if "findings" in value:
        return json.dumps(list(value["findings"]))
    if "boxes" in value:  # as the consensus carries them: [[x0, y0, x1, y1(, class)], ...]
        return json.dumps(reader_boxes(value))
    return json.dumps(value, sort_keys=True)


async def box_tasks(conn: asyncpg.Connection, task_id: str | None) -> dict[str, BoxTask]:
    """Every box task (of the filter) from submission's task versions."""
    rows = await conn.fetch(
        """SELECT definition FROM tasks WHERE definition->>'label_kind' = 'boxes'
           AND ($1::text IS NULL OR task_id = $1) ORDER BY task_id, version""",
        task_id,
    )
    classes: dict[str, list[str]] = {}
    spaces: dict[str, dict[int, Coordinates]] = {}
    for row in rows:
        task = TaskDefined.model_validate(row["definition"])
        known = classes.setdefault(task.task_id, [])
        known += [c for c in task.classes if c not in known]
        spaces.setdefault(task.task_id, {})[task.version] = task.box_coordinates
    return {t: BoxTask(t, tuple(classes[t]), spaces[t]) for t in classes}


async def images(
    submission: asyncpg.Connection, assignment: asyncpg.Connection, item_ids: Sequence[str]
) -> dict[str, ImageInfo]:
    """Each item's image: its case reference (assignment) and size (submission)."""
    sizes = await submission.fetch(
        "SELECT item_id, image_width, image_height FROM items WHERE item_id = ANY($1::text[])",
        list(item_ids),
    )
    rows = await assignment.fetch(
        "SELECT item_id, case_ref FROM items WHERE item_id = ANY($1::text[])", list(item_ids)
    )
    refs: dict[str, str] = {r["item_id"]: r["case_ref"] for r in rows}
    return {
        r["item_id"]: ImageInfo(refs.get(r["item_id"], r["item_id"]), r["image_width"],
                                r["image_height"])
        for r in sizes
    }  # fmt: skip


async def raw_boxes(
    conn: asyncpg.Connection, item_ids: Sequence[str]
) -> dict[str, list[tuple[str, str, list[list[float | str]]]]]:
    """Each item's readers' current boxes (latest revision per annotation), as
    (worker, label id, boxes), in worker order."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (annotation_id) item_id, annotator_id, label_id::text, value
           FROM labels WHERE item_id = ANY($1::text[]) AND value->>'kind' = 'boxes'
           ORDER BY annotation_id, revision DESC""",
        list(item_ids),
    )
    out: dict[str, list[tuple[str, str, list[list[float | str]]]]] = {}
    for row in sorted(rows, key=lambda r: (r["item_id"], r["annotator_id"], r["label_id"])):
        out.setdefault(row["item_id"], []).append(
            (row["annotator_id"], row["label_id"], reader_boxes(row["value"]))
        )
    return out


async def labels_by_id(
    conn: asyncpg.Connection, label_ids: Sequence[str]
) -> dict[str, StoredLabel]:
    rows = await conn.fetch(
        """SELECT label_id::text AS label_id, annotation_id::text AS annotation_id, revision,
                  annotator_id, value FROM labels WHERE label_id = ANY($1::uuid[])""",
        list(label_ids),
    )
    return {
        r["label_id"]: StoredLabel(
            r["label_id"], r["annotation_id"], r["revision"], r["annotator_id"], r["value"]
        )
        for r in rows
    }


async def reliability_snapshot(
    conn: asyncpg.Connection, version: str
) -> ReliabilitySnapshot | None:
    if version == ReliabilitySnapshot.empty().version:
        return ReliabilitySnapshot.empty()
    data = await conn.fetchval(
        "SELECT snapshot FROM reliability_snapshots WHERE version = $1", version
    )
    return None if data is None else ReliabilitySnapshot.from_dict(data)
