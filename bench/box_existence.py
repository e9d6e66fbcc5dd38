"""Box existence on a synthetic stream with known truth: which boxes survive.

A candidate object exists only where some reader drew a box, so the "absent" candidates
existence learns from are false boxes, nearly always one reader's. Plain Dawid-Skene (the
rule before `consilium-engine/1.5.0`) reads each reader's draw rate on them (about 1 /
readers on the image) and multiplies such rates as if false boxes were drawn
independently at one spot, so two agreeing readers look hardly more convincing than one.
ds now scores the drawing pattern given that the candidate was formed
(engine/box_existence.py). Both run here on the same streams, plain Dawid-Skene as the
baseline, with mv and weighted beside them; each streamed one label at a time (every
label sees the current ledger) and, for ds, by batch EM from scratch over the same labels.

Images: `--images` (600), a third of them with one object (a 40 x 40 box at a random
place, each reader's copy jittered by 1 px), read by three readers who each draw it with
probability `--sensitivity` (0.9) and add, with probability `--false-boxes` (0.05), a
false box at a random place elsewhere. With `--distractor P`, a share P of the images
also holds a look-alike that each reader mistakes for an object with probability 0.3: the
readers' errors coincide there, which no existence model without image features can
tell from an object. Policy: min = max = 3 labels, threshold 0.9, the box defaults.

Printed per method: items reached and contested; objects missed (no accepted box on
the object), and those of them in reached labels (published); false boxes accepted (in
the label: contested for lack of support, or reached), and those in reached labels.

Usage:
    .venv/bin/python -m bench.box_existence [--images 600] [--seeds 3] [--sensitivity 0.9]
        [--false-boxes 0.05] [--distractor 0] [--false-draw-rates 0.02,0.1]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from unittest import mock

from services.consensus.engine import (
    ConsensusPolicy,
    Decision,
    ItemState,
    LabelObservation,
    ReliabilityLedger,
    boxes,
    reestimate,
    step,
)
from services.consensus.engine.categorical import posterior_units

READERS = ("r1", "r2", "r3")
COLUMNS = ("reached", "contested", "missed", "missed reached", "false accepted", "false reached")
Box = tuple[float, float, float, float, str]


@dataclass(frozen=True)
class Design:
    images: int
    sensitivity: float
    false_boxes: float
    distractor: float


@dataclass(frozen=True)
class Image:
    item_id: str
    readings: dict[str, tuple[Box, ...]]
    object_at: tuple[float, float] | None


def _box(x: float, y: float) -> Box:
    return (x, y, x + 40.0, y + 40.0, "nodule")


def synthetic_images(seed: int, design: Design) -> list[Image]:
    rng = random.Random(seed)
    out = []
    for index in range(design.images):
        object_at = (rng.uniform(0, 400), rng.uniform(0, 400)) if rng.random() < 1 / 3 else None
        look_alike = (rng.uniform(1200, 1600), 0.0) if rng.random() < design.distractor else None
        readings: dict[str, tuple[Box, ...]] = {}
        for reader in READERS:
            drawn: list[Box] = []
            if object_at is not None and rng.random() < design.sensitivity:
                drawn.append(_box(object_at[0] + rng.gauss(0, 1), object_at[1] + rng.gauss(0, 1)))
            if look_alike is not None and rng.random() < 0.3:
                drawn.append(_box(look_alike[0] + rng.gauss(0, 1), look_alike[1]))
            if rng.random() < design.false_boxes:  # a false box well away from the rest
                drawn.append(_box(rng.uniform(600, 1000), rng.uniform(600, 1000)))
            readings[reader] = tuple(drawn)
        out.append(Image(f"image-{index}", readings, object_at))
    return out


def _on_object(box: Sequence[object], image: Image) -> bool:
    x0 = box[0]
    assert isinstance(x0, float)
    return image.object_at is not None and abs(x0 - image.object_at[0]) < 20.0


def _count(images: Sequence[Image], decisions: dict[str, Decision]) -> dict[str, int]:
    counts = dict.fromkeys(COLUMNS, 0)
    for image in images:
        decision = decisions[image.item_id]
        false_boxes = sum(1 for box in decision.label if not _on_object(box, image))
        counts["reached"] += decision.outcome == "reached"
        counts["contested"] += decision.outcome == "contested"
        missed = image.object_at is not None and not any(
            _on_object(box, image) for box in decision.label
        )
        counts["missed"] += missed
        counts["missed reached"] += missed and decision.outcome == "reached"
        counts["false accepted"] += false_boxes
        counts["false reached"] += false_boxes if decision.outcome == "reached" else 0
    return counts


def _policy(method: str, false_draw_rate: float) -> ConsensusPolicy:
    return ConsensusPolicy(
        method=method,  # type: ignore[arg-type]
        kind="boxes",
        classes=("nodule",),
        min_labels=3,
        max_labels=3,
        threshold=0.9,
        params={"box_false_draw_rate": false_draw_rate},
    )


@contextmanager
def _plain_dawid_skene() -> Iterator[None]:
    """Existence scored as any binary item is (the rule before 1.5.0)."""
    with mock.patch.object(
        boxes, "existence_units",
        lambda policy, scope, votes, view: posterior_units(policy, scope, votes, view, 2),
    ):  # fmt: skip
        yield


def stream(
    policy: ConsensusPolicy, images: Sequence[Image], seed: int
) -> tuple[dict[str, Decision], list[ItemState]]:
    labels = [(image, reader) for image in images for reader in READERS]
    random.Random(seed).shuffle(labels)
    ledger = ReliabilityLedger()
    states: dict[str, ItemState] = {}
    decisions: dict[str, Decision] = {}
    for image, reader in labels:
        value = image.readings[reader]
        observed = LabelObservation(f"{image.item_id}-{reader}", reader, value)
        state = states.get(image.item_id) or ItemState.new(image.item_id)
        result = step(policy, state, observed, ledger)
        ledger.apply(result.delta)
        states[image.item_id] = result.state
        decisions[image.item_id] = result.decision
    return decisions, list(states.values())


def rows(
    images: Sequence[Image], seed: int, rates: Sequence[float]
) -> Iterator[tuple[str, dict[str, int]]]:
    for method in ("mv", "weighted"):
        yield f"{method}, streamed", _count(images, stream(_policy(method, 0.1), images, seed)[0])
    variants = [("ds, plain Dawid-Skene (1.4.0)", 0.1, True)]
    variants += [(f"ds, box_false_draw_rate {rate}", rate, False) for rate in rates]
    for name, rate, plain in variants:
        policy = _policy("ds", rate)
        with _plain_dawid_skene() if plain else nullcontext():
            decisions, states = stream(policy, images, seed)
            batch = reestimate(policy, states, from_scratch=True)
        yield f"{name}, streamed", _count(images, decisions)
        by_item = {s.item_id: d for s, d in zip(batch.states, batch.decisions, strict=True)}
        yield f"{name}, batch EM from scratch", _count(images, by_item)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sensitivity", type=float, default=0.9)
    parser.add_argument("--false-boxes", type=float, default=0.05)
    parser.add_argument("--distractor", type=float, default=0.0)
    parser.add_argument("--false-draw-rates", default="0.02,0.1")
    args = parser.parse_args()
    design = Design(args.images, args.sensitivity, args.false_boxes, args.distractor)
    rates = [float(r) for r in args.false_draw_rates.split(",")]
    print(f"| seed | method | objects | {' | '.join(COLUMNS)} |")
    print("|" + "---|" * (3 + len(COLUMNS)))
    for seed in range(args.seeds):
        images = synthetic_images(seed, design)
        objects = sum(image.object_at is not None for image in images)
        for name, counts in rows(images, seed, rates):
            cells = " | ".join(str(counts[c]) for c in COLUMNS)
            print(f"| {seed} | {name} | {objects} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
