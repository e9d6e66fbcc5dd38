"""Replays that are told what the engine cannot learn from the labels: a known
reliability (bench.known_reliability's diagnostic run) or gold items' known answers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from services.consensus.evaluation.dataset import Answer, Dataset, load_dataset
from services.consensus.evaluation.replay import (
    Replay,
    accuracy,
    gold_tasks,
    policy_for,
    replay,
    seeded_order,
)
from services.consensus.evaluation.runner import dynamic_policy
from services.consensus.evaluation.settings import DynamicSettings

DATA = Path(__file__).resolve().parents[2] / "data"
SETTINGS = DynamicSettings()


def _live(dataset: Dataset, order: list[Answer], **told: Any) -> Replay:
    """The harness's dynamic ds run, told what `told` says (known_reliability, gold)."""
    policy = dynamic_policy(dataset, "ds", SETTINGS)
    return replay(dataset, policy, order, dynamic=True, assign=SETTINGS.assign, **told)


def test_a_replay_under_a_known_reliability_decides_with_it_and_learns_nothing() -> None:
    dataset = load_dataset(DATA / "zhang_rte_subset")
    order = seeded_order(dataset, 0)
    fixed_policy = policy_for(dataset, "ds", params=SETTINGS.method_params("ds"))
    fixed = replay(dataset, fixed_policy, order, dynamic=False)
    assert fixed.reliability is not None

    live = _live(dataset, order, known_reliability=fixed.reliability)
    assert {d.reliability_version for d in live.online.values()} == {fixed.reliability.version}
    assert live.reliability is None
    assert live.final == live.online  # no batch re-estimate: it would learn
    assert live.labels_used < len(order)
    # What all the labels teach decides a subset as the fixed run decides the whole.
    assert accuracy(live.final, dataset.truth) >= accuracy(fixed.final, dataset.truth) - 0.01


def test_a_gold_item_is_read_by_every_reader_and_decided_by_its_known_answer() -> None:
    dataset = load_dataset(DATA / "zhang_rte_subset")
    order = seeded_order(dataset, 0)
    gold = gold_tasks(dataset, order, 0.25)
    assert len(gold) == round(0.25 * len(dataset.truth))
    assert list(gold) == [t for t in dict.fromkeys(a.task for a in order)][: len(gold)]
    live = _live(dataset, order, gold=gold)
    labels_per_task = Counter(a.task for a in dataset.answers)
    for task, value in gold.items():
        decision = live.online[task]
        assert (decision.label, decision.reason) == (value, "gold item")
        assert len(decision.contributing_label_ids) == labels_per_task[task]
    others = [t for t in live.online if t not in gold]
    used = sum(len(live.online[t].contributing_label_ids) for t in others)
    assert used < sum(labels_per_task[t] for t in others)  # the others stop early


def test_a_gold_share_outside_zero_to_one_is_refused() -> None:
    dataset = load_dataset(DATA / "zhang_rte_subset")
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="gold share"):
            gold_tasks(dataset, dataset.answers, bad)
