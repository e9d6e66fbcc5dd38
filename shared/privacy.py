"""Heuristics that keep protected health information (PHI) out of Consilium's events.

Events carry pseudonymous ids and case references only. `find_phi` looks at a decoded
JSON document and reports the first place that looks like PHI:

* a field whose name suggests identity (patient_name, mrn, dob, birth_date, ssn,
  address, phone, email, ...), at any depth;
* in free-text values (any field not in `STRUCTURED_FIELDS`): a full calendar date
  (HIPAA Safe Harbor counts every date element but the year as an identifier), a
  DOB/MRN keyword, an honorific followed by a name ("Mrs. Smith", "name: ..."), a US SSN,
  an e-mail address, a phone number, or a run of 7+ digits (record numbers);
* in identifier values (item, annotator, task, client ids): a full calendar date or an
  MRN/DOB keyword.

Every pattern is bounded (no unbounded repetition before a literal), so scanning stays
linear in the text's length, even for an oversized event. It is a tripwire, not a
de-identification tool: it errs towards rejecting, and a
rejected event's reason names the field, never the value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Fields whose values are machine-made (ids, times, numbers, enums): not free text.
STRUCTURED_FIELDS = frozenset(
    {
        "event_id", "event_type", "schema_version", "occurred_at", "producer",
        "correlation_id", "causation_id", "annotation_id", "revision", "task_version",
        "assignment_id", "kind", "labeled_at", "retracted_at", "time_spent_ms", "grade",
        "measurement", "x0", "y0", "x1", "y1", "findings",
    }
)  # fmt: skip
IDENTIFIER_FIELDS = frozenset({"key", "item_id", "task_id", "annotator_id", "client_id"})

_SUSPECT_NAME_PARTS = (
    "name", "mrn", "medicalrecord", "dob", "birth", "ssn", "socialsecurity", "address",
    "phone", "email", "patientid", "insurance", "zipcode", "postcode",
)  # fmt: skip

_MONTHS = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(
    r"(?<!\d)(?:"
    r"(?:19|20)\d{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])"
    r"|(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:19|20)?\d{2}"
    r"|(?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.](?:19|20)?\d{2}"
    rf"|(?:0?[1-9]|[12]\d|3[01])\s{{0,3}}{_MONTHS}\s{{0,3}}(?:19|20)\d{{2}}"
    rf"|{_MONTHS}\s{{0,3}}(?:0?[1-9]|[12]\d|3[01]),?\s{{0,3}}(?:19|20)\d{{2}}"
    r")(?!\d)",
    re.IGNORECASE,
)
_KEYWORD = re.compile(
    r"(?:^|[^a-z])(?:dob|d\.o\.b|date[\s_-]{0,3}of[\s_-]{0,3}birth|born[\s_-]{1,3}on|mrn|"
    r"medical[\s_-]{0,3}record)(?:[^a-z]|$)",
    re.IGNORECASE,
)
_TEXT_PATTERNS = (
    ("a person's name", re.compile(r"\b(?i:mr|mrs|ms|miss|mx)\.?\s+[A-Z][a-z]+")),
    ("a person's name", re.compile(r"\bname\s{0,3}[:=]", re.IGNORECASE)),
    ("a social security number", re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")),
    ("an e-mail address", re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}\.[a-z]{2,}", re.IGNORECASE)),
    ("a phone number", re.compile(r"(?<!\d)\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?!\d)")),
    ("a record number", re.compile(r"(?<!\d)\d{7,}(?!\d)")),
)


@dataclass(frozen=True)
class PhiFinding:
    """Where PHI is suspected and what kind; never the value itself."""

    path: str
    what: str

    @property
    def message(self) -> str:
        return f"{self.path} looks like protected health information ({self.what})"


def find_phi(document: Any) -> PhiFinding | None:
    """The first suspected PHI in a decoded JSON document, or None."""
    for finding in _walk(document, ""):
        return finding
    return None


@functools.lru_cache(maxsize=4096)  # field names repeat in every event; bounded for hostile input
def suspect_field_name(name: str) -> bool:
    normalised = re.sub(r"[^a-z0-9]", "", name.lower())
    return any(part in normalised for part in _SUSPECT_NAME_PARTS)


def text_phi(text: str, *, identifier: bool = False) -> str | None:
    """What kind of PHI a string value looks like, or None."""
    if _DATE.search(text):
        return "a calendar date"
    if _KEYWORD.search(text):
        return "a date-of-birth or record-number marker"
    if identifier:
        return None
    for what, pattern in _TEXT_PATTERNS:
        if pattern.search(text):
            return what
    return None


def _walk(value: Any, path: str) -> Iterator[PhiFinding]:
    if isinstance(value, dict):
        for key, child in value.items():
            name = str(key)
            where = f"{path}.{name}" if path else name
            if suspect_field_name(name):
                yield PhiFinding(where, "a field named like an identity attribute")
            if name in STRUCTURED_FIELDS:
                continue
            if isinstance(child, str):
                what = text_phi(child, identifier=name in IDENTIFIER_FIELDS)
                if what is not None:
                    yield PhiFinding(where, what)
            else:
                yield from _walk(child, where)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            where = f"{path}[{index}]"
            if isinstance(child, str):
                what = text_phi(child)
                if what is not None:
                    yield PhiFinding(where, what)
            else:
                yield from _walk(child, where)
