"""Cutting planes of the network's MILP from HiGHS's root node, for the alpha/beta bound.

HiGHS separates cuts (mixed-integer rounding, covers, implied bounds, ...) at the root of its
branch and bound and hands its cut pool to a callback when the root's separation rounds end
(`kCallbackMipGetCutPool`, over the model's own columns when presolve is off). `root_cuts` runs
HiGHS on one disjunct's MILP (the encoding of `bounds.encoding` with its binaries, and
`min t` s.t. `t >= A_i y - b_i`) until that callback, then stops it. `to_bound_cuts` turns the
cuts into `bounds.alpha_beta.AlphaBeta.set_cuts`'s terms: coefficients on the layers' values
and on the unstable neurons' indicators.

Validity. A cut holds at every point of the MILP's feasible set with t at most HiGHS's incumbent,
so at every point of the disjunct's unsafe set (there t can be max_i (A_i y - b_i) <= 0; a term
c t with c <= 0 is dropped, which only weakens the cut there; a cut with c > 0 is dropped). The
right-hand side is widened by `CUT_TOL` times its scale (HiGHS computes the cuts in floating
point with a feasibility tolerance), the same trust the exact engine puts in HiGHS's own proofs
(`milp.solver.unsat_margin`). A domain closed by a bound with cuts is safe: its points that satisfy
the cuts by the bound, the others because they are not in the unsafe set.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

CUT_TOL = 1e-6  # a cut's right-hand side is widened by this times (1 + |rhs| + sum |a_c| max(|l_c|, |u_c|))


@dataclass
class CutPool:
    """HiGHS's cut pool in CSR form over the model's columns (the encoding's, then t)."""

    start: np.ndarray
    index: np.ndarray
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    t_col: int
    seconds: float
    root_bound: float  # HiGHS's dual bound of min t when the pool was taken

    @property
    def size(self) -> int:
        return int(self.lower.size)


def root_cuts(enc, A: np.ndarray, b: np.ndarray, deadline: float, threads: int = 1) -> Optional[CutPool]:
    """HiGHS's root cuts of the MILP of `enc` (binaries added) for the disjunct A y <= b; None when
    the root does not finish its separation before `deadline` (or HiGHS fails)."""
    import highspy
    import scipy.sparse as sp

    from ..bounds.lp import new_highs
    from .encoding import add_binaries

    add_binaries(enc)
    M, lo, hi = enc.matrix(0)
    n = enc.n_cols
    A = np.atleast_2d(np.asarray(A, np.float64))
    b = np.atleast_1d(np.asarray(b, np.float64))
    ycols = enc.output_cols()
    R = A.shape[0]
    rr, cc = np.nonzero(A)
    T = sp.csr_matrix((np.concatenate([-A[rr, cc], np.ones(R)]),
                       (np.concatenate([rr, np.arange(R)]), np.concatenate([ycols[cc], np.full(R, n)]))), shape=(R, n + 1))
    full = sp.vstack([sp.hstack([M, sp.csr_matrix((M.shape[0], 1))]), T]).tocsc()
    inf = highspy.kHighsInf
    fin = lambda v: np.where(np.isfinite(v), v, np.where(v > 0, inf, -inf))  # noqa: E731
    lp = highspy.HighsLp()
    lp.num_col_ = n + 1
    lp.num_row_ = full.shape[0]
    lp.col_cost_ = np.concatenate([np.zeros(n), [1.0]])
    lp.col_lower_ = fin(np.concatenate([np.asarray(enc.col_lb, np.float64), [-np.inf]]))
    lp.col_upper_ = fin(np.concatenate([np.asarray(enc.col_ub, np.float64), [np.inf]]))
    lp.row_lower_ = fin(np.concatenate([lo, -b]))
    lp.row_upper_ = fin(np.concatenate([hi, np.full(R, np.inf)]))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = full.indptr
    lp.a_matrix_.index_ = full.indices
    lp.a_matrix_.value_ = full.data
    integer = np.concatenate([np.asarray(enc.col_int, bool), [False]])
    lp.integrality_ = [highspy.HighsVarType.kInteger if x else highspy.HighsVarType.kContinuous for x in integer]
    h = new_highs()
    for k, v in {"presolve": "off", "threads": int(max(1, threads)), "random_seed": 0,
                 "mip_heuristic_effort": 0.0, "mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
                 "mip_heuristic_run_root_reduced_cost": False, "mip_heuristic_run_feasibility_jump": False,
                 "mip_detect_symmetry": False, "time_limit": max(0.1, deadline - time.monotonic())}.items():
        h.setOptionValue(k, v)
    h.passModel(lp)
    got: Dict[str, object] = {}
    t0 = time.monotonic()

    def on_pool(e):
        o = e.data_out
        got.update(start=np.array(o.cutpool_start, np.int64), index=np.array(o.cutpool_index, np.int64),
                   value=np.array(o.cutpool_value, np.float64), lower=np.array(o.cutpool_lower, np.float64),
                   upper=np.array(o.cutpool_upper, np.float64), bound=float(o.mip_dual_bound), seconds=time.monotonic() - t0)

    def on_interrupt(e):
        e.interrupt(bool(got) or time.monotonic() >= deadline)  # the pool is all this run is for

    h.cbMipGetCutPool.subscribe(on_pool)
    h.cbMipInterrupt.subscribe(on_interrupt)
    try:
        h.run()
    except Exception:  # HiGHS failure: no cuts (never an answer)
        return None
    finally:
        h.cbMipGetCutPool.unsubscribe(on_pool)
        h.cbMipInterrupt.unsubscribe(on_interrupt)
    if not got or got["start"].size == 0:
        return None
    return CutPool(got["start"], got["index"], got["value"], got["lower"], got["upper"], n, got["seconds"], got["bound"])


def to_bound_cuts(pool: CutPool, enc, bab):
    """(d, layers, indicators) for `bab.set_cuts` (an `AlphaBeta` over the same network and box,
    its own intermediate bounds): each cut lower <= a w <= upper as a w <= upper and -a w <=
    -lower where finite, over the encoding's columns mapped to layer values ("x": the input,
    "v": an affine layer's row, "z": a ReLU's value, "y": the output) and to the indicators of
    `bab`'s unstable neurons ("d"; a neuron stable in `bab`'s bounds has a constant indicator).
    Cuts on max-pool columns are dropped (module docstring for t)."""
    import scipy.sparse as sp

    lab = enc.col_label
    lb = np.asarray(enc.col_lb, np.float64)
    ub = np.asarray(enc.col_ub, np.float64)
    lg = bab.view.lg
    pos = {}  # (relu layer, neuron) -> its place in bab's split vectors
    off = 0
    for j, neurons in bab.split_neurons():
        for i, nn in enumerate(neurons):
            pos[(j, int(nn))] = off + i
        off += neurons.size
    sizes = {k: L.size for k, L in enumerate(lg.layers)}
    sizes[0] = lg.n_inputs
    rows_d, entries = [], []  # per kept cut: rhs, [(layer or None for an indicator, index, coef)]
    for k in range(pool.size):
        s, e = pool.start[k], pool.start[k + 1]
        cols, vals = pool.index[s:e], pool.value[s:e]
        for sign, rhs in ((1.0, pool.upper[k]), (-1.0, -pool.lower[k])):
            if not np.isfinite(rhs):
                continue
            a = sign * vals
            t_here = cols == pool.t_col
            if (a[t_here] > 0).any():
                continue
            cs, a = cols[~t_here], a[~t_here]
            scale = np.abs(a) * np.maximum(np.maximum(np.abs(lb[cs]), np.abs(ub[cs])), 1.0)
            rhs = rhs + CUT_TOL * (1.0 + abs(rhs) + float(scale.sum()))
            out, ok = [], True
            for c, v in zip(cs, a):
                kind, layer, neuron = lab[c]
                if kind == "x":
                    out.append((0, neuron, v))
                elif kind in ("v", "z", "y"):
                    out.append((layer, neuron, v))
                elif kind == "d":
                    p = pos.get((layer, int(neuron)))
                    if p is not None:
                        out.append((None, p, v))
                    else:  # stable in bab's bounds: the indicator is 1 (active) or 0
                        l_src = bab._pre[lg.layers[layer].source][0][neuron]
                        if l_src >= 0:
                            rhs -= v
                else:
                    ok = False
                    break
            if ok and out:
                rows_d.append(rhs)
                entries.append(out)
    K = len(rows_d)
    if K == 0:
        return np.zeros(0), {}, None
    coo: Dict[object, list] = {}
    for r, out in enumerate(entries):
        for layer, idx, v in out:
            coo.setdefault(layer, []).append((r, idx, v))
    layers = {}
    indicators = None
    for layer, items in coo.items():
        r, i, v = (np.array(t) for t in zip(*items))
        if layer is None:
            indicators = sp.csr_matrix((v.astype(np.float64), (r.astype(np.int64), i.astype(np.int64))), shape=(K, bab.U))
        else:
            layers[layer] = sp.csr_matrix((v.astype(np.float64), (r.astype(np.int64), i.astype(np.int64))),
                                          shape=(K, sizes[layer]))
    return np.asarray(rows_d, np.float64), layers, indicators
