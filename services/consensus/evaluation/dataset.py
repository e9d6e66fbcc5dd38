"""Read a dataset folder: answers.csv (worker,task,label) and optional truth.csv (task,truth)."""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Answer:
    row: int
    worker: str
    task: str
    label: str


@dataclass(frozen=True)
class Dataset:
    """Answers in file order, the reference labels, and the inferred label kind."""

    name: str
    answers: tuple[Answer, ...]
    truth: dict[str, str]
    kind: str  # "categorical" or "numeric"
    classes: tuple[str, ...]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.task for a in self.answers))

    @property
    def repeats(self) -> int:
        """Answers whose (worker, task) pair was already seen: the same worker twice."""
        seen: set[tuple[str, str]] = set()
        count = 0
        for a in self.answers:
            key = (a.worker, a.task)
            count += key in seen
            seen.add(key)
        return count

    @property
    def labels_per_task(self) -> float:
        return len(self.answers) / max(len(self.tasks), 1)

    @property
    def overlap(self) -> int:
        """The fixed design's labels per item: the median count (upper median)."""
        counts = Counter(answer.task for answer in self.answers)
        return int(statistics.median_high(counts.values())) if counts else 0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_int(text: str) -> bool:
    try:
        return float(text) == int(float(text))
    except ValueError:
        return False


def _class_order(values: set[str]) -> tuple[str, ...]:
    """Numeric codes in numeric order, otherwise text order: the tie-break order."""
    if all(_is_number(v) for v in values):
        return tuple(sorted(values, key=lambda v: (float(v), v)))
    return tuple(sorted(values))


def infer_kind(labels: set[str]) -> str:
    """Numeric when labels are numbers that are not a small set of integer codes."""
    if not all(_is_number(v) for v in labels):
        return "categorical"
    if all(_is_int(v) for v in labels) and len(labels) <= 20:
        return "categorical"
    return "numeric"


def _read(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(columns) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} lacks columns {sorted(missing)}")
        return [{c: row[c].strip() for c in columns} for row in reader]


def load_dataset(directory: Path) -> Dataset:
    """Load a dataset folder; label codes are kept as text, exactly as in the files."""
    directory = Path(directory)
    rows = _read(directory / "answers.csv", ("worker", "task", "label"))
    answers = tuple(
        Answer(i, r["worker"], r["task"], r["label"]) for i, r in enumerate(rows) if r["label"]
    )
    if not answers:
        raise ValueError(f"{directory / 'answers.csv'} holds no answers")
    truth_path = directory / "truth.csv"
    truth = (
        {r["task"]: r["truth"] for r in _read(truth_path, ("task", "truth")) if r["truth"]}
        if truth_path.exists()
        else {}
    )
    labels = {a.label for a in answers}
    kind = infer_kind(labels | set(truth.values()))
    classes = _class_order(labels | set(truth.values())) if kind == "categorical" else ()
    return Dataset(directory.name, answers, truth, kind, classes)
