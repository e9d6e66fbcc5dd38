"""Fixed-point posteriors: probabilities as integers that sum exactly to SCALE.

Reliability statistics are sums over items. Floats summed in a different order give
different bits; integers do not. Every posterior that enters a count is therefore
rounded once, here, to integer units (largest-remainder rounding, ties to the lower
class index), and all counts are exact integer sums: commutative and associative,
so any number of instances adding deltas in any order reach the same totals.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SCALE = 1_000_000
"""Integer units per unit of probability mass."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def quantize(probabilities: FloatArray) -> IntArray:
    """Round each row of probabilities to non-negative integers summing to SCALE.

    Works on one row (shape (K,)) or many (shape (N, K)); row i of a batch gets exactly
    the units it would get alone, so batch and incremental paths agree bit for bit.
    """
    rows = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    scaled = rows * SCALE
    units = np.floor(scaled).astype(np.int64)
    remainder = SCALE - units.sum(axis=1)
    fractional = scaled - units
    # Stable sort on -fraction: equal fractions keep class order (lower index first).
    order = np.argsort(-fractional, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(rows.shape[1])[None, :], axis=1)
    units += (rank < remainder[:, None]).astype(np.int64)
    if np.asarray(probabilities).ndim == 1:
        return np.asarray(units[0], dtype=np.int64)
    return units


def to_probability(units: IntArray) -> FloatArray:
    """Integer units back to probabilities."""
    return np.asarray(units, dtype=np.float64) / SCALE
