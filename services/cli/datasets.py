"""Reading multi-rater label sets: answers.csv (worker,task,label), truth.csv (task,truth)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Answer:
    worker: str
    task: str
    label: str


def read_answers(folder: Path) -> list[Answer]:
    with (folder / "answers.csv").open(newline="") as handle:
        return [Answer(row["worker"], row["task"], row["label"]) for row in csv.DictReader(handle)]


def read_truth(folder: Path) -> dict[str, str]:
    path = folder / "truth.csv"
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        return {row["task"]: row["truth"] for row in csv.DictReader(handle)}


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/|\-]")


def safe_id(raw: str) -> str:
    """Map a dataset's id onto Consilium's identifier alphabet (spaces become '_')."""
    return _UNSAFE.sub("_", raw)[:200]
