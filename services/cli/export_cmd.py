"""`consilium export` (dataset snapshots) and `consilium replay` (re-derive published labels)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from services.consensus.engine import ENGINE_VERSION
from services.export import sources
from services.export.replay import ReplayReport, compare, rederive
from services.export.snapshot import SnapshotWriter
from shared.audit import PgAuditLog
from shared.audit import chains as audit_chains
from shared.db.pool import connect
from shared.settings import service_settings

console = Console()


def export_command(
    out: Annotated[Path, typer.Argument(help="folder of the snapshot (resumed if interrupted)")],
    task: Annotated[str | None, typer.Option(help="only this task's items")] = None,
) -> None:
    """Write a dataset snapshot: JSONL, CSV, raw labels (worker,task,label), FHIR, COCO for
    box tasks, manifest."""
    manifest = asyncio.run(write_snapshot(out, task))
    console.print(
        f"snapshot {manifest['snapshot_id']}: {manifest['counts']['items']} items, "
        f"{manifest['counts']['raw_labels']} raw labels, "
        f"{manifest['counts']['fhir_resources']} FHIR resources -> {out}"
    )


def _dsn(service: str, dsns: dict[str, str] | None) -> str:
    return (dsns or {}).get(service) or service_settings(service).database_url


async def write_snapshot(
    out: Path, task: str | None, dsns: dict[str, str] | None = None
) -> dict[str, Any]:
    """Write (or resume) a snapshot from the services' databases; returns the manifest."""
    export_db = await connect(_dsn("export", dsns), "export")
    submission_db = await connect(_dsn("submission", dsns), "submission")
    box_tasks = await sources.box_tasks(submission_db, task)
    # Case references of box items (COCO file names) are the assignment service's.
    assignment_db = await connect(_dsn("assignment", dsns), "assignment") if box_tasks else None
    writer = SnapshotWriter(out, {"task_id": task}, box_tasks=box_tasks)
    writer.open()
    methods: set[str] = set()
    try:
        total = await sources.count_items(export_db, task)
        with Progress(console=console) as progress:
            bar = progress.add_task("exporting", total=total, completed=writer.counts["items"])
            async for page in sources.current_versions(
                export_db, task_id=task, after_item=writer.last_item
            ):
                ids = [p.item_id for p in page]
                labels = await sources.raw_labels(submission_db, ids)
                boxed = [p.item_id for p in page if p.task_id in box_tasks]
                images, boxes = {}, {}
                if assignment_db is not None and boxed:
                    images = await sources.images(submission_db, assignment_db, boxed)
                    boxes = await sources.raw_boxes(submission_db, boxed)
                for published in page:
                    writer.add(
                        published,
                        labels.get(published.item_id, []),
                        image=images.get(published.item_id),
                        reader_boxes=boxes.get(published.item_id, ()),
                    )
                    methods.add(f"{published.method} {published.method_version}")
                writer.checkpoint()
                progress.update(bar, completed=writer.counts["items"])
        audit_heads = await _audit_heads(submission_db)
    finally:
        for conn in (export_db, submission_db, assignment_db):
            if conn is not None:
                await conn.close()
    formats = {
        "consensus.jsonl": "one consensus.labels.v1 payload per line (current version)",
        "consensus.csv": "the same, flattened, with the adjudicator and rationale columns",
        "labels.csv": "raw labels, crowd-kit style worker,task,label (latest revision)",
        "fhir-bundle.json": "FHIR R4 collection Bundle: Observation + Provenance per item",
    }
    if box_tasks:
        formats["coco.json"] = "COCO detection ground truth: the consensus boxes of box tasks"
        formats["coco-readers.json"] = "COCO: every reader's boxes (annotator_id per box)"
    return writer.finish(
        {
            "snapshot_id": str(uuid.uuid4()),
            "created_at": datetime.now(UTC).isoformat(),
            "software": {"consilium": package_version("consilium"), "engine": ENGINE_VERSION},
            "methods": sorted(methods),
            "formats": formats,
            "audit_chain_heads": audit_heads,
        }
    )


async def _audit_heads(conn: Any) -> dict[str, dict[str, Any]]:
    """Each audit chain's head when the snapshot was taken (`consilium audit verify`
    later proves the labels behind the snapshot were not changed since)."""
    heads = {}
    for chain in await audit_chains(conn):
        seq, digest = await PgAuditLog(conn, chain).head()
        heads[chain] = {"seq": seq, "hash": digest}
    return heads


def replay_command(
    task: Annotated[str | None, typer.Option(help="only this task's items")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Re-derive every published consensus version from raw labels; report any mismatch."""
    report = asyncio.run(replay_published(task))
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "checked": report.checked,
                    "reproduced": report.reproduced,
                    "mismatches": report.mismatches,
                }
            )
        )
    else:
        console.print(
            f"replayed {report.checked} published versions: "
            f"{report.reproduced} reproduced exactly, "
            f"{len(report.mismatches)} not"
        )
        for mismatch in report.mismatches[:20]:
            console.print(mismatch)
    raise typer.Exit(0 if report.ok else 1)


async def replay_published(task: str | None, dsns: dict[str, str] | None = None) -> ReplayReport:
    """Re-derive every published version (of one task, or all)."""
    export_db = await connect(_dsn("export", dsns), "export")
    submission_db = await connect(_dsn("submission", dsns), "submission")
    consensus_db = await connect(_dsn("consensus", dsns), "consensus")
    report = ReplayReport()
    snapshots: dict[str, Any] = {}
    try:
        async for page in sources.all_versions(export_db, task_id=task):
            wanted = [str(i) for p in page for i in p.contributing_label_ids]
            stored = await sources.labels_by_id(submission_db, wanted)
            for published in page:
                report.checked += 1
                version = published.reliability_version
                if version not in snapshots:
                    snapshots[version] = await sources.reliability_snapshot(consensus_db, version)
                labels = [stored.get(str(i)) for i in published.contributing_label_ids]
                problem: dict[str, Any] | None
                if snapshots[version] is None:
                    problem = {"reliability_version": f"snapshot {version} not found"}
                elif any(label is None for label in labels):
                    problem = {"labels": "a contributing label is missing from the raw store"}
                else:
                    decision = rederive(published, [lb for lb in labels if lb], snapshots[version])
                    problem = compare(published, decision)
                if problem is None:
                    report.reproduced += 1
                else:
                    report.mismatches.append(
                        {"item_id": published.item_id, "version": published.version, **problem}
                    )
    finally:
        for conn in (export_db, submission_db, consensus_db):
            await conn.close()
    return report
