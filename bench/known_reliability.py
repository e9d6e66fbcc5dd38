"""How much of a dynamic run's loss is learning reliability from fewer labels.

For each seed, the answers are replayed in the harness's seeded order three times: every
label (the fixed run, whose batch re-estimate learns each reader's reliability from all
of them); the live-collection policy as `consilium eval --policy dynamic` runs it, which
learns reliability only from the labels it asks for; and the same policy deciding every
label under the fixed run's reliability, learning nothing. Printed: each dynamic run's
mean accuracy change in points against the fixed run and its mean share of the labels.
The third run is a diagnostic, not a policy: it knows what only all the labels teach
(each item's own labels included, as in the fixed run).

Usage:
    .venv/bin/python -m bench.known_reliability DATASET_DIR [--seeds 10] [--method ds]
"""

from __future__ import annotations

import argparse
import statistics

from services.consensus.evaluation.dataset import load_dataset
from services.consensus.evaluation.replay import accuracy, policy_for, replay, seeded_order
from services.consensus.evaluation.runner import dynamic_policy
from services.consensus.evaluation.settings import DynamicSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--method", default="ds", choices=("mv", "weighted", "ds"))
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    settings = DynamicSettings()
    fixed_policy = policy_for(dataset, args.method, params=settings.method_params(args.method))
    live_policy = dynamic_policy(dataset, args.method, settings)
    runs: dict[str, list[tuple[float, float]]] = {"learned": [], "known": []}
    for seed in range(args.seeds):
        order = seeded_order(dataset, seed)
        fixed = replay(dataset, fixed_policy, order, dynamic=False)
        baseline = accuracy(fixed.final, dataset.truth)
        for name, known in (("learned", None), ("known", fixed.reliability)):
            live = replay(
                dataset,
                live_policy,
                order,
                dynamic=True,
                assign=settings.assign,
                known_reliability=known,
            )
            points = 100 * (accuracy(live.final, dataset.truth) - baseline)
            runs[name].append((points, live.labels_used / len(order)))
            print(f"  seed {seed}, reliability {name}: {points:+.2f} @ {runs[name][-1][1]:.3f}")
    print(f"{dataset.name}, {args.method}, seeds 0-{args.seeds - 1}: points against the fixed run")
    for name, values in runs.items():
        change = [p for p, _ in values]
        share = statistics.fmean(s for _, s in values)
        print(
            f"  reliability {name}: {statistics.fmean(change):+.2f} "
            f"(min {min(change):+.2f}, max {max(change):+.2f}) @ {share:.3f} of the labels"
        )


if __name__ == "__main__":
    main()
