"""Dataset snapshots: JSONL, CSV, crowd-kit raw labels and a FHIR Bundle, with a manifest.

A snapshot is written into a folder, file by file, in item order. A checkpoint records
the last item written and each file's length, so an interrupted export resumes where it
stopped (files are cut back to the checkpoint and appended to). The manifest, written
last, holds counts, filters, versions, the SHA-256 of every file and the audit chain head.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.export import fhir
from shared.events import ConsensusPublished

CONSENSUS_JSONL = "consensus.jsonl"
CONSENSUS_CSV = "consensus.csv"
RAW_LABELS_CSV = "labels.csv"
FHIR_BUNDLE = "fhir-bundle.json"
CHECKPOINT = ".checkpoint.json"
MANIFEST = "manifest.json"
CSV_COLUMNS = (
    "item_id", "task_id", "task_version", "version", "supersedes_version", "label",
    "confidence", "agreement", "method", "method_version", "readers", "provenance_sha256",
)  # fmt: skip


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


@dataclass
class SnapshotWriter:
    """Appends items to the snapshot files; resumable through its checkpoint."""

    folder: Path
    filters: dict[str, Any]
    last_item: str | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"items": 0, "raw_labels": 0, "fhir_resources": 0}
    )
    _files: dict[str, Any] = field(default_factory=dict)
    _bundle_entries: int = 0

    def open(self) -> None:
        """Start, or resume from the checkpoint when it was written for the same filters."""
        self.folder.mkdir(parents=True, exist_ok=True)
        checkpoint = self.folder / CHECKPOINT
        lengths: dict[str, int] = {}
        if checkpoint.exists():
            state = json.loads(checkpoint.read_text())
            if state["filters"] == self.filters:
                self.last_item = state["last_item"]
                self.counts = state["counts"]
                lengths = state["lengths"]
                self._bundle_entries = state["bundle_entries"]
        for name in (CONSENSUS_JSONL, CONSENSUS_CSV, RAW_LABELS_CSV, FHIR_BUNDLE):
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

    def add(self, published: ConsensusPublished, raw_labels: list[tuple[str, str]]) -> None:
        """One item's current consensus and its raw labels (worker, label)."""
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
        self.counts["items"] += 1
        self.counts["raw_labels"] += len(raw_labels)
        self.last_item = published.item_id

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
        }
        tmp = self.folder / (CHECKPOINT + ".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.folder / CHECKPOINT)

    def finish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Close the files and write the manifest with every file's hash."""
        self._write(FHIR_BUNDLE, "]}\n")
        for handle in self._files.values():
            handle.close()
        files = {}
        for name in sorted(self._files):
            path = self.folder / name
            files[name] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
        document = {**manifest, "filters": self.filters, "counts": self.counts, "files": files}
        (self.folder / MANIFEST).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        (self.folder / CHECKPOINT).unlink(missing_ok=True)
        return document


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
