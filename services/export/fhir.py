"""Published consensus as FHIR R4 resources (pure; built and validated by fhir.resources).

Each published version becomes an `Observation` (a `DiagnosticReport` with one
`Observation` per finding for a multi-finding label) and a `Provenance` naming the
pseudonymous readers, the adjudicator where there was one, and Consilium as the
assembling software with its method. Ids are derived from (item, version), so the same
consensus version always yields the same resources.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from shared.events import ConsensusPublished

SYSTEM = "urn:consilium"
_NAMESPACE = uuid.UUID("6d3c1a90-3f4b-4c53-a8a2-7f9e2b1c0d44")
_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_PROVENANCE_ACTIVITY = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ADJUDICATION_EXTENSION = f"{SYSTEM}:fhir:StructureDefinition:adjudication"


def resource_id(kind: str, published: ConsensusPublished) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}|{published.item_id}|{published.version}"))


def _item_identifier(published: ConsensusPublished) -> dict[str, Any]:
    return {"system": f"{SYSTEM}:item", "value": published.item_id}


def findings_of(published: ConsensusPublished) -> list[str] | None:
    """The findings present, when the consensus is a multi-finding label."""
    label = published.label
    if isinstance(label, list) and all(isinstance(value, str) for value in label):
        return [str(value) for value in label]
    return None


def _value(published: ConsensusPublished) -> dict[str, Any]:
    label = published.label
    if isinstance(label, float):
        return {"valueQuantity": {"value": label}}
    if isinstance(label, list):  # boxes: [x0, y0, x1, y1(, class)] each, as JSON text
        return {"valueString": json.dumps(label)}
    return {
        "valueCodeableConcept": {
            "coding": [{"system": f"{SYSTEM}:task:{published.task_id}", "code": str(label)}],
            "text": str(label),
        }
    }


def _components(published: ConsensusPublished) -> list[dict[str, Any]]:
    """Confidence, agreement and the posterior per value, as unitless quantities."""

    def quantity(code: str, text: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": f"{SYSTEM}:measure", "code": code}], "text": text},
            "valueQuantity": {"value": round(value, 6), "unit": "1"},
        }

    parts = [
        quantity("confidence", "posterior confidence", published.confidence),
        quantity("agreement", "pairwise reader agreement", published.agreement),
    ]
    parts += [
        quantity(f"posterior:{value}", f"posterior probability of {value}", p)
        for value, p in sorted(published.distribution.items())
    ]
    return parts


def observation(published: ConsensusPublished) -> Observation:
    """One consensus version as an imaging Observation (amended when it supersedes)."""
    data: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id("observation", published),
        "identifier": [
            {"system": f"{SYSTEM}:consensus", "value": f"{published.item_id}|v{published.version}"}
        ],
        "status": "amended" if published.supersedes_version else "final",
        "category": [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "imaging"}]}],
        "code": {
            "coding": [{"system": f"{SYSTEM}:task", "code": published.task_id}],
            "text": published.task_id,
        },
        "subject": {"identifier": _item_identifier(published), "display": "pseudonymous case"},
        "effectiveDateTime": published.decided_at.isoformat(),
        "issued": published.decided_at.isoformat(),
        "method": {
            "coding": [
                {
                    "system": f"{SYSTEM}:method",
                    "code": published.method,
                    "display": published.method_version,
                }
            ]
        },
        "component": _components(published),
        **_value(published),
    }
    notes = [{"text": published.reason}] if published.reason else []
    if published.adjudicator_id is not None:
        notes.append(_adjudication_note(published))
        data["extension"] = [adjudication_extension(published)]
    if notes:
        data["note"] = notes
    return Observation.model_validate(data)


def _adjudicator(published: ConsensusPublished) -> dict[str, Any]:
    return {
        "identifier": {"system": f"{SYSTEM}:annotator", "value": published.adjudicator_id},
        "display": "pseudonymous adjudicator",
    }


def adjudication_extension(published: ConsensusPublished) -> dict[str, Any]:
    """The adjudicator's structured rationale, one sub-extension per field."""
    rationale = published.adjudication
    parts: list[dict[str, Any]] = [
        {"url": "adjudicator", "valueIdentifier": _adjudicator(published)["identifier"]}
    ]
    if rationale is not None:
        parts.append({"url": "reasonCode", "valueCode": rationale.reason_code})
        if rationale.guideline_clause:
            parts.append({"url": "guidelineClause", "valueString": rationale.guideline_clause})
        if rationale.text:
            parts.append({"url": "text", "valueString": rationale.text})
        parts.append({"url": "signatureMeaning", "valueString": rationale.signature_meaning})
    return {"url": ADJUDICATION_EXTENSION, "extension": parts}


def _adjudication_note(published: ConsensusPublished) -> dict[str, Any]:
    """The rationale in words, attributed to the adjudicator."""
    rationale = published.adjudication
    sentences = ["Adjudicated."]
    if rationale is not None:
        clause = rationale.guideline_clause
        sentences = [
            f"Adjudicated ({rationale.reason_code}"
            + (f", guideline clause {clause})." if clause else ")."),
            *([rationale.text.rstrip(".") + "."] if rationale.text else []),
            f"Signed as: {rationale.signature_meaning}",
        ]
    return {
        "authorReference": _adjudicator(published),
        "time": published.decided_at.isoformat(),
        "text": " ".join(sentences),
    }


def _finding_observation(published: ConsensusPublished, finding: str, present: bool) -> Observation:
    data = {
        "resourceType": "Observation",
        "id": str(
            uuid.uuid5(_NAMESPACE, f"finding|{published.item_id}|{published.version}|{finding}")
        ),
        "status": "amended" if published.supersedes_version else "final",
        "code": {"coding": [{"system": f"{SYSTEM}:finding", "code": finding}], "text": finding},
        "subject": {"identifier": _item_identifier(published)},
        "valueBoolean": present,
    }
    return Observation.model_validate(data)


def diagnostic_report(
    published: ConsensusPublished, findings: Iterable[str]
) -> tuple[DiagnosticReport, list[Observation]]:
    """A multi-finding consensus: the report plus one Observation per finding."""
    present = set(findings_of(published) or ())
    results = [_finding_observation(published, f, f in present) for f in sorted(findings)]
    adjudicated = published.adjudicator_id is not None
    report = DiagnosticReport.model_validate(
        {
            "resourceType": "DiagnosticReport",
            **({"extension": [adjudication_extension(published)]} if adjudicated else {}),
            "id": resource_id("report", published),
            "status": "amended" if published.supersedes_version else "final",
            "code": {"coding": [{"system": f"{SYSTEM}:task", "code": published.task_id}]},
            "subject": {"identifier": _item_identifier(published)},
            "issued": published.decided_at.isoformat(),
            "result": [{"reference": f"Observation/{o.id}"} for o in results],
            "conclusion": ", ".join(sorted(present)) or "no finding",
        }
    )
    return report, results


def provenance(published: ConsensusPublished, target_type: str = "Observation") -> Provenance:
    """Who and what stand behind a consensus: readers, adjudicator, the software."""
    target_kind = "observation" if target_type == "Observation" else "report"
    agents: list[dict[str, Any]] = [
        {
            "type": {"coding": [{"system": _AGENT_TYPE, "code": "author"}]},
            "who": {
                "identifier": {"system": f"{SYSTEM}:annotator", "value": reader},
                "display": "pseudonymous reader",
            },
        }
        for reader in published.contributing_annotators
        if reader != published.adjudicator_id  # named below, with the adjudicator's role
    ]
    if published.adjudicator_id is not None:
        agents.append(
            {
                "type": {"coding": [{"system": _AGENT_TYPE, "code": "verifier"}]},
                "role": [
                    {
                        "coding": [{"system": f"{SYSTEM}:role", "code": "adjudicator"}],
                        "text": "adjudicator of the contested case",
                    }
                ],
                "who": _adjudicator(published),
            }
        )
    agents.append(
        {
            "type": {"coding": [{"system": _AGENT_TYPE, "code": "assembler"}]},
            "who": {"display": f"Consilium {published.method_version} ({published.method})"},
        }
    )
    data = {
        "resourceType": "Provenance",
        "id": resource_id("provenance", published),
        "target": [{"reference": f"{target_type}/{resource_id(target_kind, published)}"}],
        "recorded": published.decided_at.isoformat(),
        "activity": {
            "coding": [
                {
                    "system": _PROVENANCE_ACTIVITY,
                    "code": "UPDATE" if published.supersedes_version else "CREATE",
                }
            ]
        },
        "reason": _provenance_reasons(published) or None,
        "agent": agents,
        "entity": [
            {
                "role": "source",
                "what": {"identifier": {"system": f"{SYSTEM}:label", "value": str(label_id)}},
            }
            for label_id in published.contributing_label_ids
        ]
        + [
            {
                "role": "derivation",
                "what": {
                    "identifier": {
                        "system": f"{SYSTEM}:provenance-sha256",
                        "value": published.provenance_sha256,
                    }
                },
            }
        ],
    }
    return Provenance.model_validate({k: v for k, v in data.items() if v is not None})


def _provenance_reasons(published: ConsensusPublished) -> list[dict[str, Any]]:
    reasons: list[dict[str, Any]] = [{"text": published.reason}] if published.reason else []
    if published.adjudication is not None:
        code = published.adjudication.reason_code
        reasons.append(
            {
                "coding": [{"system": f"{SYSTEM}:adjudication-reason", "code": code}],
                "text": published.adjudication.text or code,
            }
        )
    return reasons


def resources(published: ConsensusPublished, findings: Iterable[str] = ()) -> list[Any]:
    """Every resource for one published version."""
    present = findings_of(published)
    if present is not None:
        report, results = diagnostic_report(published, findings or present)
        return [report, *results, provenance(published, "DiagnosticReport")]
    return [observation(published), provenance(published)]


def event_bundle(published: ConsensusPublished) -> Bundle:
    """One consensus version's resources as a collection Bundle (the FHIR topic's record)."""
    resolved = resources(published)
    document = bundle(resolved, resource_id("bundle", published)).model_dump(
        mode="json", exclude_none=True
    )
    document["identifier"] = {
        "system": f"{SYSTEM}:consensus",
        "value": f"{published.item_id}|v{published.version}",
    }
    document["timestamp"] = published.decided_at.isoformat()
    return Bundle.model_validate(document)


def bundle(entries: Iterable[Any], bundle_id: str) -> Bundle:
    """A collection Bundle of resources (one per snapshot, or one per event)."""
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "id": bundle_id,
            "type": "collection",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{r.id}",
                    "resource": r.model_dump(mode="json", exclude_none=True),
                }
                for r in entries
            ],
        }
    )
