"""Write local-robustness properties in VNN-LIB 1.0 (box of half-width eps, unsafe if another class wins)."""
from __future__ import annotations

from typing import Optional

import numpy as np


def robustness_vnnlib(x: np.ndarray, label: int, n_classes: int, eps: float,
                      clip_lo: Optional[float] = None, clip_hi: Optional[float] = None,
                      comment: str = "") -> str:
    """Unsafe set: x' in [x-eps, x+eps] (clipped) and some Y_j >= Y_label, j != label."""
    x = np.asarray(x, dtype=np.float64).ravel()
    lo = x - eps
    hi = x + eps
    if clip_lo is not None:
        lo = np.maximum(lo, clip_lo)
    if clip_hi is not None:
        hi = np.minimum(hi, clip_hi)
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
