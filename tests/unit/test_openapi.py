"""The committed OpenAPI document of the assignment pull API is the one the code generates."""

from __future__ import annotations

import json
from pathlib import Path

from services.assignment.api import openapi_document

COMMITTED = Path(__file__).parents[2] / "docs" / "openapi" / "assignment.json"


def test_the_committed_openapi_document_equals_the_generated_one() -> None:
    # Regenerate with: .venv/bin/python -m services.assignment.api > docs/openapi/assignment.json
    assert json.loads(COMMITTED.read_text()) == openapi_document()


def test_the_document_describes_the_pull_and_decline_endpoints() -> None:
    paths = openapi_document()["paths"]
    assert set(paths["/annotators/{annotator_id}/next"]["get"]["responses"]) == {
        "200",
        "204",
        "422",
    }
    decline = paths["/annotators/{annotator_id}/assignments/{assignment_id}/decline"]["post"]
    assert {"200", "404", "409"} <= set(decline["responses"])
