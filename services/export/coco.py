"""COCO object-detection records for box tasks (pure).

One image per item, one annotation per box. Boxes are exported in pixels when the item's
image size is known (tasks in normalized coordinates are scaled to it); otherwise they
stay in normalized [0, 1] coordinates and the image says so (`coordinates`, width and
height 1). Categories are the box classes of every box task in the snapshot (a task whose
boxes carry no class has one category, named after the task), numbered from 1 in task
and class order; a class first seen on a box gets the next id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Coordinates = Literal["normalized", "pixels"]


@dataclass(frozen=True)
class BoxTask:
    """A box task as COCO needs it: its classes and each version's coordinate space."""

    task_id: str
    classes: tuple[str, ...]
    coordinates: Mapping[int, Coordinates]


@dataclass(frozen=True)
class ImageInfo:
    """What is known of an item's image: a reference to it and its size in pixels."""

    file_name: str
    width: float | None = None
    height: float | None = None


@dataclass
class CocoBuilder:
    """Numbers images, annotations and categories; its state goes into the checkpoint."""

    tasks: Mapping[str, BoxTask]
    categories: dict[str, int] = field(default_factory=dict)  # "task|class" -> id
    images: int = 0
    annotations: dict[str, int] = field(default_factory=dict)  # per COCO file

    def __post_init__(self) -> None:
        if not self.categories:
            for task_id in sorted(self.tasks):
                for name in self.tasks[task_id].classes or (None,):
                    self._category(task_id, name)

    def _category(self, task_id: str, name: str | None) -> int:
        key = f"{task_id}|{name or ''}"
        if key not in self.categories:
            self.categories[key] = len(self.categories) + 1
        return self.categories[key]

    def image(
        self, item_id: str, task_id: str, task_version: int, info: ImageInfo
    ) -> dict[str, Any]:
        """The next image record (its space decides how its boxes are written)."""
        self.images += 1
        sized = info.width is not None and info.height is not None
        return {
            "id": self.images,
            "file_name": info.file_name,
            "width": round(info.width) if sized and info.width else 1,
            "height": round(info.height) if sized and info.height else 1,
            "coordinates": "pixels" if sized else "normalized",
            "consilium_item_id": item_id,
            "consilium_task_id": task_id,
            "consilium_task_version": task_version,
        }

    def annotations_of(
        self,
        file: str,
        image: Mapping[str, Any],
        info: ImageInfo,
        boxes: Iterable[Sequence[float | str]],
        extra: Mapping[str, Any],
    ) -> list[dict[str, Any]]:
        """One annotation per box [x0, y0, x1, y1(, class)], numbered within `file`."""
        task_id = str(image["consilium_task_id"])
        sx, sy = self._scale(task_id, int(image["consilium_task_version"]), info)
        out = []
        for box in boxes:
            x0, y0, x1, y1 = (float(v) for v in box[:4])
            name = str(box[4]) if len(box) > 4 else None
            self.annotations[file] = self.annotations.get(file, 0) + 1
            width, height = (x1 - x0) * sx, (y1 - y0) * sy
            out.append(
                {
                    "id": self.annotations[file],
                    "image_id": image["id"],
                    "category_id": self._category(task_id, name),
                    "bbox": [_r(x0 * sx), _r(y0 * sy), _r(width), _r(height)],
                    "area": _r(width * height),
                    "iscrowd": 0,
                    **extra,
                }
            )
        return out

    def _scale(self, task_id: str, task_version: int, info: ImageInfo) -> tuple[float, float]:
        """Factors from the task's coordinates to the image record's (pixels if known)."""
        if info.width is None or info.height is None:
            return 1.0, 1.0
        task = self.tasks.get(task_id)
        space = task.coordinates.get(task_version, "normalized") if task else "normalized"
        return (info.width, info.height) if space == "normalized" else (1.0, 1.0)

    def category_records(self) -> list[dict[str, Any]]:
        records = []
        for key, category_id in sorted(self.categories.items(), key=lambda kv: kv[1]):
            task_id, name = key.split("|", 1)
            records.append({"id": category_id, "name": name or task_id, "supercategory": task_id})
        return records

    def state(self) -> dict[str, Any]:
        return {
            "categories": self.categories,
            "images": self.images,
            "annotations": self.annotations,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.categories = dict(state["categories"])
        self.images = int(state["images"])
        self.annotations = dict(state["annotations"])


def _r(value: float) -> float:
    return round(value, 6)


def reader_boxes(value: Mapping[str, Any]) -> list[list[float | str]]:
    """A raw boxes label (submission's stored JSON) in the consensus form."""
    return [
        [box["x0"], box["y0"], box["x1"], box["y1"], *([box["label"]] if box.get("label") else [])]
        for box in value.get("boxes", ())
    ]
