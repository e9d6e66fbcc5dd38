"""Pure rules that decide whether a submitted label or retraction is acceptable (no I/O).

The handler asks them in this order, and the first rule that fails names the rejection:
authenticity (signature, key, client, annotator), PHI, envelope key, task and item,
value, annotation history (revisions), live assignment (not cancelled; the adjudication
rationale exactly when the assignment is an adjudication). docs/SUBMISSION.md lists every
code with its meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from shared.events import LabelRetractionSubmitted, LabelSubmitted, RejectionCode, TaskDefined
from shared.events.labels import BoxesValue, LabelValue
from shared.signing import SignedHeaders, derive_secret, verify


@dataclass(frozen=True)
class Rejection:
    code: RejectionCode
    message: str


@dataclass(frozen=True)
class ItemInfo:
    task_id: str
    image_width: float | None = None
    image_height: float | None = None


@dataclass(frozen=True)
class ClientKey:
    """A registered key and what its client may do, as of the lookup."""

    key_id: str
    client_id: str
    salt: str
    client_active: bool
    expires_at: datetime | None
    revoked_at: datetime | None
    may_speak_for_annotator: bool


@dataclass(frozen=True)
class Assignment:
    """A stored assignment: its lease, its kind, and its cancellation if it was cancelled."""

    assignment_id: UUID
    item_id: str
    task_id: str
    annotator_id: str
    lease_expires_at: datetime
    kind: str = "label"
    cancelled_reason: str | None = None
    cancelled_at: datetime | None = None


@dataclass(frozen=True)
class AnnotationHistory:
    """What is stored of an annotation: its revisions and who it belongs to."""

    revisions: frozenset[int] = frozenset()
    annotator_id: str | None = None
    item_id: str | None = None

    @property
    def latest(self) -> int | None:
        return max(self.revisions) if self.revisions else None


Ingress = LabelSubmitted | LabelRetractionSubmitted
WAIT: Literal["wait"] = "wait"


def check_authenticity(
    *,
    value: bytes,
    signed: SignedHeaders | None,
    key: ClientKey | None,
    master: bytes,
    reference: datetime,
    window: timedelta,
    client_id: str,
) -> Rejection | None:
    """The record is signed by a live key of the client it names, within the replay window,
    and that client may speak for the annotator."""
    if signed is None:
        return Rejection(
            RejectionCode.UNSIGNED,
            "the record lacks the consilium-key-id, consilium-signed-at and "
            "consilium-signature headers (exactly one of each)",
        )
    if key is None:
        return Rejection(RejectionCode.UNKNOWN_KEY, f"key {signed.key_id} is not registered")
    if not key.client_active:
        return Rejection(RejectionCode.KEY_REVOKED, f"client {key.client_id} is deactivated")
    if key.revoked_at is not None and key.revoked_at <= reference:
        return Rejection(RejectionCode.KEY_REVOKED, f"key {key.key_id} was revoked")
    if key.expires_at is not None and key.expires_at <= reference:
        return Rejection(RejectionCode.KEY_REVOKED, f"key {key.key_id} expired (rotated)")
    verdict = verify(value, signed, derive_secret(master, key.key_id, key.salt), reference, window)
    if verdict.problem is not None:
        return Rejection(RejectionCode(verdict.problem.value), verdict.message)
    if client_id != key.client_id:
        return Rejection(
            RejectionCode.CLIENT_MISMATCH,
            f"the event names client {client_id} but is signed with a key of {key.client_id}",
        )
    if not key.may_speak_for_annotator:
        return Rejection(
            RejectionCode.ANNOTATOR_NOT_ALLOWED,
            f"client {key.client_id} may not submit for this annotator",
        )
    return None


def check_target(
    event: Ingress,
    envelope_key: str,
    task: TaskDefined | None,
    item: ItemInfo | None,
    task_versions: Sequence[int] = (),
) -> Rejection | None:
    """The envelope is keyed by the item, which is a registered item of the claimed task
    version (`task_versions`: the versions of the task that are known, if it is not)."""
    if envelope_key != event.item_id:
        return Rejection(
            RejectionCode.INVALID_ENVELOPE,
            "the envelope key must be the item id (it orders the item's labels)",
        )
    if task is None and task_versions:
        known = ", ".join(f"v{v}" for v in sorted(task_versions))
        return Rejection(
            RejectionCode.TASK_VERSION_MISMATCH,
            f"task {event.task_id} has no version {event.task_version} (known: {known})",
        )
    if task is None:
        return Rejection(
            RejectionCode.UNKNOWN_TASK, f"task {event.task_id} v{event.task_version} is unknown"
        )
    if item is None:
        return Rejection(RejectionCode.UNKNOWN_ITEM, f"item {event.item_id} is not registered")
    if item.task_id != event.task_id:
        return Rejection(
            RejectionCode.ITEM_TASK_MISMATCH,
            f"item {event.item_id} belongs to task {item.task_id}, not {event.task_id}",
        )
    return None


def check_value(value: LabelValue, task: TaskDefined, item: ItemInfo) -> Rejection | None:
    """The value has the task's label kind and an allowed value or well-formed geometry."""
    if value.kind != task.label_kind:
        return Rejection(
            RejectionCode.WRONG_LABEL_KIND,
            f"task {task.task_id} expects {task.label_kind} labels, got {value.kind}",
        )
    if isinstance(value, BoxesValue):
        return _box_problem(value, task, item)
    problem = _value_problem(value, task)
    return Rejection(RejectionCode.VALUE_NOT_ALLOWED, problem) if problem else None


def _value_problem(value: LabelValue, task: TaskDefined) -> str | None:
    if value.kind == "categorical" and value.label not in task.classes:
        return f"{value.label!r} is not one of {', '.join(task.classes)}"
    if value.kind == "ordinal" and task.ordinal_range is not None:
        low, high = task.ordinal_range
        if not low <= value.grade <= high:
            return f"grade {value.grade} is outside {low}..{high}"
    if value.kind == "numeric" and task.numeric_range is not None:
        low_f, high_f = task.numeric_range
        if not low_f <= value.measurement <= high_f:
            return f"measurement {value.measurement} is outside {low_f}..{high_f}"
    if value.kind == "multilabel":
        if len(set(value.findings)) != len(value.findings):
            return "findings must not repeat"
        unknown = sorted(set(value.findings) - set(task.classes))
        if unknown:
            return (
                f"{', '.join(map(repr, unknown))} not among the findings {', '.join(task.classes)}"
            )
    return None


def _box_problem(value: BoxesValue, task: TaskDefined, item: ItemInfo) -> Rejection | None:
    """Boxes are non-degenerate (x0 < x1, y0 < y1) and inside the image: [0, 1] for
    normalized coordinates, [0, width] x [0, height] for pixels."""
    if len(value.boxes) > task.max_boxes:
        return Rejection(
            RejectionCode.INVALID_GEOMETRY,
            f"{len(value.boxes)} boxes exceed the task's limit of {task.max_boxes}",
        )
    if task.box_coordinates == "pixels":
        if item.image_width is None or item.image_height is None:
            return Rejection(
                RejectionCode.INVALID_GEOMETRY,
                "the task uses pixel coordinates but the item has no registered image size",
            )
        width, height = item.image_width, item.image_height
    else:
        width = height = 1.0
    for index, box in enumerate(value.boxes):
        if not (box.x0 < box.x1 and box.y0 < box.y1):
            return Rejection(
                RejectionCode.INVALID_GEOMETRY, f"box {index} is empty or inverted (x0<x1, y0<y1)"
            )
        if box.x0 < 0 or box.y0 < 0 or box.x1 > width or box.y1 > height:
            return Rejection(
                RejectionCode.INVALID_GEOMETRY,
                f"box {index} leaves the image (0..{width:g} x 0..{height:g})",
            )
        if box.label is not None and box.label not in task.classes:
            allowed = ", ".join(task.classes) if task.classes else "no labels"
            return Rejection(
                RejectionCode.VALUE_NOT_ALLOWED,
                f"box {index} label {box.label!r} is not allowed ({allowed})",
            )
    return None


def check_history(event: Ingress, history: AnnotationHistory) -> Rejection | None:
    """A revision belongs to the annotation's annotator and item, and is new. A revision
    lower than the latest is acceptable: it is kept, flagged superseded."""
    if history.annotator_id is not None and (
        history.annotator_id != event.annotator_id or history.item_id != event.item_id
    ):
        return Rejection(
            RejectionCode.ANNOTATION_MISMATCH,
            f"annotation {event.annotation_id} belongs to another annotator or item",
        )
    if event.revision in history.revisions:
        return Rejection(
            RejectionCode.REVISION_CONFLICT,
            f"annotation {event.annotation_id} already has revision {event.revision} "
            "from another event",
        )
    return None


def is_superseded(revision: int, history: AnnotationHistory) -> bool:
    latest = history.latest
    return latest is not None and revision < latest


def check_assignment(
    event: Ingress,
    task: TaskDefined,
    candidates: Sequence[Assignment],
    at: datetime,
) -> Rejection | Assignment | Literal["wait"] | None:
    """The live assignment the label answers (None when the task requires none), a
    rejection, or WAIT when the assignment may still be on its way.

    `candidates` are the stored assignments with the claimed id or for the same item and
    annotator; `at` is when the label reached the broker (a lease covers labels published
    before it expired, however late they are consumed; a cancellation, labels published
    from its time on). An adjudicator's decision (a label with a rationale) always needs a
    live adjudication assignment, and an answer to one always needs the rationale.
    """
    adjudicating = isinstance(event, LabelSubmitted) and event.adjudication is not None
    if event.assignment_id is not None:
        claimed = next((a for a in candidates if a.assignment_id == event.assignment_id), None)
    else:
        own = [
            a
            for a in candidates
            if (a.item_id, a.annotator_id) == (event.item_id, event.annotator_id)
        ]
        claimed = _latest_of_kind(own, "adjudication" if adjudicating else "label")
    if not task.require_assignment and not adjudicating:
        # Labels need no assignment here, but an answer to an adjudication still needs its
        # rationale.
        if claimed is not None and _answers(claimed, event):
            return _role_problem(claimed, event, adjudicating=False)
        return None
    if claimed is None:
        return WAIT
    if not _answers(claimed, event):
        return Rejection(
            RejectionCode.ASSIGNMENT_MISMATCH,
            f"assignment {claimed.assignment_id} is for another item, annotator or task",
        )
    verdict = _live(claimed, at)
    if isinstance(verdict, Rejection):
        return verdict
    return _role_problem(claimed, event, adjudicating) or verdict


def _answers(assignment: Assignment, event: Ingress) -> bool:
    return (assignment.item_id, assignment.annotator_id, assignment.task_id) == (
        event.item_id,
        event.annotator_id,
        event.task_id,
    )


def _latest_of_kind(own: Sequence[Assignment], kind: str) -> Assignment | None:
    """The annotator's assignment of this kind with the latest lease, else their latest."""
    preferred = [a for a in own if a.kind == kind] or list(own)
    return max(preferred, key=lambda a: a.lease_expires_at) if preferred else None


def _role_problem(assignment: Assignment, event: Ingress, adjudicating: bool) -> Rejection | None:
    """An adjudication rationale goes with an adjudication assignment, and only with one."""
    if adjudicating and assignment.kind != "adjudication":
        return Rejection(
            RejectionCode.NOT_ADJUDICATOR,
            f"annotator {event.annotator_id} holds no adjudication assignment for item "
            f"{event.item_id} (assignment {assignment.assignment_id} is a reader's)",
        )
    if not adjudicating and assignment.kind == "adjudication":
        return Rejection(
            RejectionCode.RATIONALE_MISSING,
            f"assignment {assignment.assignment_id} is an adjudication: the label must carry "
            "its adjudication rationale (reason code, signature meaning)",
        )
    return None


# A reader whose assignment was cancelled because the item reached consensus did the work:
# the label is kept and forwarded (it may still change the consensus).
_CANCELLATIONS_THAT_KEEP_LABELS = frozenset({"consensus_reached"})


def _live(assignment: Assignment, at: datetime) -> Rejection | Assignment:
    if assignment.lease_expires_at <= at:
        return Rejection(
            RejectionCode.ASSIGNMENT_EXPIRED,
            f"assignment {assignment.assignment_id} expired at "
            f"{assignment.lease_expires_at.isoformat()}",
        )
    reason = assignment.cancelled_reason
    cancelled_at = assignment.cancelled_at
    if reason is None or reason in _CANCELLATIONS_THAT_KEEP_LABELS:
        return assignment
    if cancelled_at is not None and at < cancelled_at:
        return assignment  # published before the cancellation
    when = f" at {cancelled_at.isoformat()}" if cancelled_at else ""
    if reason == "expired":
        return Rejection(
            RejectionCode.ASSIGNMENT_EXPIRED,
            f"assignment {assignment.assignment_id} expired{when} and was reissued",
        )
    return Rejection(
        RejectionCode.ASSIGNMENT_CANCELLED,
        f"assignment {assignment.assignment_id} was cancelled{when} ({reason})",
    )


def no_assignment(event: Ingress, waited: timedelta) -> Rejection:
    if isinstance(event, LabelSubmitted) and event.adjudication is not None:
        return Rejection(
            RejectionCode.NOT_ADJUDICATOR,
            f"annotator {event.annotator_id} holds no adjudication assignment for item "
            f"{event.item_id} after waiting {waited.total_seconds():.0f}s",
        )
    return Rejection(
        RejectionCode.NO_ASSIGNMENT,
        f"annotator {event.annotator_id} holds no assignment for item {event.item_id}"
        + (f" (claimed {event.assignment_id})" if event.assignment_id else "")
        + f" after waiting {waited.total_seconds():.0f}s",
    )
