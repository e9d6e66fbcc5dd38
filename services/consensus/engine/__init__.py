"""Consilium consensus engine: pure, deterministic, one label at a time.

The facade the consensus service uses (no I/O anywhere in this package):

    policy = ConsensusPolicy(method="ds", kind="binary", classes=("0", "1"))
    result = step(policy, state, LabelObservation(...), reliability)
    # result.state    -> store as JSON (ItemState.to_dict())
    # result.decision -> reached / needs_more / contested, with its full record
    # result.delta    -> add to the global reliability counts (commutative)

Kinds: binary, categorical, ordinal, multilabel, numeric, boxes (IoU matching and
reliability-weighted fusion), mask (STAPLE). `preferred_annotators` ranks candidates
for a needs_more item; `reestimate` is the periodic batch re-estimate; `recount`
rebuilds the reliability counts from item states.
"""

from services.consensus.engine.agreement import (
    annotator_confusion,
    consensus_reference,
    fleiss_kappa,
    krippendorff_alpha,
)
from services.consensus.engine.batch import BatchResult, e_step, recount, reestimate
from services.consensus.engine.decision import Decision, Outcome
from services.consensus.engine.fixedpoint import SCALE
from services.consensus.engine.information import expected_information, preferred_annotators
from services.consensus.engine.masks import decode_mask, encode_mask, staple
from services.consensus.engine.observation import LabelObservation, LabelValue
from services.consensus.engine.policy import ConsensusPolicy, CriticalRule
from services.consensus.engine.reliability import (
    ReliabilityDelta,
    ReliabilityLedger,
    ReliabilitySnapshot,
    ReliabilityView,
)
from services.consensus.engine.state import ItemState
from services.consensus.engine.step import StepResult, rescore, step
from services.consensus.engine.version import ENGINE_VERSION

__all__ = [
    "ENGINE_VERSION",
    "SCALE",
    "BatchResult",
    "ConsensusPolicy",
    "CriticalRule",
    "Decision",
    "ItemState",
    "LabelObservation",
    "LabelValue",
    "Outcome",
    "ReliabilityDelta",
    "ReliabilityLedger",
    "ReliabilitySnapshot",
    "ReliabilityView",
    "StepResult",
    "annotator_confusion",
    "consensus_reference",
    "decode_mask",
    "e_step",
    "encode_mask",
    "expected_information",
    "fleiss_kappa",
    "krippendorff_alpha",
    "preferred_annotators",
    "recount",
    "reestimate",
    "rescore",
    "staple",
    "step",
]
