"""Sound bounds of every layer over one input region: interval, CROWN, alpha (a caller's hook), LP.

All in float64 over the layer graph (`network.layers`), for one input region:

* IBP, the floor: [W]+ l + [W]- u + b <= W z + b <= [W]+ u + [W]- l + b.
* CROWN (linear back-substitution, Zhang et al. 2018): each affine layer's rows are bounded by
  substituting the ReLU / max relaxations of all earlier layers back to the input box.
  Intersected with IBP.
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
from .encoding import Encoding
from .lp import TriangleLP, tighten_layer
from .margin import REL_SLACK, widen


def _dense_times(A: np.ndarray, W) -> np.ndarray:
    """A (dense) @ W (dense or sparse) -> dense."""
    import scipy.sparse as sp

    if sp.issparse(W):
        return np.asarray((W.T @ A.T).T)
    return A @ W


def relu_relaxation(l: np.ndarray, u: np.ndarray):
    """(lower slope, upper slope, upper intercept) of the CROWN relaxation of relu on [l, u]."""
    active = l >= 0
    inactive = u <= 0
    unstable = ~(active | inactive)
    up_s = np.where(active, 1.0, 0.0)
    up_b = np.zeros_like(l)
    lo_s = np.where(active, 1.0, 0.0)
    if unstable.any():
        lu, uu = l[unstable], u[unstable]
        s = uu / (uu - lu)
        up_s[unstable] = s
        up_b[unstable] = -s * lu
        lo_s[unstable] = (uu > -lu).astype(np.float64)
    return lo_s, up_s, up_b


def crown_lower(lg: LayerGraph, k: int, C: np.ndarray, bounds, want_A: bool = False):
    """Lower bounds of C @ value(layer k) over the input box, given bounds of every earlier layer.

    `bounds[i]` must hold (l, u) of affine layer i for every nonlinear layer's source below k.
    With want_A, also the linear coefficients in x of the lower bounds (rows of C, n_inputs).
    """
    C = np.asarray(C, dtype=np.float64)
    lam: Dict[int, np.ndarray] = {k: C}
    acc = np.zeros(C.shape[0])

    def add(i, M):
        if i in lam:
            lam[i] = lam[i] + M
        else:
            lam[i] = M

    for j in range(k, 0, -1):
        A = lam.pop(j, None)
        if A is None:
            continue
        L = lg.layers[j]
        if L.kind == "affine":
            acc += A @ L.bias
            for s, W in L.terms:
                add(s, _dense_times(A, W))
        elif L.kind == "relu":
            l, u = bounds[L.source]
            lo_s, up_s, up_b = relu_relaxation(l, u)
            Ap, An = np.maximum(A, 0.0), np.minimum(A, 0.0)
            add(L.source, Ap * lo_s + An * up_s)
            acc += An @ up_b
        elif L.kind == "max":
            l, u = bounds[L.source]
            g = L.groups
            valid = g >= 0
            gi = np.where(valid, g, 0)
            lows = np.where(valid, l[gi], -np.inf)
            best = gi[np.arange(g.shape[0]), lows.argmax(axis=1)]  # y_j >= v_best
            others_u = np.where(valid & (gi != best[:, None]), u[gi], -np.inf).max(axis=1)
            dominated = l[best] >= others_u  # then y_j == v_best
            umax = np.where(valid, u[gi], -np.inf).max(axis=1)
            Ap, An = np.maximum(A, 0.0), np.minimum(A, 0.0)
            P = np.zeros((A.shape[1], l.size))
            P[np.arange(A.shape[1]), best] = 1.0
            An_dom = An * dominated
            add(L.source, (Ap + An_dom) @ P)
            acc += (An - An_dom) @ umax
    A = lam.pop(0, None)
    if A is not None:
        l0, u0 = bounds[0]
        acc += np.maximum(A, 0.0) @ l0 + np.minimum(A, 0.0) @ u0
    if want_A:
        return acc, (A if A is not None else np.zeros((C.shape[0], lg.n_inputs)))
    return acc


def crown_rows(lg: LayerGraph, k: int, rows: np.ndarray, bounds, chunk: int = 512) -> Tuple[np.ndarray, np.ndarray]:
    """CROWN (l, u) of the given rows of affine layer k."""
    n = lg.layers[k].size
    lo = np.empty(rows.size)
    hi = np.empty(rows.size)
    for s in range(0, rows.size, chunk):
        r = rows[s:s + chunk]
        C = np.zeros((2 * r.size, n))
        C[np.arange(r.size), r] = 1.0
        C[r.size + np.arange(r.size), r] = -1.0
        out = crown_lower(lg, k, C, bounds)
        lo[s:s + r.size] = out[:r.size]
        hi[s:s + r.size] = -out[r.size:]
    return lo, hi


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


def _feeds(lg: LayerGraph) -> Dict[int, List[str]]:
    out: Dict[int, List[str]] = {}
    for L in lg.layers:
        src = getattr(L, "source", None)
        if src is not None:
            out.setdefault(src, []).append(L.kind)
    return out


def compute_bounds(lg: LayerGraph, region, deadline: float, method: str = "lp", lp_deadline: Optional[float] = None,
                   threads: int = 1, encode: bool = True, refine=None) -> Bounds:
    """Bounds of every layer over region. method: 'ibp', 'crown', or 'lp' (CROWN then LP tightening
    of unstable ReLUs until lp_deadline). With encode=True the encoding (no binaries) is returned too.

    `refine(k, rows, bounds) -> (l, u) or None`, when given, is asked after CROWN for sound bounds
    of the still unstable rows of each affine layer k that feeds a ReLU (the exact engine passes
    alpha-CROWN on affine/ReLU chains); they are widened and intersected, and the LP starts from them."""
    t0 = time.monotonic()
    lp_deadline = deadline if lp_deadline is None else min(lp_deadline, deadline)
    feeds = _feeds(lg)
    bounds: List[Optional[Tuple[np.ndarray, np.ndarray]]] = [None] * len(lg.layers)
    bounds[0] = (np.asarray(region.lower, np.float64), np.asarray(region.upper, np.float64))
    enc = Encoding(lg) if (encode or method == "lp") else None
    if enc is not None:
        enc.add_input(region)
    lp = TriangleLP(enc, threads) if method == "lp" else None
    has_G = region.G is not None and region.G.shape[0] > 0
    st = {"crown_s": 0.0, "lp_s": 0.0, "lp_solved": 0, "lp_tightened": 0, "lp_stabilised": 0}
    unstable_counts = []
    res = Bounds(bounds, enc, lp, method, st, unstable_counts)
    for L in lg.layers[1:]:
        k = L.index
        if L.kind != "affine":
            bounds[k] = lg.layer_interval(L, bounds)
            if enc is not None:
                enc.add_layer(k, bounds)
            if L.kind == "relu":
                l, u = bounds[L.source]
                unstable_counts.append(int(((l < 0) & (u > 0)).sum()))
            continue
        lo, hi = widen(*lg.layer_interval(L, bounds))
        kinds = feeds.get(k, [])
        if method in ("crown", "lp") and (kinds or k == lg.output):
            reads_input_only = all(s == 0 for s, _ in L.terms)
            if not reads_input_only:
                rows = np.arange(L.size)
                if kinds == ["relu"]:
                    rows = np.flatnonzero((lo < 0) & (hi > 0))
                if rows.size:
                    tc = time.monotonic()
                    cl, cu = widen(*crown_rows(lg, k, rows, bounds))
                    st["crown_s"] += time.monotonic() - tc
                    lo[rows] = np.maximum(lo[rows], cl)
                    hi[rows] = np.minimum(hi[rows], cu)
            if refine is not None and kinds == ["relu"] and not reads_input_only and time.monotonic() < deadline:
                rows = np.flatnonzero((lo < 0) & (hi > 0))
                tc = time.monotonic()
                got = refine(k, rows, bounds) if rows.size else None
                if got is not None:
                    rl, ru = widen(*got)
                    st["refine_s"] = st.get("refine_s", 0.0) + time.monotonic() - tc
                    lo[rows] = np.maximum(lo[rows], rl)
                    hi[rows] = np.minimum(hi[rows], ru)
            if lp is not None and "relu" in kinds and (has_G or not reads_input_only) and time.monotonic() < lp_deadline:
                tl = time.monotonic()
                empty = tighten_layer(lp, k, lo, hi, lp_deadline, st)
                st["lp_s"] += time.monotonic() - tl
                if empty:
                    res.empty = True
                    st["bounds_s"] = time.monotonic() - t0
                    return res
        bounds[k] = (lo, hi)
        if enc is not None:
            enc.add_layer(k, bounds)
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
        cr = crown_lower(lg, k, C, bounds.layers)
        cr = cr - REL_SLACK * (1.0 + np.abs(cr))
        out = np.maximum(out, cr)
    if use_lp and bounds.lp is not None:
        for i in range(C.shape[0]):
            if deadline is not None and time.monotonic() >= deadline:
                break
            v = bounds.lp.objective_bound(k, C[i], None if deadline is None else deadline - time.monotonic())
            v = v - REL_SLACK * (1.0 + abs(v)) if np.isfinite(v) else v
            out[i] = max(out[i], v)
    return out


def row_proven(lb: np.ndarray, strict: np.ndarray) -> np.ndarray:
    """Rows a.y - b whose sound lower bound rules them out (> 0, or >= 0 for strict rows)."""
    return (lb > 0) | (strict & (lb >= 0))


def disjunct_bounds(lg: LayerGraph, case, bounds: Bounds, deadline) -> Tuple[List[float], List[bool]]:
    """Per disjunct of `case`: a sound lower bound of max_i (a_i . y - b_i) and whether it is ruled out."""
    lbs, proven = [], []
    for hs in case.output:
        if hs.rows == 0:
            lbs.append(-np.inf)
            proven.append(False)
            continue
        lb = output_lower_bounds(lg, hs.A, bounds, use_lp=True, deadline=deadline) - hs.b
        lbs.append(float(lb.max()))
        proven.append(bool(row_proven(lb, np.asarray(hs.strict, bool)).any()))
    return lbs, proven
