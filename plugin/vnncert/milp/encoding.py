"""The MILP part of the encoding: binaries on top of the triangle relaxation (`bounds.encoding`).

* an unstable ReLU (l < 0 < u, columns v and z) gets one binary d with the big-M rows
  z <= u d and z <= v - l (1 - d) (big-M from the tightest sound bounds);
* a max window with several candidates i gets binaries d_i with sum d_i = 1 and
  y <= v_i + (U - l_i)(1 - d_i), U the largest upper bound of the candidates.
With `relax=True` the binaries are continuous in [0, 1]: projecting them out of the big-M rows
gives the triangle again, so the relaxed model is the LP relaxation of the MILP.
"""
from __future__ import annotations

import numpy as np

from ..bounds.encoding import Encoding


def add_binaries(enc: Encoding, relax: bool = False) -> None:
    """Add the MILP's binaries (once per encoding; later calls do nothing)."""
    if enc.binaries_added:
        return
    enc.binaries_added = True
    for ur in enc.unstable:
        n = ur.neuron.size
        d = enc.add_cols(np.zeros(n), np.ones(n), "d", ur.layer, ur.neuron, integer=not relax)
        ar = np.arange(n)
        # z - u d <= 0
        enc.add_rows(np.concatenate([ar, ar]), np.concatenate([ur.z, d]), np.concatenate([np.ones(n), -ur.upper]),
                     np.full(n, -np.inf), np.zeros(n))
        # z - v - l d <= -l
        enc.add_rows(np.concatenate([ar, ar, ar]), np.concatenate([ur.z, ur.v, d]),
                     np.concatenate([np.ones(n), -np.ones(n), -ur.lower]), np.full(n, -np.inf), -ur.lower)
    for gidx, mg in enumerate(enc.max_groups):
        n = mg.cands.size
        d = enc.add_cols(np.zeros(n), np.ones(n), "dm", mg.layer, np.full(n, gidx), integer=not relax)
        enc.stats["max_binaries"] += n
        enc.add_rows(np.zeros(n), d, np.ones(n), [1.0], [1.0])
        ar = np.arange(n)
        big = mg.upper_max - mg.lower
        # y - v_i + (U - l_i) d_i <= U - l_i
        enc.add_rows(np.concatenate([ar, ar, ar]), np.concatenate([np.full(n, mg.y), mg.cands, d]),
                     np.concatenate([np.ones(n), -np.ones(n), big]), np.full(n, -np.inf), big)


def relaxed_binaries(enc: Encoding) -> int:
    """How many binaries the relaxed model has (unstable ReLUs plus max candidates)."""
    return sum(len(ur.neuron) for ur in enc.unstable) + sum(mg.cands.size for mg in enc.max_groups)
