"""Order, duplication, batch-vs-incremental and determinism, checked by hypothesis."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from services.consensus.engine import (
    ConsensusPolicy,
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
from services.consensus.engine.fixedpoint import SCALE

from .helpers import fold, stream

CLASSES = ("a", "b", "c")
# "+pooled": annotator priors centred on the crowd; "+curtailed": Bayesian curtailment
# with the vote-share prior learned from the crowd's agreement; "+gain": the horizon gain;
# "+hold": the dissent hold.
METHODS = (
    "mv",
    "weighted",
    "ds",
    "weighted+pooled",
    "ds+pooled",
    "mv+curtailed",
    "ds+curtailed",
    "mv+gain",
    "ds+gain",
    "ds+hold",
)
ANNOTATORS = [f"r{i}" for i in range(6)]


def policy(variant: str) -> ConsensusPolicy:
    method, _, option = variant.partition("+")
    params: dict[str, float | bool] = {"pooled_prior": option == "pooled"}
    curtailed = option == "curtailed"
    if curtailed:
        params["stop_flip_risk"] = 0.05
    if option == "gain":
        params["stop_gain"] = 0.02
    if option == "hold":
        params["hold_dissent_share"] = 0.2
    return ConsensusPolicy(
        method=method,  # type: ignore[arg-type]
        kind="categorical",
        classes=CLASSES,
        threshold=0.6 if curtailed else 0.95,  # curtailed: the flip risk is what decides
        params=params,
    )


@st.composite
def observations(draw: st.DrawFn, max_size: int = 8) -> list[LabelObservation]:
    """Distinct observations on one item; some annotators repeat, some annotations revise."""
    n = draw(st.integers(1, max_size))
    out = []
    for i in range(n):
        annotation = draw(st.integers(0, max(0, i)))  # sometimes a revision of an earlier one
        out.append(
            LabelObservation(
                label_id=f"L{i:02d}",
                annotator_id=draw(st.sampled_from(ANNOTATORS)),
                value=draw(st.sampled_from(CLASSES)),
                annotation_id=f"A{annotation:02d}",
                revision=draw(st.integers(0, 2)),
            )
        )
    return out


@st.composite
def snapshots(draw: st.DrawFn) -> ReliabilitySnapshot:
    """A non-trivial reliability snapshot: random soft confusion counts."""
    entries = {}
    for annotator in ANNOTATORS:
        for column in range(len(CLASSES)):
            units = draw(st.lists(st.integers(0, 5 * SCALE), min_size=3, max_size=3))
            entries[("", annotator, column)] = np.asarray(units, dtype=np.int64)
    entries[("", "", 0)] = np.asarray([SCALE, 2 * SCALE, 3 * SCALE], dtype=np.int64)
    for column in range(len(CLASSES)):  # the crowd's pooled confusion columns
        units = draw(st.lists(st.integers(0, 50 * SCALE), min_size=3, max_size=3))
        entries[("", "", 1 + column)] = np.asarray(units, dtype=np.int64)
    pairs = draw(st.integers(1, 100)) * SCALE  # the crowd's agreeing / all vote pairs
    entries[("", "", -1)] = np.asarray([draw(st.integers(0, pairs)), pairs], dtype=np.int64)
    return ReliabilitySnapshot.from_entries(entries)


def arrivals(draw: Any, labels: list[LabelObservation]) -> list[LabelObservation]:
    """Any permutation of the labels with any re-deliveries mixed in."""
    order = draw(st.permutations(labels))
    extra = draw(st.lists(st.sampled_from(labels), max_size=len(labels)))
    mixed = list(order) + extra
    return list(draw(st.permutations(mixed)))


@given(st.sampled_from(METHODS), observations(), snapshots(), st.data())
def test_any_order_and_duplication_of_an_items_labels_gives_the_same_state_and_decision(
    method: str, labels: list[LabelObservation], snapshot: ReliabilitySnapshot, data: st.DataObject
) -> None:
    p = policy(method)
    reference_state, reference = fold(p, labels, snapshot)
    state, decision = fold(p, arrivals(data.draw, labels), snapshot)
    assert json.dumps(state.to_dict()) == json.dumps(reference_state.to_dict())
    assert decision is not None and reference is not None
    assert json.dumps(decision.to_dict()) == json.dumps(reference.to_dict())


@st.composite
def many_items(draw: st.DrawFn) -> list[tuple[str, LabelObservation]]:
    events = []
    for item in range(draw(st.integers(1, 6))):
        for obs in draw(observations(max_size=5)):
            events.append((f"item-{item}", obs))
    return events


@given(st.sampled_from(METHODS), many_items(), st.data())
def test_summed_deltas_equal_the_batch_recount_for_any_arrival_order(
    method: str, events: list[tuple[str, LabelObservation]], data: st.DataObject
) -> None:
    p = policy(method)
    shuffled = data.draw(st.permutations(events))
    duplicated = shuffled + data.draw(st.lists(st.sampled_from(events), max_size=4))
    states, ledger, _ = stream(p, duplicated)
    assert ledger.version == recount(list(states.values())).version


@given(st.sampled_from(METHODS), many_items(), st.data())
def test_batch_reestimate_from_scratch_depends_only_on_the_set_of_labels(
    method: str, events: list[tuple[str, LabelObservation]], data: st.DataObject
) -> None:
    p = policy(method)
    first, _, _ = stream(p, events)
    again = data.draw(st.permutations(events)) + data.draw(st.lists(st.sampled_from(events)))
    second, _, _ = stream(p, again)
    a = reestimate(p, [first[k] for k in sorted(first)], from_scratch=True)
    b = reestimate(p, [second[k] for k in sorted(second)], from_scratch=True)
    assert a.reliability.version == b.reliability.version
    assert [d.to_dict() for d in a.decisions] == [d.to_dict() for d in b.decisions]


@given(st.sampled_from(METHODS), many_items())
def test_scoring_an_item_in_a_batch_is_bit_identical_to_scoring_it_alone(
    method: str, events: list[tuple[str, LabelObservation]]
) -> None:
    p = policy(method)
    states, ledger, _ = stream(p, events)
    ordered = [states[k] for k in sorted(states)]
    snapshot = ledger.snapshot()
    batch = e_step(p, ordered, snapshot)
    for state, (batch_state, batch_decision) in zip(ordered, batch, strict=True):
        alone = rescore(p, state, snapshot)
        assert alone.state.to_dict() == batch_state.to_dict()
        assert alone.decision.to_dict() == batch_decision.to_dict()


@given(st.sampled_from(METHODS), many_items())
def test_storing_the_state_as_json_between_labels_changes_nothing(
    method: str, events: list[tuple[str, LabelObservation]]
) -> None:
    p = policy(method)
    _, direct_ledger, direct = stream(p, events)
    ledger = ReliabilityLedger()
    stored: dict[str, str] = {}
    decisions = {}
    for item_id, obs in events:
        raw = stored.get(item_id)
        state = ItemState.from_dict(json.loads(raw)) if raw else ItemState.new(item_id)
        snapshot = ReliabilitySnapshot.from_dict(
            json.loads(json.dumps(ledger.snapshot().to_dict()))
        )
        result = step(p, state, LabelObservation.from_dict(obs.to_dict()), snapshot)
        ledger.apply(ReliabilityDelta.from_dict(json.loads(json.dumps(result.delta.to_dict()))))
        stored[item_id] = json.dumps(result.state.to_dict())
        decisions[item_id] = json.dumps(result.decision.to_dict())
    assert ledger.version == direct_ledger.version
    assert decisions == {k: json.dumps(d.to_dict()) for k, d in direct.items()}


@given(st.sampled_from(METHODS), many_items(), st.randoms(use_true_random=False))
def test_instances_adding_their_deltas_in_any_interleaving_reach_the_same_reliability(
    method: str, events: list[tuple[str, LabelObservation]], rng: object
) -> None:
    p = policy(method)
    deltas = []
    ledger = ReliabilityLedger()
    states: dict[str, ItemState] = {}
    for item_id, obs in events:
        result = step(p, states.get(item_id) or ItemState.new(item_id), obs, ledger)
        ledger.apply(result.delta)
        states[item_id] = result.state
        deltas.append(result.delta)
    shuffled = list(deltas)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    other = ReliabilityLedger()
    for delta in shuffled:
        other.apply(delta)
    assert other.version == ledger.version
