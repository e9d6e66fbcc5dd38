"""What the demo replays (pure): tasks, items and labels derived from a label set.

A dataset whose task ids all read `CASE|FINDING` (CheXpert: `patient1/study1|Edema`)
becomes one Consilium task per finding, so reader reliability is learned per finding;
any other dataset becomes one task. Ids are derived from the dataset and a run id, so a
replay of the same plan is idempotent.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal

from services.cli.datasets import Answer, safe_id
from shared.events import AssignmentRules, ConsensusPolicy, TaskDefined

Method = Literal["mv", "weighted", "ds"]

_NAMESPACE = uuid.UUID("3c0d9f4e-2a71-4b6c-9e0e-6d1f0c5a7b42")


def stable_uuid(*parts: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, "|".join(parts))


@dataclass(frozen=True)
class DemoPlan:
    run: str
    tasks: dict[str, TaskDefined]  # by task id
    item_task: dict[str, str]  # item id -> task id
    item_source: dict[str, str]  # item id -> the dataset's task id
    answers: tuple[Answer, ...]  # one per (reader, dataset task), first answer kept
    readers: tuple[str, ...]

    def item_id(self, dataset_task: str) -> str:
        return safe_id(f"{self.run}/{dataset_task}")


def _group(dataset_task: str, by_finding: bool) -> str:
    return dataset_task.rsplit("|", 1)[1] if by_finding else "all"


def make_plan(
    name: str,
    answers: list[Answer],
    run: str,
    *,
    method: Method = "ds",
    threshold: float = 0.9,
    initial_overlap: int = 2,
) -> DemoPlan:
    """Tasks and items for a replay. Each item starts with `initial_overlap` readers and
    may reach consensus with them; otherwise consensus asks for one more reader at a time.
    The label budget is the number of readers at hand, so an item that does not reach
    confidence with every reader is escalated to adjudication, not stranded."""
    if initial_overlap < 1:
        raise ValueError("initial_overlap must be at least 1")
    seen: set[tuple[str, str]] = set()
    unique = []
    for answer in answers:
        if (answer.worker, answer.task) not in seen:
            seen.add((answer.worker, answer.task))
            unique.append(answer)
    by_finding = bool(unique) and all("|" in a.task for a in unique)
    readers = tuple(sorted({a.worker for a in unique}))
    classes: dict[str, set[str]] = defaultdict(set)
    for answer in unique:
        classes[_group(answer.task, by_finding)].add(answer.label)
    budget = max(1, len(readers))
    tasks = {}
    group_task = {}
    for group, values in sorted(classes.items()):
        task_id = safe_id(f"demo-{name}-{run}-{group}")
        all_values = sorted(set().union(*classes.values()))
        tasks[task_id] = TaskDefined(
            task_id=task_id,
            version=1,
            title=f"{name}: {group}",
            label_kind="categorical",
            classes=tuple(all_values if len(values) < 2 else sorted(values)),
            initial_overlap=min(initial_overlap, budget),
            # A replay hands each reader all of their cases at once, far above the
            # concurrency cap a live reading list would have.
            assignment=AssignmentRules(max_open_per_annotator=10_000),
            policy=ConsensusPolicy(
                method=method,
                min_labels=min(initial_overlap, budget),
                max_labels=budget,
                threshold=threshold,
            ),
        )
        group_task[group] = task_id
    plan = DemoPlan(run, tasks, {}, {}, tuple(unique), readers)
    for answer in unique:
        item_id = plan.item_id(answer.task)
        plan.item_task[item_id] = group_task[_group(answer.task, by_finding)]
        plan.item_source[item_id] = answer.task
    return plan


def majority_vote(answers: tuple[Answer, ...]) -> dict[str, str]:
    """Plain majority per dataset task; a tie goes to the smallest label (stated rule)."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for answer in answers:
        votes[answer.task][answer.label] += 1
    return {
        task: min(counts, key=lambda label: (-counts[label], label))
        for task, counts in votes.items()
    }
