"""Export on the real stack: replay reproduces published labels, snapshots verify, and a
consumer written only from the published JSON Schema follows supersession."""

from __future__ import annotations

import json
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fhir.resources.R4B.bundle import Bundle

from services.assignment.admin import register_annotators
from services.cli.export_cmd import replay_published, write_snapshot
from services.cli.schemas import write_schemas
from services.export.snapshot import MANIFEST, verify
from shared.db.pool import connect
from shared.events import ConsensusPolicy
from shared.runtime import ServiceRuntime
from shared.topics import CONSENSUS_LABELS, ITEMS_REGISTERED, LABELS_SUBMITTED, TASKS_DEFINED
from tests import factories
from tests.integration.conftest import Kafka, dsn_for, fetch_value, wait_until
from tests.integration.test_pipeline import _known_to_submission

pytestmark = pytest.mark.integration
READERS = ("reader-a", "reader-b", "reader-c")
DSNS = {name: dsn_for(name) for name in ("export", "submission", "consensus")}


async def _published_count(task_id: str) -> int:
    sql = "SELECT count(*) FROM published WHERE payload->>'task_id' = $1"
    count: int = await fetch_value("export", sql, task_id)
    return count


@pytest.fixture(scope="module")
async def decided_task(services: dict[str, ServiceRuntime], kafka: Kafka) -> dict[str, Any]:
    """A ds task with four items, decided by the services; one item later flips."""
    definition = factories.task(
        policy=ConsensusPolicy(method="ds", min_labels=3, max_labels=3, threshold=0.6)
    )
    await register_annotators(dsn_for("assignment"), definition.task_id, list(READERS), "reader")
    await kafka.publish(TASKS_DEFINED, factories.task_event(definition))
    items = [factories.item_event(definition.task_id) for _ in range(4)]
    for item in items:
        await kafka.publish(ITEMS_REGISTERED, item)
    for item_id in (item.payload.item_id for item in items):
        await wait_until(partial(_known_to_submission, item_id))
    votes = [("1", "1", "1"), ("0", "0", "0"), ("1", "1", "0"), ("1", "1", "0")]
    annotations: dict[tuple[str, str], uuid.UUID] = {}
    for item, values in zip(items, votes, strict=True):
        for reader, value in zip(READERS, values, strict=True):
            annotation = uuid.uuid4()
            annotations[(item.payload.item_id, reader)] = annotation
            await kafka.publish(
                LABELS_SUBMITTED,
                factories.label_event(
                    item.payload.item_id,
                    definition.task_id,
                    reader,
                    value,
                    annotation_id=annotation,
                ),
            )
    await wait_until(lambda: _at_least(definition.task_id, 4), timeout=60)
    # Two readers revise their label on the last item: its consensus flips to "0".
    flipped = items[-1].payload.item_id
    for reader in READERS[:2]:
        await kafka.publish(
            LABELS_SUBMITTED,
            factories.label_event(
                flipped, definition.task_id, reader, "0",
                annotation_id=annotations[(flipped, reader)], revision=2,
            ),
        )  # fmt: skip
    # The first revision leaves the labels 0,1,0: whether that alone reaches "0" depends on
    # the reliability the service has learned by then, so the item ends at version 2 or 3.
    # Wait until consensus has decided both revisions and export holds its last version.
    await wait_until(lambda: _decisions_on(flipped, at_least=5), timeout=60)
    final_version = await _consensus_version(flipped)
    await wait_until(lambda: _published_version(flipped, final_version), timeout=60)
    return {
        "task_id": definition.task_id,
        "flipped": flipped,
        "final_version": final_version,
        "published": await _published_count(definition.task_id),
        "items": items,
    }


async def _decisions_on(item_id: str, at_least: int) -> bool:
    sql = "SELECT count(*) FROM decisions WHERE item_id = $1"
    count: int = await fetch_value("consensus", sql, item_id)
    return count >= at_least


async def _consensus_version(item_id: str) -> int:
    sql = "SELECT consensus_version FROM item_state WHERE item_id = $1"
    version: int = await fetch_value("consensus", sql, item_id)
    return version


async def _published_version(item_id: str, version: int) -> bool:
    sql = "SELECT count(*) > 0 FROM published WHERE item_id = $1 AND version = $2"
    found: bool = await fetch_value("export", sql, item_id, version)
    return found


async def _at_least(task_id: str, count: int) -> bool:
    return await _published_count(task_id) >= count


async def test_replay_reproduces_every_published_version_exactly(
    decided_task: dict[str, Any],
) -> None:
    report = await replay_published(decided_task["task_id"], DSNS)
    assert decided_task["final_version"] in (2, 3)
    assert decided_task["published"] == 3 + decided_task["final_version"]
    assert report.checked == decided_task["published"]
    assert report.mismatches == []


async def test_replay_names_a_published_label_the_raw_labels_do_not_support(
    decided_task: dict[str, Any],
) -> None:
    conn = await connect(dsn_for("export"), "export")
    try:
        row = await conn.fetchrow(
            "SELECT payload FROM published WHERE payload->>'task_id' = $1 LIMIT 1",
            decided_task["task_id"],
        )
        assert row is not None
        forged = {
            **row["payload"],
            "item_id": f"forged-{uuid.uuid4().hex[:6]}",
            "label": "1" if row["payload"]["label"] == "0" else "0",
        }
        await conn.execute(
            """INSERT INTO published (item_id, version, payload, published_at)
               VALUES ($1, 1, $2, now())""",
            forged["item_id"],
            forged,
        )
        report = await replay_published(decided_task["task_id"], DSNS)
    finally:
        await conn.execute("DELETE FROM published WHERE item_id LIKE 'forged-%'")
        await conn.close()
    assert [m["item_id"] for m in report.mismatches] == [forged["item_id"]]
    assert "label" in report.mismatches[0]


async def test_a_snapshot_holds_every_item_and_its_manifest_hashes_match(
    decided_task: dict[str, Any], tmp_path: Path
) -> None:
    manifest = await write_snapshot(tmp_path, decided_task["task_id"], DSNS)
    assert manifest["counts"]["items"] == 4
    assert manifest["counts"]["raw_labels"] == 12
    assert manifest["audit_chain_heads"]["submission"]["seq"] >= 12  # one row per label
    assert verify(tmp_path) == []
    lines = (tmp_path / "consensus.jsonl").read_text().splitlines()
    current = {json.loads(line)["item_id"]: json.loads(line) for line in lines}
    assert current[decided_task["flipped"]]["version"] == decided_task["final_version"]
    assert current[decided_task["flipped"]]["label"] == "0"
    bundle = Bundle.model_validate_json((tmp_path / "fhir-bundle.json").read_text())
    entries = bundle.model_dump(exclude_none=True)["entry"]
    assert len(entries) == manifest["counts"]["fhir_resources"] == 8
    (tmp_path / "labels.csv").write_text("tampered")
    assert verify(tmp_path) == ["labels.csv"]
    assert json.loads((tmp_path / MANIFEST).read_text())["filters"] == {
        "task_id": decided_task["task_id"]
    }


async def test_a_consumer_written_from_the_json_schema_alone_tracks_the_current_label(
    decided_task: dict[str, Any], kafka: Kafka, tmp_path: Path
) -> None:
    write_schemas(tmp_path)
    schema = json.loads((tmp_path / "consensus.labels.v1.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    current: dict[str, dict[str, Any]] = {}
    wanted = {i.payload.item_id for i in decided_task["items"]}
    async with kafka.reader(CONSENSUS_LABELS) as reader:
        records = await reader.until(
            lambda r: r.key.decode() in wanted, count=decided_task["published"]
        )
    for record in records:
        message = json.loads(record.value)
        validator.validate(message)  # only the published schema, no project models
        payload = message["payload"]
        known = current.get(payload["item_id"])
        if known is None or payload["version"] > known["version"]:
            assert payload["supersedes_version"] == (known["version"] if known else None)
            current[payload["item_id"]] = payload
    flipped = current[decided_task["flipped"]]
    assert flipped["label"] == "0"
    assert flipped["supersedes_version"] == decided_task["final_version"] - 1
    assert sum(1 for p in current.values() if p["label"] == "1") == 2
