"""Snapshot files and FHIR resources, without any server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.provenance import Provenance

from services.export import fhir
from services.export.snapshot import CHECKPOINT, SnapshotWriter, verify
from shared.events import ConsensusPublished
from tests import factories


def _published(item: str, version: int = 1, label: object = "1") -> ConsensusPublished:
    return ConsensusPublished(
        item_id=item, task_id="chest", task_version=1, version=version,
        supersedes_version=version - 1 or None, label=label, confidence=0.97,
        distribution={"0": 0.03, "1": 0.97}, agreement=1.0, method="ds",
        method_version="consilium-engine/1", parameters={},
        contributing_label_ids=(uuid.uuid5(uuid.NAMESPACE_URL, item),),
        contributing_annotators=("reader-a",), decided_at=factories.NOW, provenance_sha256="a" * 64,
    )  # fmt: skip


def _export(folder: Path, items: list[str], crash_after: int | None = None) -> None:
    writer = SnapshotWriter(folder, {"task_id": "chest"})
    writer.open()
    for index, item in enumerate(items):
        if writer.last_item is not None and item <= writer.last_item:
            continue
        writer.add(_published(item), [("reader-a", "1")])
        writer.checkpoint()
        if crash_after is not None and index + 1 == crash_after:
            # A crash after the checkpoint, in the middle of writing the next item.
            (folder / "consensus.jsonl").open("a").write('{"partial": ')
            return
    writer.finish({"snapshot_id": "fixed"})


def test_an_interrupted_export_resumes_to_the_same_files(tmp_path: Path) -> None:
    items = [f"item-{i}" for i in range(5)]
    _export(tmp_path / "whole", items)
    _export(tmp_path / "resumed", items, crash_after=2)
    assert (tmp_path / "resumed" / CHECKPOINT).exists()
    _export(tmp_path / "resumed", items)
    for name in (
        "consensus.jsonl",
        "consensus.csv",
        "labels.csv",
        "fhir-bundle.json",
        "manifest.json",
    ):
        assert (tmp_path / "whole" / name).read_bytes() == (
            tmp_path / "resumed" / name
        ).read_bytes()
    assert verify(tmp_path / "resumed") == []
    assert not (tmp_path / "resumed" / CHECKPOINT).exists()


def test_the_fhir_bundle_of_a_snapshot_is_valid_r4(tmp_path: Path) -> None:
    _export(tmp_path, ["a", "b"])
    bundle = Bundle.model_validate_json((tmp_path / "fhir-bundle.json").read_text())
    entries = bundle.model_dump(mode="json", exclude_none=True)["entry"]
    kinds = sorted(entry["resource"]["resourceType"] for entry in entries)
    assert kinds == ["Observation", "Observation", "Provenance", "Provenance"]


def test_a_superseding_version_is_an_amended_observation_with_an_update_provenance() -> None:
    observation, provenance = fhir.resources(_published("a", version=2))
    assert isinstance(provenance, Provenance)
    record = provenance.model_dump(mode="json", exclude_none=True)
    assert observation.status == "amended"
    assert record["activity"]["coding"][0]["code"] == "UPDATE"
    assert record["target"][0]["reference"] == f"Observation/{observation.id}"
    readers = [a["who"]["identifier"]["value"] for a in record["agent"] if "identifier" in a["who"]]
    assert readers == ["reader-a"]


def test_a_multi_finding_label_becomes_a_report_with_one_observation_per_finding() -> None:
    published = _published("study-1", label=["Edema", "Effusion"])
    report, *observations, provenance = fhir.resources(published, ["Edema", "Effusion", "Fracture"])
    assert report.get_resource_type() == "DiagnosticReport"
    present = {o.code.text: o.valueBoolean for o in observations}
    assert present == {"Edema": True, "Effusion": True, "Fracture": False}
    assert provenance.target[0].reference == f"DiagnosticReport/{report.id}"


def test_the_same_version_always_yields_the_same_resources() -> None:
    published = _published("a")
    first = [r.model_dump_json() for r in fhir.resources(published)]
    assert first == [r.model_dump_json() for r in fhir.resources(published)]
    assert json.loads(first[0])["identifier"][0]["value"] == "a|v1"


def test_a_boxes_consensus_is_an_observation_carrying_its_boxes() -> None:
    boxes = [[10.0, 12.0, 50.0, 58.5, "nodule"]]
    observation, provenance = fhir.resources(_published("scan-1", label=boxes))
    assert observation.get_resource_type() == "Observation"
    assert json.loads(observation.valueString or "null") == boxes
    assert isinstance(provenance, Provenance)
