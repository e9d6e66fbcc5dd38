"""An adjudicator's decision and rationale travel into everything export produces: the
published version and its digest, FHIR, snapshot columns and replay."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle

from services.consensus import engine
from services.consensus.engine.observation import Role
from services.consensus.engine.reliability import ReliabilitySnapshot
from services.consensus.policies import decision_record
from services.consensus.scoped import TaskView
from services.export import fhir
from services.export.handlers import is_new_version, published_version
from services.export.replay import StoredLabel, compare, rederive
from services.export.snapshot import CONSENSUS_CSV, SnapshotWriter
from shared.events import AdjudicationRationale, ConsensusReached
from tests import factories

POLICY = engine.ConsensusPolicy(method="mv", kind="binary", classes=("0", "1"), min_labels=2)
READERS = (("reader-a", "0"), ("reader-b", "0"))
ADJUDICATOR = "adjudicator-7"


def _labels() -> list[StoredLabel]:
    """Two readers say "0"; the adjudicator says "1" (as submission stores them)."""
    stored = [
        StoredLabel(str(uuid.uuid4()), str(uuid.uuid4()), 1, reader, {"kind": "categorical",
                    "label": value})
        for reader, value in (*READERS, (ADJUDICATOR, "1"))
    ]  # fmt: skip
    return stored


def _adjudicated(
    labels: list[StoredLabel], rationale: AdjudicationRationale | None = None
) -> ConsensusReached:
    """What consensus publishes once the adjudicator's label closed the item."""
    state = engine.ItemState.new("case-1")
    for label in labels:
        role: Role = "adjudicator" if label.annotator_id == ADJUDICATOR else "annotator"
        state = state.with_label(
            engine.LabelObservation(
                label.label_id, label.annotator_id, str(label.value["label"]),
                label.annotation_id, label.revision, role=role,
            )
        )  # fmt: skip
    view = TaskView(ReliabilitySnapshot.empty(), "chest")
    decision = engine.rescore(POLICY, state, view).decision
    return ConsensusReached(
        item_id="case-1",
        task_id="chest",
        task_version=1,
        consensus_version=2,
        decision=decision_record(decision, state),
        decided_at=factories.NOW,
        adjudicator_id=ADJUDICATOR,
        adjudication=rationale or factories.rationale(),
    )


def test_the_published_version_carries_the_adjudicator_and_rationale() -> None:
    reached = _adjudicated(_labels())
    published = published_version(reached, 2, 1)
    assert published.label == "1"
    assert published.adjudicator_id == ADJUDICATOR
    assert published.adjudication == factories.rationale()


def test_the_rationale_is_part_of_the_provenance_digest() -> None:
    labels = _labels()
    signed = published_version(_adjudicated(labels), 2, 1)
    reworded = published_version(
        _adjudicated(labels, factories.rationale(text="a different reason")), 2, 1
    )
    unadjudicated = published_version(
        _adjudicated(labels).model_copy(update={"adjudicator_id": None, "adjudication": None}),
        2,
        1,
    )
    digests = {signed.provenance_sha256, reworded.provenance_sha256}
    assert len(digests | {unadjudicated.provenance_sha256}) == 3


def test_a_changed_rationale_for_the_same_label_is_a_new_version() -> None:
    labels = _labels()
    previous = published_version(_adjudicated(labels), 1, None).model_dump(mode="json")
    assert not is_new_version(_adjudicated(labels), previous)
    amended = _adjudicated(labels, factories.rationale(reason_code="guideline_update"))
    assert is_new_version(amended, previous)


def test_fhir_names_the_adjudicator_and_carries_the_rationale() -> None:
    published = published_version(_adjudicated(_labels()), 2, 1)
    bundle = fhir.event_bundle(published)
    assert Bundle.model_validate_json(bundle.model_dump_json()).id == bundle.id
    observation, provenance = fhir.resources(published)
    record = observation.model_dump(mode="json", exclude_none=True)
    (extension,) = record["extension"]
    fields = {part["url"]: part for part in extension["extension"]}
    assert fields["adjudicator"]["valueIdentifier"]["value"] == ADJUDICATOR
    assert fields["reasonCode"]["valueCode"] == "reader_error"
    assert fields["guidelineClause"]["valueString"] == "4.2"
    assert fields["signatureMeaning"]["valueString"] == "I adjudicate this case as present"
    assert "Signed as: I adjudicate this case as present" in record["note"][-1]["text"]
    agents = provenance.model_dump(mode="json", exclude_none=True)["agent"]
    roles = {
        agent["who"].get("identifier", {}).get("value"): agent["type"]["coding"][0]["code"]
        for agent in agents
    }
    assert roles == {
        "reader-a": "author", "reader-b": "author", ADJUDICATOR: "verifier", None: "assembler",
    }  # fmt: skip
    verifier = next(a for a in agents if a["type"]["coding"][0]["code"] == "verifier")
    assert verifier["role"][0]["coding"][0]["code"] == "adjudicator"


def test_snapshot_csv_has_the_rationale_columns(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path, {"task_id": None})
    writer.open()
    writer.add(published_version(_adjudicated(_labels()), 2, 1), [])
    writer.finish({"snapshot_id": "fixed"})
    with (tmp_path / CONSENSUS_CSV).open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["adjudicator_id"] == ADJUDICATOR
    assert row["adjudication_reason_code"] == "reader_error"
    assert row["adjudication_guideline_clause"] == "4.2"
    assert row["adjudication_signature_meaning"] == "I adjudicate this case as present"


def test_replay_reproduces_an_adjudicated_version_from_the_raw_labels() -> None:
    labels = _labels()
    published = published_version(_adjudicated(labels), 2, 1)
    published = published.model_copy(update={"parameters": POLICY.to_dict()})
    assert compare(published, rederive(published, labels, ReliabilitySnapshot.empty())) is None


def test_replay_rejects_an_adjudicated_version_naming_another_adjudicator() -> None:
    labels = _labels()
    published = published_version(_adjudicated(labels), 2, 1)
    forged = published.model_copy(
        update={"parameters": POLICY.to_dict(), "adjudicator_id": "someone-else"}
    )
    problem = compare(forged, rederive(forged, labels, ReliabilitySnapshot.empty()))
    assert problem is not None
    assert problem["method"] == {"published": "adjudication", "replayed": "mv"}
    assert "method_version" not in problem  # same engine: the difference is the label's


def test_replay_names_the_engine_version_when_another_one_decided_the_version() -> None:
    labels = _labels()
    published = published_version(_adjudicated(labels), 2, 1)
    older = published.model_copy(
        update={
            "parameters": POLICY.to_dict(),
            "adjudicator_id": "someone-else",
            "method_version": "consilium-engine/0.9.0",
        }
    )
    problem = compare(older, rederive(older, labels, ReliabilitySnapshot.empty()))
    assert problem is not None
    assert problem["method_version"] == {
        "published": "consilium-engine/0.9.0",
        "replayed": engine.ENGINE_VERSION,
    }


def test_an_adjudicated_multi_finding_report_carries_the_rationale() -> None:
    published = published_version(_adjudicated(_labels()), 2, 1).model_copy(
        update={"label": ["Edema"]}
    )
    report, finding, provenance = fhir.resources(published, ["Edema"])
    record = report.model_dump(mode="json", exclude_none=True)
    assert record["extension"][0]["url"] == fhir.ADJUDICATION_EXTENSION
    assert finding.valueBoolean is True
    assert provenance.target[0].reference == f"DiagnosticReport/{report.id}"
