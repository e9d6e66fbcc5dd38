"""Agreement statistics over a set of items (batch functions, pure numpy).

* Fleiss' kappa (Fleiss 1971), generalised to a varying number of raters per item:
  P_i = sum_c n_ic (n_ic - 1) / (n_i (n_i - 1)) over items with n_i >= 2, P_bar their
  mean, p_c the overall share of class c, P_e = sum p_c^2, kappa = (P_bar - P_e) / (1 - P_e).
* Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"),
  from the coincidence matrix o_ck = sum over units of (pairs (c, k)) / (m_u - 1):
  alpha = 1 - D_o / D_e with distance delta^2 nominal ([c != k]), interval ((c - k)^2)
  or ordinal ((sum_{g between c and k} n_g - (n_c + n_k) / 2)^2).
* Per-annotator confusion and accuracy against a reference: gold labels, or the
  consensus (`consensus_reference` turns decisions into one).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal

import numpy as np

from services.consensus.engine.decision import Decision
from services.consensus.engine.fixedpoint import FloatArray

Metric = Literal["nominal", "ordinal", "interval"]


def fleiss_kappa(units: Sequence[Sequence[str]], classes: Sequence[str]) -> float:
    """Fleiss' kappa of items' labels (items with fewer than two labels are skipped)."""
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(units), len(classes)))
    for row, labels in enumerate(units):
        for value in labels:
            counts[row, index[value]] += 1.0
    n = counts.sum(axis=1)
    rated = counts[n >= 2]
    if rated.shape[0] == 0:
        return float("nan")
    n_r = rated.sum(axis=1)
    p_i = ((rated * (rated - 1.0)).sum(axis=1)) / (n_r * (n_r - 1.0))
    p_c = rated.sum(axis=0) / rated.sum()
    p_e = float((p_c**2).sum())
    if p_e >= 1.0:
        return 1.0 if float(p_i.mean()) >= 1.0 else float("nan")
    return float((p_i.mean() - p_e) / (1.0 - p_e))


def _coincidences(units: Sequence[Sequence[float]], values: FloatArray) -> FloatArray:
    index = {v: i for i, v in enumerate(values.tolist())}
    o = np.zeros((len(values), len(values)))
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        idx = [index[float(v)] for v in unit]
        tally = np.bincount(idx, minlength=len(values)).astype(np.float64)
        pairs = np.outer(tally, tally) - np.diag(tally)
        o += pairs / (m - 1)
    return o


def krippendorff_alpha(units: Sequence[Sequence[float]], metric: Metric = "nominal") -> float:
    """Krippendorff's alpha for numeric codes (class positions for nominal/ordinal)."""
    values = np.array(sorted({float(v) for unit in units for v in unit}), dtype=np.float64)
    if len(values) == 0:
        return float("nan")
    o = _coincidences(units, values)
    n_c = o.sum(axis=1)
    n = float(n_c.sum())
    if n <= 1.0:
        return float("nan")
    if metric == "nominal":
        delta = 1.0 - np.eye(len(values))
    elif metric == "interval":
        delta = (values[:, None] - values[None, :]) ** 2
    else:
        cum = np.cumsum(n_c)
        lo = np.minimum.outer(np.arange(len(values)), np.arange(len(values)))
        hi = np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
        between = cum[hi] - np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        delta = (between - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    d_o = float((o * delta).sum()) / n
    d_e = float((np.outer(n_c, n_c) * delta).sum()) / (n * (n - 1.0))
    if d_e == 0.0:
        return 1.0 if d_o == 0.0 else float("nan")
    return 1.0 - d_o / d_e


def annotator_confusion(
    labels: Sequence[tuple[str, str, str]],
    reference: Mapping[str, str],
    classes: Sequence[str],
) -> dict[str, tuple[FloatArray, float]]:
    """Per annotator: confusion counts (rows: reference, columns: label) and accuracy.

    labels are (annotator, item, value); items without a reference are skipped.
    """
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, FloatArray] = {}
    for annotator, item, value in labels:
        if item not in reference:
            continue
        matrix = out.setdefault(annotator, np.zeros((len(classes), len(classes))))
        matrix[index[reference[item]], index[value]] += 1.0
    return {a: (m, float(np.trace(m) / m.sum())) for a, m in sorted(out.items())}


def consensus_reference(
    decisions: Iterable[Decision], outcomes: Collection[str] = ("reached",)
) -> dict[str, str]:
    """item -> consensus label of decisions with one of `outcomes`: a reference for
    `annotator_confusion` (pass gold labels instead to score against gold)."""
    return {d.item_id: str(d.label) for d in decisions if d.outcome in outcomes}
