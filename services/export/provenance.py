"""Pure helpers for what export publishes."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def provenance_digest(
    item_id: str, task_id: str, task_version: int, decision: dict[str, Any]
) -> str:
    """SHA-256 over the canonical JSON of everything that determined the label."""
    canonical = json.dumps(
        {
            "item_id": item_id,
            "task_id": task_id,
            "task_version": task_version,
            "decision": decision,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
