"""Task definitions: what a label for a task looks like and how consensus is decided."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from shared.events.base import InternalPayload

LabelKind = Literal["categorical", "ordinal", "numeric", "multilabel", "boxes"]
Identifier = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:/|\-]+$")


class ConsensusPolicy(InternalPayload):
    """How the consensus service decides an item of this task (see docs/CONSENSUS.md).

    method: mv (majority vote), weighted (one-coin reliability weights), ds (online
    Dawid-Skene) for categorical and ordinal tasks; median or robust for numeric ones.
    An item is reached at `threshold` posterior confidence with at least `min_labels`
    labels, contested at `max_labels` without it, or at once when a reader reports one of
    `critical_labels` (mode "any") or disagrees with the consensus on one ("dissent").
    """

    # "majority" is the name definitions used before the engine; it is read as "mv".
    method: Literal["mv", "weighted", "ds", "median", "robust", "majority"] = "ds"
    min_labels: int = Field(3, ge=1, le=50)
    max_labels: int = Field(5, ge=1, le=50)
    threshold: float = Field(0.95, gt=0.0, le=1.0)
    critical_labels: tuple[str, ...] = ()
    critical_mode: Literal["any", "dissent"] = "any"
    max_spread: int | None = Field(None, ge=0)
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)

    @field_validator("method", mode="before")
    @classmethod
    def _legacy_method_names(cls, value: object) -> object:
        # Task definitions written before the engine named majority vote "majority".
        return "mv" if value == "majority" else value

    @model_validator(mode="after")
    def _bounds(self) -> ConsensusPolicy:
        if self.max_labels < self.min_labels:
            raise ValueError("max_labels must be >= min_labels")
        return self


class AssignmentRules(InternalPayload):
    """Who may label an item of this task, for how long, and how contested items are
    adjudicated (see docs/ASSIGNMENT.md).

    lease_seconds: how long an assignment stays live; an expired one is reissued to
    someone else. forbid_same_site: a reader never gets a case from their own site
    (conflict of interest). max_open_per_annotator: concurrency cap. gold_share: the
    share of a reader's assignments that are gold items, when the task has any.
    specialty: the adjudication queue's specialty; adjudication_sla_seconds: how long a
    contested item may wait at a tier before it moves to the next of
    `adjudication_tiers`.
    """

    lease_seconds: int = Field(24 * 3600, ge=1, le=30 * 24 * 3600)
    forbid_same_site: bool = False
    max_open_per_annotator: int = Field(50, ge=1, le=10_000)
    gold_share: float = Field(0.0, ge=0.0, le=0.5)
    specialty: str = Field("general", min_length=1, max_length=100)
    adjudication_sla_seconds: int = Field(48 * 3600, ge=1, le=90 * 24 * 3600)
    adjudication_tiers: int = Field(2, ge=1, le=5)


class TaskDefined(InternalPayload):
    """A version of a task: label kind, allowed values, guideline and consensus policy.

    classes are the allowed labels (categorical), the findings (multilabel) or the
    allowed box labels (boxes; none declared means boxes carry no label). Boxes are in
    `box_coordinates`: "normalized" ([0, 1] on both axes) or "pixels" (within the item's
    registered image size). `require_assignment` makes submission accept a label only from
    an annotator holding a live assignment for the item (docs/SUBMISSION.md).
    """

    task_id: str = Identifier
    version: int = Field(ge=1)
    title: str = Field(max_length=500)
    label_kind: LabelKind
    classes: tuple[str, ...] = ()
    ordinal_range: tuple[int, int] | None = None
    numeric_range: tuple[float, float] | None = None
    guideline_version: str = Field("1", max_length=100)
    initial_overlap: int = Field(3, ge=1, le=50)
    policy: ConsensusPolicy = ConsensusPolicy()
    require_assignment: bool = True
    assignment: AssignmentRules = AssignmentRules()
    box_coordinates: Literal["normalized", "pixels"] = "normalized"
    max_boxes: int = Field(100, ge=1, le=1000)

    @model_validator(mode="after")
    def _kind_fields(self) -> TaskDefined:
        if self.label_kind == "categorical" and len(self.classes) < 2:
            raise ValueError("a categorical task needs at least two classes")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be unique")
        if self.label_kind == "ordinal" and self.ordinal_range is None:
            raise ValueError("an ordinal task needs ordinal_range")
        if self.label_kind == "multilabel" and not self.classes:
            raise ValueError("a multilabel task needs at least one finding in classes")
        for bounds in (self.ordinal_range, self.numeric_range):
            if bounds is not None and bounds[0] > bounds[1]:
                raise ValueError("a range's low end must not exceed its high end")
        return self
