"""crowd-kit's batch aggregators on the same answers, for an honest comparison."""

from __future__ import annotations

import time
from typing import Any

from services.consensus.evaluation.dataset import Dataset

CROWDKIT_METHODS = ("MV", "DS", "GLAD", "MACE", "OneCoinDS")


def _model(name: str, seed: int) -> Any:
    from crowdkit.aggregation import GLAD, MACE, DawidSkene, MajorityVote, OneCoinDawidSkene

    if name == "MV":
        return MajorityVote()
    if name == "DS":
        return DawidSkene(n_iter=100)
    if name == "GLAD":
        return GLAD()
    if name == "MACE":
        return MACE(random_state=seed)
    if name == "OneCoinDS":
        return OneCoinDawidSkene()
    raise ValueError(name)


def run_crowdkit(dataset: Dataset, name: str, seed: int) -> tuple[dict[str, str], float]:
    """Fit one crowd-kit method on all answers (file order; the fit is batch).

    Returns predictions per task (label codes as text) and the fit time in seconds.
    crowd-kit's MV breaks ties by pandas value_counts order, not by a documented rule.
    """
    import warnings

    import pandas as pd

    frame = pd.DataFrame(
        {
            "worker": [a.worker for a in dataset.answers],
            "task": [a.task for a in dataset.answers],
            "label": [a.label for a in dataset.answers],
        }
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = _model(name, seed).fit_predict(frame)
    seconds = time.perf_counter() - start
    return {str(k): str(v) for k, v in predicted.items()}, seconds
