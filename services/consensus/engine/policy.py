"""Consensus policy: which method decides an item, and when it is reached or escalated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

from services.consensus.engine.canonical import digest

Kind = Literal["binary", "categorical", "ordinal", "multilabel", "numeric", "boxes", "mask"]
Method = Literal["mv", "weighted", "ds", "median", "robust", "staple"]
ParamValue = float | int | str | bool

CATEGORICAL_KINDS: frozenset[str] = frozenset({"binary", "categorical", "ordinal"})
METHODS_BY_KIND: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "binary": frozenset({"mv", "weighted", "ds"}),
        "categorical": frozenset({"mv", "weighted", "ds"}),
        "ordinal": frozenset({"mv", "weighted", "ds"}),
        "multilabel": frozenset({"mv", "weighted", "ds"}),
        "numeric": frozenset({"median", "robust"}),
        # boxes: the method decides whether each matched box exists (a binary sub-problem).
        "boxes": frozenset({"mv", "weighted", "ds"}),
        "mask": frozenset({"staple"}),
    }
)

DEFAULT_PARAMS: Mapping[str, ParamValue] = MappingProxyType(
    {
        # Symmetric accuracy assumed by majority vote to turn vote margins into a posterior.
        "mv_accuracy": 0.75,
        # Dirichlet prior on each confusion-matrix row: `prior_strength` pseudo-labels with
        # accuracy `prior_accuracy`, errors spread evenly. An annotator with few labels
        # is trusted like this prior, not like the few labels.
        "prior_accuracy": 0.7,
        "prior_strength": 4.0,
        # Dirichlet pseudo-count per class for the class prior.
        "class_prior": 1.0,
        # Whether consensus posteriors (not only gold items) teach annotator reliability.
        "learn_from_consensus": True,
        # Until the snapshot holds this many items' consensus in a scope, an item teaches
        # the ledger its majority vote rather than its posterior (docs/CONSENSUS.md,
        # "Cold start"): a handful of items is no estimate of how rare a class is.
        "cold_start_items": 50.0,
        # Same annotator, several annotations on one item: "split" gives each 1/m of one
        # vote; "latest" keeps only the annotation with the greatest label_id.
        "repeat_rule": "split",
        # Ordinal: credit a vote one step away with this fraction of a vote (0 = nominal).
        "ordinal_near_credit": 0.0,
        # Numeric: tolerance within which the consensus must lie with `threshold` confidence.
        "numeric_tolerance": 1.0,
        # Numeric: prior pseudo-observations (zero bias) for each annotator's bias.
        "bias_prior_strength": 3.0,
    }
)

POOLED_PARAMS: Mapping[str, ParamValue] = MappingProxyType(
    {
        # weighted/ds: centre each annotator's prior on the crowd's pooled confusion matrix
        # (learned online from everyone's consensus counts, itself under the symmetric
        # prior) instead of the symmetric prior_accuracy matrix. Someone seen once is then
        # trusted like the average annotator, including which classes they tend to confuse.
        "pooled_prior": False,
        # Bayesian curtailment: also require P(the majority of max_labels labels differs
        # from today's leader) <= this before reaching (0 = off; see engine/curtail.py).
        # max_labels is then the horizon: the overlap a fixed design would collect.
        "stop_flip_risk": 0.0,
        # Dirichlet pseudo-votes per class on the item's vote shares for that risk;
        # 0 = learned from the crowd's observed agreement (empirical Bayes).
        "stop_share_prior": 0.0,
        # Horizon gain (0 = off; see engine/horizon.py): below the threshold, also reach
        # when the labels up to max_labels would raise P(correct) by at most this...
        "stop_gain": 0.0,
        # ...the item is at least this confident (a doubtful item goes on to be contested
        # at max_labels rather than being reached early)...
        "stop_gain_floor": 0.9,
        # ...and those labels could fix at most this share of its remaining error. Where
        # they could fix nearly all of it the gain is just 1 - confidence, and reaching
        # on it would trust the posterior's calibration below the threshold.
        "stop_gain_share": 0.5,
        # Dissent hold (0 = off): an item whose minority votes are at least this share of
        # its votes is not reached, however confident, while it has fewer labels than...
        "hold_dissent_share": 0.0,
        # ...this share of max_labels (rounded up; 1 = up to max_labels). Dawid-Skene
        # trusts a confident majority over a dissenter it thinks weak; readers who err
        # together on hard items make that dissent a sign the item is hard.
        "hold_dissent_until": 1.0,
    }
)

MAX_CURTAILED_LABELS = 500
"""Curtailment sums O(max_labels^2) outcomes per decision: keep the horizon bounded."""

KIND_PARAMS: Mapping[str, Mapping[str, ParamValue]] = MappingProxyType(
    {
        "binary": POOLED_PARAMS,
        "categorical": POOLED_PARAMS,
        "ordinal": POOLED_PARAMS,
        # Kind-specific parameters are merged only into policies of that kind, so adding
        # them never changes the parameters (and digest) of policies of other kinds.
        "numeric": MappingProxyType(
            {
                # robust: prior pseudo-labels at the pooled residual variance for each
                # annotator's own variance (their inverse-variance weight).
                "variance_prior_strength": 50.0,
                # robust: Huber constant in standard deviations (0 = plain weighted mean).
                "huber_k": 3.0,
                # robust: correct each annotator's learned additive bias first.
                "numeric_bias": False,
            }
        ),
        "boxes": MappingProxyType(
            {
                # Two readers' boxes are the same object when IoU >= this (complete linkage).
                "box_iou_threshold": 0.5,
                # A fused box needs this many readers (capped at min_labels) to be reached.
                "box_min_support": 2,
                # Localisation tolerance, as a fraction of the fused box's width/height.
                "box_tolerance": 0.1,
                # Prior localisation error (fraction of box size) of a new reader.
                "box_prior_sd": 0.05,
                # ds: chance that a reader draws a false box matching a given spot, i.e.
                # how often two readers' false boxes coincide (engine/box_existence.py).
                "box_false_draw_rate": 0.1,
            }
        ),
        "mask": MappingProxyType(
            {
                # STAPLE stops when no rater's sensitivity/specificity moves more than this.
                "staple_tolerance": 1e-7,
                "staple_max_iterations": 1000,
                # Multiplies the foreground prior g (ITK's ConfidenceWeight).
                "staple_confidence_weight": 1.0,
                # Beta prior strength (in voxels) pulling each rater's sensitivity and
                # specificity toward their learned global values (0 = plain STAPLE).
                "mask_prior_strength": 0.0,
            }
        ),
    }
)


@dataclass(frozen=True)
class CriticalRule:
    """Escalate an item when a reader reports a critical finding.

    mode "any": any single label with one of `values` makes the item contested at once
    (e.g. "any reader says pneumothorax"). mode "dissent": contested only when some
    reader reports a critical value and the consensus is not that value.
    """

    values: tuple[str, ...]
    mode: Literal["any", "dissent"] = "any"

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "mode": self.mode}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CriticalRule:
        mode = data.get("mode", "any")
        if mode not in ("any", "dissent"):
            raise ValueError(f"unknown critical rule mode {mode!r}")
        return cls(values=tuple(str(v) for v in data["values"]), mode=mode)


@dataclass(frozen=True)
class ConsensusPolicy:
    """How one task's items are decided. Frozen; `params` is completed with defaults.

    classes: the label values in order (categorical/binary), the scale from lowest to
    highest (ordinal), the finding names (multilabel), or the allowed box classes (boxes;
    empty = class-agnostic boxes). Ties between equally likely classes go to the class
    listed first.
    """

    method: Method
    kind: Kind
    classes: tuple[str, ...] = ()
    min_labels: int = 3
    max_labels: int = 5
    threshold: float = 0.95
    critical: CriticalRule | None = None
    max_spread: int | None = None
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS_BY_KIND.get(self.kind, frozenset()):
            raise ValueError(f"method {self.method!r} does not apply to kind {self.kind!r}")
        if self.kind == "mask" and self.classes:
            raise ValueError("a mask policy has no classes")
        if self.kind in CATEGORICAL_KINDS or self.kind == "multilabel":
            if len(self.classes) < (1 if self.kind == "multilabel" else 2):
                raise ValueError("a categorical policy needs at least two classes")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError("classes must be unique")
        if self.kind == "binary" and len(self.classes) != 2:
            raise ValueError("a binary policy has exactly two classes")
        if not 1 <= self.min_labels <= self.max_labels:
            raise ValueError("need 1 <= min_labels <= max_labels")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        kind_defaults = KIND_PARAMS.get(self.kind, {})
        unknown = set(self.params) - set(DEFAULT_PARAMS) - set(kind_defaults)
        if unknown:
            raise ValueError(f"unknown params: {sorted(unknown)}")
        merged = {**DEFAULT_PARAMS, **kind_defaults, **self.params}
        if merged["repeat_rule"] not in ("split", "latest"):
            raise ValueError("repeat_rule is 'split' or 'latest'")
        if not 0.0 <= float(merged.get("stop_flip_risk", 0.0)) < 1.0:
            raise ValueError("stop_flip_risk must be in [0, 1)")
        if not 0.0 <= float(merged.get("stop_gain", 0.0)) < 1.0:
            raise ValueError("stop_gain must be in [0, 1)")
        if not 0.0 <= float(merged.get("hold_dissent_share", 0.0)) < 1.0:
            raise ValueError("hold_dissent_share must be in [0, 1)")
        if not 0.0 < float(merged.get("hold_dissent_until", 1.0)) <= 1.0:
            raise ValueError("hold_dissent_until must be in (0, 1]")
        for bounded in ("stop_gain_floor", "stop_gain_share"):
            if not 0.0 <= float(merged.get(bounded, 0.0)) <= 1.0:
                raise ValueError(f"{bounded} must be in [0, 1]")
        # Both rules sum over the outcomes of the labels up to max_labels: a bounded horizon.
        for rule, name in (("stop_gain", "the horizon gain"), ("stop_flip_risk", "curtailment")):
            if float(merged.get(rule, 0.0)) > 0.0 and self.max_labels > MAX_CURTAILED_LABELS:
                raise ValueError(f"{name} needs max_labels <= {MAX_CURTAILED_LABELS}")
        if float(merged["cold_start_items"]) < 0.0:
            raise ValueError("cold_start_items must be >= 0")
        if float(merged.get("stop_share_prior", 0.0)) < 0.0:
            raise ValueError("stop_share_prior must be >= 0 (0 = learned)")
        if not 0.0 < float(merged.get("box_false_draw_rate", 0.5)) < 1.0:
            raise ValueError("box_false_draw_rate must be in (0, 1)")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "params", MappingProxyType(dict(sorted(merged.items()))))

    def param(self, name: str) -> ParamValue:
        """One method parameter (defaults already merged)."""
        return self.params[name]

    def float_param(self, name: str) -> float:
        return float(self.params[name])

    @property
    def n_classes(self) -> int:
        return 2 if self.kind in ("multilabel", "boxes") else len(self.classes)

    def class_index(self, value: str) -> int:
        """Position of a label value in `classes`; ValueError for an unknown value."""
        try:
            return self.classes.index(str(value))
        except ValueError:
            raise ValueError(f"label value {value!r} is not one of {self.classes}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, complete: replaying with this dict gives the same decisions."""
        return dict(self._as_dict)

    @cached_property
    def _as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": self.kind,
            "classes": list(self.classes),
            "min_labels": self.min_labels,
            "max_labels": self.max_labels,
            "threshold": self.threshold,
            "critical": None if self.critical is None else self.critical.to_dict(),
            "max_spread": self.max_spread,
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsensusPolicy:
        critical = data.get("critical")
        return cls(
            method=data["method"],
            kind=data["kind"],
            classes=tuple(data.get("classes", ())),
            min_labels=int(data.get("min_labels", 3)),
            max_labels=int(data.get("max_labels", 5)),
            threshold=float(data.get("threshold", 0.95)),
            critical=None if critical is None else CriticalRule.from_dict(critical),
            max_spread=data.get("max_spread"),
            params=dict(data.get("params", {})),
        )

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the canonical policy JSON."""
        return digest(self.to_dict())
