"""Reliability per task: the engine's ledger scopes, prefixed with the task id (pure).

The engine keys reliability by (scope, annotator, column) with scope "" for a whole
categorical item; a consensus service decides many tasks, whose classes differ, so each
task reads and writes its own scope `<task_id>` (and `<task_id>/<finding>` for findings).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.consensus.engine.boxes import EXIST_SCOPE
from services.consensus.engine.fixedpoint import IntArray
from services.consensus.engine.policy import ConsensusPolicy
from services.consensus.engine.reliability import (
    CLASS_KEY,
    EntryKey,
    ReliabilityDelta,
    ReliabilityView,
)


def engine_scopes(policy: ConsensusPolicy) -> tuple[str, ...]:
    """The engine scopes a task's per-annotator confusion counts live in: one per finding
    for multi-label, candidate existence for boxes, the whole item otherwise."""
    if policy.kind == "multilabel":
        return policy.classes
    if policy.kind == "boxes":
        return (EXIST_SCOPE,)
    return ("",)


def task_scope(task_id: str, scope: str) -> str:
    return f"{task_id}/{scope}" if scope else task_id


@dataclass(frozen=True)
class TaskView:
    """One task's window on the global snapshot; the version stays the global one."""

    snapshot: ReliabilityView
    task_id: str

    @property
    def version(self) -> str:
        return self.snapshot.version

    def entry(self, key: EntryKey) -> IntArray | None:
        scope, name, column = key
        return self.snapshot.entry((task_scope(self.task_id, scope), name, column))


def scoped_delta(task_id: str, delta: ReliabilityDelta) -> ReliabilityDelta:
    """A task's delta in the global ledger's scopes."""
    return ReliabilityDelta(
        {(task_scope(task_id, s), k, c): units for (s, k, c), units in delta.entries.items()}
    )


def task_annotators(keys: Iterable[EntryKey], task_id: str, scopes: Iterable[str]) -> list[str]:
    """Annotators the ledger holds counts for in any of the task's engine `scopes`, by id."""
    wanted = {task_scope(task_id, scope) for scope in scopes}
    return sorted({name for scope, name, _ in keys if scope in wanted and name != CLASS_KEY})
