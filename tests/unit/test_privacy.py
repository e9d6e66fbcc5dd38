"""The PHI tripwire (shared/privacy.py)."""

from __future__ import annotations

import json

import pytest

from shared.privacy import find_phi
from tests import factories


def _label_document(**payload: object) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        factories.label_event("study-1|Edema", "chexpert", "r1", "1").encode()
    )
    data["payload"].update(payload)  # type: ignore[attr-defined]  # a JSON object
    return data


def test_an_ordinary_label_event_is_clean() -> None:
    assert find_phi(_label_document()) is None
    assert find_phi(_label_document(comment="subtle opacity, left lower lobe")) is None


@pytest.mark.parametrize(
    "field", ["patient_name", "PatientName", "mrn", "dob", "date_of_birth", "ssn", "email"]
)
def test_a_field_named_like_an_identity_attribute_is_suspected(field: str) -> None:
    finding = find_phi(_label_document(**{field: "x"}))
    assert finding is not None and finding.path == f"payload.{field}"


@pytest.mark.parametrize(
    "text",
    [
        "DOB 1950-03-02",
        "born on 3/2/1950",
        "seen 12 March 1988",
        "MRN: 12345",
        "record 123456789",
        "Mrs. Smith, follow up",
        "patient name: J",
        "call 555-123-4567",
        "ssn 123-45-6789",
        "mail jane@example.org",
    ],
)
def test_free_text_that_looks_like_phi_is_suspected_and_the_value_is_not_echoed(text: str) -> None:
    finding = find_phi(_label_document(comment=text))
    assert finding is not None and finding.path == "payload.comment"
    assert text not in finding.message


def test_identifiers_with_a_full_date_are_suspected_but_plain_ids_are_not() -> None:
    assert find_phi(_label_document(item_id="p-1950-03-02")) is not None
    assert find_phi(_label_document(item_id="chexpert/patient64541/study1|Edema")) is None


def test_timestamps_and_ids_in_structured_fields_are_not_text() -> None:
    assert find_phi(_label_document(labeled_at="2026-01-05T09:30:00Z")) is None


def test_scanning_a_huge_value_stays_fast() -> None:
    import time

    started = time.perf_counter()
    for text in ("x" * 300_000, "_" * 300_000, " " * 300_000, "1 " * 150_000):
        find_phi(_label_document(comment=text))
    assert time.perf_counter() - started < 2.0
