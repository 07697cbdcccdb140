"""The LP encoding of a layer graph over one input region, in matrix form: the triangle relaxation.

One `Encoding` holds columns (variables with bounds, some integer) and rows
(`row_lower <= A w <= row_upper`), grown layer by layer so bound tightening can solve LPs over
the layers encoded so far (`bounds.lp`); `milp.encoding.add_binaries` adds the binaries that
make it the MILP, and `milp.model.build_model` turns it into a Pyomo model. The encoding (per
neuron):

* input: one column per input with the box as bounds, rows `G x <= h`;
* affine layers are equalities `v - W w = b`, where w are the columns of the variable layers
  the affine layer reads. A ReLU's pre-activation gets a column only when the ReLU is unstable;
* ReLU `z = max(v, 0)` with bounds l <= v <= u:
    - u <= 0 (stable inactive): no column, z is the constant 0;
    - l >= 0 (stable active): one column z with the equality `z - W w = b`;
    - l < 0 < u: columns v, z in [0, u], rows z >= v, the triangle z <= u (v - l) / (u - l)
      (the MILP adds one binary d with z <= u d and z <= v - l (1 - d): milp/encoding.py);
* max (MaxPool windows) `y = max_i v_i`: candidates i with u_i >= max_k l_k; rows y >= v_i;
  with one candidate y = v_i (the MILP adds binaries for the others: milp/encoding.py);
* output: one column per output with the equalities of the last affine layer.

All numbers are float64; bounds passed in must be sound (`bounds.region` guarantees it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..network.layers import LayerGraph


@dataclass
class RowBlock:
    """Rows in COO form over the columns that existed when the block was added."""

    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass
class UnstableRelu:
    layer: int  # ReLU layer index
    neuron: np.ndarray  # neuron indices
    v: np.ndarray  # pre-activation columns
    z: np.ndarray  # output columns
    lower: np.ndarray
    upper: np.ndarray


@dataclass
class MaxGroup:
    layer: int
    y: int  # output column
    cands: np.ndarray  # candidate pre-activation columns
    lower: np.ndarray  # their lower bounds
    upper_max: float  # max of their upper bounds


class Encoding:
    """Columns and rows of the encoding; see the module docstring."""

    def __init__(self, lg: LayerGraph):
        self.lg = lg
        self.col_lb: List[float] = []
        self.col_ub: List[float] = []
        self.col_int: List[bool] = []
        self.col_label: List[Tuple[str, int, int]] = []  # (kind, layer, neuron)
        self.blocks: List[RowBlock] = []
        self.n_rows = 0
        self.col_of: Dict[int, np.ndarray] = {}  # variable layer -> column per neuron (-1 = constant 0)
        self.pre_col: Dict[int, np.ndarray] = {}  # affine layer -> column per row (-1 = none)
        self.unstable: List[UnstableRelu] = []
        self.max_groups: List[MaxGroup] = []
        self.binaries_added = False
        self.stats: Dict[str, int] = {"relu_active": 0, "relu_inactive": 0, "relu_unstable": 0, "max_binaries": 0}
        self.consumers: Dict[int, List[int]] = {}
        for L in lg.layers:
            src = getattr(L, "source", None)
            if src is not None:
                self.consumers.setdefault(src, []).append(L.index)

    # ---- columns and rows ----
    @property
    def n_cols(self) -> int:
        return len(self.col_lb)

    def add_cols(self, lb, ub, kind: str, layer: int, neurons, integer: bool = False) -> np.ndarray:
        lb = np.asarray(lb, np.float64).reshape(-1)
        ub = np.asarray(ub, np.float64).reshape(-1)
        start = self.n_cols
        self.col_lb.extend(lb.tolist())
        self.col_ub.extend(ub.tolist())
        self.col_int.extend([integer] * lb.size)
        self.col_label.extend((kind, layer, int(i)) for i in np.asarray(neurons).reshape(-1))
        return np.arange(start, start + lb.size, dtype=np.int64)

    def add_rows(self, rows, cols, vals, lower, upper) -> None:
        lower = np.asarray(lower, np.float64).reshape(-1)
        upper = np.asarray(upper, np.float64).reshape(-1)
        rows = np.asarray(rows, np.int64) + self.n_rows
        vals = np.asarray(vals, np.float64)
        keep = vals != 0
        self.blocks.append(RowBlock(rows[keep], np.asarray(cols, np.int64)[keep], vals[keep], lower, upper))
        self.n_rows += lower.size

    def matrix(self, first_block: int = 0):
        """(CSR, row lower, row upper) of the rows in blocks[first_block:], over all current columns."""
        import scipy.sparse as sp

        blocks = self.blocks[first_block:]
        if not blocks:
            return sp.csr_matrix((0, self.n_cols)), np.zeros(0), np.zeros(0)
        offset = sum(b.lower.size for b in self.blocks[:first_block])
        r = np.concatenate([b.rows for b in blocks]) - offset
        c = np.concatenate([b.cols for b in blocks])
        v = np.concatenate([b.vals for b in blocks])
        lo = np.concatenate([b.lower for b in blocks])
        hi = np.concatenate([b.upper for b in blocks])
        return sp.csr_matrix((v, (r, c)), shape=(lo.size, self.n_cols)), lo, hi

    # ---- layers ----
    def add_input(self, region) -> None:
        L = self.lg.layers[0]
        self.col_of[0] = self.add_cols(region.lower, region.upper, "x", 0, np.arange(L.size))
        if region.G is not None and region.G.shape[0]:
            G = np.asarray(region.G, np.float64)
            r, c = np.nonzero(G)
            self.add_rows(r, self.col_of[0][c], G[r, c], np.full(G.shape[0], -np.inf), region.h)

    def affine_expr(self, k: int, rows: Optional[np.ndarray] = None):
        """(CSR over columns, constant) of affine layer k's rows (all, or `rows`)."""
        import scipy.sparse as sp

        L = self.lg.layers[k]
        sel = np.arange(L.size) if rows is None else np.asarray(rows, np.int64)
        acc = None
        for s, m in L.terms:
            cols = self.col_of[s]
            live = np.flatnonzero(cols >= 0)
            if live.size == 0:
                continue
            sub = m[sel][:, live] if sp.issparse(m) else m[np.ix_(sel, live)]
            sub = sp.csr_matrix(sub)
            sub = sp.csr_matrix((sub.data, cols[live][sub.indices], sub.indptr), shape=(sel.size, self.n_cols))
            acc = sub if acc is None else acc + sub
        if acc is None:
            acc = sp.csr_matrix((sel.size, self.n_cols))
        return acc.tocsr(), L.bias[sel].copy()

    def _equalities(self, k: int, rows: np.ndarray, target_cols: np.ndarray) -> None:
        """target - W w = b for the given rows of affine layer k."""
        if rows.size == 0:
            return
        E, b = self.affine_expr(k, rows)
        E = E.tocoo()
        r = np.concatenate([np.arange(rows.size), E.row])
        c = np.concatenate([target_cols, E.col])
        v = np.concatenate([np.ones(rows.size), -E.data])
        self.add_rows(r, c, v, b, b)

    def add_affine(self, k: int, bounds: Tuple[np.ndarray, np.ndarray]) -> None:
        """Encode affine layer k (called when all its sources are encoded) with its final bounds."""
        L = self.lg.layers[k]
        lo, hi = bounds
        users = [self.lg.layers[u] for u in self.consumers.get(k, [])]
        only_relu = len(users) == 1 and users[0].kind == "relu" and k != self.lg.output
        if k == self.lg.output or not only_relu:
            kind = "y" if k == self.lg.output else "v"
            cols = self.add_cols(lo, hi, kind, k, np.arange(L.size))
            self._equalities(k, np.arange(L.size), cols)
            self.pre_col[k] = cols
            if k == self.lg.output:
                self.col_of[k] = cols
            return
        # the pre-activation gets a column only where the ReLU is unstable (done in add_relu)
        self.pre_col[k] = np.full(L.size, -1, dtype=np.int64)

    def add_relu(self, r: int, bounds: Tuple[np.ndarray, np.ndarray]) -> None:
        """Encode ReLU layer r given its source's bounds (l, u)."""
        R = self.lg.layers[r]
        k = R.source
        lo, hi = bounds
        col = np.full(R.size, -1, dtype=np.int64)
        active = lo >= 0
        inactive = (~active) & (hi <= 0)
        unstable = ~(active | inactive)
        pre = self.pre_col[k]
        self.stats["relu_active"] += int(active.sum())
        self.stats["relu_inactive"] += int(inactive.sum())
        self.stats["relu_unstable"] += int(unstable.sum())
        idx = np.flatnonzero(active)
        if idx.size:
            if np.all(pre[idx] >= 0):
                col[idx] = pre[idx]  # the pre-activation column is the output
            else:
                col[idx] = self.add_cols(lo[idx], hi[idx], "z", r, idx)
                self._equalities(k, idx, col[idx])
        idx = np.flatnonzero(unstable)
        if idx.size:
            l, u = lo[idx], hi[idx]
            v = pre[idx].copy()
            need = v < 0
            if need.any():
                v[need] = self.add_cols(l[need], u[need], "v", k, idx[need])
                self._equalities(k, idx[need], v[need])
                pre[idx[need]] = v[need]
            z = self.add_cols(np.zeros(idx.size), u, "z", r, idx)
            col[idx] = z
            n = idx.size
            s = u / (u - l)
            ar = np.arange(n)
            # z - v >= 0
            self.add_rows(np.concatenate([ar, ar]), np.concatenate([z, v]), np.concatenate([np.ones(n), -np.ones(n)]),
                          np.zeros(n), np.full(n, np.inf))
            # triangle: z - s v <= -s l
            self.add_rows(np.concatenate([ar, ar]), np.concatenate([z, v]), np.concatenate([np.ones(n), -s]),
                          np.full(n, -np.inf), -s * l)
            self.unstable.append(UnstableRelu(r, idx, v, z, l.copy(), u.copy()))
        self.col_of[r] = col

    def add_max(self, m: int, bounds: Tuple[np.ndarray, np.ndarray]) -> None:
        M = self.lg.layers[m]
        k = M.source
        lo, hi = bounds
        pre = self.pre_col[k]
        g = M.groups
        ylo = np.array([lo[row[row >= 0]].max() for row in g])
        yhi = np.array([hi[row[row >= 0]].max() for row in g])
        y = self.add_cols(ylo, yhi, "m", m, np.arange(M.size))
        self.col_of[m] = y
        for j, row in enumerate(g):
            cand = row[row >= 0]
            cand = cand[hi[cand] >= ylo[j]]
            # y >= v_i for every candidate
            n = cand.size
            ar = np.arange(n)
            self.add_rows(np.concatenate([ar, ar]), np.concatenate([np.full(n, y[j]), pre[cand]]),
                          np.concatenate([np.ones(n), -np.ones(n)]), np.zeros(n), np.full(n, np.inf))
            if n == 1:
                self.add_rows([0, 0], [y[j], pre[cand[0]]], [1.0, -1.0], [-np.inf], [0.0])
            else:
                self.max_groups.append(MaxGroup(m, int(y[j]), pre[cand].copy(), lo[cand].copy(), float(hi[cand].max())))

    def add_layer(self, idx: int, bounds) -> None:
        """Encode layer idx; `bounds[i]` are the final bounds of layer i (for a nonlinear layer, of its source)."""
        L = self.lg.layers[idx]
        if L.kind == "affine":
            self.add_affine(idx, bounds[idx])
        elif L.kind == "relu":
            self.add_relu(idx, bounds[L.source])
        elif L.kind == "max":
            self.add_max(idx, bounds[L.source])

    @property
    def n_binaries(self) -> int:
        return int(sum(self.col_int))

    def output_cols(self) -> np.ndarray:
        return self.col_of[self.lg.output]

    def input_cols(self) -> np.ndarray:
        return self.col_of[0]

