"""A box task decided by the services exports as COCO (loaded with pycocotools), with the
image sizes registered with its items and every reader's boxes."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from services.assignment.admin import register_annotators
from services.cli.export_cmd import replay_published, write_snapshot
from services.export.snapshot import verify
from shared.events import Box, BoxesValue, ConsensusPolicy
from shared.runtime import ServiceRuntime
from shared.topics import ITEMS_REGISTERED, LABELS_SUBMITTED, TASKS_DEFINED
from tests import factories
from tests.integration.conftest import Kafka, dsn_for, wait_until
from tests.integration.test_export import _at_least
from tests.integration.test_pipeline import _known_to_submission

pytestmark = pytest.mark.integration
READERS = ("reader-a", "reader-b", "reader-c")
DSNS = {name: dsn_for(name) for name in ("export", "submission", "consensus", "assignment")}


async def test_a_box_task_snapshot_holds_coco_files_that_pycocotools_loads(
    services: dict[str, ServiceRuntime], kafka: Kafka, tmp_path: Path
) -> None:
    definition = factories.task(
        label_kind="boxes", classes=("nodule",), box_coordinates="normalized",
        policy=ConsensusPolicy(method="mv", min_labels=3, max_labels=3, threshold=0.5),
    )  # fmt: skip
    await register_annotators(dsn_for("assignment"), definition.task_id, list(READERS), "reader")
    await kafka.publish(TASKS_DEFINED, factories.task_event(definition))
    sized = factories.item_event(definition.task_id, image_width=400, image_height=200)
    unsized = factories.item_event(definition.task_id)
    for item in (sized, unsized):
        await kafka.publish(ITEMS_REGISTERED, item)
        await wait_until(partial(_known_to_submission, item.payload.item_id))
    box = Box(x0=0.25, y0=0.5, x1=0.5, y1=0.75, label="nodule")
    for item in (sized, unsized):
        for reader in READERS:
            await kafka.publish(
                LABELS_SUBMITTED,
                factories.label_event(
                    item.payload.item_id, definition.task_id, reader, "",
                    label_value=BoxesValue(boxes=(box,)),
                ),
            )  # fmt: skip
    await wait_until(lambda: _at_least(definition.task_id, 2), timeout=60)

    manifest = await write_snapshot(tmp_path, definition.task_id, DSNS)
    assert verify(tmp_path) == []
    assert {"coco.json", "coco-readers.json"} <= set(manifest["files"])
    coco = COCO(str(tmp_path / "coco.json"))
    images = {i["consilium_item_id"]: i for i in coco.loadImgs(coco.getImgIds())}
    assert images[sized.payload.item_id]["file_name"] == sized.payload.case_ref
    assert (images[sized.payload.item_id]["width"], images[sized.payload.item_id]["height"]) == (
        400,
        200,
    )
    assert images[unsized.payload.item_id]["coordinates"] == "normalized"
    (nodule,) = coco.getCatIds(catNms=["nodule"])
    in_pixels = coco.loadAnns(coco.getAnnIds(imgIds=[images[sized.payload.item_id]["id"]]))
    assert [(a["category_id"], a["bbox"]) for a in in_pixels] == [
        (nodule, [100.0, 100.0, 100.0, 50.0])
    ]
    normalized = coco.loadAnns(coco.getAnnIds(imgIds=[images[unsized.payload.item_id]["id"]]))
    assert [a["bbox"] for a in normalized] == [[0.25, 0.5, 0.25, 0.25]]
    readers = COCO(str(tmp_path / "coco-readers.json"))
    assert sorted(a["annotator_id"] for a in readers.loadAnns(readers.getAnnIds())) == sorted(
        READERS * 2
    )
    report = await replay_published(definition.task_id, DSNS)
    assert report.checked == 2
    assert report.mismatches == []
