"""Submission's acceptance rules (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.submission.validation import (
    WAIT,
    AnnotationHistory,
    Assignment,
    ClientKey,
    ItemInfo,
    Rejection,
    check_assignment,
    check_authenticity,
    check_history,
    check_target,
    check_value,
    is_superseded,
)
from shared.events import (
    Box,
    BoxesValue,
    LabelSubmitted,
    MultiLabelValue,
    NumericValue,
    OrdinalValue,
    RejectionCode,
)
from shared.signing import SignedHeaders, derive_secret, sign
from tests import factories

TASK = factories.task("chest-1")
ITEM = ItemInfo("chest-1")
MASTER = b"master"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _label(value: str = "1", item: str = "item-1", task: str = "chest-1") -> LabelSubmitted:
    return factories.label_event(item, task, "reader-a", value).payload


def _code(rejection: object) -> RejectionCode:
    assert isinstance(rejection, Rejection), rejection
    return rejection.code


def test_a_label_with_an_allowed_value_for_a_known_item_is_accepted() -> None:
    label = _label()
    assert check_target(label, "item-1", TASK, ITEM) is None
    assert check_value(label.value, TASK, ITEM) is None


def test_each_broken_target_rule_is_named_by_its_code() -> None:
    label = _label()
    assert _code(check_target(label, "item-1", None, ITEM)) == RejectionCode.UNKNOWN_TASK
    assert _code(check_target(label, "item-1", TASK, None)) == RejectionCode.UNKNOWN_ITEM
    other = ItemInfo("other")
    assert _code(check_target(label, "item-1", TASK, other)) == RejectionCode.ITEM_TASK_MISMATCH
    assert _code(check_target(label, "item-2", TASK, ITEM)) == RejectionCode.INVALID_ENVELOPE
    assert _code(check_value(_label("7").value, TASK, ITEM)) == RejectionCode.VALUE_NOT_ALLOWED


def test_a_label_of_another_kind_than_the_task_is_rejected() -> None:
    value = NumericValue(measurement=3.2)
    assert _code(check_value(value, TASK, ITEM)) == RejectionCode.WRONG_LABEL_KIND


def test_ordinal_grades_outside_the_scale_are_not_allowed() -> None:
    birads = factories.task("birads", label_kind="ordinal", classes=(), ordinal_range=(1, 5))
    assert check_value(OrdinalValue(grade=4), birads, ITEM) is None
    assert (
        _code(check_value(OrdinalValue(grade=6), birads, ITEM)) == RejectionCode.VALUE_NOT_ALLOWED
    )


def test_multilabel_findings_must_be_known_and_unique() -> None:
    task = factories.task("chexpert", label_kind="multilabel", classes=("Edema", "Effusion"))
    assert check_value(MultiLabelValue(findings=("Edema",)), task, ITEM) is None
    assert check_value(MultiLabelValue(findings=()), task, ITEM) is None
    unknown = MultiLabelValue(findings=("Fracture",))
    twice = MultiLabelValue(findings=("Edema", "Edema"))
    assert _code(check_value(unknown, task, ITEM)) == RejectionCode.VALUE_NOT_ALLOWED
    assert _code(check_value(twice, task, ITEM)) == RejectionCode.VALUE_NOT_ALLOWED


@pytest.mark.parametrize(
    ("box", "code"),
    [
        (Box(x0=0.1, y0=0.1, x1=0.4, y1=0.5, label="nodule"), None),
        (Box(x0=0.4, y0=0.1, x1=0.1, y1=0.5), RejectionCode.INVALID_GEOMETRY),
        (Box(x0=0.1, y0=0.1, x1=0.1, y1=0.5), RejectionCode.INVALID_GEOMETRY),
        (Box(x0=0.1, y0=0.1, x1=1.2, y1=0.5), RejectionCode.INVALID_GEOMETRY),
        (Box(x0=-0.1, y0=0.1, x1=0.3, y1=0.5), RejectionCode.INVALID_GEOMETRY),
        (Box(x0=0.1, y0=0.1, x1=0.3, y1=0.5, label="mass"), RejectionCode.VALUE_NOT_ALLOWED),
    ],
)
def test_boxes_must_be_well_formed_inside_the_image_with_allowed_labels(
    box: Box, code: RejectionCode | None
) -> None:
    task = factories.task("nodules", label_kind="boxes", classes=("nodule",))
    found = check_value(BoxesValue(boxes=(box,)), task, ITEM)
    assert (found.code if found else None) == code


def test_pixel_boxes_are_checked_against_the_items_image_size() -> None:
    task = factories.task("px", label_kind="boxes", classes=(), box_coordinates="pixels")
    inside = BoxesValue(boxes=(Box(x0=10, y0=10, x1=500, y1=400),))
    assert check_value(inside, task, ItemInfo("px", 512, 512)) is None
    assert _code(check_value(inside, task, ItemInfo("px", 256, 256))) == (
        RejectionCode.INVALID_GEOMETRY
    )
    assert _code(check_value(inside, task, ItemInfo("px"))) == RejectionCode.INVALID_GEOMETRY


def test_more_boxes_than_the_task_allows_are_rejected() -> None:
    task = factories.task("few", label_kind="boxes", classes=(), max_boxes=1)
    boxes = BoxesValue(boxes=(Box(x0=0, y0=0, x1=0.1, y1=0.1),) * 2)
    assert _code(check_value(boxes, task, ITEM)) == RejectionCode.INVALID_GEOMETRY


def test_a_late_lower_revision_is_kept_as_superseded_but_the_same_revision_conflicts() -> None:
    label = _label()
    history = AnnotationHistory(frozenset({2}), "reader-a", "item-1")
    assert check_history(label, history) is None
    assert is_superseded(1, history) and not is_superseded(3, history)
    same = label.model_copy(update={"revision": 2})
    assert _code(check_history(same, history)) == RejectionCode.REVISION_CONFLICT


def test_an_annotation_belongs_to_one_annotator_and_item() -> None:
    history = AnnotationHistory(frozenset({1}), "reader-b", "item-1")
    assert _code(check_history(_label(), history)) == RejectionCode.ANNOTATION_MISMATCH


def _assignment(**changes: object) -> Assignment:
    fields: dict[str, object] = {
        "assignment_id": uuid.uuid4(),
        "item_id": "item-1",
        "task_id": "chest-1",
        "annotator_id": "reader-a",
        "lease_expires_at": NOW + timedelta(hours=1),
    }
    fields.update(changes)
    return Assignment(**fields)  # type: ignore[arg-type]  # test data


def test_a_label_needs_a_live_assignment_for_its_item_and_annotator() -> None:
    live = _assignment()
    label = _label()
    assert check_assignment(label, TASK, [live], NOW) == live
    assert check_assignment(label, TASK, [], NOW) == WAIT
    expired = _assignment(lease_expires_at=NOW - timedelta(seconds=1))
    assert _code(check_assignment(label, TASK, [expired], NOW)) == RejectionCode.ASSIGNMENT_EXPIRED


def test_a_claimed_assignment_must_be_the_annotators_for_this_item() -> None:
    other = _assignment(annotator_id="reader-b")
    label = _label().model_copy(update={"assignment_id": other.assignment_id})
    assert _code(check_assignment(label, TASK, [other], NOW)) == RejectionCode.ASSIGNMENT_MISMATCH
    unknown = _label().model_copy(update={"assignment_id": uuid.uuid4()})
    assert check_assignment(unknown, TASK, [_assignment()], NOW) == WAIT


def test_a_task_may_waive_the_assignment_rule() -> None:
    open_task = factories.task("open", require_assignment=False)
    assert check_assignment(_label(task="open"), open_task, [], NOW) is None


def _key(**changes: object) -> ClientKey:
    fields: dict[str, object] = {
        "key_id": "k1",
        "client_id": "viewer-1",
        "salt": "s",
        "client_active": True,
        "expires_at": None,
        "revoked_at": None,
        "may_speak_for_annotator": True,
    }
    fields.update(changes)
    return ClientKey(**fields)  # type: ignore[arg-type]  # test data


def _authenticity(
    value: bytes, headers: list[tuple[str, bytes]], key: ClientKey | None, client: str = "viewer-1"
) -> Rejection | None:
    return check_authenticity(
        value=value,
        signed=SignedHeaders.read(headers),
        key=key,
        master=MASTER,
        reference=NOW,
        window=timedelta(minutes=5),
        client_id=client,
    )


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("valid", None),
        ("unsigned", RejectionCode.UNSIGNED),
        ("unknown_key", RejectionCode.UNKNOWN_KEY),
        ("revoked", RejectionCode.KEY_REVOKED),
        ("expired_key", RejectionCode.KEY_REVOKED),
        ("inactive_client", RejectionCode.KEY_REVOKED),
        ("tampered", RejectionCode.BAD_SIGNATURE),
        ("forged", RejectionCode.BAD_SIGNATURE),
        ("old", RejectionCode.SIGNATURE_EXPIRED),
        ("future", RejectionCode.SIGNATURE_EXPIRED),
        ("other_client", RejectionCode.CLIENT_MISMATCH),
        ("not_allowed", RejectionCode.ANNOTATOR_NOT_ALLOWED),
    ],
)
def test_authenticity_rules(case: str, code: RejectionCode | None) -> None:
    from shared.signing import SigningKey

    value = b'{"event": 1}'
    real = SigningKey("k1", derive_secret(MASTER, "k1", "s"))
    headers = sign(value, real, NOW)
    key: ClientKey | None = _key()
    client = "viewer-1"
    if case == "unsigned":
        headers = headers[:2]
    elif case == "unknown_key":
        key = None
    elif case == "revoked":
        key = _key(revoked_at=NOW - timedelta(seconds=1))
    elif case == "expired_key":
        key = _key(expires_at=NOW - timedelta(seconds=1))
    elif case == "inactive_client":
        key = _key(client_active=False)
    elif case == "tampered":
        value = b'{"event": 2}'
    elif case == "forged":
        headers = sign(value, SigningKey("k1", b"guessed"), NOW)
    elif case == "old":
        headers = sign(value, real, NOW - timedelta(minutes=6))
    elif case == "future":
        headers = sign(value, real, NOW + timedelta(minutes=6))
    elif case == "other_client":
        client = "viewer-2"
    elif case == "not_allowed":
        key = _key(may_speak_for_annotator=False)
    found = _authenticity(value, headers, key, client)
    assert (found.code if found else None) == code


def test_a_known_task_without_the_claimed_version_is_a_version_mismatch() -> None:
    label = _label()
    found = check_target(label, "item-1", None, ITEM, task_versions=[2, 3])
    assert _code(found) == RejectionCode.TASK_VERSION_MISMATCH


def test_stale_revision_is_retired_but_old_rejections_still_decode() -> None:
    """Late revisions are kept as superseded now; events that carry the old code decode."""
    from shared.events import LabelRejected

    old = LabelRejected(
        rejected_event_id=None, code=RejectionCode("stale_revision"), message="m",
        raw_sha256="0" * 64, source_topic="t", source_partition=0, source_offset=0,
    )  # fmt: skip
    assert old.code is RejectionCode.STALE_REVISION
