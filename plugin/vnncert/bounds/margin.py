"""The one margin rule of the bounds layer (docs/architecture.md, "The bounds layer": why these values).

1. Every bound any method computes (interval, CROWN, alpha, beta, the LP's weak-duality bounds,
   auto_LiRPA's) is widened outward by `WIDEN_REL * (1 + |v|)`: float64 rounding of the products
   that made it (relative ~1e-16 per operation, ~1e-13 over a deep back-substitution) is covered
   with three orders of magnitude to spare, so a neuron is called stable only with room to spare.
2. A row `a.y <= b` (strict or not) is refuted over a box when its widened sound lower bound L
   exceeds b by `REFUTE_ABS + REFUTE_REL * (|b| + |L|)`: L - b > 0 would prove it in real
   arithmetic; the margin also keeps every decision clear of cancellation in long float64 sums
   (a bound near 0 made of terms of size 1e3) and of ONNX Runtime's float32 evaluation order.
   Strict rows need no rule of their own: the margin is positive.

These two constants are the soundness rule, not tuning knobs (no option changes them).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

WIDEN_REL = 1e-9
REFUTE_ABS = 1e-7
REFUTE_REL = 1e-6


def slack(v, magnitude=None):
    """The outward widening of a bound of value v (numpy or torch, elementwise); of a sum whose
    terms' absolute values add up to `magnitude`, relative to that instead (the LP's weak-duality
    bounds, where cancellation can leave v far smaller than its terms)."""
    return WIDEN_REL * (1.0 + (abs(v) if magnitude is None else magnitude))


def widen(lo, hi) -> Tuple[object, object]:
    """(lo, hi) widened outward by the rule (numpy or torch arrays)."""
    return lo - slack(lo), hi + slack(hi)


def widen_lower(lb):
    """A lower bound widened downward by the rule; NaN (no bound) becomes -inf."""
    lb = np.asarray(lb, np.float64)
    with np.errstate(invalid="ignore"):
        out = lb - slack(lb)
    return np.where(np.isnan(out), -np.inf, out)


def refutes(lower: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows whose widened lower bound proves `A_i y <= b_i` (and so `<`) impossible on the box."""
    lower = np.asarray(lower, np.float64)
    b = np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.isfinite(lower) & ((lower - b) > REFUTE_ABS + REFUTE_REL * (np.abs(b) + np.abs(lower)))
