"""A replay under a known reliability (bench.known_reliability's diagnostic run)."""

from __future__ import annotations

from pathlib import Path

from services.consensus.evaluation.dataset import load_dataset
from services.consensus.evaluation.replay import accuracy, policy_for, replay, seeded_order
from services.consensus.evaluation.runner import dynamic_policy
from services.consensus.evaluation.settings import DynamicSettings

DATA = Path(__file__).resolve().parents[2] / "data"


def test_a_replay_under_a_known_reliability_decides_with_it_and_learns_nothing() -> None:
    dataset = load_dataset(DATA / "zhang_rte_subset")
    settings = DynamicSettings()
    order = seeded_order(dataset, 0)
    fixed_policy = policy_for(dataset, "ds", params=settings.method_params("ds"))
    fixed = replay(dataset, fixed_policy, order, dynamic=False)
    assert fixed.reliability is not None

    live = replay(
        dataset,
        dynamic_policy(dataset, "ds", settings),
        order,
        dynamic=True,
        assign=settings.assign,
        known_reliability=fixed.reliability,
    )
    assert {d.reliability_version for d in live.online.values()} == {fixed.reliability.version}
    assert live.reliability is None
    assert live.final == live.online  # no batch re-estimate: it would learn
    assert live.labels_used < len(order)
    # What all the labels teach decides a subset as the fixed run decides the whole.
    assert accuracy(live.final, dataset.truth) >= accuracy(fixed.final, dataset.truth) - 0.01
