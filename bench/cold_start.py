"""A new task's first labels decided under a trailing reliability snapshot: the demo's
design replayed through the engine alone, with the snapshot period as the variable.

CheXpert's three radiologists, one Dawid-Skene task per finding (each its own ledger),
threshold 0.9, min 2 and max 3 labels, as `consilium demo` defines them. Every item gets
two random readers; that first wave arrives in a seeded random order, and the third
reader's label of each item consensus asks for arrives after the whole wave (as Kafka
delivers it: the requests are answered while the wave is still queued). Each label is
decided under every task's ledger as copied every `period` labels (of all tasks), from
a seeded phase (0: the current ledger); the delta goes to the current ledger, as a
consensus instance that folds committed deltas about once a second does.

Each period runs with items always teaching their posterior (the rule before
`consilium-engine/1.4.0`) as the baseline, then with the engine's cold-start rule at each
`--cold-items` value (an item decided under a snapshot that knows fewer items teaches its
majority vote), on the same seeds.

Usage:
    .venv/bin/python -m bench.cold_start [--periods 0,700] [--cold-items 0,50] [--seeds 5]
        [--dataset ../shared/datasets/chexpert_test_multireader]
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from services.consensus.engine import (
    ConsensusPolicy,
    ItemState,
    LabelObservation,
    ReliabilityLedger,
    ReliabilitySnapshot,
    item_categorical,
    step,
)
from services.consensus.evaluation.dataset import Answer, load_dataset

DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared/datasets/chexpert_test_multireader"


@dataclass
class Outcome:
    two_readers: int
    reached: int
    correct: int
    escalated: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.reached if self.reached else float("nan")


class Snapshots:
    """Every task's ledger, and the snapshots decisions see: all tasks' ledgers copied every
    `period` labels (of all tasks together), starting at a seeded phase, as a consensus
    instance refreshes its snapshot on a timer while labels stream in (0: every decision
    sees the current ledger)."""

    def __init__(self, period: int, phase: int) -> None:
        self.period = period
        self.phase = phase
        self.labels = 0
        self.ledgers: dict[str, ReliabilityLedger] = defaultdict(ReliabilityLedger)
        self.published: dict[str, ReliabilitySnapshot] = {}

    def view(self, task: str) -> ReliabilityLedger | ReliabilitySnapshot:
        if self.period == 0:
            return self.ledgers[task]
        if self.labels % self.period == self.phase:
            self.published = {t: ledger.snapshot() for t, ledger in self.ledgers.items()}
        return self.published.get(task) or ReliabilitySnapshot.empty()


def replay(
    answers: list[Answer], truth: dict[str, str], period: int, seed: int, cold_items: float
) -> Outcome:
    rng = random.Random(seed)
    policy = ConsensusPolicy(
        method="ds",
        kind="binary",
        classes=("0", "1"),
        min_labels=2,
        max_labels=3,
        threshold=0.9,
        params={"cold_start_items": cold_items},
    )
    by_item: dict[str, dict[str, Answer]] = defaultdict(dict)
    for answer in answers:
        by_item[answer.task][answer.worker] = answer
    readers = sorted({a.worker for a in answers})
    first_wave = [
        by_item[item][reader]
        for item in sorted(by_item)
        for reader in rng.sample(readers, 2)
        if reader in by_item[item]
    ]
    rng.shuffle(first_wave)
    queue = deque(first_wave)  # third readers join behind the whole first wave
    snapshots = Snapshots(period, rng.randrange(period) if period else 0)
    states: dict[str, ItemState] = {}
    outcome: dict[str, str] = {}
    label: dict[str, str] = {}
    while queue:
        answer = queue.popleft()
        task = answer.task.rsplit("|", 1)[1]
        obs = LabelObservation(
            label_id=f"row-{answer.row}", annotator_id=answer.worker, value=answer.label
        )
        state = states.get(answer.task) or ItemState.new(answer.task)
        result = step(policy, state, obs, snapshots.view(task))
        snapshots.ledgers[task].apply(result.delta)
        snapshots.labels += 1
        states[answer.task] = result.state
        outcome[answer.task], label[answer.task] = result.decision.outcome, result.decision.label
        if result.decision.outcome == "needs_more":
            asked = {o.annotator_id for o in result.state.labels}
            rest = [r for r in readers if r not in asked and r in by_item[answer.task]]
            if rest:
                queue.append(by_item[answer.task][rest[0]])
    reached = [item for item, o in outcome.items() if o == "reached"]
    return Outcome(
        two_readers=sum(1 for s in states.values() if len(s.labels) == 2),
        reached=len(reached),
        correct=sum(1 for item in reached if label[item] == truth.get(item)),
        escalated=sum(1 for o in outcome.values() if o == "contested"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--periods", default="0,700")
    parser.add_argument("--cold-items", default="0,50")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    answers = list(dataset.answers)
    print(f"{dataset.name}: {len(answers)} labels, {len(dataset.tasks)} items")
    header = ("period", "rule", "seed", "2 readers", "reached", "accuracy", "escalated")
    print("{:>6} {:<12} {:>4} {:>9} {:>7} {:>8} {:>9}".format(*header))
    rules = ["posterior"] + [f"majority<{x}" for x in args.cold_items.split(",")]
    for period in (int(x) for x in args.periods.split(",")):
        for rule in rules:
            for seed in range(args.seeds):
                if rule == "posterior":  # the baseline: no snapshot is ever cold
                    with mock.patch.object(item_categorical, "is_cold", _never_cold):
                        result = replay(answers, dataset.truth, period, seed, 0.0)
                else:
                    cold_items = float(rule.split("<")[1])
                    result = replay(answers, dataset.truth, period, seed, cold_items)
                print(
                    f"{period:>6} {rule:<12} {seed:>4} {result.two_readers:>9}"
                    f" {result.reached:>7} {result.accuracy:>8.4f} {result.escalated:>9}",
                    flush=True,
                )


def _never_cold(policy: ConsensusPolicy, view: object, scope: str = "") -> bool:
    return False


if __name__ == "__main__":
    main()
