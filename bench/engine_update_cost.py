"""Engine update cost per label: median and p99 microseconds (prints figures; not a test).

1. The largest real dataset (zheng_product, 24,945 labels), replayed in seeded order.
2. Synthetic binary items with 3 labels each from 200 annotators, at N and 10 N items:
   the per-label cost must stay flat as the number of items grows.

Usage: .venv/bin/python bench/engine_update_cost.py [DATASETS_DIR] [--items N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from services.consensus.engine import (
    ConsensusPolicy,
    ItemState,
    LabelObservation,
    ReliabilityLedger,
    step,
)


def figures(samples: list[int]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"median {statistics.median(ordered) / 1000:7.1f} us   p99 {p99 / 1000:7.1f} us"


def synthetic(n_items: int, method: str, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    policy = ConsensusPolicy(method=method, kind="binary", classes=("0", "1"))  # type: ignore[arg-type]
    skill = rng.uniform(0.6, 0.95, size=200)
    truth = rng.integers(0, 2, size=n_items)
    ledger = ReliabilityLedger()
    states: dict[int, ItemState] = {}
    costs: list[int] = []
    for n in range(3 * n_items):
        item = n // 3
        annotator = int(rng.integers(0, 200))
        value = truth[item] if rng.random() < skill[annotator] else 1 - truth[item]
        obs = LabelObservation(f"l{n}", f"a{annotator}", str(value))
        t0 = time.perf_counter_ns()
        result = step(policy, states.get(item) or ItemState.new(str(item)), obs, ledger)
        ledger.apply(result.delta)
        costs.append(time.perf_counter_ns() - t0)
        states[item] = result.state
    return costs


def real(datasets: Path, method: str) -> list[int]:
    from services.consensus.evaluation.dataset import load_dataset
    from services.consensus.evaluation.replay import policy_for, replay, seeded_order

    dataset = load_dataset(datasets / "zheng_product")
    run = replay(
        dataset, policy_for(dataset, method), seeded_order(dataset, 0), dynamic=False, batch=False
    )
    return run.step_ns


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datasets", nargs="?", default="/work/shared/datasets", type=Path)
    parser.add_argument("--items", type=int, default=5_000)
    args = parser.parse_args()
    for method in ("mv", "weighted", "ds"):
        if (args.datasets / "zheng_product").exists():
            print(f"zheng_product  {method:8s} {figures(real(args.datasets, method))}")
        for n in (args.items, 10 * args.items):
            print(f"synthetic {n:>7d} items {method:8s} {figures(synthetic(n, method))}")


if __name__ == "__main__":
    main()
