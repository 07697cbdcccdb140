"""The one margin rule of the bounds layer: how every computed bound is widened against rounding."""
from __future__ import annotations

from typing import Tuple

import numpy as np

REL_SLACK = 1e-9


def widen(lo: np.ndarray, hi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    return lo - REL_SLACK * (1.0 + np.abs(lo)), hi + REL_SLACK * (1.0 + np.abs(hi))
