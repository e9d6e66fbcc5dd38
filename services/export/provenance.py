"""Pure helpers for what export publishes."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def provenance_digest(
    item_id: str,
    task_id: str,
    task_version: int,
    decision: dict[str, Any],
    adjudication: dict[str, Any] | None = None,
) -> str:
    """SHA-256 over the canonical JSON of everything that determined the label.

    `adjudication` ({"adjudicator_id": ..., "rationale": ...}) enters the digest only when
    an adjudicator decided the item, so digests of other labels stay what they always were.
    """
    document: dict[str, Any] = {
        "item_id": item_id,
        "task_id": task_id,
        "task_version": task_version,
        "decision": decision,
    }
    if adjudication is not None:
        document["adjudication"] = adjudication
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
