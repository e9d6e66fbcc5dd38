"""Dataset snapshots: JSONL, CSV, crowd-kit raw labels, a FHIR Bundle and, for box tasks,
COCO files, with a manifest.

A snapshot is written into a folder, file by file, in item order. A checkpoint records
the last item written and each file's length, so an interrupted export resumes where it
stopped (files are cut back to the checkpoint and appended to). COCO records are appended
to hidden part files the same way and assembled into `coco.json` (consensus boxes) and
`coco-readers.json` (every reader's boxes) at the end. The manifest, written last, holds
counts, filters, versions, the SHA-256 of every file and the audit chain head.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.export import fhir
from services.export.coco import BoxTask, CocoBuilder, ImageInfo
from shared.events import ConsensusPublished

CONSENSUS_JSONL = "consensus.jsonl"
CONSENSUS_CSV = "consensus.csv"
RAW_LABELS_CSV = "labels.csv"
FHIR_BUNDLE = "fhir-bundle.json"
COCO = "coco.json"
COCO_READERS = "coco-readers.json"
# Parts of the COCO files, appended item by item: images, then each file's annotations.
_IMAGES_PART = ".coco-images.part"
_PARTS = {COCO: ".coco-annotations.part", COCO_READERS: ".coco-readers-annotations.part"}
CHECKPOINT = ".checkpoint.json"
MANIFEST = "manifest.json"
CSV_COLUMNS = (
    "item_id", "task_id", "task_version", "version", "supersedes_version", "label",
    "confidence", "agreement", "method", "method_version", "readers", "provenance_sha256",
    "adjudicator_id", "adjudication_reason_code", "adjudication_guideline_clause",
    "adjudication_text", "adjudication_signature_meaning",
)  # fmt: skip


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _adjudication_columns(published: ConsensusPublished) -> list[str]:
    """Adjudicator and rationale, empty cells when no adjudicator decided the item."""
    rationale = published.adjudication
    if rationale is None:
        return [published.adjudicator_id or "", "", "", "", ""]
    return [
        published.adjudicator_id or "",
        rationale.reason_code,
        rationale.guideline_clause or "",
        rationale.text or "",
        rationale.signature_meaning,
    ]


@dataclass
class SnapshotWriter:
    """Appends items to the snapshot files; resumable through its checkpoint."""

    folder: Path
    filters: dict[str, Any]
    last_item: str | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"items": 0, "raw_labels": 0, "fhir_resources": 0}
    )
    box_tasks: Mapping[str, BoxTask] = field(default_factory=dict)
    _files: dict[str, Any] = field(default_factory=dict)
    _bundle_entries: int = 0
    _coco: CocoBuilder | None = None

    def _names(self) -> list[str]:
        names = [CONSENSUS_JSONL, CONSENSUS_CSV, RAW_LABELS_CSV, FHIR_BUNDLE]
        return names + ([_IMAGES_PART, *_PARTS.values()] if self.box_tasks else [])

    def open(self) -> None:
        """Start, or resume from the checkpoint when it was written for the same filters."""
        self.folder.mkdir(parents=True, exist_ok=True)
        checkpoint = self.folder / CHECKPOINT
        lengths: dict[str, int] = {}
        self._coco = CocoBuilder(self.box_tasks) if self.box_tasks else None
        if checkpoint.exists():
            state = json.loads(checkpoint.read_text())
            if state["filters"] == self.filters:
                self.last_item = state["last_item"]
                self.counts = state["counts"]
                lengths = state["lengths"]
                self._bundle_entries = state["bundle_entries"]
                if self._coco is not None and state.get("coco"):
                    self._coco.restore(state["coco"])
        for name in self._names():
            path = self.folder / name
            handle = path.open("a+b")
            handle.truncate(lengths.get(name, 0))
            handle.seek(0, io.SEEK_END)
            self._files[name] = handle
        if not lengths:
            self._write(CONSENSUS_CSV, _csv_line(list(CSV_COLUMNS)))
            self._write(RAW_LABELS_CSV, _csv_line(["worker", "task", "label"]))
            self._write(FHIR_BUNDLE, '{"resourceType":"Bundle","type":"collection","entry":[')

    def _write(self, name: str, text: str) -> None:
        self._files[name].write(text.encode())

    def add(
        self,
        published: ConsensusPublished,
        raw_labels: list[tuple[str, str]],
        *,
        image: ImageInfo | None = None,
        reader_boxes: Sequence[tuple[str, str, list[list[float | str]]]] = (),
    ) -> None:
        """One item's current consensus and its raw labels (worker, label); for a box
        task also its image and every reader's boxes (worker, label id, boxes)."""
        label = published.label
        label_text = json.dumps(label) if isinstance(label, list) else label
        self._write(CONSENSUS_JSONL, published.model_dump_json() + "\n")
        self._write(
            CONSENSUS_CSV,
            _csv_line(
                [
                    published.item_id, published.task_id, published.task_version,
                    published.version, published.supersedes_version or "",
                    label_text,
                    published.confidence, published.agreement, published.method,
                    published.method_version, " ".join(published.contributing_annotators),
                    published.provenance_sha256,
                    *_adjudication_columns(published),
                ]
            ),
        )  # fmt: skip
        for worker, label in raw_labels:
            self._write(RAW_LABELS_CSV, _csv_line([worker, published.item_id, label]))
        for resource in fhir.resources(published):
            entry = {
                "fullUrl": f"urn:uuid:{resource.id}",
                "resource": resource.model_dump(mode="json", exclude_none=True),
            }
            self._write(
                FHIR_BUNDLE,
                ("," if self._bundle_entries else "") + json.dumps(entry, sort_keys=True),
            )
            self._bundle_entries += 1
            self.counts["fhir_resources"] += 1
        if self._coco is not None and published.task_id in self.box_tasks:
            self._add_coco(published, image or ImageInfo(published.item_id), reader_boxes)
        self.counts["items"] += 1
        self.counts["raw_labels"] += len(raw_labels)
        self.last_item = published.item_id

    def _add_coco(
        self,
        published: ConsensusPublished,
        info: ImageInfo,
        reader_boxes: Sequence[tuple[str, str, list[list[float | str]]]],
    ) -> None:
        assert self._coco is not None
        image = self._coco.image(published.item_id, published.task_id, published.task_version, info)
        self._write(_IMAGES_PART, json.dumps(image, sort_keys=True) + "\n")
        label = published.label if isinstance(published.label, list) else []
        consensus = self._coco.annotations_of(
            COCO, image, info, [box for box in label if isinstance(box, list)],
            {"consensus_version": published.version, "consensus_confidence": published.confidence},
        )  # fmt: skip
        readers = [
            annotation
            for worker, label_id, boxes in reader_boxes
            for annotation in self._coco.annotations_of(
                COCO_READERS, image, info, boxes, {"annotator_id": worker, "label_id": label_id}
            )
        ]
        for name, records in ((COCO, consensus), (COCO_READERS, readers)):
            for record in records:
                self._write(_PARTS[name], json.dumps(record, sort_keys=True) + "\n")

    def checkpoint(self) -> None:
        """Make what was added durable and resumable."""
        for handle in self._files.values():
            handle.flush()
        state = {
            "filters": self.filters,
            "last_item": self.last_item,
            "counts": self.counts,
            "bundle_entries": self._bundle_entries,
            "lengths": {name: handle.tell() for name, handle in self._files.items()},
            "coco": self._coco.state() if self._coco else None,
        }
        tmp = self.folder / (CHECKPOINT + ".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.folder / CHECKPOINT)

    def finish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Close the files and write the manifest with every file's hash."""
        self._write(FHIR_BUNDLE, "]}\n")
        for handle in self._files.values():
            handle.close()
        names = [CONSENSUS_JSONL, CONSENSUS_CSV, RAW_LABELS_CSV, FHIR_BUNDLE]
        if self._coco is not None:
            names += self._assemble_coco()
        files = {}
        for name in sorted(names):
            path = self.folder / name
            files[name] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
        document = {**manifest, "filters": self.filters, "counts": self.counts, "files": files}
        (self.folder / MANIFEST).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        (self.folder / CHECKPOINT).unlink(missing_ok=True)
        for part in (_IMAGES_PART, *_PARTS.values()):
            (self.folder / part).unlink(missing_ok=True)
        return document

    def _assemble_coco(self) -> list[str]:
        """Write both COCO files from their parts (dropped once the manifest is written)."""
        assert self._coco is not None
        self.counts["coco_images"] = self._coco.images
        for name, part in _PARTS.items():
            self.counts[f"{name.removesuffix('.json').replace('-', '_')}_annotations"] = (
                self._coco.annotations.get(name, 0)
            )
            info = {
                "description": f"Consilium snapshot: {_COCO_CONTENT[name]}",
                "coordinates": "pixels where the image size is known, else normalized [0, 1]",
            }
            with (self.folder / name).open("w") as out:
                out.write(f'{{"info":{json.dumps(info, sort_keys=True)},"licenses":[],"images":[')
                _join_lines(self.folder / _IMAGES_PART, out)
                out.write('],"annotations":[')
                _join_lines(self.folder / part, out)
                categories = json.dumps(self._coco.category_records(), sort_keys=True)
                out.write(f'],"categories":{categories}}}\n')
        return list(_PARTS)


_COCO_CONTENT = {COCO: "consensus boxes", COCO_READERS: "every reader's boxes"}


def _join_lines(part: Path, out: Any) -> None:
    """Copy a JSON-lines part as comma-separated array elements."""
    with part.open() as lines:
        for index, line in enumerate(lines):
            out.write(("," if index else "") + line.rstrip("\n"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(folder: Path) -> list[str]:
    """Files whose hash or size no longer matches the manifest (empty when intact)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    return [
        name
        for name, expected in manifest["files"].items()
        if not (folder / name).exists() or sha256_of(folder / name) != expected["sha256"]
    ]
