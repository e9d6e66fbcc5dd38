"""ds box existence: the drawing pattern's likelihood given that the candidate was formed.

Candidates exist only where someone drew, so plain Dawid-Skene learns from false boxes a
draw rate of about 1 / readers and finds two agreeing readers hardly more convincing than
one: streamed it accepted one-reader false boxes, and EM from scratch rejected real
objects drawn by two of three readers (bench/box_existence.py).
"""

from __future__ import annotations

import random

import pytest

from services.consensus.engine import (
    ConsensusPolicy,
    Decision,
    ItemState,
    ReliabilityLedger,
    ReliabilitySnapshot,
    reestimate,
    step,
)

from .helpers import fold, label

NODULE = (10.0, 10.0, 50.0, 50.0, "nodule")
READERS = ("r1", "r2", "r3")
Image = tuple[str, dict[str, tuple[object, ...]], bool]  # item id, readings, holds an object


def _policy(method: str = "ds", **params: float) -> ConsensusPolicy:
    return ConsensusPolicy(
        method=method,  # type: ignore[arg-type]
        kind="boxes",
        classes=("nodule",),
        min_labels=3,
        max_labels=3,
        threshold=0.9,
        params=params,
    )


def _p_present(decision: Decision | None) -> float:
    assert decision is not None
    (candidate,) = decision.details["boxes"]
    return float(candidate["p_present"])


def test_under_the_prior_a_lone_box_is_rejected_and_a_second_readers_box_makes_an_object() -> None:
    empty = ReliabilitySnapshot.empty()
    lone = [label("a", "r1", (NODULE,)), label("b", "r2", ()), label("c", "r3", ())]
    pair = [label("a", "r1", (NODULE,)), label("b", "r2", (NODULE,)), label("c", "r3", ())]
    # Plain Dawid-Skene under the same prior readers gives 0.30 and 0.70.
    assert _p_present(fold(_policy(), lone, empty)[1]) == pytest.approx(0.178, abs=0.005)
    assert _p_present(fold(_policy(), pair, empty)[1]) == pytest.approx(0.820, abs=0.005)


def test_a_higher_false_draw_rate_trusts_two_agreeing_readers_less() -> None:
    empty = ReliabilitySnapshot.empty()
    pair = [label("a", "r1", (NODULE,)), label("b", "r2", (NODULE,)), label("c", "r3", ())]
    rare = _p_present(fold(_policy(box_false_draw_rate=0.02), pair, empty)[1])
    common = _p_present(fold(_policy(box_false_draw_rate=0.2), pair, empty)[1])
    assert common < 0.9 < rare


def _images(seed: int, count: int) -> list[Image]:
    """A third of the images hold one object, each reader draws it with probability 0.9
    and adds a false box elsewhere with probability 0.05."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        has_object = rng.random() < 1 / 3
        x, y = rng.uniform(0, 400), rng.uniform(0, 400)
        readings: dict[str, tuple[object, ...]] = {}
        for reader in READERS:
            boxes: list[object] = []
            if has_object and rng.random() < 0.9:
                dx, dy = rng.gauss(0, 1), rng.gauss(0, 1)
                boxes.append((x + dx, y + dy, x + dx + 40.0, y + dy + 40.0, "nodule"))
            if rng.random() < 0.05:
                fx, fy = rng.uniform(600, 1000), rng.uniform(600, 1000)
                boxes.append((fx, fy, fx + 40.0, fy + 40.0, "nodule"))
            readings[reader] = tuple(boxes)
        out.append((f"image-{index}", readings, has_object))
    return out


def _tally(images: list[Image], decisions: dict[str, Decision]) -> tuple[int, int, int]:
    """(objects missed, false boxes in labels, items contested)."""
    missed = false_boxes = contested = 0
    for item_id, _, has_object in images:
        decision = decisions[item_id]
        on_object = [box for box in decision.label if float(box[0]) < 500.0]
        missed += has_object and not on_object
        false_boxes += len(decision.label) - len(on_object)
        contested += decision.outcome == "contested"
    return missed, false_boxes, contested


def _stream(
    policy: ConsensusPolicy, images: list[Image]
) -> tuple[dict[str, Decision], list[ItemState]]:
    events = [(item, r, readings[r]) for item, readings, _ in images for r in READERS]
    random.Random(1).shuffle(events)
    ledger = ReliabilityLedger()
    states: dict[str, ItemState] = {}
    decisions: dict[str, Decision] = {}
    for item_id, reader, boxes in events:
        observed = label(f"{item_id}-{reader}", reader, boxes)  # type: ignore[arg-type]
        result = step(policy, states.get(item_id) or ItemState.new(item_id), observed, ledger)
        ledger.apply(result.delta)
        states[item_id], decisions[item_id] = result.state, result.decision
    return decisions, list(states.values())


def test_streamed_and_batch_ds_keep_no_false_box_and_miss_no_more_objects_than_majority() -> None:
    images = _images(0, 300)
    majority_missed, _, majority_contested = _tally(images, _stream(_policy("mv"), images)[0])
    decisions, states = _stream(_policy(), images)
    missed, false_boxes, contested = _tally(images, decisions)
    batch = reestimate(_policy(), states, from_scratch=True)
    by_item = {s.item_id: d for s, d in zip(batch.states, batch.decisions, strict=True)}
    batch_missed, batch_false_boxes, _ = _tally(images, by_item)
    # Plain Dawid-Skene on this stream: 30 false boxes kept and 81 images contested
    # streamed; EM from scratch missed 34 objects (majority vote: 3, ds now: 3).
    assert (false_boxes, batch_false_boxes) == (0, 0)
    assert missed <= majority_missed and batch_missed <= majority_missed
    # Majority vote contests every image with a lone box or a 2-1 object (82 of 300);
    # ds 31 at the default false draw rate, 4 at 0.02.
    assert contested * 2 < majority_contested


def test_a_false_draw_rate_outside_zero_and_one_is_refused() -> None:
    for rate in (0.0, 1.0):
        with pytest.raises(ValueError, match="box_false_draw_rate must be in"):
            _policy(box_false_draw_rate=rate)
