"""Sound bounds of every layer over one input region: interval, CROWN, alpha (a caller's hook), LP.

All in float64 over the layer graph (`network.layers`), for one input region:

* IBP, the floor: [W]+ l + [W]- u + b <= W z + b <= [W]+ u + [W]- l + b.
* CROWN (`bounds.crown`, numpy: linear back-substitution, Zhang et al. 2018): each affine layer's
  rows are bounded by substituting the ReLU / max relaxations of all earlier layers back to the
  input box. Intersected with IBP.
* optionally (the caller's `refine`), tighter bounds of the rows still unstable: the exact engine
  passes alpha-CROWN on affine/ReLU chains.
* LP tightening (`bounds.lp`): for each ReLU still unstable, min and max of its pre-activation
  over the triangle relaxation of all earlier layers, made safe by weak duality.

Every bound is widened by the margin rule (`bounds.margin`), so a neuron is called stable only
with room to spare.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..network.layers import LayerGraph
from .crown import Crown, Pass
from .encoding import Encoding
from .lp import TriangleLP, tighten_layer
from .margin import refutes, slack


@dataclass
class Bounds:
    """Per-layer (l, u) for one region, the encoding built along the way, and what it cost."""

    layers: List[Optional[Tuple[np.ndarray, np.ndarray]]]
    enc: Optional[Encoding] = None
    lp: Optional[TriangleLP] = None
    method: str = "crown"
    stats: Dict[str, float] = field(default_factory=dict)
    unstable: List[int] = field(default_factory=list)  # per ReLU layer, unstable count
    empty: bool = False  # the LP proved the region empty
    crown: Optional[Crown] = None  # the CROWN that made them (its final pass bounds output rows)
    pass_: Optional[Pass] = None  # its intermediate bounds (B = 1)


def compute_bounds(lg: LayerGraph, region, deadline: float, method: str = "lp", lp_deadline: Optional[float] = None,
                   threads: int = 1, encode: bool = True, refine=None, crown: Optional[Crown] = None) -> Bounds:
    """Bounds of every layer over region. method: 'ibp', 'crown', or 'lp' (CROWN then LP tightening
    of unstable ReLUs until lp_deadline). With encode=True the encoding (no binaries) is returned too.
    `crown`: the numpy CROWN of lg when the caller keeps one (`bounds.prepare`).

    `refine(k, rows, bounds) -> (l, u) or None`, when given, is asked after CROWN for sound (widened)
    bounds of the still unstable rows of each affine layer k that feeds a ReLU (the exact engine
    passes alpha-CROWN); they are intersected, and the LP starts from them. The CROWN pass raises
    `crown.Expired` once `deadline` has passed (a large network's pass stops near its deadline)."""
    t0 = time.monotonic()
    crown = crown if crown is not None else Crown(lg)
    crown_s0 = crown.stats["crown_s"]
    lp_deadline = deadline if lp_deadline is None else min(lp_deadline, deadline)
    layers: List[Optional[Tuple[np.ndarray, np.ndarray]]] = [None] * len(lg.layers)
    enc = Encoding(lg) if (encode or method == "lp") else None
    if enc is not None:
        enc.add_input(region)
    lp = TriangleLP(enc, threads) if method == "lp" else None
    has_G = region.G is not None and region.G.shape[0] > 0
    st = {"crown_s": 0.0, "lp_s": 0.0, "lp_solved": 0, "lp_tightened": 0, "lp_stabilised": 0}
    unstable_counts: List[int] = []
    res = Bounds(layers, enc, lp, method, st, unstable_counts, crown=crown)

    def hook(k, lo2, hi2):
        lo, hi = lo2[0], hi2[0]  # views: tightening them in place tightens the pass's bounds
        L = lg.layers[k]
        if L.kind == "affine":
            kinds = crown.readers.get(k, [])
            reads_input_only = crown.input_only[k]
            if refine is not None and kinds == ["relu"] and not reads_input_only and time.monotonic() < deadline:
                rows = np.flatnonzero((lo < 0) & (hi > 0))
                tc = time.monotonic()
                got = refine(k, rows, layers) if rows.size else None
                if got is not None:  # sound bounds, widened by their maker (the margin rule)
                    rl, ru = got
                    st["refine_s"] = st.get("refine_s", 0.0) + time.monotonic() - tc
                    lo[rows] = np.maximum(lo[rows], rl)
                    hi[rows] = np.minimum(hi[rows], ru)
            if lp is not None and "relu" in kinds and (has_G or not reads_input_only) and time.monotonic() < lp_deadline:
                tl = time.monotonic()
                empty = tighten_layer(lp, k, lo, hi, lp_deadline, st)
                st["lp_s"] += time.monotonic() - tl
                if empty:
                    return True
        layers[k] = (lo, hi)
        if enc is not None and k > 0:
            enc.add_layer(k, layers)
        if L.kind == "relu":
            l, u = layers[L.source]
            unstable_counts.append(int(((l < 0) & (u > 0)).sum()))
        return False

    res.pass_ = crown.intermediate(np.asarray(region.lower, np.float64)[None], np.asarray(region.upper, np.float64)[None],
                                   method="interval" if method == "ibp" else "crown", output=True, hook=hook, deadline=deadline)
    res.empty = res.pass_.stopped
    st["crown_s"] = crown.stats["crown_s"] - crown_s0
    if lp is not None:
        st["lp_solved"] = lp.n_solved
    st["bounds_s"] = time.monotonic() - t0
    return res


def output_lower_bounds(lg: LayerGraph, C: np.ndarray, bounds: Bounds, use_lp: bool = True, deadline: Optional[float] = None) -> np.ndarray:
    """Sound lower bounds of each row of C @ f(x) (C: (m, n_outputs)) from CROWN, and the LP when present."""
    k = lg.output
    C = np.atleast_2d(np.asarray(C, np.float64))
    lo, hi = bounds.layers[k]
    ibp = np.maximum(C, 0) @ lo + np.minimum(C, 0) @ hi
    out = ibp
    if bounds.method in ("crown", "lp"):
        cr = bounds.crown.final(C[None], bounds.pass_)[0][0]
        out = np.maximum(out, cr - slack(cr))
    if use_lp and bounds.lp is not None:
        for i in range(C.shape[0]):
            if deadline is not None and time.monotonic() >= deadline:
                break
            v = bounds.lp.objective_bound(k, C[i], None if deadline is None else deadline - time.monotonic())
            v = v - slack(v) if np.isfinite(v) else v
            out[i] = max(out[i], v)
    return out


def disjunct_bounds(lg: LayerGraph, case, bounds: Bounds, deadline) -> Tuple[List[float], List[bool]]:
    """Per disjunct of `case`: a sound lower bound of max_i (a_i . y - b_i) and whether some row
    refutes it (`margin.refutes`)."""
    lbs, proven = [], []
    for hs in case.output:
        if hs.rows == 0:
            lbs.append(-np.inf)
            proven.append(False)
            continue
        lower = output_lower_bounds(lg, hs.A, bounds, use_lp=True, deadline=deadline)
        lbs.append(float((lower - hs.b).max()))
        proven.append(bool(refutes(lower, hs.b).any()))
    return lbs, proven
