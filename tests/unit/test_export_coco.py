"""COCO files of box tasks in a snapshot, loaded with pycocotools as an ML team would."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from services.export.coco import BoxTask, ImageInfo
from services.export.snapshot import CHECKPOINT, SnapshotWriter, verify
from shared.events import ConsensusPublished
from tests import factories

TASKS = {
    "nodules": BoxTask("nodules", ("nodule", "mass"), {1: "normalized"}),
    "fractures": BoxTask("fractures", (), {1: "pixels"}),
}
# item -> (task, consensus boxes, image, readers' boxes)
ITEMS: dict[str, tuple[str, list[list[float | str]], ImageInfo, list[list[float | str]]]] = {
    "ct-1": (
        "nodules",
        [[0.1, 0.2, 0.3, 0.6, "nodule"]],
        ImageInfo("case-ct-1.dcm", 512, 256),
        [[0.1, 0.2, 0.3, 0.6, "nodule"], [0.5, 0.5, 0.6, 0.7, "mass"]],
    ),
    "ct-2": ("nodules", [], ImageInfo("case-ct-2.dcm"), [[0.4, 0.4, 0.5, 0.5, "nodule"]]),
    "xr-1": (
        "fractures",
        [[10.0, 20.0, 40.0, 60.0]],
        ImageInfo("case-xr-1.png", 100, 100),
        [[10.0, 20.0, 40.0, 60.0]],
    ),
    "xr-2": ("fractures", [[1.0, 1.0, 2.0, 3.0]], ImageInfo("case-xr-2.png"), []),
}


def _published(item: str) -> ConsensusPublished:
    task, boxes, _, _ = ITEMS[item]
    return ConsensusPublished(
        item_id=item, task_id=task, task_version=1, version=1, label=boxes, confidence=0.91,
        distribution={}, agreement=0.8, method="boxes", method_version="consilium-engine/1",
        parameters={}, contributing_label_ids=(uuid.uuid5(uuid.NAMESPACE_URL, item),),
        decided_at=factories.NOW, provenance_sha256="b" * 64,
    )  # fmt: skip


def _export(folder: Path, crash_after: int | None = None) -> dict[str, Any] | None:
    writer = SnapshotWriter(folder, {"task_id": None}, box_tasks=TASKS)
    writer.open()
    for index, item in enumerate(sorted(ITEMS)):
        if writer.last_item is not None and item <= writer.last_item:
            continue
        _, _, image, readers = ITEMS[item]
        writer.add(
            _published(item),
            [("reader-a", "boxes")],
            image=image,
            reader_boxes=[("reader-a", f"label-{item}", readers)] if readers else [],
        )
        writer.checkpoint()
        if crash_after is not None and index + 1 == crash_after:
            (folder / ".coco-images.part").open("a").write('{"partial": ')
            return None
    return writer.finish({"snapshot_id": "fixed"})


def test_consensus_boxes_load_as_coco_ground_truth_in_pixels_where_the_size_is_known(
    tmp_path: Path,
) -> None:
    manifest = _export(tmp_path)
    assert manifest is not None
    coco = COCO(str(tmp_path / "coco.json"))
    categories = {c["id"]: (c["supercategory"], c["name"]) for c in coco.loadCats(coco.getCatIds())}
    assert sorted(categories.values()) == [
        ("fractures", "fractures"), ("nodules", "mass"), ("nodules", "nodule"),
    ]  # fmt: skip
    images = {i["consilium_item_id"]: i for i in coco.loadImgs(coco.getImgIds())}
    assert set(images) == set(ITEMS)
    assert (images["ct-1"]["width"], images["ct-1"]["height"]) == (512, 256)
    assert images["ct-2"]["coordinates"] == "normalized"
    assert images["xr-1"]["file_name"] == "case-xr-1.png"

    def boxes_of(item: str) -> list[tuple[str, list[float]]]:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[images[item]["id"]]))
        return [(categories[a["category_id"]][1], a["bbox"]) for a in anns]

    # Normalized boxes scaled to the 512 x 256 image: x0=51.2, y0=51.2, w=102.4, h=102.4.
    assert boxes_of("ct-1") == [("nodule", [51.2, 51.2, 102.4, 102.4])]
    assert boxes_of("ct-2") == []
    assert boxes_of("xr-1") == [("fractures", [10.0, 20.0, 30.0, 40.0])]
    # A pixel task without a registered size keeps its coordinates as they are.
    assert boxes_of("xr-2") == [("fractures", [1.0, 1.0, 1.0, 2.0])]
    assert manifest["counts"] == {
        "items": 4, "raw_labels": 4, "fhir_resources": 8,
        "coco_images": 4, "coco_annotations": 3, "coco_readers_annotations": 4,
    }  # fmt: skip


def test_every_readers_box_is_in_the_readers_file_with_its_annotator(tmp_path: Path) -> None:
    _export(tmp_path)
    readers = COCO(str(tmp_path / "coco-readers.json"))
    annotations = readers.loadAnns(readers.getAnnIds())
    assert len(annotations) == 4
    assert {a["annotator_id"] for a in annotations} == {"reader-a"}
    ct1 = next(i for i in readers.dataset["images"] if i["consilium_item_id"] == "ct-1")
    (mass_id,) = readers.getCatIds(catNms=["mass"])
    (mass,) = readers.loadAnns(readers.getAnnIds(imgIds=[ct1["id"]], catIds=[mass_id]))
    assert mass["bbox"] == [256.0, 128.0, 51.2, 51.2]
    consensus = json.loads((tmp_path / "coco.json").read_text())
    assert readers.dataset["categories"] == consensus["categories"]


def test_coco_files_are_in_the_manifest_and_resume_to_the_same_bytes(tmp_path: Path) -> None:
    whole = _export(tmp_path / "whole")
    assert whole is not None
    assert {"coco.json", "coco-readers.json"} <= set(whole["files"])
    assert verify(tmp_path / "whole") == []
    _export(tmp_path / "resumed", crash_after=2)
    assert (tmp_path / "resumed" / CHECKPOINT).exists()
    _export(tmp_path / "resumed")
    for name in ("coco.json", "coco-readers.json", "manifest.json"):
        assert (tmp_path / "whole" / name).read_bytes() == (
            tmp_path / "resumed" / name
        ).read_bytes()
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == sorted(
        p.name for p in (tmp_path / "whole").iterdir()
    )
    (tmp_path / "whole" / "coco.json").write_text("{}")
    assert verify(tmp_path / "whole") == ["coco.json"]
