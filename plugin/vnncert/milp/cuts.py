"""Cutting planes of the network's MILP from SCIP's root node, for the alpha/beta bound.

SCIP (through PySCIPOpt) separates cuts (mixed-integer rounding, flow covers, implied bounds,
...) at the root of its branch and bound. `root_cuts` builds one disjunct's MILP (the encoding
of `bounds.encoding` with its binaries, and `min t` s.t. `t >= A_i y - b_i`; presolve and
heuristics off, so SCIP's variables are the encoding's columns), runs `separating_rounds`
separation rounds at the root node and reads the LP's rows that a separator made (global ones)
when its cut loop ends, or those it had separated when its time runs out. `to_bound_cuts` turns
them into `bounds.alpha_beta.AlphaBeta.set_cuts`'s terms: coefficients on the layers' values and
on the unstable neurons' indicators (docs/exact.md §4, "Cutting planes").

Validity. A cut holds at every point of the MILP's feasible set (SCIP has no incumbent: heuristics
off; no dual reductions or symmetry handling, which may cut off feasible points), so at every
point of the disjunct's unsafe set, where t can be max_i (A_i y - b_i) <= 0: a term c t with
c <= 0 is dropped, which only weakens the cut there; a cut with c > 0 is dropped.
The right-hand side is widened by `CUT_TOL` times its scale (SCIP computes in floating point
with its feasibility tolerance). A domain closed by a bound with cuts is safe: its points that
satisfy the cuts by the bound, the others because they are not in the unsafe set. HiGHS's cut
pool, read through its callback, was tried first and held cuts that feasible points violate;
SCIP's held at every sampled point of the tests' graphs (tests/test_milp_cuts.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

CUT_TOL = 1e-6  # a cut's right-hand side is widened by this times (1 + |rhs| + sum |a_c| max(|l_c|, |u_c|))


@dataclass
class CutPool:
    """Cuts lower <= a w <= upper in CSR form over the model's columns (the encoding's, then t)."""

    start: np.ndarray
    index: np.ndarray
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    t_col: int
    seconds: float
    root_bound: float  # SCIP's dual bound of min t at the root

    @property
    def size(self) -> int:
        return int(self.lower.size)


def root_cuts(enc, A: np.ndarray, b: np.ndarray, deadline: float, separating_rounds: int = 10,
              threads: int = 1, nogil: bool = False) -> Optional[CutPool]:
    """SCIP's root cuts of the MILP of `enc` (binaries added) for the disjunct A y <= b: those in
    the root's LP when its cut loop ends or, when `deadline` stops it first, those separated so
    far that are still in the LP; None when SCIP fails or finds nothing in time. `nogil`: SCIP
    solves without Python's lock (several roots on threads)."""
    try:
        from pyscipopt import SCIP_EVENTTYPE, SCIP_ROWORIGINTYPE, Eventhdlr, Model, quicksum
    except ImportError:  # the cuts are an option; without SCIP there are none
        return None
    from .encoding import add_binaries

    left = deadline - time.monotonic()
    if left <= 0.5:
        return None
    add_binaries(enc)
    M, lo, hi = enc.matrix(0)
    M = M.tocsr()
    n = enc.n_cols
    A = np.atleast_2d(np.asarray(A, np.float64))
    b = np.atleast_1d(np.asarray(b, np.float64))
    m = Model()
    m.hideOutput()
    fin = lambda v: float(v) if np.isfinite(v) else None  # noqa: E731
    X = [m.addVar(name=f"c{c}", vtype="B" if enc.col_int[c] else "C", lb=fin(enc.col_lb[c]), ub=fin(enc.col_ub[c]))
         for c in range(n)]
    t = m.addVar(name="t", lb=None)
    for r in range(M.shape[0]):
        if r % 512 == 0 and time.monotonic() > deadline:
            return None  # a large model is built row by row in Python: it stops at the deadline too
        s, e = M.indptr[r], M.indptr[r + 1]
        expr = quicksum(float(M.data[i]) * X[M.indices[i]] for i in range(s, e))
        if np.isfinite(lo[r]) and lo[r] == hi[r]:
            m.addCons(expr == float(lo[r]))
            continue
        if np.isfinite(lo[r]):
            m.addCons(expr >= float(lo[r]))
        if np.isfinite(hi[r]):
            m.addCons(expr <= float(hi[r]))
    ycols = enc.output_cols()
    for i in range(A.shape[0]):
        m.addCons(t >= quicksum(float(A[i, j]) * X[ycols[j]] for j in np.flatnonzero(A[i])) - float(b[i]))
    m.setObjective(t, "minimize")
    m.setPresolve(3)  # SCIP_PARAMSETTING.OFF: the variables stay the encoding's columns
    m.setHeuristics(3)  # no incumbent: the cuts hold on the whole feasible set
    # only reductions that keep every feasible point (no dual fixing, no symmetry handling): the
    # cuts hold on the whole feasible set, not only at an optimum
    m.setParam("misc/allowstrongdualreds", False)
    m.setParam("misc/allowweakdualreds", False)
    m.setParam("misc/usesymmetry", 0)
    m.setParam("limits/nodes", 1)
    m.setParam("separating/maxroundsroot", int(separating_rounds))
    m.setParam("parallel/maxnthreads", int(max(1, threads)))
    m.setParam("randomization/randomseedshift", 0)
    col_of = {f"c{c}": c for c in range(n)}
    col_of["t"] = n
    added = {}  # name -> the data of a global separator row in the LP (it may leave it again)
    final = []  # the separator rows of the root's LP when its cut loop ends

    def data(row):
        """(columns, values, lhs, rhs) of a global separator row over the model's columns, else None."""
        if row.getOrigintype() != SCIP_ROWORIGINTYPE.SEPA or row.isLocal():
            return None
        names = [c.getVar().name for c in row.getCols()]
        cols = [col_of.get(nm[2:] if nm.startswith("t_") else nm, -1) for nm in names]
        if min(cols, default=-1) < 0:
            return None  # a variable that is not one of the model's columns
        c0 = row.getConstant()
        lhs, rhs = row.getLhs() - c0, row.getRhs() - c0
        return cols, row.getVals(), lhs if lhs > -1e19 else -np.inf, rhs if rhs < 1e19 else np.inf

    kinds = SCIP_EVENTTYPE.LPSOLVED | SCIP_EVENTTYPE.ROWADDEDLP | SCIP_EVENTTYPE.ROWDELETEDLP

    class _Root(Eventhdlr):
        """LPSOLVED comes when the root's cut loop ends (before SCIP branches: strong branching
        would take as long again); the rows the cuts enter and leave the LP with keep what a root
        the time limit stops had separated by then."""

        def eventinit(self):
            self.model.catchEvent(kinds, self)

        def eventexit(self):
            self.model.dropEvent(kinds, self)

        def eventexec(self, event):
            kind = event.getType()
            if kind == SCIP_EVENTTYPE.LPSOLVED:
                if not final:
                    final.append([d for d in map(data, self.model.getLPRowsData()) if d is not None])
                    self.model.interruptSolve()
            elif kind == SCIP_EVENTTYPE.ROWADDEDLP:
                d = data(event.getRow())
                if d is not None:
                    added[event.getRow().name] = d
            else:
                added.pop(event.getRow().name, None)

    m.includeEventhdlr(_Root(), "vnncert_root_cuts", "the root's cuts")
    t0 = time.monotonic()
    left = deadline - time.monotonic()
    if left <= 0.5:
        return None
    m.setParam("limits/time", left)
    try:
        m.optimizeNogil() if nogil else m.optimize()
    except Exception:  # SCIP failure: no cuts (never an answer)
        return None
    cuts = final[0] if final else list(added.values())
    if not cuts:
        return None
    start = np.cumsum([0] + [len(c[0]) for c in cuts]).astype(np.int64)
    return CutPool(start, np.concatenate([np.asarray(c[0], np.int64) for c in cuts]),
                   np.concatenate([np.asarray(c[1], np.float64) for c in cuts]),
                   np.array([c[2] for c in cuts], np.float64), np.array([c[3] for c in cuts], np.float64), n,
                   time.monotonic() - t0, float(m.getDualbound()))


def to_bound_cuts(pool: CutPool, enc, bab):
    """(d, layers, indicators) for `bab.set_cuts` (an `AlphaBeta` over the same network and box,
    its own intermediate bounds): each cut lower <= a w <= upper as a w <= upper and -a w <=
    -lower where finite, over the encoding's columns mapped to layer values ("x": the input,
    "v": an affine layer's row, "z": a ReLU's value, "y": the output) and to the indicators of
    `bab`'s unstable neurons ("d"; a neuron stable in `bab`'s bounds has a constant indicator).
    Cuts on max-pool columns are dropped (module docstring for t)."""
    import scipy.sparse as sp

    lg = bab.view.lg
    n = T = pool.t_col  # the model's columns are the encoding's, then t
    # per column: kind (0 a layer's value, 1 an unstable indicator, 2 a stable one, 3 other, 4 t),
    # its layer (the place in the indicators for kind 1) and index, and a stable indicator's value
    kind = np.full(n + 1, 3, np.int64)
    kind[T] = 4
    layer = np.zeros(n + 1, np.int64)
    index = np.zeros(n + 1, np.int64)
    const = np.zeros(n + 1)
    pos = {}  # (relu layer, neuron) -> its place in bab's split vectors
    off = 0
    for j, neurons in bab.split_neurons():
        for i, nn in enumerate(neurons):
            pos[(j, int(nn))] = off + i
        off += neurons.size
    for c, (k, L, neuron) in enumerate(enc.col_label):
        if k == "x":
            kind[c], layer[c], index[c] = 0, 0, neuron
        elif k in ("v", "z", "y"):
            kind[c], layer[c], index[c] = 0, L, neuron
        elif k == "d":
            p = pos.get((L, int(neuron)))
            if p is not None:
                kind[c], index[c] = 1, p
            else:  # stable in bab's bounds: the indicator is 1 (active) or 0
                kind[c] = 2
                const[c] = 1.0 if bab.pre[lg.layers[L].source][0][neuron] >= 0 else 0.0
    bound = np.maximum(np.maximum(np.abs(np.asarray(enc.col_lb, np.float64)), np.abs(np.asarray(enc.col_ub, np.float64))), 1.0)
    bound = np.append(bound, 0.0)  # t's entries are dropped: no scale
    K0 = pool.size
    cut = np.repeat(np.arange(K0), np.diff(pool.start))  # each entry's cut
    cols, vals = pool.index, pool.value
    ek = kind[cols]
    other = np.bincount(cut, ek == 3, minlength=K0) > 0  # a max-pool column: the cut is dropped
    t_coef = np.bincount(cut, np.where(ek == 4, vals, 0.0), minlength=K0)
    scale = np.bincount(cut, np.abs(vals) * bound[cols], minlength=K0)
    shift = np.bincount(cut, vals * const[cols], minlength=K0)  # the stable indicators' part
    terms = np.bincount(cut, ek <= 1, minlength=K0) > 0
    keep, rhs, sign = [], [], []
    for sg, r0 in ((1.0, pool.upper), (-1.0, -pool.lower)):
        # a w <= rhs (sign +1: upper; -1: -a w <= -lower)
        ok = np.isfinite(r0) & ~other & terms & ~(sg * t_coef > 0)
        r = r0 + CUT_TOL * (1.0 + np.abs(r0) + scale) - sg * shift
        keep.append(np.flatnonzero(ok))
        rhs.append(r[ok])
        sign.append(np.full(int(ok.sum()), sg))
    # the kept rows in the order cut 0 upper, cut 0 lower, cut 1 upper, ...
    ids = np.concatenate([2 * keep[0], 2 * keep[1] + 1])
    order = np.argsort(ids, kind="stable")
    ids, rhs, sign = ids[order], np.concatenate(rhs)[order], np.concatenate(sign)[order]
    K = ids.size
    if K == 0:
        return np.zeros(0), {}, None
    row_of = np.full(2 * K0, -1, np.int64)
    row_of[ids] = np.arange(K)
    sizes = {k: L.size for k, L in enumerate(lg.layers)}
    sizes[0] = lg.n_inputs
    layers = {}
    indicators = None
    for s_idx, sg in ((0, 1.0), (1, -1.0)):
        r = row_of[2 * cut + s_idx]
        m = (r >= 0) & (ek <= 1)
        for L in np.unique(layer[cols[m & (ek == 0)]]):
            sel = m & (ek == 0) & (layer[cols] == L)
            C = sp.csr_matrix((sg * vals[sel], (r[sel], index[cols[sel]])), shape=(K, sizes[int(L)]))
            layers[int(L)] = layers[int(L)] + C if int(L) in layers else C
        sel = m & (ek == 1)
        if sel.any():
            C = sp.csr_matrix((sg * vals[sel], (r[sel], index[cols[sel]])), shape=(K, bab.U))
            indicators = C if indicators is None else indicators + C
    return rhs, layers, indicators
