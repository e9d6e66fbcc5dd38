"""What a fixed overlap loses with fewer labels: the baseline a stopping policy must beat.

For each seed, the answers are replayed in the harness's seeded order twice: every label
(the fixed run), then only each item's first labels at the given share of the budget
(`same_budget_order`, the design `consilium-<m>-same-budget` reports beside a dynamic
run). Printed per share: the method's mean accuracy change in points against the fixed
run over the seeds, and on how many seeds it stays within the dynamic target's 0.5
points. Non-adaptive: every item gets the same share whatever its readers said.

Usage:
    .venv/bin/python -m bench.label_share DATASET_DIR [--shares 0.6,0.8] [--seeds 10]
        [--method ds]
"""

from __future__ import annotations

import argparse
import statistics

from services.consensus.evaluation.dataset import load_dataset
from services.consensus.evaluation.replay import (
    accuracy,
    policy_for,
    replay,
    same_budget_order,
    seeded_order,
)
from services.consensus.evaluation.seeds import TARGET_POINTS
from services.consensus.evaluation.settings import DynamicSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--shares", default="0.6,0.8")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--method", default="ds", choices=("mv", "weighted", "ds"))
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    # The harness's fixed run: the pooled prior for weighted and ds, as in --policy dynamic.
    params = DynamicSettings().method_params(args.method)
    policy = policy_for(dataset, args.method, params=params)
    shares = [float(s) for s in args.shares.split(",")]
    points: dict[float, list[float]] = {share: [] for share in shares}
    for seed in range(args.seeds):
        order = seeded_order(dataset, seed)
        full = accuracy(replay(dataset, policy, order, dynamic=False).final, dataset.truth)
        for share in shares:
            budget = max(len(dataset.tasks), round(share * len(order)))
            kept = same_budget_order(order, budget)
            part = accuracy(replay(dataset, policy, kept, dynamic=False).final, dataset.truth)
            points[share].append(100 * (part - full))
    print(f"{dataset.name}, {args.method}, seeds 0-{args.seeds - 1}: points against all labels")
    for share, values in points.items():
        within = sum(p >= -TARGET_POINTS for p in values)
        print(
            f"  share {share:.2f}: {statistics.fmean(values):+.2f} "
            f"(min {min(values):+.2f}, max {max(values):+.2f}; "
            f"within {TARGET_POINTS} on {within}/{len(values)})"
        )


if __name__ == "__main__":
    main()
