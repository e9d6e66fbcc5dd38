"""The live-collection settings `consilium eval --policy dynamic` simulates."""

from __future__ import annotations

from dataclasses import dataclass

from services.consensus.engine.policy import POOLED_PARAMS


@dataclass(frozen=True)
class DynamicSettings:
    """The live-collection policy the dynamic simulation applies to every item."""

    min_labels: int = 2
    # 0: the dataset's overlap (median labels per item), the fixed design's budget and
    # so the horizon of the gain rule.
    max_labels: int = 0
    threshold: float = 0.999
    assign: str = "informed"
    # weighted/ds, fixed and dynamic runs alike: annotator priors centred on the crowd,
    # so a reader seen once is trusted like the average reader, not like a stranger.
    pooled_prior: bool = True
    # Bayesian curtailment (0 = off): reach only when the majority is settled.
    flip_risk: float = 0.0
    # Horizon gain (0 = off; engine/horizon.py): also reach once the labels up to
    # max_labels could add at most this much expected accuracy...
    stop_gain: float = 0.01
    # ...for items at least this confident, where the gain is at most this share of the
    # item's error (the engine's own defaults, engine/policy.py).
    stop_gain_floor: float = float(POOLED_PARAMS["stop_gain_floor"])
    stop_gain_share: float = float(POOLED_PARAMS["stop_gain_share"])
    # Dissent hold (0 = off): no reaching while the minority holds this share of the
    # votes, up to this share of max_labels (engine/decision.py).
    hold_dissent_share: float = float(POOLED_PARAMS["hold_dissent_share"])
    hold_dissent_until: float = float(POOLED_PARAMS["hold_dissent_until"])

    def method_params(self, method: str) -> dict[str, float | bool]:
        """Policy params the fixed run of `method` shares with its dynamic run."""
        return {"pooled_prior": True} if self.pooled_prior and method != "mv" else {}

    def stopping_params(self) -> dict[str, float | bool]:
        """Policy params of the stopping rules, the dynamic run's alone."""
        params: dict[str, float | bool] = {}
        if self.flip_risk > 0.0:
            params["stop_flip_risk"] = self.flip_risk
        if self.stop_gain > 0.0:
            params["stop_gain"] = self.stop_gain
            params["stop_gain_floor"] = self.stop_gain_floor
            params["stop_gain_share"] = self.stop_gain_share
        # Always passed (the engine's defaults when off), so the engine checks both values.
        params["hold_dissent_share"] = self.hold_dissent_share
        params["hold_dissent_until"] = self.hold_dissent_until
        return params
