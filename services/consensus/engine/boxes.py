"""Bounding boxes: match readers' boxes by IoU, then fuse them by learned reader reliability.

Value: a list of boxes, each [x0, y0, x1, y1] or [x0, y0, x1, y1, class] with x0 < x1 and
y0 < y1 (any unit, e.g. pixels); [] says "nothing to box". With policy classes, a box's
class must be one of them; boxes of different classes never match. A reader's own box
order does not matter (boxes are sorted canonically).

1. Matching (order-free, complete linkage). Every pair of boxes from different readers
   with IoU >= box_iou_threshold is an edge; edges are taken by decreasing IoU (ties by
   the canonical box keys). Two clusters merge when they share no reader and every cross
   pair overlaps at IoU >= the threshold. A cluster holds at most one box per reader and
   is one candidate object. The result depends only on the set of readings.
2. Existence. Each candidate is a binary sub-problem ("absent", "present") in ledger
   scope "box": every reader on the item votes present (drew a box in the cluster) or
   absent. The policy's method (mv, weighted, ds) gives the posterior q_j that the object
   exists; for ds the reader's 2 x 2 matrix holds their detection sensitivity, learned
   online exactly like a binary confusion matrix, and the likelihood is that of the
   drawing pattern given that the candidate was formed (engine/box_existence.py).
3. Localisation. Reader a's coordinate error, as a fraction of the fused box's width
   (x) or height (y), has variance s2_a = (S_a + n0 v0) / (M_a + n0), v0 = box_prior_sd^2,
   n0 = prior_strength, from additive statistics in scope "box-loc": M_a = sum q (1 - w_a/W)
   and S_a = sum q * mean squared normalised residual over the reader's matched boxes (the
   factor 1 - w_a/W makes S/M unbiased for an inverse-variance weighted mean). Fused
   coordinates are the inverse-variance weighted mean (w_a = 1 / s2_a); their standard
   error is se_j = sqrt(1 / W), W = sum of the members' w_a.
4. Decision. A candidate is accepted when q_j > 1/2. Its confidence is q_j times
   P(|error| <= box_tolerance) = erf(box_tolerance / (se_j sqrt 2)); a rejected candidate's
   confidence is 1 - q_j. The item's confidence is the lowest candidate confidence (1.0
   when no reader drew a box). Reached when annotators >= min_labels, confidence >=
   threshold and every accepted box was drawn by >= min(box_min_support, min_labels)
   readers; needs_more below max_labels; contested otherwise, or at once by the critical
   rule on box classes.

Repeats: a reader's latest annotation (greatest label_id) is their reading. Cost per label:
O(boxes on the item squared), independent of the number of items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from services.consensus.engine.box_existence import existence_units
from services.consensus.engine.decision import Decision, Outcome, make_decision, outcome_for
from services.consensus.engine.fixedpoint import SCALE, IntArray
from services.consensus.engine.item_categorical import contribution_of
from services.consensus.engine.observation import LabelObservation
from services.consensus.engine.policy import ConsensusPolicy
from services.consensus.engine.reliability import EntryKey, ReliabilityView
from services.consensus.engine.state import Contribution, ItemState
from services.consensus.engine.votes import Vote, adjudicated, latest_per_annotator

EXIST_SCOPE = "box"
LOC_SCOPE = "box-loc"
_DIGITS = 6

Box = tuple[float, float, float, float, str]
Node = tuple[int, int]  # (reader index, box index)


def parse_boxes(value: Any, classes: Sequence[str] = ()) -> tuple[Box, ...]:
    """Validate one reader's boxes and sort them canonically."""
    if not isinstance(value, tuple):
        raise ValueError("a boxes value is a list of [x0, y0, x1, y1(, class)] boxes")
    boxes: list[Box] = []
    for raw in value:
        if not isinstance(raw, tuple) or len(raw) not in (4, 5):
            raise ValueError(f"a box is [x0, y0, x1, y1] or [x0, y0, x1, y1, class]: {raw!r}")
        if any(isinstance(c, str) for c in raw[:4]):
            raise ValueError(f"box coordinates must be numbers: {raw!r}")
        x0, y0, x1, y1 = (float(c) for c in raw[:4])
        label = str(raw[4]) if len(raw) == 5 else ""
        if not all(math.isfinite(c) for c in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
            raise ValueError(f"a box needs finite x0 < x1 and y0 < y1: {raw!r}")
        if classes and label not in classes:
            raise ValueError(f"box class {label!r} is not one of {tuple(classes)}")
        boxes.append((x0, y0, x1, y1, label))
    return tuple(sorted(boxes))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0.0 or h <= 0.0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def match(readings: Sequence[tuple[Box, ...]], threshold: float) -> list[list[Node]]:
    """Complete-linkage clusters of boxes, at most one box per reader, canonical order.

    readings are in canonical reader order (annotator id) with canonically sorted boxes,
    so the clusters depend only on the set of readings.
    """
    nodes = [(r, b) for r, boxes in enumerate(readings) for b in range(len(boxes))]

    def box(node: Node) -> Box:
        return readings[node[0]][node[1]]

    overlap: dict[tuple[Node, Node], float] = {}
    for i, u in enumerate(nodes):
        for v in nodes[i + 1 :]:
            if u[0] != v[0] and box(u)[4] == box(v)[4]:
                value = iou(box(u), box(v))
                if value >= threshold:
                    overlap[(u, v)] = overlap[(v, u)] = value
    cluster_of: dict[Node, int] = {node: i for i, node in enumerate(nodes)}
    members: dict[int, list[Node]] = {i: [node] for i, node in enumerate(nodes)}
    edges = sorted(
        ((-value, u, v) for (u, v), value in overlap.items() if u < v),
    )
    for _, u, v in edges:
        a, b = cluster_of[u], cluster_of[v]
        if a == b:
            continue
        if {n[0] for n in members[a]} & {n[0] for n in members[b]}:
            continue
        if all((x, y) in overlap for x in members[a] for y in members[b]):
            keep, gone = min(a, b), max(a, b)
            for node in members.pop(gone):
                cluster_of[node] = keep
                members[keep].append(node)
    return sorted(sorted(m) for m in members.values())


def _loc_variance(policy: ConsensusPolicy, view: ReliabilityView, annotator: str) -> float:
    """Posterior-mean variance of the reader's normalised coordinate error."""
    n0 = policy.float_param("prior_strength")
    v0 = policy.float_param("box_prior_sd") ** 2
    units = view.entry((LOC_SCOPE, annotator, 0))
    mass, squares = (0.0, 0.0) if units is None else (float(u) / SCALE for u in units)
    return (squares + n0 * v0) / (mass + n0)


@dataclass(frozen=True)
class Candidate:
    """One matched object: who drew it, the fused box, and how sure we are."""

    readers: tuple[str, ...]
    fused: Box
    residual: tuple[float, ...]  # per member: mean squared normalised residual
    share: tuple[float, ...]  # per member: 1 - w_a / W
    se: float


def _fuse(boxes: Sequence[Box], variances: Sequence[float]) -> tuple[Box, tuple[float, ...], float]:
    coords = np.array([b[:4] for b in boxes], dtype=np.float64)
    w = 1.0 / np.asarray(variances, dtype=np.float64)
    total = float(w.sum())
    fused = (w[:, None] * coords).sum(axis=0) / total
    width, height = fused[2] - fused[0], fused[3] - fused[1]
    scale = np.array([width, height, width, height])
    residual = (((coords - fused[None, :]) / scale[None, :]) ** 2).mean(axis=1)
    box = (*(round(float(c), _DIGITS) for c in fused), boxes[0][4])
    return box, tuple(float(r) for r in residual), total  # type: ignore[return-value]


def _agreement(n_readers: int, sizes: Sequence[int], clusters: Sequence[Sequence[Node]]) -> float:
    """Mean over reader pairs of the F1 of their matched boxes (1.0 for two empty readers)."""
    if n_readers < 2:
        return 1.0
    shared = np.zeros((n_readers, n_readers))
    for cluster in clusters:
        rs = [r for r, _ in cluster]
        for i in rs:
            for j in rs:
                if i != j:
                    shared[i, j] += 1.0
    scores = []
    for i in range(n_readers):
        for j in range(i + 1, n_readers):
            total = sizes[i] + sizes[j]
            scores.append(1.0 if total == 0 else 2.0 * shared[i, j] / total)
    return float(np.mean(scores))


def _merge(entries: Sequence[tuple[EntryKey, IntArray]]) -> Contribution:
    merged: dict[EntryKey, IntArray] = {}
    for key, units in entries:
        merged[key] = units.copy() if key not in merged else merged[key] + units
    return tuple((k, v) for k, v in sorted(merged.items()) if v.any())


def _outcome(
    policy: ConsensusPolicy, n: int, confidence: float, critical: bool, supported: bool
) -> tuple[Outcome, str]:
    outcome, reason = outcome_for(policy, n, confidence, critical, False)
    if outcome == "reached" and not supported:
        if n < policy.max_labels:
            return "needs_more", "a fused box lacks support"
        return "contested", "max_labels reached with an unsupported box"
    return outcome, reason


def evaluate(
    policy: ConsensusPolicy, state: ItemState, view: ReliabilityView
) -> tuple[Decision, Contribution]:
    """Match, fuse and decide one item's boxes; the contribution teaches reliability."""
    readers: list[LabelObservation] = latest_per_annotator(state.labels)
    readings = [parse_boxes(obs.value, policy.classes) for obs in readers]
    clusters = match(readings, policy.float_param("box_iou_threshold"))
    names = [obs.annotator_id for obs in readers]
    variance = {a: _loc_variance(policy, view, a) for a in names}
    votes: list[tuple[Vote, ...]] = []
    candidates: list[Candidate] = []
    for cluster in clusters:
        drew = {r for r, _ in cluster}
        votes.append(
            tuple(
                Vote(obs.annotator_id, int(r in drew), 1, obs.label_id)
                for r, obs in enumerate(readers)
            )
        )
        boxes = [readings[r][b] for r, b in cluster]
        members = [names[r] for r, _ in cluster]
        fused, residual, total = _fuse(boxes, [variance[a] for a in members])
        share = tuple(1.0 - (1.0 / variance[a]) / total for a in members)
        candidates.append(Candidate(tuple(members), fused, residual, share, 1.0 / math.sqrt(total)))
    units = existence_units(policy, EXIST_SCOPE, votes, view)
    adjudication = adjudicated(state.labels)
    tolerance = policy.float_param("box_tolerance")
    needed = min(int(policy.float_param("box_min_support")), policy.min_labels)
    accepted: list[Box] = []
    details: list[dict[str, Any]] = []
    confidence, supported = 1.0, True
    for j, (candidate, row) in enumerate(zip(candidates, units, strict=True)):
        q = float(row[1]) / SCALE
        present = int(row[1]) > int(row[0])
        located = math.erf(tolerance / (candidate.se * math.sqrt(2.0)))
        conf = q * located if present else 1.0 - q
        confidence = min(confidence, conf)
        if present:
            accepted.append(candidate.fused)
            supported = supported and len(candidate.readers) >= needed
        details.append(
            {
                "box": f"box-{j}",
                "fused": list(candidate.fused),
                "readers": list(candidate.readers),
                "p_present": q,
                "present": present,
                "se": round(candidate.se, _DIGITS),
                "confidence": round(conf, _DIGITS),
            }
        )
    confidence = round(confidence, _DIGITS)
    n = len(readers)
    critical = False
    if policy.critical is not None:
        values = set(policy.critical.values)
        reported = any(b[4] in values for reading in readings for b in reading)
        kept = any(b[4] in values for b in accepted)
        critical = reported and (policy.critical.mode == "any" or not kept)
    outcome, reason = _outcome(policy, n, confidence, critical, supported)
    label: tuple[Any, ...] = tuple(_as_value(b) for b in sorted(accepted))
    label_ids = [obs.label_id for obs in readers]
    method = None
    if adjudication is not None:
        label = tuple(_as_value(b) for b in parse_boxes(adjudication.value, policy.classes))
        confidence, outcome, reason, method = 1.0, "reached", "adjudicated", "adjudication"
        label_ids.append(adjudication.label_id)
    decision = make_decision(
        policy,
        state.item_id,
        outcome,
        reason,
        label=label,
        confidence=confidence,
        distribution={d["box"]: d["p_present"] for d in details},
        votes={d["box"]: float(len(d["readers"])) for d in details},
        n_annotators=n,
        label_ids=label_ids,
        reliability_version=view.version,
        method=method,
        details={"boxes": details},
    )
    decision = replace(decision, agreement=_agreement(n, [len(r) for r in readings], clusters))
    learn = bool(policy.param("learn_from_consensus"))
    return decision, _contribution(candidates, votes, units, learn)


def _as_value(box: Box) -> tuple[float | str, ...]:
    return box[:4] if box[4] == "" else box


def _contribution(
    candidates: Sequence[Candidate],
    votes: Sequence[Sequence[Vote]],
    units: IntArray,
    learn: bool,
) -> Contribution:
    """Existence counts per candidate and localisation statistics per matched reader."""
    entries: list[tuple[EntryKey, IntArray]] = []
    if not learn:
        return ()
    for candidate, item_votes, row in zip(candidates, votes, units, strict=True):
        entries.extend(contribution_of(EXIST_SCOPE, item_votes, row, True))
        q = int(row[1])
        for reader, residual, share in zip(
            candidate.readers, candidate.residual, candidate.share, strict=True
        ):
            mass = round(q * share)
            if mass > 0:
                loc = np.array([mass, round(q * residual)], dtype=np.int64)
                entries.append(((LOC_SCOPE, reader, 0), loc))
    return _merge(entries)
