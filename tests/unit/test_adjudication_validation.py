"""Submission's rules for cancelled assignments and adjudicators' decisions (pure)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.submission.validation import (
    WAIT,
    Assignment,
    Rejection,
    check_assignment,
    no_assignment,
)
from shared.events import LabelSubmitted, RejectionCode
from shared.privacy import find_phi
from tests import factories

TASK = factories.task("chest-1")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _assignment(**changes: object) -> Assignment:
    fields: dict[str, object] = {
        "assignment_id": uuid.uuid4(),
        "item_id": "item-1",
        "task_id": "chest-1",
        "annotator_id": "adj-1",
        "lease_expires_at": NOW + timedelta(hours=1),
    }
    fields.update(changes)
    return Assignment(**fields)  # type: ignore[arg-type]  # test data


def _label(*, adjudicating: bool, assignment: Assignment | None = None) -> LabelSubmitted:
    return factories.label_event(
        "item-1",
        "chest-1",
        "adj-1",
        "1",
        assignment_id=assignment.assignment_id if assignment else None,
        adjudication=factories.rationale() if adjudicating else None,
    ).payload


def _code(verdict: object) -> RejectionCode:
    assert isinstance(verdict, Rejection), verdict
    return verdict.code


@pytest.mark.parametrize("claims_id", [True, False])
def test_an_adjudicators_decision_answers_their_live_adjudication_assignment(
    claims_id: bool,
) -> None:
    adjudication = _assignment(kind="adjudication")
    label = _label(adjudicating=True, assignment=adjudication if claims_id else None)
    assert check_assignment(label, TASK, [adjudication], NOW) == adjudication


def test_a_decision_with_a_rationale_from_a_reader_assignment_is_not_an_adjudicators() -> None:
    reading = _assignment(kind="label")
    verdict = check_assignment(_label(adjudicating=True, assignment=reading), TASK, [reading], NOW)
    assert _code(verdict) == RejectionCode.NOT_ADJUDICATOR


def test_a_decision_prefers_the_annotators_adjudication_assignment_over_a_reading() -> None:
    reading = _assignment(kind="label", lease_expires_at=NOW + timedelta(hours=5))
    adjudication = _assignment(kind="adjudication")
    verdict = check_assignment(_label(adjudicating=True), TASK, [reading, adjudication], NOW)
    assert verdict == adjudication


def test_an_answer_to_an_adjudication_assignment_needs_its_rationale() -> None:
    adjudication = _assignment(kind="adjudication")
    label = _label(adjudicating=False, assignment=adjudication)
    assert _code(check_assignment(label, TASK, [adjudication], NOW)) == (
        RejectionCode.RATIONALE_MISSING
    )


def test_a_task_without_required_assignments_still_requires_them_of_adjudication() -> None:
    open_task = factories.task("chest-1", require_assignment=False)
    adjudication = _assignment(kind="adjudication")
    assert check_assignment(_label(adjudicating=True), open_task, [], NOW) == WAIT
    assert check_assignment(_label(adjudicating=True), open_task, [adjudication], NOW) == (
        adjudication
    )
    without_rationale = _label(adjudicating=False, assignment=adjudication)
    assert _code(check_assignment(without_rationale, open_task, [adjudication], NOW)) == (
        RejectionCode.RATIONALE_MISSING
    )
    assert check_assignment(_label(adjudicating=False), open_task, [], NOW) is None


def test_a_decision_that_waited_in_vain_is_answered_not_adjudicator() -> None:
    waited = no_assignment(_label(adjudicating=True), timedelta(seconds=60))
    assert waited.code == RejectionCode.NOT_ADJUDICATOR
    assert no_assignment(_label(adjudicating=False), timedelta(seconds=60)).code == (
        RejectionCode.NO_ASSIGNMENT
    )


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("expired", RejectionCode.ASSIGNMENT_EXPIRED),
        ("declined", RejectionCode.ASSIGNMENT_CANCELLED),
        ("escalated", RejectionCode.ASSIGNMENT_CANCELLED),
        ("adjudicated", RejectionCode.ASSIGNMENT_CANCELLED),
    ],
)
def test_a_label_published_after_its_assignment_was_cancelled_is_rejected(
    reason: str, code: RejectionCode
) -> None:
    cancelled = _assignment(cancelled_reason=reason, cancelled_at=NOW - timedelta(minutes=1))
    label = _label(adjudicating=False, assignment=cancelled)
    verdict = check_assignment(label, TASK, [cancelled], NOW)
    assert _code(verdict) == code
    assert isinstance(verdict, Rejection) and str(cancelled.assignment_id) in verdict.message
    if code == RejectionCode.ASSIGNMENT_CANCELLED:
        assert f"({reason})" in verdict.message


def test_a_label_published_before_the_cancellation_still_counts() -> None:
    cancelled = _assignment(cancelled_reason="declined", cancelled_at=NOW + timedelta(seconds=1))
    label = _label(adjudicating=False, assignment=cancelled)
    assert check_assignment(label, TASK, [cancelled], NOW) == cancelled


def test_a_reader_whose_item_reached_consensus_meanwhile_is_still_heard() -> None:
    cancelled = _assignment(
        cancelled_reason="consensus_reached", cancelled_at=NOW - timedelta(minutes=1)
    )
    label = _label(adjudicating=False, assignment=cancelled)
    assert check_assignment(label, TASK, [cancelled], NOW) == cancelled
    late = _assignment(
        cancelled_reason="consensus_reached",
        cancelled_at=NOW - timedelta(minutes=1),
        lease_expires_at=NOW - timedelta(seconds=1),
    )
    assert _code(
        check_assignment(_label(adjudicating=False, assignment=late), TASK, [late], NOW)
    ) == (RejectionCode.ASSIGNMENT_EXPIRED)


def test_phi_in_the_rationale_is_caught_like_phi_in_a_comment() -> None:
    clean = factories.label_event(
        "item-1", "chest-1", "adj-1", "1", adjudication=factories.rationale()
    )
    assert find_phi(json.loads(clean.encode())) is None
    leaky = factories.label_event(
        "item-1",
        "chest-1",
        "adj-1",
        "1",
        adjudication=factories.rationale(text="seen with Mrs. Jones, follow-up 03/14/2025"),
    )
    finding = find_phi(json.loads(leaky.encode()))
    assert finding is not None and finding.path == "payload.adjudication.text"
    meaning = factories.label_event(
        "item-1",
        "chest-1",
        "adj-1",
        "1",
        adjudication=factories.rationale(signature_meaning="I adjudicate MRN 12345678 as 1"),
    )
    finding = find_phi(json.loads(meaning.encode()))
    assert finding is not None and finding.path == "payload.adjudication.signature_meaning"
