"""Rounded draws from a continuous range: numbers of :data:`DIGITS` significant digits
(:func:`round_value`), and how many distinct ones a number of draws can be expected to find
(:func:`uniform_cells`, :func:`log_cells`), for :mod:`lstmjax.experiment.space`."""

from __future__ import annotations

import math
from collections.abc import Iterator

__all__ = ["DIGITS", "round_value", "uniform_cells", "log_cells"]

DIGITS = 4  # significant digits of a number drawn from a continuous range


def _decades(a: float, b: float) -> Iterator[tuple[int, float, float]]:
    """``(e, lo, hi)``: the part ``[lo, hi]`` of ``[a, b]`` (``0 <= a < b``) in each decade
    ``[10^e, 10^(e+1))``, from the top down (for ``a == 0``, down to the smallest float)."""
    e = math.floor(math.log10(b))
    bottom = math.floor(math.log10(a)) if a > 0 else -324
    while e >= bottom:
        lo, hi = max(a, 10.0**e), min(b, 10.0 ** (e + 1) if e < 308 else math.inf)
        if lo <= hi:
            yield e, lo, hi
        e -= 1


def uniform_cells(a: float, b: float, width: float, draws: int) -> float:
    """``sum(min(1, p * draws))`` over the rounded numbers in ``[a, b]`` (``0 <= a < b``) for a
    uniform draw over a range ``width`` wide: in decade ``e`` the numbers are ``10^(e-3)``
    apart, each drawn with chance ``10^(e-3) / width``."""
    total = 0.0
    for e, lo, hi in _decades(a, b):
        step = max(10.0 ** (e - DIGITS + 1), 5e-324)
        top = hi == 10.0 ** (e + 1)  # the decade's top is the next decade's first number
        cells = max(0, math.floor(hi / step * (1 + 1e-12)) - math.ceil(lo / step * (1 - 1e-12))
                    + 1 - top)
        total += cells * min(1.0, step / width * draws)
        if lo / width * draws < 1e-3:  # what lies below can add at most this much
            return total + lo / width * draws
    return total


def log_cells(a: float, b: float, draws: int) -> float:
    """``sum(min(1, p * draws))`` over the rounded numbers in ``[a, b]`` (``0 < a < b``) for a
    log-uniform draw: the number with mantissa ``m`` is drawn with chance about
    ``10^(1-DIGITS) / (m * ln(b/a))``; summed over mantissas as an integral (plus one per
    decade, for the edges)."""
    per = 10 ** (DIGITS - 1)  # numbers per unit of mantissa
    c = draws / (per * (math.log(b) - math.log(a)))  # min(1, c / m) per number of mantissa m
    total = 0.0
    for e, lo, hi in _decades(a, b):
        u, w = 10.0 ** (math.log10(lo) - e), min(10.0 ** (math.log10(hi) - e), 10.0)
        if c >= w:
            total += per * (w - u)
        elif c <= u:
            total += per * c * math.log(w / u)
        else:
            total += per * (c - u) + per * c * math.log(w / c)
        total += 1
    return total


def round_value(x: float, low: float, high: float) -> float:
    """``x`` to :data:`DIGITS` significant digits, kept inside ``[low, high]``."""
    return min(max(float(f"{x:.{DIGITS - 1}e}"), low), high)
