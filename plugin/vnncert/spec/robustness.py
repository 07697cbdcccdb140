"""Write local-robustness properties in VNN-LIB 1.0 (box of half-width eps, unsafe if another class wins)."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..errors import SpecError


def robustness_vnnlib(x: np.ndarray, label: int, n_classes: int, eps: float,
                      clip_lo: Optional[float] = None, clip_hi: Optional[float] = None,
                      comment: str = "") -> str:
    """Unsafe set: x' in [x-eps, x+eps] (clipped) and some Y_j >= Y_label, j != label.

    Every number must be finite (VNN-LIB constants are real numbers): eps >= 0, the point's
    values, the clip bounds (LO <= HI); the clipped box must not be empty. Anything else is a
    SpecError (one line, exit 2 on the command line)."""
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise SpecError(f"eps must be a number, got {eps!r}") from None
    if not (math.isfinite(eps) and eps >= 0):
        raise SpecError(f"eps must be a finite number >= 0, got {eps!r}")
    try:
        x = np.asarray(x, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise SpecError("the point must be a list of numbers") from None
    if x.size == 0:
        raise SpecError("the point has no values")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise SpecError(f"the point's value {int(bad[0])} is {x[bad[0]]!r}, not a finite number")
    for name, v in (("clip LO", clip_lo), ("clip HI", clip_hi)):
        if v is not None and not math.isfinite(float(v)):
            raise SpecError(f"{name} must be a finite number, got {v!r}")
    if clip_lo is not None and clip_hi is not None and float(clip_lo) > float(clip_hi):
        raise SpecError(f"clip LO {clip_lo!r} is above clip HI {clip_hi!r}")
    if not (isinstance(n_classes, (int, np.integer)) and n_classes >= 1):
        raise SpecError(f"the number of classes must be >= 1, got {n_classes!r}")
    if not (isinstance(label, (int, np.integer)) and 0 <= label < n_classes):
        raise SpecError(f"label {label!r} is not in 0..{n_classes - 1}")
    with np.errstate(over="ignore"):
        lo = x - eps
        hi = x + eps
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise SpecError("the box x +- eps goes beyond the float64 range")
    if clip_lo is not None:
        lo = np.maximum(lo, float(clip_lo))
    if clip_hi is not None:
        hi = np.minimum(hi, float(clip_hi))
    empty = np.flatnonzero(lo > hi)
    if empty.size:
        i = int(empty[0])
        raise SpecError(f"the clipped box is empty at input {i}: [{lo[i]!r}, {hi[i]!r}] "
                        f"(the point {x[i]!r} +- eps lies outside the clip range)")
    out = []
    if comment:
        out.extend(f"; {line}" for line in comment.splitlines())
    out.append(f"; local robustness: label {label}, eps {eps!r}, {x.size} inputs, {n_classes} outputs")
    out.extend(f"(declare-const X_{i} Real)" for i in range(x.size))
    out.extend(f"(declare-const Y_{j} Real)" for j in range(n_classes))
    for i in range(x.size):
        out.append(f"(assert (>= X_{i} {lo[i]!r}))")
        out.append(f"(assert (<= X_{i} {hi[i]!r}))")
    out.append("(assert (or")
    out.extend(f"    (and (>= Y_{j} Y_{label}))" for j in range(n_classes) if j != label)
    out.append("))")
    return "\n".join(out) + "\n"
