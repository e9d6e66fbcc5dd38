"""A ledger that has learned nothing yet is taught majority votes, not prior posteriors.

A service decides under a snapshot that trails the labels it handles, so at a task's start
many items are decided under an empty snapshot. What those items teach the ledger decides
whether Dawid-Skene lands in its degenerate fixed point for a rare finding (a phantom
"yes" class on which every reader says "no").
"""

from __future__ import annotations

import numpy as np
import pytest

from services.consensus.engine import (
    SCALE,
    ConsensusPolicy,
    ItemState,
    ReliabilityLedger,
    ReliabilitySnapshot,
    step,
)
from tests.unit.engine.helpers import binary_policy, label

CLASS_COUNTS = ("", "", 0)


def _contribution(state: ItemState) -> dict[tuple[str, str, int], list[int]]:
    return {key: [int(u) for u in units] for key, units in state.contribution}


def test_an_item_decided_under_an_empty_snapshot_teaches_its_majority_vote() -> None:
    policy = binary_policy(min_labels=2, max_labels=3, threshold=0.9)
    empty = ReliabilitySnapshot.empty()
    result = step(policy, ItemState.new("a"), label("l1", "r1", "0"), empty)

    # The decision is still the posterior under the prior reader (accuracy 0.7)...
    assert result.decision.distribution == {"0": 0.7, "1": 0.3}
    # ...but the ledger learns the vote, not 0.3 of a "1" that nobody reported.
    assert _contribution(result.state)[CLASS_COUNTS] == [SCALE, 0]
    assert _contribution(result.state)[("", "r1", 0)] == [SCALE, 0]


def test_a_tied_vote_under_an_empty_snapshot_teaches_half_to_each_class() -> None:
    policy = binary_policy(min_labels=2, max_labels=3, threshold=0.9)
    empty = ReliabilitySnapshot.empty()
    state = step(policy, ItemState.new("a"), label("l1", "r1", "0"), empty).state
    state = step(policy, state, label("l2", "r2", "1"), empty).state
    assert _contribution(state)[CLASS_COUNTS] == [SCALE // 2, SCALE // 2]


def test_each_finding_of_a_multilabel_item_teaches_its_majority_under_an_empty_snapshot() -> None:
    policy = ConsensusPolicy(
        method="ds", kind="multilabel", classes=("effusion", "pneumothorax"), threshold=0.8
    )
    empty = ReliabilitySnapshot.empty()
    state = ItemState.new("a")
    for obs in (label("l1", "r1", ("effusion",)), label("l2", "r2", ("effusion",))):
        state = step(policy, state, obs, empty).state
    taught = _contribution(state)
    assert taught[("effusion", "", 0)] == [0, SCALE]  # both said present
    assert taught[("pneumothorax", "", 0)] == [SCALE, 0]  # nobody did


def test_once_the_snapshot_knows_cold_start_items_the_ledger_takes_posteriors() -> None:
    policy = binary_policy(min_labels=2, max_labels=3, threshold=0.9)
    ledger = ReliabilityLedger()
    for case in range(50):
        taught = step(policy, ItemState.new(f"c{case}"), label(f"l{case}", "r1", "0"), ledger)
        assert _contribution(taught.state)[CLASS_COUNTS] == [SCALE, 0]  # still cold
        ledger.apply(taught.delta)
    warm = step(policy, ItemState.new("next"), label("l-next", "r1", "0"), ledger)
    counts = _contribution(warm.state)[CLASS_COUNTS]
    assert 0 < counts[1] < SCALE // 2  # a soft share, as Dawid-Skene's E-step gives


def _learned_positive_share(
    events: list[tuple[str, str, str]], refresh_every: int, first_refresh: int = 0
) -> float:
    """Stream the events, deciding under a snapshot refreshed after `first_refresh` labels
    and then every `refresh_every`; the share of the ledger's class mass on "1"."""
    policy = binary_policy(min_labels=2, max_labels=3, threshold=0.9)
    ledger = ReliabilityLedger()
    view = ledger.snapshot()
    states: dict[str, ItemState] = {}
    for position, (case, reader, value) in enumerate(events):
        if position == first_refresh or position % refresh_every == 0:
            view = ledger.snapshot()
        obs = label(f"{case}-{reader}", reader, value)
        result = step(policy, states.get(case) or ItemState.new(case), obs, view)
        ledger.apply(result.delta)
        states[case] = result.state
    counts = ledger.snapshot().entries[CLASS_COUNTS]
    return float(counts[1]) / float(counts.sum())


def _rare_finding_labels(seed: int) -> list[tuple[str, str, str]]:
    """Three readers (90 % accurate) of a finding present on about 2 % of 600 cases, two
    labels per case, in a random order."""
    rng = np.random.default_rng(seed)
    truth = rng.random(600) < 0.02
    events = []
    for case, positive in enumerate(truth):
        for reader in rng.choice(("r1", "r2", "r3"), size=2, replace=False):
            said = positive if rng.random() < 0.9 else not positive
            events.append((f"case-{case}", str(reader), "1" if said else "0"))
    return [events[i] for i in rng.permutation(len(events))]


def test_a_trailing_snapshot_learns_what_a_current_one_does_for_a_rare_finding() -> None:
    """Decided under a snapshot refreshed every 150 labels (about what a consensus
    instance sees while a burst streams in), the ledger must learn about the share of
    positives it learns when every label sees the current one (0.055 here; 0.067 trailing).
    Taught prior posteriors, the trailing run settled on 0.30: a phantom class."""
    ordered = _rare_finding_labels(7)
    current = _learned_positive_share(ordered, refresh_every=1)
    trailing = _learned_positive_share(ordered, refresh_every=150)
    assert trailing < current + 0.03, (trailing, current)
    assert trailing < 0.15, trailing


def test_a_first_snapshot_holding_one_positive_case_does_not_make_the_finding_common() -> None:
    """The first refresh lands after a single label, a "yes"; the next 150 labels are
    decided under that snapshot, which calls two cases in three positive. Taught
    posteriors from then on (`cold_start_items` 0), the ledger settles on 0.43 positive
    (0.34 taught prior posteriors throughout); `cold_start_items` (50) keeps teaching
    majority votes until the snapshot knows 50 cases, and learns 0.067."""
    ordered = _rare_finding_labels(7)
    first_yes = next(i for i, (_, _, value) in enumerate(ordered) if value == "1")
    ordered.insert(0, ordered.pop(first_yes))
    current = _learned_positive_share(ordered, refresh_every=1)
    trailing = _learned_positive_share(ordered, refresh_every=150, first_refresh=1)
    assert trailing < current + 0.03, (trailing, current)


def test_a_negative_cold_start_items_is_refused() -> None:
    with pytest.raises(ValueError, match="cold_start_items must be >= 0"):
        binary_policy(params={"cold_start_items": -1.0})
