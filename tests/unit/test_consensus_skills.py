"""Skill estimates from the ledger, when they are published, and how accepted labels
become observations (adjudicators, gold items)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.consensus import engine
from services.consensus.engine.fixedpoint import SCALE
from services.consensus.engine.reliability import ReliabilityLedger
from services.consensus.policies import gold_key, is_right, observation
from services.consensus.skills import (
    EVERY_LABELS,
    MATERIAL_CHANGE,
    LabelCounts,
    LastPublished,
    estimate,
    should_publish,
)
from shared.events import (
    AnnotatorSkillEstimated,
    CategoricalValue,
    LabelAccepted,
    NumericValue,
    OrdinalValue,
)
from tests import factories

BINARY = engine.ConsensusPolicy(method="ds", kind="binary", classes=("0", "1"))


def _ledger(annotator: str, right: int, wrong: int) -> engine.ReliabilitySnapshot:
    """Counts of an annotator who said the consensus class `right` times, the other
    `wrong` times (all on items whose consensus is "1")."""
    ledger = ReliabilityLedger()
    entries = {
        ("", annotator, 1): np.array([0, right * SCALE], dtype=np.int64),
        ("", annotator, 0): np.array([0, wrong * SCALE], dtype=np.int64),
    }
    ledger.apply(engine.ReliabilityDelta({k: v for k, v in entries.items() if v.any()}))
    return ledger.snapshot()


def test_skill_is_the_posterior_mean_accuracy_and_agreement_the_raw_share() -> None:
    counts = LabelCounts(labels=10, gold_labels=4, gold_correct=3)
    found = estimate(BINARY, _ledger("r-1", right=6, wrong=2), "r-1", "t", counts)
    assert found is not None
    strength = BINARY.float_param("prior_strength")
    prior = BINARY.float_param("prior_accuracy")
    assert found.skill == pytest.approx((6 + strength * prior) / (8 + strength), abs=1e-6)
    assert found.agreement_with_consensus == pytest.approx(0.75)
    assert (found.labels, found.gold_labels, found.gold_accuracy) == (10, 4, 0.75)


def test_a_box_readers_skill_is_their_accuracy_on_candidate_existence() -> None:
    """Four candidates: two objects the reader drew, one false box they did not draw,
    and one object they missed."""
    boxes = engine.ConsensusPolicy(method="ds", kind="boxes", classes=("nodule",))
    ledger = ReliabilityLedger()
    drew = np.array([0, 2 * SCALE], dtype=np.int64)  # rows: consensus absent, present
    did_not_draw = np.array([1 * SCALE, 1 * SCALE], dtype=np.int64)
    ledger.apply(
        engine.ReliabilityDelta({("box", "r-1", 1): drew, ("box", "r-1", 0): did_not_draw})
    )
    found = estimate(boxes, ledger.snapshot(), "r-1", "t", LabelCounts(labels=4))
    assert found is not None
    assert found.agreement_with_consensus == pytest.approx(0.75)
    strength = boxes.float_param("prior_strength")
    prior = boxes.float_param("prior_accuracy")
    assert found.skill == pytest.approx((3 + strength * prior) / (4 + strength), abs=1e-6)
    # The categorical scope holds nothing of a box reader.
    assert estimate(BINARY, ledger.snapshot(), "r-1", "t", LabelCounts(labels=4)) is None


def test_a_multilabel_readers_skill_pools_their_findings() -> None:
    """Effusion: right on 3 items of 4; pneumothorax: right on 1 of 2 (rows: consensus
    absent, present; columns: the reader said absent, present)."""
    findings = engine.ConsensusPolicy(
        method="ds", kind="multilabel", classes=("effusion", "pneumothorax")
    )
    units = {
        ("effusion", "r-1", 0): [2, 1],  # said absent: right twice, missed once
        ("effusion", "r-1", 1): [0, 1],
        ("pneumothorax", "r-1", 1): [1, 1],  # said present on one absent, one present
    }
    ledger = ReliabilityLedger()
    ledger.apply(
        engine.ReliabilityDelta(
            {key: np.array(v, dtype=np.int64) * SCALE for key, v in units.items()}
        )
    )
    found = estimate(findings, ledger.snapshot(), "r-1", "t", LabelCounts(labels=4))
    assert found is not None
    assert found.agreement_with_consensus == pytest.approx(4 / 6)
    strength = findings.float_param("prior_strength")
    prior = findings.float_param("prior_accuracy")
    assert found.skill == pytest.approx((4 + strength * prior) / (6 + strength), abs=1e-6)


def test_nothing_is_estimated_for_an_unknown_annotator_or_a_non_classifying_kind() -> None:
    snapshot = _ledger("r-1", right=3, wrong=0)
    assert estimate(BINARY, snapshot, "r-2", "t", LabelCounts(labels=5)) is None
    numeric = engine.ConsensusPolicy(method="median", kind="numeric")
    assert estimate(numeric, snapshot, "r-1", "t", LabelCounts(labels=5)) is None
    findings = engine.ConsensusPolicy(method="ds", kind="multilabel", classes=("effusion",))
    assert estimate(findings, snapshot, "r-1", "t", LabelCounts(labels=5)) is None


def _estimate(
    labels: int, skill: float, gold_accuracy: float | None = None
) -> AnnotatorSkillEstimated:
    return AnnotatorSkillEstimated(
        annotator_id="r-1",
        task_id="t",
        labels=labels,
        agreement_with_consensus=skill,
        skill=skill,
        gold_accuracy=gold_accuracy,
    )


def test_an_estimate_is_published_first_then_on_material_moves_or_every_n_labels() -> None:
    last = LastPublished(skill=0.8, gold_accuracy=None, labels=10)
    assert should_publish(_estimate(1, 0.8), None)
    assert not should_publish(_estimate(11, 0.8 + MATERIAL_CHANGE / 2), last)
    assert should_publish(_estimate(11, 0.8 + MATERIAL_CHANGE), last)
    assert should_publish(_estimate(11, 0.8 - MATERIAL_CHANGE), last)
    assert should_publish(_estimate(10 + EVERY_LABELS, 0.8), last)
    assert should_publish(_estimate(11, 0.8, gold_accuracy=1.0), last)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=200))
def test_a_stream_of_estimates_publishes_a_bounded_share_of_them(skills: list[float]) -> None:
    """However the skill wanders, no two published estimates are both within
    MATERIAL_CHANGE of each other and fewer than EVERY_LABELS labels apart."""
    last: LastPublished | None = None
    for labels, skill in enumerate(skills, start=1):
        current = _estimate(labels, round(skill, 6))
        if should_publish(current, last):
            if last is not None and last.skill is not None:
                moved = abs(skill - last.skill) >= MATERIAL_CHANGE - 1e-6
                assert moved or labels - last.labels >= EVERY_LABELS
            last = LastPublished(current.skill, None, labels)
        else:
            assert last is not None


def _accepted(value: CategoricalValue | OrdinalValue, role: str = "reader") -> LabelAccepted:
    return LabelAccepted(
        label_id=uuid.uuid4(),
        annotation_id=uuid.uuid4(),
        revision=1,
        item_id="i",
        task_id="t",
        task_version=1,
        annotator_id="a",
        client_id="c",
        received_at=factories.NOW,
        raw_sha256="0" * 64,
        value=value,
        labeled_at=factories.NOW,
        role=role,
        adjudication=factories.rationale() if role == "adjudicator" else None,
    )


def test_an_adjudicators_label_is_an_adjudicator_observation() -> None:
    assert observation(_accepted(CategoricalValue(label="1"))).role == "annotator"
    assert observation(_accepted(CategoricalValue(label="1"), "adjudicator")).role == (
        "adjudicator"
    )


def test_gold_answers_are_scored_for_classes_and_grades_only() -> None:
    gold = CategoricalValue(label="1").model_dump(mode="json")
    assert gold_key(gold) == "1" and gold_key(None) is None
    assert observation(_accepted(CategoricalValue(label="0")), gold_key(gold)).gold == "1"
    assert is_right(_accepted(CategoricalValue(label="1")), gold) is True
    assert is_right(_accepted(CategoricalValue(label="0")), gold) is False
    assert is_right(_accepted(CategoricalValue(label="0")), None) is None
    grade = OrdinalValue(grade=4).model_dump(mode="json")
    assert gold_key(grade) == "4" and is_right(_accepted(OrdinalValue(grade=4)), grade)
    assert gold_key(NumericValue(measurement=3.0).model_dump(mode="json")) is None
