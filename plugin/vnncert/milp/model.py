"""The Pyomo model of an encoding (`bounds.encoding` plus `milp.encoding.add_binaries`).

One model per input region; one continuous variable per encoding column (a binary per unstable
ReLU / max candidate), the rows as constraints. A disjunct `A y <= b` becomes `min t` s.t.
`t >= A_i . y - b_i`, a Pyomo `Block` swapped per disjunct (`set_disjunct`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..bounds.encoding import Encoding


def _pyomo():
    import pyomo.environ as pyo

    return pyo


@dataclass
class MilpModel:
    """A Pyomo model of an `Encoding`: one Pyomo variable per encoding column."""

    model: object
    cols: List[object]  # Pyomo VarData per column
    enc: Encoding
    build_seconds: float
    objective_block: Optional[object] = None
    stats: Dict[str, float] = field(default_factory=dict)

    def input_vars(self):
        return [self.cols[c] for c in self.enc.input_cols()]

    def output_vars(self):
        return [self.cols[c] for c in self.enc.output_cols()]


_KIND_NAMES = {"x": "x", "v": "pre", "z": "relu", "y": "out", "m": "max", "d": "active", "dm": "argmax"}


def build_model(enc: Encoding) -> MilpModel:
    """The Pyomo model of enc: variables (continuous per neuron, binary per unstable ReLU / max
    candidate), rows as constraints. No objective (see `set_disjunct`)."""
    pyo = _pyomo()
    from pyomo.core.expr.numeric_expr import LinearExpression

    t0 = time.monotonic()
    m = pyo.ConcreteModel(name="vnncert")
    n = enc.n_cols
    lb = np.asarray(enc.col_lb, np.float64)
    ub = np.asarray(enc.col_ub, np.float64)
    integer = np.asarray(enc.col_int, bool)
    # one indexed Var per (kind, layer): x, pre<k>, relu<k>, active<k>, max<k>, out
    groups: Dict[Tuple[str, int], List[int]] = {}
    for c, (kind, layer, _) in enumerate(enc.col_label):
        groups.setdefault((kind, layer), []).append(c)
    cols: List[object] = [None] * n
    for (kind, layer), members in groups.items():
        name = _KIND_NAMES.get(kind, kind) + ("" if kind in ("x", "y") else str(layer))
        is_int = bool(integer[members[0]])

        var = pyo.Var(range(len(members)), domain=pyo.Binary if is_int else pyo.Reals)
        m.add_component(name, var)
        for j, c in enumerate(members):
            v = var[j]
            v.setlb(float(lb[c]) if np.isfinite(lb[c]) else None)
            v.setub(float(ub[c]) if np.isfinite(ub[c]) else None)
            cols[c] = v
    A, lo, hi = enc.matrix(0)
    A = A.tocsr()
    m.rows = pyo.ConstraintList()
    indptr, indices, data = A.indptr, A.indices, A.data
    for r in range(A.shape[0]):
        s, e = indptr[r], indptr[r + 1]
        expr = LinearExpression(constant=0.0, linear_coefs=data[s:e].tolist(), linear_vars=[cols[c] for c in indices[s:e]])
        lo_r = float(lo[r]) if np.isfinite(lo[r]) else None
        hi_r = float(hi[r]) if np.isfinite(hi[r]) else None
        if lo_r is not None and hi_r is not None and lo_r == hi_r:
            m.rows.add(expr == lo_r)
        else:
            m.rows.add((lo_r, expr, hi_r))
    mm = MilpModel(m, cols, enc, time.monotonic() - t0)
    mm.stats.update(cols=n, rows=int(A.shape[0]), nnz=int(A.nnz), binaries=int(integer.sum()))
    return mm


def set_disjunct(mm: MilpModel, A: np.ndarray, b: np.ndarray, t_lower: float = -np.inf) -> object:
    """Objective of one output disjunct: min t s.t. t >= A_i . y - b_i (replaces the previous one)."""
    pyo = _pyomo()
    from pyomo.core.expr.numeric_expr import LinearExpression

    m = mm.model
    A, b = np.atleast_2d(np.asarray(A, np.float64)), np.atleast_1d(np.asarray(b, np.float64))
    if A.shape[0] == 0 or A.size == 0:  # no rows: every output is unsafe, any feasible point is a witness
        A, b = np.zeros((1, len(mm.enc.output_cols()))), np.ones(1)
    if mm.objective_block is not None:
        m.del_component(mm.objective_block)
    blk = pyo.Block()
    m.add_component("disjunct", blk)
    blk.t = pyo.Var(bounds=(float(t_lower) if np.isfinite(t_lower) else None, None))
    ys = mm.output_vars()
    blk.rows = pyo.ConstraintList()
    for a_i, b_i in zip(np.atleast_2d(A), np.atleast_1d(b)):
        nz = np.flatnonzero(a_i)
        expr = LinearExpression(constant=0.0, linear_coefs=[-float(a_i[j]) for j in nz] + [1.0],
                                linear_vars=[ys[j] for j in nz] + [blk.t])
        blk.rows.add(expr >= -float(b_i))
    blk.obj = pyo.Objective(expr=blk.t, sense=pyo.minimize)
    mm.objective_block = blk
    return blk
