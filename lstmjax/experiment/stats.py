"""Small statistics for reports: intervals on solved fractions, quartiles of step counts."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["wilson_interval", "quartiles", "growth_law", "predicted_steps", "Z95"]

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


def growth_law(gaps: Sequence[float], steps: Sequence[float]) -> dict | None:
    """How the cost of solving grows with the gap: least squares of ``log(steps)`` on
    ``log(gap)`` (a power law, ``steps ~ gap^k``) and on ``gap`` (an exponential, ``steps ~
    exp(r gap)``), one point per solved seed. Returns ``{"exponent": k, "rate": r, "r2_power",
    "r2_exponential", "better": "power" | "exponential", "gaps": (min, max), "points": n,
    "log_intercept_power", "log_intercept_exponential"}``, or
    None with fewer than 3 distinct gaps (a line through 2 gaps says nothing)."""
    import numpy as np

    g = np.asarray(gaps, np.float64)
    y = np.log(np.asarray(steps, np.float64))
    if len(set(g.tolist())) < 3 or np.any(g <= 0):
        return None

    def fit(x):
        X = np.stack([np.ones_like(x), x], axis=1)
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        total = float(np.sum((y - y.mean()) ** 2))
        resid = float(np.sum((y - X @ coef) ** 2))
        return float(coef[1]), float(coef[0]), (1.0 - resid / total) if total > 0 else 1.0

    k, a_power, r2_power = fit(np.log(g))
    r, a_exp, r2_exp = fit(g)
    return {"exponent": k, "rate": r, "r2_power": r2_power, "r2_exponential": r2_exp,
            "better": "power" if r2_power >= r2_exp else "exponential",
            "gaps": (float(g.min()), float(g.max())), "points": int(len(g)),
            "log_intercept_power": a_power, "log_intercept_exponential": a_exp}


def predicted_steps(law: dict, gap: float) -> float:
    """The steps to solve at ``gap`` by the better fit of :func:`growth_law` (``exp(a) gap^k``
    or ``exp(a + r gap)``): an extrapolation, as good as the law holds beyond its gaps."""
    if law["better"] == "power":
        return math.exp(law["log_intercept_power"] + law["exponent"] * math.log(gap))
    return math.exp(law["log_intercept_exponential"] + law["rate"] * gap)
