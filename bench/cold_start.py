"""A new task's first labels decided under a trailing reliability snapshot: the demo's
design replayed through the engine alone, with the snapshot lag as the variable.

CheXpert's three radiologists, one Dawid-Skene task per finding (each its own ledger),
threshold 0.9, min 2 and max 3 labels, as `consilium demo` defines them. Every item gets
two random readers; that first wave arrives in a seeded random order, and the third
reader's label of each item consensus asks for arrives after the whole wave (as Kafka
delivers it: the requests are answered while the wave is still queued). Each label is
decided under the snapshot of its task's ledger as it was `lag` labels of that task ago
(0: the current ledger); the delta goes to the current ledger, as a consensus instance
that folds committed deltas about once a second does.

Each lag runs twice on the same seeds: with the engine's cold-start rule (an item decided
under a snapshot that has learned nothing teaches its majority vote) and, as the baseline,
with items always teaching their posterior (the rule before it).

Usage:
    .venv/bin/python -m bench.cold_start [--lags 0,20,150,400] [--seeds 3]
        [--dataset ../shared/datasets/chexpert_test_multireader]
"""

from __future__ import annotations

import argparse
import heapq
import random
from collections import defaultdict
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


class TrailingView:
    """One task's ledger and the snapshots of it its decisions see, `lag` labels behind."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self.ledger = ReliabilityLedger()
        self.labels = 0
        self.history: list[tuple[int, ReliabilitySnapshot]] = [(0, self.ledger.snapshot())]

    def view(self) -> ReliabilityLedger | ReliabilitySnapshot:
        if self.lag == 0:
            return self.ledger
        self.history.append((self.labels, self.ledger.snapshot()))
        while len(self.history) > 1 and self.history[1][0] <= self.labels - self.lag:
            self.history.pop(0)
        return self.history[0][1]


def replay(answers: list[Answer], truth: dict[str, str], lag: int, seed: int) -> Outcome:
    rng = random.Random(seed)
    policy = ConsensusPolicy(
        method="ds", kind="binary", classes=("0", "1"), min_labels=2, max_labels=3, threshold=0.9
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
    queue = [(position, position, answer) for position, answer in enumerate(first_wave)]
    heapq.heapify(queue)
    sequence = len(queue)
    tasks: dict[str, TrailingView] = defaultdict(lambda: TrailingView(lag))
    states: dict[str, ItemState] = {}
    outcome: dict[str, str] = {}
    label: dict[str, str] = {}
    while queue:
        _, _, answer = heapq.heappop(queue)
        task = tasks[answer.task.rsplit("|", 1)[1]]
        obs = LabelObservation(
            label_id=f"row-{answer.row}", annotator_id=answer.worker, value=answer.label
        )
        state = states.get(answer.task) or ItemState.new(answer.task)
        result = step(policy, state, obs, task.view())
        task.ledger.apply(result.delta)
        task.labels += 1
        states[answer.task] = result.state
        outcome[answer.task], label[answer.task] = result.decision.outcome, result.decision.label
        if result.decision.outcome == "needs_more":
            asked = {o.annotator_id for o in result.state.labels}
            rest = [r for r in readers if r not in asked and r in by_item[answer.task]]
            if rest:  # after the whole first wave
                heapq.heappush(
                    queue, (len(first_wave) + sequence, sequence, by_item[answer.task][rest[0]])
                )
                sequence += 1
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
    parser.add_argument("--lags", default="0,20,150,400")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    answers = list(dataset.answers)
    print(f"{dataset.name}: {len(answers)} labels, {len(dataset.tasks)} items")
    header = ("lag", "rule", "seed", "2 readers", "reached", "accuracy", "escalated")
    print("{:>4} {:<10} {:>4} {:>9} {:>7} {:>8} {:>9}".format(*header))
    for lag in (int(x) for x in args.lags.split(",")):
        for rule in ("majority", "posterior"):
            for seed in range(args.seeds):
                if rule == "posterior":  # the baseline: never treat a snapshot as cold
                    with mock.patch.object(item_categorical, "is_cold", lambda view: False):
                        result = replay(answers, dataset.truth, lag, seed)
                else:
                    result = replay(answers, dataset.truth, lag, seed)
                print(
                    f"{lag:>4} {rule:<10} {seed:>4} {result.two_readers:>9} {result.reached:>7}"
                    f" {result.accuracy:>8.4f} {result.escalated:>9}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
