"""Small statistics for reports: intervals on solved fractions, quartiles of step counts."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["wilson_interval", "quartiles", "Z95"]

Z95 = 1.959963984540054  # the two-sided 95 % normal quantile


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95 % by default):

        (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n),   p = successes / trials

    It stays inside [0, 1] and is honest for the 3-5 seeds of a probe (2/3 solved seeds is
    0.21-0.94). ``trials == 0``: (0, 1), nothing is known."""
    if not 0 <= successes <= trials:
        raise ValueError(f"successes={successes} must be in 0..trials={trials}")
    if trials == 0:
        return 0.0, 1.0
    n, p = trials, successes / trials
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def quartiles(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(q25, median, q75) with linear interpolation between order statistics (NumPy's
    default); None for no values."""
    xs = sorted(values)
    if not xs:
        return None

    def q(f: float) -> float:
        pos = f * (len(xs) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return q(0.25), q(0.5), q(0.75)
