"""The engine on small real subsets (tests/data, see PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.consensus.evaluation.dataset import load_dataset
from services.consensus.evaluation.replay import accuracy, policy_for, replay, seeded_order

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def duck_ds():  # type: ignore[no-untyped-def]
    dataset = load_dataset(DATA / "zheng_duck")
    run = replay(dataset, policy_for(dataset, "ds"), seeded_order(dataset, 0), dynamic=False)
    return dataset, run


def test_online_dawid_skene_matches_batch_dawid_skene_accuracy_on_the_duck_data(duck_ds) -> None:  # type: ignore[no-untyped-def]
    dataset, run = duck_ds
    # crowd-kit DS (100 EM iterations, no priors) scores 0.8889 on this set.
    assert accuracy(run.final, dataset.truth) >= 0.8889 - 0.005
    assert accuracy(run.online, dataset.truth) >= 0.8889 - 0.005


def test_the_periodic_batch_reestimate_agrees_with_the_incremental_answers(duck_ds) -> None:  # type: ignore[no-untyped-def]
    _, run = duck_ds
    assert run.ledger_matches_recount
    same = sum(run.online[t].label == run.final[t].label for t in run.final)
    assert same / len(run.final) >= 0.97


def test_three_radiologists_reach_sensible_outcomes_under_the_demo_policy() -> None:
    dataset = load_dataset(DATA / "chexpert_subset")
    policy = policy_for(dataset, "ds", min_labels=3, max_labels=5, threshold=0.95)
    run = replay(dataset, policy, seeded_order(dataset, 0), dynamic=True, batch=False)
    outcomes = [d.outcome for d in run.online.values()]
    # Unanimous readers reach consensus; a 2-1 split with only 3 readers asks for more.
    assert outcomes.count("reached") / len(outcomes) > 0.8
    assert outcomes.count("needs_more") > 0
    unanimous = [d for d in run.online.values() if d.agreement == 1.0]
    assert all(d.outcome == "reached" for d in unanimous)
    assert accuracy(run.online, dataset.truth) >= 0.88
