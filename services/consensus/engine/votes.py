"""From an item's current labels to its votes: one vote per annotator, repeats resolved.

Repeat rule (an annotator with several annotations on the same item, e.g. the same
worker labelling the same task twice in a dataset): "split" gives each of the m
annotations a weight of 1/m, so every annotator carries exactly one vote per item and a
self-contradicting annotator counts half for each side; "latest" keeps only the
annotation with the greatest label_id. Both depend only on the set of labels, never on
arrival order. Adjudicator labels are not votes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from services.consensus.engine.observation import LabelObservation
from services.consensus.engine.policy import ConsensusPolicy


class Vote(NamedTuple):
    annotator: str
    column: int
    multiplicity: int
    label_id: str


def annotator_labels(
    policy: ConsensusPolicy, labels: Sequence[LabelObservation]
) -> list[tuple[LabelObservation, int]]:
    """Annotator labels kept by the repeat rule, each with its multiplicity m."""
    by_annotator: dict[str, list[LabelObservation]] = {}
    for obs in labels:
        if obs.role == "annotator":
            by_annotator.setdefault(obs.annotator_id, []).append(obs)
    kept: list[tuple[LabelObservation, int]] = []
    latest = policy.param("repeat_rule") == "latest"
    for annotator in sorted(by_annotator):
        group = by_annotator[annotator]
        if latest:
            kept.append((max(group, key=lambda o: o.label_id), 1))
        else:
            kept.extend((obs, len(group)) for obs in sorted(group, key=lambda o: o.label_id))
    return kept


def item_votes(
    policy: ConsensusPolicy,
    labels: Sequence[LabelObservation],
    column_of: Callable[[LabelObservation], int],
) -> tuple[Vote, ...]:
    """Votes in canonical order (annotator id, then label id)."""
    return tuple(
        Vote(obs.annotator_id, column_of(obs), m, obs.label_id)
        for obs, m in annotator_labels(policy, labels)
    )


def adjudicated(labels: Sequence[LabelObservation]) -> LabelObservation | None:
    """The current adjudicator label, if any (the greatest precedence wins)."""
    candidates = [obs for obs in labels if obs.role == "adjudicator"]
    return max(candidates, key=lambda o: o.precedence()) if candidates else None


def gold_value(labels: Sequence[LabelObservation]) -> str | None:
    """The item's gold value if any observation carries one (greatest value wins)."""
    values = sorted({obs.gold for obs in labels if obs.gold is not None})
    return values[-1] if values else None


def latest_per_annotator(labels: Sequence[LabelObservation]) -> list[LabelObservation]:
    """One annotator label per annotator (greatest label_id), sorted by annotator id.

    The spatial kinds (boxes, mask) always use this rule: a reader's two drawings of the
    same image are not independent votes to split.
    """
    latest: dict[str, LabelObservation] = {}
    for obs in labels:
        if obs.role != "annotator":
            continue
        current = latest.get(obs.annotator_id)
        if current is None or obs.label_id > current.label_id:
            latest[obs.annotator_id] = obs
    return [latest[a] for a in sorted(latest)]
