"""The audit chain's canonical form and verification (shared/audit.py, pure part)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from shared.audit import GENESIS, AuditRow, canonical_json, verify_chain


def _chain(n: int) -> list[AuditRow]:
    rows: list[AuditRow] = []
    prev = GENESIS
    start = datetime(2026, 1, 5, tzinfo=UTC)
    for seq in range(1, n + 1):
        row = AuditRow(
            chain="submission", seq=seq, recorded_at=start + timedelta(seconds=seq),
            kind="label.accepted", subject=f"item-{seq}", event_id=uuid.uuid4(),
            body=canonical_json({"n": seq}), prev_hash=prev, hash="",
        )  # fmt: skip
        row = dataclasses.replace(row, hash=row.expected_hash())
        rows.append(row)
        prev = row.hash
    return rows


def test_canonical_json_is_sorted_compact_and_typed() -> None:
    moment = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    ident = uuid.UUID(int=1)
    assert canonical_json({"b": (1, 2), "a": moment, "c": ident, "d": "é"}) == (
        '{"a":"2026-01-05T09:30:00.000000Z","b":[1,2],'
        '"c":"00000000-0000-0000-0000-000000000001","d":"é"}'
    )


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    rows = _chain(5)
    report = verify_chain("submission", rows)
    assert report.ok and report.rows == 5
    assert (report.head_seq, report.head_hash) == (5, rows[-1].hash)


def test_a_modified_row_is_named() -> None:
    rows = _chain(5)
    rows[2] = dataclasses.replace(rows[2], body=canonical_json({"n": 99}))
    report = verify_chain("submission", rows)
    assert report.broken_seq == 3 and "content" in report.reason
    assert report.head_seq == 2


def test_a_removed_row_is_named_by_the_row_after_the_gap() -> None:
    rows = _chain(5)
    del rows[1]
    assert verify_chain("submission", rows).broken_seq == 3


def test_a_rehashed_row_breaks_the_link_to_the_next_one() -> None:
    rows = _chain(4)
    forged = dataclasses.replace(rows[1], body=canonical_json({"n": 0}))
    rows[1] = dataclasses.replace(forged, hash=forged.expected_hash())
    assert verify_chain("submission", rows).broken_seq == 3
