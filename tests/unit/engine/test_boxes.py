"""Bounding boxes: IoU matching, reliability-weighted fusion, the decision, and invariances."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.consensus.engine import (
    ConsensusPolicy,
    CriticalRule,
    Decision,
    ItemState,
    LabelObservation,
    ReliabilityDelta,
    ReliabilityLedger,
    ReliabilitySnapshot,
    e_step,
    recount,
    reestimate,
    rescore,
    step,
)
from services.consensus.engine.boxes import iou, match, parse_boxes

from .helpers import fold, label, stream

EMPTY = ReliabilitySnapshot.empty()
Raw = tuple[float | str, ...]
NODULE: Raw = (10.0, 10.0, 50.0, 50.0, "nodule")
MASS: Raw = (100.0, 100.0, 140.0, 160.0, "mass")


def boxes_policy(method: str = "ds", **kwargs: object) -> ConsensusPolicy:
    return ConsensusPolicy(
        method=method,  # type: ignore[arg-type]
        kind="boxes",
        classes=("nodule", "mass"),
        **kwargs,  # type: ignore[arg-type]
    )


def shifted(box: Raw, dx: float) -> Raw:
    return (float(box[0]) + dx, float(box[1]) + dx, float(box[2]) + dx, float(box[3]) + dx, box[4])


def test_iou_of_identical_disjoint_and_half_overlapping_boxes() -> None:
    a = parse_boxes(((0, 0, 2, 2),))[0]
    assert iou(a, a) == 1.0
    assert iou(a, parse_boxes(((5, 5, 6, 6),))[0]) == 0.0
    assert iou(a, parse_boxes(((1, 0, 3, 2),))[0]) == pytest.approx(1 / 3)


def test_three_readers_drawing_the_same_nodule_reach_one_fused_box() -> None:
    labels = [
        label("a", "r1", (NODULE,)),
        label("b", "r2", (shifted(NODULE, 1.0),)),
        label("c", "r3", (shifted(NODULE, -1.0),)),
    ]
    _, decision = fold(boxes_policy("mv", threshold=0.9), labels, EMPTY)
    assert decision is not None
    assert decision.outcome == "reached"
    assert decision.label == ((10.0, 10.0, 50.0, 50.0, "nodule"),)
    assert decision.agreement == 1.0
    assert decision.details["boxes"][0]["readers"] == ["r1", "r2", "r3"]


def test_a_box_only_one_of_three_readers_draws_is_rejected() -> None:
    labels = [
        label("a", "r1", (NODULE, MASS)),
        label("b", "r2", (NODULE,)),
        label("c", "r3", (NODULE,)),
    ]
    _, decision = fold(boxes_policy("mv", threshold=0.9), labels, EMPTY)
    assert decision is not None
    assert decision.label == ((10.0, 10.0, 50.0, 50.0, "nodule"),)
    mass = next(d for d in decision.details["boxes"] if d["fused"][4] == "mass")
    assert mass["present"] is False


def test_boxes_of_different_classes_never_match() -> None:
    readings = [
        parse_boxes(((0, 0, 10, 10, "nodule"),)),
        parse_boxes(((0, 0, 10, 10, "mass"),)),
    ]
    assert match(readings, 0.5) == [[(0, 0)], [(1, 0)]]


def test_matching_keeps_at_most_one_box_per_reader_and_does_not_chain() -> None:
    # r1's two boxes both overlap r2's box; only the better overlap joins it.
    readings = [
        parse_boxes(((0, 0, 10, 10), (1, 0, 11, 10))),
        parse_boxes(((0, 0, 10, 10),)),
    ]
    clusters = match(readings, 0.5)
    assert sorted(len(c) for c in clusters) == [1, 2]
    assert [(0, 0), (1, 0)] in clusters


def test_readers_who_all_draw_nothing_agree_that_the_image_is_empty() -> None:
    labels = [label(x, f"r{x}", ()) for x in "abc"]
    _, decision = fold(boxes_policy(), labels, EMPTY)
    assert decision is not None
    assert (decision.outcome, decision.label, decision.confidence) == ("reached", (), 1.0)


def test_disagreeing_readers_ask_for_more_then_escalate_at_max_labels() -> None:
    policy = boxes_policy("mv", min_labels=2, max_labels=3, threshold=0.9)
    first = [label("a", "r1", (NODULE,)), label("b", "r2", ())]
    _, decision = fold(policy, first, EMPTY)
    assert decision is not None and decision.outcome == "needs_more"
    _, decision = fold(policy, [*first, label("c", "r3", (MASS,))], EMPTY)
    assert decision is not None and decision.outcome == "contested"


def test_a_critical_box_class_escalates_when_any_reader_draws_it() -> None:
    policy = boxes_policy("mv", critical=CriticalRule(values=("mass",)))
    _, decision = fold(policy, [label("a", "r1", (MASS,))], EMPTY)
    assert decision is not None and decision.outcome == "contested"
    assert decision.reason == "critical finding reported"


def test_an_adjudicator_closes_the_item_with_their_boxes() -> None:
    labels = [
        label("a", "r1", (NODULE,)),
        label("z", "boss", (MASS,), role="adjudicator"),
    ]
    _, decision = fold(boxes_policy(), labels, EMPTY)
    assert decision is not None
    assert (decision.outcome, decision.method) == ("reached", "adjudication")
    assert decision.label == ((100.0, 100.0, 140.0, 160.0, "mass"),)


def test_a_precise_reader_learned_online_pulls_the_fused_box_toward_them() -> None:
    policy = boxes_policy("ds", min_labels=1, max_labels=99)
    events = []
    for item in range(40):
        noise = 4.0 if item % 2 else -4.0
        events += [
            (f"i{item}", label(f"{item}a", "precise", (shifted(NODULE, 0.2),))),
            (f"i{item}", label(f"{item}b", "steady", (shifted(NODULE, -0.2),))),
            (f"i{item}", label(f"{item}c", "sloppy", (shifted(NODULE, noise),))),
        ]
    _, ledger, _ = stream(policy, events)
    pair = [
        label("x", "precise", (NODULE,)),
        label("y", "sloppy", (shifted(NODULE, 4.0),)),
    ]
    _, decision = fold(policy, pair, ledger)
    assert decision is not None
    fused_x0 = decision.label[0][0]
    assert 10.0 <= fused_x0 < 10.5  # the precise reader's 10.0, not the midpoint 12.0


def test_box_values_are_validated() -> None:
    with pytest.raises(ValueError, match="x0 < x1"):
        parse_boxes(((5, 0, 1, 2),))
    with pytest.raises(ValueError, match="not one of"):
        parse_boxes(((0, 0, 1, 1, "tumour"),), ("nodule",))
    with pytest.raises(ValueError, match="a box is"):
        parse_boxes(((0, 0, 1),))


def test_boxes_policy_state_and_decision_survive_json() -> None:
    policy = boxes_policy(params={"box_iou_threshold": 0.4})
    assert ConsensusPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    state, decision = fold(
        policy, [label("a", "r1", (NODULE, MASS)), label("b", "r2", (NODULE,))], EMPTY
    )
    assert decision is not None
    assert ItemState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision


def test_box_parameters_do_not_leak_into_other_kinds() -> None:
    binary = ConsensusPolicy(method="mv", kind="binary", classes=("0", "1"))
    assert "box_iou_threshold" not in binary.params
    with pytest.raises(ValueError, match="unknown params"):
        ConsensusPolicy(
            method="mv", kind="binary", classes=("0", "1"), params={"box_iou_threshold": 0.3}
        )


# --- properties ---------------------------------------------------------------------------

READERS = [f"r{i}" for i in range(4)]
OBJECTS = [(10.0, 10.0, 50.0, 50.0), (60.0, 20.0, 90.0, 70.0), (15.0, 60.0, 45.0, 95.0)]


@st.composite
def readings(draw: st.DrawFn, max_size: int = 5) -> list[LabelObservation]:
    """Readers drawing jittered copies of a few objects (plus spurious boxes), any order."""
    out = []
    for i in range(draw(st.integers(1, max_size))):
        boxes = []
        for x0, y0, x1, y1 in OBJECTS:
            if draw(st.booleans()):
                d = draw(st.sampled_from([-3.0, -1.5, 0.0, 1.0, 2.5]))
                boxes.append(
                    (x0 + d, y0 - d, x1 + d, y1, draw(st.sampled_from(["nodule", "mass"])))
                )
        if draw(st.booleans()):
            boxes.append((70.0, 80.0, 75.0, 86.0, "nodule"))
        out.append(
            LabelObservation(
                label_id=f"L{i:02d}",
                annotator_id=draw(st.sampled_from(READERS)),
                value=tuple(draw(st.permutations(boxes))),
            )
        )
    return out


@st.composite
def box_events(draw: st.DrawFn) -> list[tuple[str, LabelObservation]]:
    return [
        (f"item-{item}", obs)
        for item in range(draw(st.integers(1, 4)))
        for obs in draw(readings(max_size=4))
    ]


def reorder(label: LabelObservation) -> LabelObservation:
    """The same reading with its boxes listed in reverse order."""
    return LabelObservation(
        label.label_id,
        label.annotator_id,
        tuple(reversed(label.value)),  # type: ignore[arg-type]
    )


@given(st.sampled_from(["mv", "ds"]), readings(), st.data())
def test_any_order_duplication_and_box_order_of_an_items_readings_give_the_same_decision(
    method: str, labels: list[LabelObservation], data: st.DataObject
) -> None:
    policy = boxes_policy(method, min_labels=2)
    ledger = stream(policy, [("warm", obs) for obs in labels])[1]
    _, reference = fold(policy, labels, ledger)
    again = data.draw(st.permutations(labels)) + data.draw(st.lists(st.sampled_from(labels)))
    _, decision = fold(policy, [reorder(obs) for obs in again], ledger)
    assert reference is not None and decision is not None
    assert json.dumps(decision.to_dict()) == json.dumps(reference.to_dict())


@given(box_events(), st.data())
def test_box_deltas_summed_in_any_order_equal_the_recount(
    events: list[tuple[str, LabelObservation]], data: st.DataObject
) -> None:
    policy = boxes_policy("ds")
    shuffled = data.draw(st.permutations(events))
    states, ledger, _ = stream(policy, shuffled + data.draw(st.lists(st.sampled_from(events))))
    assert ledger.version == recount(list(states.values())).version


@given(box_events(), st.data())
def test_box_batch_reestimate_depends_only_on_the_set_of_readings(
    events: list[tuple[str, LabelObservation]], data: st.DataObject
) -> None:
    policy = boxes_policy("ds")
    first, _, _ = stream(policy, events)
    second, _, _ = stream(policy, data.draw(st.permutations(events)))
    a = reestimate(policy, [first[k] for k in sorted(first)], from_scratch=True)
    b = reestimate(policy, [second[k] for k in sorted(second)], from_scratch=True)
    assert a.reliability.version == b.reliability.version
    assert [d.to_dict() for d in a.decisions] == [d.to_dict() for d in b.decisions]


@given(box_events())
def test_box_items_scored_in_a_batch_equal_incremental_rescoring_and_survive_json(
    events: list[tuple[str, LabelObservation]],
) -> None:
    policy = boxes_policy("weighted")
    states, ledger, direct = stream(policy, events)
    snapshot = ledger.snapshot()
    ordered = [states[k] for k in sorted(states)]
    for state, (batch_state, batch_decision) in zip(
        ordered, e_step(policy, ordered, snapshot), strict=True
    ):
        alone = rescore(policy, state, snapshot)
        assert alone.state == batch_state
        assert alone.decision.to_dict() == batch_decision.to_dict()
    stored: dict[str, str] = {}
    replayed = ReliabilityLedger()
    for item_id, obs in events:
        raw = stored.get(item_id)
        state = ItemState.from_dict(json.loads(raw)) if raw else ItemState.new(item_id)
        result = step(policy, state, LabelObservation.from_dict(obs.to_dict()), replayed)
        replayed.apply(ReliabilityDelta.from_dict(json.loads(json.dumps(result.delta.to_dict()))))
        stored[item_id] = json.dumps(result.state.to_dict())
    assert replayed.version == ledger.version
    assert {k: json.loads(v) for k, v in stored.items()} == {
        k: s.to_dict() for k, s in states.items()
    }
    assert set(direct) == set(states)
