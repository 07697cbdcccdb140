"""CROWN over the layer graph: the one implementation, numpy or torch, batched over boxes.

The layer graph (`network.layers`) is a DAG of affine layers (sums of matrices applied to earlier
*variable* layers: the input, ReLUs, max nodes) and nonlinear layers reading one affine layer.
For a batch of input boxes (B, n_in):

* **intermediate bounds**, layer by layer in topological order: interval bounds of each affine
  layer from the bounds of the variable layers it reads, intersected with a parent box's bounds
  when given (a child box lies inside its parent, so the parent's bounds stay valid); then, for
  the rows those leave open, back-substitution (Zhang et al. 2018) to the input box: for a layer
  read only by ReLUs, only the rows still unstable (a stable ReLU is relaxed exactly whatever
  its bounds: on a child box most rows need nothing), gathered per box and padded to the batch
  maximum; for a layer read by a max node (or the output), every row. A layer that reads only
  the input needs no back-substitution (interval bounds of an affine map of a box are exact).
* **the final pass**: lower bounds of C y per box (C: (B, R, n_out)), and on request the linear
  coefficients in x of each row's bound (A) and the split scores of the input-split search
  (how much of each row's looseness comes from each input dim: the triangle gap of every
  unstable ReLU weighted by the row's coefficient on it, shared out over the input dims by that
  neuron's own linear bounds).
* **alpha** (torch): the final pass's lower ReLU slopes optimised per box, row and neuron
  (Adam, projected to [0, 1]; any slope in [0, 1] is valid, so the best bound seen is kept).

The relaxations are the ops' own (`network.ops.relu.relu_relaxation`,
`network.ops.pool.max_relaxation`; for act layers `smooth.relax`'s lines and for product layers
McCormick's planes `smooth.bilinear_crown`, each side chosen by the sign of the back-substituted
coefficient, as for the ReLU: a layer read by one is back-substituted on every row, and the
forward pass applies them by the sign of each line's slope; on graphs with few inputs the final
pass also relaxes products through their factors' linear bounds in x, a quadratic form bounded by
`smooth.quadratic_form_lower`, and keeps the better bound per row: `_quadratic_product`); every bound is widened by the one margin rule
(`bounds.margin`). The numpy backend keeps the graph's matrices as they are (dense or sparse:
the quick pass and one region at a time, no torch import); the torch backend holds a float64
copy (batched boxes and the optimised passes): dense, or CSR for a term filled below
`BoundsOptions.sparse_fill` (convolutions and pools: products cost their nonzeros).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..network.layers import SMOOTH_KINDS
from ..network.layers import sources as layer_sources
from ..network.ops.pool import max_relaxation
from ..network.ops.relu import relu_relaxation
from ..network.ops.smooth import (PERIODIC_LIMIT, TWO_PI, bilinear_crown, bilinear_relaxation, intercept_point, product_bounds,
                                  quadratic_form_lower, value_bounds)
from .margin import slack


# the nonlinear kinds whose readers' neurons get split-score shares
_SCORED = ("relu", "act", "product")


class Expired(Exception):
    """The deadline passed while bounding (raised between layers and between row chunks, so a
    long pass on a large network stops close to its deadline)."""


# ---- array backends ----------------------------------------------------------------------------
class _NumpyOps:
    name = "numpy"

    def __init__(self):
        import numpy

        self.xp = numpy

    def matrix(self, W):
        import scipy.sparse as sp

        return (W.tocsr(), abs(W).tocsr()) if sp.issparse(W) else (np.asarray(W, np.float64), np.abs(W))

    def vector(self, v):
        return np.asarray(v, np.float64)

    def asarray(self, x):
        return np.asarray(x, np.float64)

    def mm(self, L, W):
        """L (B, R, n) @ W (n, m) -> (B, R, m); W dense or CSR."""
        import scipy.sparse as sp

        if sp.issparse(W):
            B, R, n = L.shape
            return np.asarray((W.T @ L.reshape(B * R, n).T).T).reshape(B, R, W.shape[1])
        return L @ W

    def rowmm(self, X, W):
        """X (B, n) @ W.T -> (B, m)."""
        import scipy.sparse as sp

        if sp.issparse(W):
            return np.asarray((W @ X.T).T)
        return X @ W.T

    def gather_rows(self, W, order):
        """W[order] for order (B, U) -> (B, U, n) dense."""
        import scipy.sparse as sp

        if sp.issparse(W):
            B, U = order.shape
            return W[order.reshape(-1)].toarray().reshape(B, U, W.shape[1])
        return W[order]

    def bdot(self, L, x):
        return np.einsum("brn,bn->br", L, x)

    def pos(self, x):
        return np.maximum(x, 0.0)

    def zeros(self, shape):
        return np.zeros(shape)

    def full(self, shape, v):
        return np.full(shape, v)

    def cat(self, parts, axis):
        return np.concatenate(parts, axis=axis)

    def arange(self, n):
        return np.arange(n)

    def order_first(self, need, U):
        """Per row of need (B, n) bool, the indices of its True entries first (stable), U of them."""
        return np.argsort(~need, axis=1, kind="stable")[:, :U]

    def scatter_cols(self, M, idx, n):
        """out (B, R, n) with out[b, r, idx[b, j]] += M[b, r, j]."""
        import scipy.sparse as sp

        B, R, m = M.shape
        out = np.zeros((B, R, n))
        for b in range(B):
            P = sp.csr_matrix((np.ones(m), (np.arange(m), idx[b])), shape=(m, n))
            out[b] = np.asarray((P.T @ M[b].T).T)
        return out

    def take_groups(self, x, gi):
        """x (B, n), gi (m, k) -> (B, m, k)."""
        return x[:, gi]

    def take_index(self, gi, index):
        """gi (m, k) int, index (B, m) -> gi[j, index[b, j]] (B, m)."""
        return np.take_along_axis(np.broadcast_to(gi, index.shape + gi.shape[1:]), index[..., None], axis=-1)[..., 0]

    def amax(self, x, axis):
        return x.max(axis=axis)

    def count(self, mask):
        return np.asarray(mask.sum(axis=1), np.int64)

    def numpy(self, x):
        return x

    def dense(self, W):
        import scipy.sparse as sp

        return W.toarray() if sp.issparse(W) else W

    def columns(self, W, cols):
        """W[:, cols] dense (cols None: all)."""
        import scipy.sparse as sp

        M = W if cols is None else W[:, np.asarray(cols)]
        return M.toarray() if sp.issparse(M) else M

    def apply(self, W, X):
        """W (n, m) @ X (B, m, c) -> (B, n, c): each box's linear functions through a term."""
        B, m, c = X.shape
        Y = W @ np.transpose(X, (1, 0, 2)).reshape(m, B * c)
        return np.transpose(np.asarray(Y).reshape(-1, B, c), (1, 0, 2))

    def take_rows3(self, X, idx):
        """X (B, n, c), idx (B, m) -> X[b, idx[b]] (B, m, c)."""
        return np.take_along_axis(X, idx[..., None], axis=1)

    def normalise_rows(self, x):
        """x / x.sum(-1) (rows summing to 0 stay 0)."""
        return x / np.maximum(x.sum(-1, keepdims=True), 1e-300)


class _TorchCsr:
    """A sparse term of the torch backend: W and W^T as torch CSR tensors (products `W @ X` in
    torch's sparse-dense kernel, with gradients into X through `sparse.sparse_mm`) and the scipy
    CSR for row gathers.

    `left_sparse(X)`: W @ X for an X with many zero rows (the forward pass's functions of a
    ReLU layer: its inactive neurons' rows are 0), by W's columns at X's nonzero rows only: a
    product costs its nonzeros, and on cgan's generators 40-70 % of each layer's neurons are
    inactive on the whole input box and stay so on every sub-box. The column selection is kept
    (one per term) and reused while a product's nonzero rows lie inside it and fill at least
    `reuse_fill` of it; otherwise it is made again (scipy's column slice)."""

    reuse_fill = 0.85  # a kept column selection serves while a product's nonzero rows fill this share of it
    sparse_share = 0.85  # ... and the columns are selected only when at most this share of the rows is nonzero

    def __init__(self, W):
        from .sparse import torch_csr

        self.sp = W.tocsr().astype(np.float64)
        self.sp.sort_indices()
        self.shape = self.sp.shape
        self.t = torch_csr(self.sp)
        self.tT = torch_csr(self.sp.T.tocsr())
        self._cols = {}  # transposed? -> (column mask, its indices (torch), W[:, mask] (W^T[:, mask]) as a torch CSR)

    def left(self, X):
        """W @ X."""
        from .sparse import sparse_mm

        return sparse_mm(self.t, self.tT, X)

    def left_sparse(self, X, transposed: bool = False):
        """W @ X (W^T @ X when `transposed`: the back-substitution's product, whose X is zero at
        the rows of neurons an inactive ReLU reads), no gradient, skipping X's zero rows (see the
        class docstring)."""
        import torch

        nz = (X != 0).any(dim=1)
        count = int(nz.sum())
        if count > self.sparse_share * X.shape[0]:
            return (self.tT if transposed else self.t) @ X
        nz_np = nz.numpy()
        kept = self._cols.get(transposed)
        if kept is not None:
            mask, idx, sub = kept
            if not (nz_np & ~mask).any() and count >= self.reuse_fill * idx.shape[0]:
                return sub @ X.index_select(0, idx)
        from .sparse import torch_csr

        cols = np.flatnonzero(nz_np)
        idx = torch.as_tensor(cols, dtype=torch.long)
        sub = torch_csr(self.sp[cols].T if transposed else self.sp[:, cols])
        self._cols[transposed] = (nz_np, idx, sub)
        return sub @ X.index_select(0, idx)

    def left_t(self, X):
        """W^T @ X."""
        from .sparse import sparse_mm

        return sparse_mm(self.tT, self.t, X)


class _TorchOps(_NumpyOps):
    name = "torch"

    def __init__(self, sparse_fill: float = 0.15):
        import torch

        self.xp = torch
        self.torch = torch
        self.sparse_fill = sparse_fill

    def matrix(self, W):
        """(W, |W|): dense float64 tensors, or `_TorchCsr` for a CSR term filled below sparse_fill
        (convolutions, pools: the products cost their nonzeros, not their size)."""
        import scipy.sparse as sp

        from ..network.layers import as_dense

        if sp.issparse(W) and W.nnz < self.sparse_fill * W.shape[0] * W.shape[1]:
            return _TorchCsr(W), _TorchCsr(abs(W))
        t = self.torch.as_tensor(as_dense(W))
        return t, t.abs()

    def vector(self, v):
        return self.torch.as_tensor(np.asarray(v, np.float64))

    def asarray(self, x):
        return self.torch.as_tensor(np.asarray(x, np.float64)) if not isinstance(x, self.torch.Tensor) else x.double()

    # a dense product L @ W whose L is zero on most of its columns (the coefficients at inactive
    # or fixed neurons) takes only W's rows at L's nonzero columns, when they are at most this share
    column_share = 0.5

    def mm(self, L, W):
        if isinstance(W, _TorchCsr):
            B, R, n = L.shape
            X = L.reshape(B * R, n).T
            Y = W.left_t(X) if X.requires_grad else W.left_sparse(X, transposed=True)
            return Y.T.reshape(B, R, W.shape[1])
        n = L.shape[-1]
        if n >= 64 and L.numel() >= 8 * n and not L.requires_grad:  # (alpha's steps: the plain product and its gradient)
            nz = (L != 0).reshape(-1, n).any(0)
            count = int(nz.sum())
            if count <= self.column_share * n:
                idx = nz.nonzero().squeeze(1)
                return L.index_select(-1, idx) @ W.index_select(0, idx)
        return L @ W

    def rowmm(self, X, W):
        if isinstance(W, _TorchCsr):
            return W.left(X.T).T
        return X @ W.T

    def gather_rows(self, W, order):
        if isinstance(W, _TorchCsr):
            B, U = order.shape
            return self.torch.as_tensor(W.sp[order.reshape(-1).numpy()].toarray()).reshape(B, U, W.shape[1])
        return W[order]

    def apply(self, W, X):
        B, m, c = X.shape
        Xt = X.permute(1, 0, 2).reshape(m, B * c)
        if isinstance(W, _TorchCsr):
            Y = W.left(Xt) if Xt.requires_grad else W.left_sparse(Xt)
        else:
            Y = W @ Xt
        return Y.reshape(-1, B, c).permute(1, 0, 2)

    def take_rows3(self, X, idx):
        return self.torch.gather(X, 1, idx[..., None].expand(-1, -1, X.shape[2]))

    def columns(self, W, cols):
        """W[:, cols] dense (cols None: all)."""
        if isinstance(W, _TorchCsr):
            M = W.sp if cols is None else W.sp[:, np.asarray(cols)]
            return self.torch.as_tensor(M.toarray())
        return W if cols is None else W[:, cols]

    def bdot(self, L, x):
        return self.torch.einsum("brn,bn->br", L, x)

    def pos(self, x):
        return x.clamp(min=0)

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.torch.float64)

    def full(self, shape, v):
        return self.torch.full(shape, v, dtype=self.torch.float64)

    def cat(self, parts, axis):
        return self.torch.cat(parts, dim=axis)

    def arange(self, n):
        return self.torch.arange(n)

    def order_first(self, need, U):
        return self.torch.sort((~need).to(self.torch.int8), dim=1, stable=True).indices[:, :U]

    def scatter_cols(self, M, idx, n):
        B, R, m = M.shape
        out = self.torch.zeros((B, R, n), dtype=M.dtype)
        return out.scatter_add_(2, idx[:, None, :].expand(B, R, m), M)

    def take_groups(self, x, gi):
        return x[:, gi]

    def take_index(self, gi, index):
        return self.torch.gather(gi.expand(index.shape[0], *gi.shape), 2, index[..., None])[..., 0]

    def amax(self, x, axis):
        return x.max(dim=axis).values

    def count(self, mask):
        return mask.sum(dim=1)

    def numpy(self, x):
        return x.detach().numpy()

    def dense(self, W):
        return W

    def normalise_rows(self, x):
        return x / x.sum(-1, keepdim=True).clamp(min=1e-300)


def _row_nnz(W) -> np.ndarray:
    """Nonzeros per row of a dense or CSR matrix."""
    import scipy.sparse as sp

    if sp.issparse(W):
        return np.diff(W.tocsr().indptr)
    return np.count_nonzero(np.asarray(W), axis=1)


# ---- results ---------------------------------------------------------------------------------
class BoxState:
    """Per box, the bounds of every affine layer the nonlinear layers read: k -> (lo, hi) (B, n_k).
    A child box may start from its parent's (`parent=`), or a box be bounded again from its own
    (`intermediate=`). Kept packed (`pack`: all layers side by side in one (B, total) array per
    side, `bounds` views into them), a search's takes, concatenations and copies of many boxes
    are two array operations, not two per layer."""

    def __init__(self, bounds: Optional[Dict[int, Tuple[object, object]]] = None, packed: Optional[tuple] = None):
        self._bounds = bounds
        self._packed = packed  # (lo (B, total), hi (B, total), ((k, start, stop), ...))

    @staticmethod
    def pack(bounds: Dict[int, Tuple[object, object]]) -> "BoxState":
        if not bounds:
            return BoxState({})
        los = [lo for lo, _ in bounds.values()]
        torch_ = type(los[0]).__module__.startswith("torch")
        if torch_:
            import torch

            cat = lambda xs: torch.cat(xs, dim=1)
        else:
            cat = lambda xs: np.concatenate(xs, axis=1)
        layout, at = [], 0
        for k, (lo, _) in bounds.items():
            layout.append((k, at, at + int(lo.shape[1])))
            at += int(lo.shape[1])
        return BoxState(packed=(cat(los), cat([hi for _, hi in bounds.values()]), tuple(layout)))

    @property
    def bounds(self) -> Dict[int, Tuple[object, object]]:
        if self._bounds is None:
            lo, hi, layout = self._packed
            self._bounds = {k: (lo[:, a:b], hi[:, a:b]) for k, a, b in layout}
        return self._bounds

    def _boxes(self) -> int:
        if self._packed is not None:
            return int(self._packed[0].shape[0])
        return int(next(iter(self._bounds.values()))[0].shape[0]) if self._bounds else 0

    def take(self, idx) -> "BoxState":
        if self._packed is None and not self._bounds:
            return self
        n = self._boxes()
        idx_np = np.asarray(idx)
        if idx_np.dtype != bool and idx_np.shape == (n,) and np.array_equal(idx_np, np.arange(n)):
            return self  # every box in order (the arrays are never written in place)
        first = self._packed[0] if self._packed is not None else next(iter(self._bounds.values()))[0]
        if type(first).__module__.startswith("torch"):
            import torch

            idx = torch.as_tensor(idx_np, dtype=torch.long)
        if self._packed is not None:
            lo, hi, layout = self._packed
            return BoxState(packed=(lo[idx], hi[idx], layout))
        return BoxState({k: (lo[idx], hi[idx]) for k, (lo, hi) in self._bounds.items()})

    def rows(self, start: int, stop: int) -> "BoxState":
        """Boxes start..stop-1 (views, no copy)."""
        if self._packed is not None:
            lo, hi, layout = self._packed
            return BoxState(packed=(lo[start:stop], hi[start:stop], layout))
        return BoxState({k: (lo[start:stop], hi[start:stop]) for k, (lo, hi) in self.bounds.items()})

    @staticmethod
    def cat(parts: List["BoxState"]) -> "BoxState":
        if len(parts) == 1:
            return parts[0]
        if all(p._packed is not None for p in parts) and len({p._packed[2] for p in parts}) == 1:
            first = parts[0]._packed[0]
            if type(first).__module__.startswith("torch"):
                import torch

                cat = torch.cat
            else:
                cat = np.concatenate
            return BoxState(packed=(cat([p._packed[0] for p in parts]), cat([p._packed[1] for p in parts]),
                                    parts[0]._packed[2]))
        if not parts[0].bounds:
            return parts[0]
        lo0 = next(iter(parts[0].bounds.values()))[0]
        if type(lo0).__module__.startswith("torch"):
            import torch

            cat = torch.cat
        else:
            cat = np.concatenate
        return BoxState({k: (cat([p.bounds[k][0] for p in parts]), cat([p.bounds[k][1] for p in parts]))
                         for k in parts[0].bounds})

    def repeat2(self) -> "BoxState":
        """Each box twice in a row of two halves (the two children of a split: [all, all])."""
        return BoxState.cat([self, self])

    @property
    def bytes_per_box(self) -> int:
        if self._packed is not None:
            return 2 * 8 * int(self._packed[0].shape[1])
        return 2 * 8 * sum(int(lo.shape[1]) for lo, _ in self.bounds.values())


@dataclass
class Pass:
    """What one pass over the graph found for a batch of boxes."""

    affine: Dict[int, Tuple[object, object]]  # affine layer -> (lo, hi) (B, n)
    var: Dict[int, Tuple[object, object]]  # variable layer (input, relu, max) -> (lo, hi) (B, n)
    shares: Dict[int, object] = field(default_factory=dict)  # affine layer -> (B, n_k, n_in) (scores)
    stopped: bool = False  # the hook asked to stop (e.g. the LP proved the region empty)
    # the forward pass (when on): layer -> (lower, upper) linear functions (B, n, m + 1) of each
    # box's free inputs `free` ((B, m): the input entry of each column; the last column the constant)
    fwd: Optional[Dict[int, Tuple[object, object]]] = None
    free: Optional[np.ndarray] = None
    # act layer -> its relaxation's lines (lower slope, lower intercept, upper slope, upper
    # intercept), product layer -> its planes ((a, b, c) below, (a, b, c) above), each (B, n);
    # and per such layer the relaxation's gap (B, n) (at the midpoint; the scores' weights)
    lines: Dict[int, tuple] = field(default_factory=dict)
    gaps: Dict[int, object] = field(default_factory=dict)
    # a product's factor layer -> its linear bounds in x over each box (lower coefficients (B, n,
    # n_in), lower constants (B, n), upper coefficients, upper constants): the linearised product
    # relaxation's (`Crown.quadratic`)
    lin: Dict[int, tuple] = field(default_factory=dict)
    # per layer, (B, n) bool: the neurons that depend on an input entry wider than
    # `forward_narrow` (None: every input entry is wide somewhere; see `Crown._dependence`)
    dep: Optional[Dict[int, object]] = None
    # layer -> (mask (B, n) of its fixed neurons: dependent on no wide input and narrower than
    # `fixed_row_width`, their lower and upper bounds (0 off the mask), every neuron fixed?):
    # a back-substitution concretises its coefficients on them at once (`Crown.backward`)
    fixed: Optional["_Fixed"] = None
    forward_only: bool = False  # the forward pass's bounds stand (no intermediate back-substitution)

    def state(self, readers: Dict[int, List[str]]) -> BoxState:
        return BoxState.pack({k: v for k, v in self.affine.items() if k in readers})


class _Fixed:
    """`Pass.fixed`, made per layer when first asked (a back-substitution reaches few of a fixed
    branch's layers: it concretises where it enters the branch)."""

    def __init__(self, crown, res):
        self.crown, self.res, self.cache = crown, res, {}

    def get(self, k: int):
        if k not in self.cache:
            self.cache[k] = self.crown._fixed_entry(k, self.res)
        return self.cache[k]

    def values(self):
        """Every layer's entry that is not None (all of them made)."""
        res = self.res
        keys = list(res.dep) if res.dep is not None else []
        return [e for e in (self.get(k) for k in keys if k != 0) if e is not None]

    def __bool__(self) -> bool:
        return bool(self.values())


class _ConstFn:
    """A layer's forward functions when it depends on no wide input: the constants lo (below) and
    hi (above), (B, n) each (`Crown._fn` makes them full functions where needed)."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi


# ---- CROWN -----------------------------------------------------------------------------------
class Crown:
    """CROWN over one layer graph with one array backend (see the module docstring)."""

    def __init__(self, lg, backend: str = "numpy", chunk_values: int = 1 << 25, sparse_fill: float = 0.15,
                 forward_max_inputs: int = 16, backward_budget: float = 2e8, quadratic_max_inputs: int = 16,
                 forward_narrow: float = 1e-9, quadratic_max_products: int = 1024, fixed_row_width: float = 1e-6,
                 backward_forward_ratio: float = 2.0, sparse_rows: float = 0.0, sparse_row_macs: float = math.inf,
                 sparse_budget: float = math.inf):
        self.lg = lg
        self.ops = _TorchOps(sparse_fill) if backend == "torch" else _NumpyOps()
        self.backend = self.ops.name
        self.chunk_values = int(chunk_values)
        ops = self.ops
        self.W: Dict[int, List[Tuple[int, object, object]]] = {}
        self.b: Dict[int, object] = {}
        for L in lg.layers:
            if L.kind == "affine":
                self.W[L.index] = [(s, *ops.matrix(W)) for s, W in L.terms]
                self.b[L.index] = ops.vector(L.bias)
        # affine layer -> kinds of the layers that read it
        self.readers: Dict[int, List[str]] = {}
        for L in lg.layers:
            if L.kind not in ("input", "affine"):
                for src in layer_sources(L):
                    self.readers.setdefault(src, []).append(L.kind)
        # the layers that are not piecewise linear: act (a smooth function, relaxed by its lines)
        # and product (two variables multiplied, relaxed by McCormick's planes); a product's
        # factors are gathered from their layers by 0/1 matrices (size, source size)
        self.smooth = [L for L in lg.layers if L.kind in SMOOTH_KINDS]
        self.products: Dict[int, tuple] = {}
        for L in self.smooth:
            if L.kind == "product":
                import scipy.sparse as sp

                pick = [sp.csr_matrix((np.ones(L.size), (np.arange(L.size), idx)), shape=(L.size, lg.layers[src].size))
                        for idx, src in ((L.ia, L.source), (L.ib, L.source_b))]
                ia, ib = (np.array(L.ia, np.int64), np.array(L.ib, np.int64))
                if self.backend == "torch":
                    import torch

                    ia, ib = torch.as_tensor(ia), torch.as_tensor(ib)
                self.products[L.index] = (ops.matrix(pick[0])[0], ops.matrix(pick[1])[0], ia, ib)
        self.input_only = {k: all(s == 0 for s, _, _ in terms) for k, terms in self.W.items()}
        # the linearised product relaxation (`_quadratic_product`): torch, few inputs, product layers;
        # the factor layers' linear bounds in x are kept during a pass
        # on product layers of at most `quadratic_max_products` products (its gathers cost boxes x rows x
        # products x inputs)
        self.linearised = {L.index for L in self.smooth if L.kind == "product" and L.size <= quadratic_max_products} \
            if self.backend == "torch" and lg.n_inputs <= quadratic_max_inputs else set()
        self.quadratic = bool(self.linearised)
        self.factors = sorted({s_ for L in self.smooth if L.index in self.linearised for s_ in (L.source, L.source_b)})
        # rows with at most one nonzero over all their terms (a selection, e.g. MaxPool's padded
        # input): the interval bound of one variable entry is as tight as back-substitution
        # through its relaxation, so such rows are never back-substituted
        self.single: Dict[int, object] = {}
        for L in lg.layers:
            if L.kind == "affine":
                nnz = sum(_row_nnz(W) for _, W in L.terms)
                if np.any(nnz <= 1):
                    self.single[L.index] = ops.torch.as_tensor(nnz <= 1) if self.backend == "torch" else nnz <= 1
        # ... but such a row's bound is only as tight as its source's: a ReLU's input layer bounds
        # only its unstable rows (a stable ReLU is exact whatever its bounds), so where single rows
        # of a ReLU's output are read by an act or product layer (nn4sys pensieve: relu -> copy ->
        # Pow), every row of that ReLU's input layer is back-substituted (root box of
        # pensieve_parallel_35: -37.9 -> -11.3)
        self.all_rows = set()
        for k in self.single:
            if any(r in ("act", "product") for r in self.readers.get(k, [])):
                for s, _ in lg.layers[k].terms:
                    if lg.layers[s].kind == "relu":
                        self.all_rows.add(lg.layers[s].source)
        self.groups = {}
        for L in lg.layers:
            if L.kind == "max":
                g = np.asarray(L.groups, np.int64)
                valid = g >= 0
                gi = np.where(valid, g, 0)
                if self.backend == "torch":
                    import torch

                    self.groups[L.index] = (torch.as_tensor(gi), torch.as_tensor(valid))
                else:
                    self.groups[L.index] = (gi, valid)
        self.relus = [L for L in lg.layers if L.kind == "relu"]
        self.widest = max(L.size for L in lg.layers)
        # the forward pass: for few free inputs and a graph whose back-substitution of every row
        # would cost more than `backward_budget` (rows x the entries of the terms before them, per
        # box), each layer's linear bounds in the inputs are also carried forward (cost: inputs x
        # entries), and a layer whose unstable rows would cost more than the budget to
        # back-substitute keeps the forward bounds
        self.forward_max_inputs = int(forward_max_inputs)
        self.forward_narrow = float(forward_narrow)
        self.fixed_row_width = float(fixed_row_width)
        self.backward_budget = float(backward_budget)
        self.backward_forward_ratio = float(backward_forward_ratio)
        self.prefix: Dict[int, int] = {}
        size = worst = 0
        for L in lg.layers:
            if L.kind == "affine":
                size += sum(self._stored(W) for _, W in L.terms)
                self.prefix[L.index] = size
                if L.index in self.readers and not all(s_ == 0 for s_, _ in L.terms):
                    worst = max(worst, L.size * size)
        self.entries = size  # the entries of all terms (a forward pass costs 2 x its columns x these)
        self.forward_worthwhile = worst > self.backward_budget
        if self.forward_worthwhile:  # (the linearised products back-substitute their factors: not on such graphs)
            self.quadratic, self.factors, self.linearised = False, [], set()
        # partial back-substitution (forward pass on): the cost per row of taking one more step
        # back from layer j (an affine layer: its terms' entries; a ReLU or max node: its
        # source's), and the layers whose forward functions a back-substitution may stop at (the
        # ReLUs and the input: the forward pass keeps theirs)
        self.step_cost: Dict[int, int] = {}
        for L in lg.layers:
            if L.kind == "affine":
                self.step_cost[L.index] = sum(self._stored(W) for _, W in L.terms)
        for L in lg.layers:
            if L.kind != "affine" and L.kind != "input":
                self.step_cost[L.index] = self.step_cost.get(L.source, 0)
        self.stoppable = {L.index for L in lg.layers if L.kind in ("input", "relu")}
        self._last_use: Dict[int, int] = {}
        for L in lg.layers:
            for s_ in layer_sources(L):
                self._last_use[s_] = max(self._last_use.get(s_, 0), L.index)
        # sparse-row back-substitution (`_backward_rows_sparse`): CSR coefficients while they fill
        # less than this share of their layer
        self.sparse_rows = float(sparse_rows)
        self.sparse_chunk = 128  # rows per sparse back-substitution (the budget is checked between them)
        self.sparse_row_macs = float(sparse_row_macs)
        self.sparse_budget = float(sparse_budget)
        self._sparse_fit: Dict[int, bool] = {}
        self._csr_copies: Dict[int, object] = {}
        self._row_counts: Dict[int, np.ndarray] = {}
        self._share_dims = None
        self._deadline = math.inf
        self.stats: Dict[str, float] = {"crown_s": 0.0}

    def _stored(self, W) -> int:
        """The entries a product with term W costs as this backend keeps it: its nonzeros when
        sparse (numpy: as the graph has it; torch: CSR below `sparse_fill`), else all its entries."""
        full = int(np.prod(W.shape))
        if not hasattr(W, "nnz"):
            return full
        if self.backend == "torch" and W.nnz >= self.ops.sparse_fill * full:
            return full
        return int(W.nnz)

    def reuse(self, lo, hi, state: BoxState) -> Pass:
        """The pass of boxes whose intermediate bounds are known (`state`): the variable layers'
        bounds from them, nothing bounded again."""
        ops = self.ops
        res = Pass(dict(state.bounds), {0: (ops.asarray(lo), ops.asarray(hi))})
        res.dep = self._wide_inputs(*res.var[0])
        for L in self.lg.layers[1:]:
            if res.dep is not None and (L.kind != "affine" or L.index in res.affine):
                self._dependence(L, res)
            if L.kind == "relu":
                l, u = res.affine[L.source]
                res.var[L.index] = (ops.pos(l), ops.pos(u))
            elif L.kind == "max":
                l, u = res.affine[L.source]
                gi, valid = self.groups[L.index]
                ninf = ops.full((), -np.inf)
                res.var[L.index] = (ops.amax(ops.xp.where(valid, ops.take_groups(l, gi), ninf), 2),
                                    ops.amax(ops.xp.where(valid, ops.take_groups(u, gi), ninf), 2))
            elif L.kind in SMOOTH_KINDS:
                self._smooth_bounds(L, res)
            elif L.index in self.factors:
                res.lin[L.index] = self._factor_linear(L.index, res)
        res.fixed = _Fixed(self, res)
        return res

    def _smooth_bounds(self, L, res: Pass) -> None:
        """An act or product layer's value bounds and relaxation from its sources' bounds."""
        ops = self.ops
        k = L.index
        # a layer of no wide input in any box (`Pass.dep`): its constant bounds are its relaxation
        # (slopes 0; a back-substitution concretises it at once anyway, `Pass.fixed`)
        constant = res.dep is not None and k in res.dep and not bool(res.dep[k].any())
        if L.kind == "act":
            l, u = res.affine[L.source]
            fn = L.function
            lo, hi = value_bounds(fn, l, u)
            if constant:
                lo, hi = ops.asarray(lo), ops.asarray(hi)
                zero = ops.zeros(tuple(lo.shape))
                ls, lb, us, ub = lines = (zero, lo, zero, hi)
            else:
                ls, lb, us, ub = lines = L.relax(l, u)
            m = 0.5 * l + 0.5 * u
            gap = (us - ls) * m + (ub - lb)
        else:
            _, _, ia, ib = self.products[k]
            (al, au), (bl, bu) = res.affine[L.source], res.affine[L.source_b]
            al, au, bl, bu = al[:, ia], au[:, ia], bl[:, ib], bu[:, ib]
            lo, hi = product_bounds(al, au, bl, bu)
            if constant:
                lo, hi = ops.asarray(lo), ops.asarray(hi)
                zero = ops.zeros(tuple(lo.shape))
                lines = ((zero, zero, lo), (zero, zero, hi))
                gap = hi - lo
            else:
                lines = bilinear_crown(al, au, bl, bu)
                gap = (au - al) * (bu - bl) / 4.0
        gap = ops.xp.where(gap == gap, gap, ops.full((), np.inf))  # NaN (inf - inf): no bound
        res.var[k] = (ops.asarray(lo), ops.asarray(hi))
        res.lines[k] = lines
        res.gaps[k] = ops.xp.where(gap < 1e300, gap, ops.full((), 1e300))

    # ---- intermediate bounds ---------------------------------------------------------------------
    def intermediate(self, lo, hi, parent: Optional[BoxState] = None, method: str = "crown", output: bool = False,
                     hook: Optional[Callable] = None, want_shares: bool = False, share_dims=None,
                     deadline: float = math.inf, alpha_iters: int = 0, alpha_lr: float = 0.25,
                     reuse_upto: int = 0, alpha_max_elements: float = math.inf, forward_only: bool = False) -> Pass:
        """Bounds of every layer over the boxes [lo, hi] (B, n_in) (see the module docstring).

        method "interval": interval bounds only; "crown": back-substitution where they leave rows
        open. `output`: also CROWN bounds of the output layer (else it is not bounded). `hook(k,
        lo, hi)` is called for each layer in order once its bounds are set (an affine layer's may
        be tightened in place); a true return value stops the pass (`Pass.stopped`). `want_shares`:
        each recomputed neuron's linear range shared out over the input dims `share_dims` (all:
        None), what the split scores of `final` read. `alpha_iters` (torch): the rows of every
        affine layer read by an act or product layer (every row) or by ReLUs (the unstable ones)
        are then tightened by alpha-CROWN (`optimise_rows`) before the layers after it are bounded,
        where its rows x the relaxed neurons before it stay within `alpha_max_elements` per box.
        `reuse_upto`: the affine layers before it take `parent`'s bounds as they are (the caller
        knows the boxes and every bound before that layer are the parent's: a split of an act
        neuron's input in that layer; not with the forward pass or shares).
        `forward_only`: with the forward pass on, its bounds stand for every layer but the output
        (no back-substitution). Past `deadline` it raises `Expired`."""
        ops = self.ops
        lo, hi = ops.asarray(lo), ops.asarray(hi)
        res = Pass({}, {0: (lo, hi)})
        res.forward_only = forward_only
        self._deadline = deadline
        self._share_dims = None
        if share_dims is not None:
            dims = np.asarray(share_dims, np.int64)
            self._share_dims = ops.torch.as_tensor(dims) if self.backend == "torch" else dims
        if hook is not None and hook(0, lo, hi):
            res.stopped = True
            return res
        if method == "crown" and self.forward_worthwhile:
            wide = self._forward_columns(lo, hi)
            m = int(wide.sum(axis=1).max()) if wide.size else 0
            if 0 < m <= self.forward_max_inputs:
                res.free, valid = self._column_index(wide, m)
                res.fwd = {0: self._forward_input(lo, hi, wide, res.free, valid)}
        if method == "crown":
            res.dep = self._wide_inputs(lo, hi)
        res.fixed = _Fixed(self, res)
        for L in self.lg.layers[1:]:
            k = L.index
            if time.monotonic() > self._deadline:  # (between layers: a forward pass has no row chunks)
                raise Expired()
            if res.dep is not None:
                self._dependence(L, res)
            if L.kind == "relu":
                l, u = res.affine[L.source]
                res.var[k] = (ops.pos(l), ops.pos(u))
                if res.fwd is not None:
                    res.fwd[k] = self._constant_functions(k, res) or self._forward_relu(self._fn(res, L.source), l, u)
            elif L.kind == "max":
                l, u = res.affine[L.source]
                gi, valid = self.groups[k]
                ninf = ops.full((), -np.inf)
                res.var[k] = (ops.amax(ops.xp.where(valid, ops.take_groups(l, gi), ninf), 2),
                              ops.amax(ops.xp.where(valid, ops.take_groups(u, gi), ninf), 2))
                if res.fwd is not None:
                    res.fwd[k] = self._constant_functions(k, res) or self._forward_max(k, self._fn(res, L.source), l, u)
            elif L.kind in SMOOTH_KINDS:
                self._smooth_bounds(L, res)
                if res.fwd is not None:
                    res.fwd[k] = self._constant_functions(k, res) or self._forward_smooth(L, res)
            else:
                if k == self.lg.output and not output and k not in self.readers:
                    continue
                if k < reuse_upto and parent is not None and k in parent.bounds and res.fwd is None and not want_shares:
                    pl, pu = parent.bounds[k]  # nothing before it changed: the parent's bounds stand
                    res.affine[k] = (pl.clone(), pu.clone()) if self.backend == "torch" else (pl.copy(), pu.copy())
                elif parent is not None and k in parent.bounds and res.dep is not None and not bool(res.dep[k].any()):
                    # a layer of no wide input in any box: the parent's bounds (valid inside it) are what the
                    # child's own would be, its inputs being fixed alike
                    pl, pu = parent.bounds[k]
                    res.affine[k] = (pl.clone(), pu.clone()) if self.backend == "torch" else (pl.copy(), pu.copy())
                    if res.fwd is not None:
                        res.fwd[k] = _ConstFn(*res.affine[k])
                else:
                    res.affine[k] = self._affine_bounds(k, res, parent, method, want_shares, output)
                if alpha_iters > 0 and method == "crown" and self.backend == "torch" and k in self.readers \
                        and not self.input_only[k] and 2 * self.lg.layers[k].size * self._relaxed_before(k) <= alpha_max_elements:
                    self.optimise_rows(k, res, alpha_iters, alpha_lr)
                if method == "crown" and k in self.factors:
                    res.lin[k] = self._factor_linear(k, res)
            if res.fwd is not None:  # forward functions nobody reads any more
                for v in [v for v in res.fwd if self._last_use.get(v, -1) <= k and v not in self.stoppable]:
                    del res.fwd[v]
            if hook is not None:
                box = res.affine.get(k) or res.var.get(k)
                if hook(k, *box):
                    res.stopped = True
                    return res
        if res.fwd is not None:  # (the ReLUs' forward functions were kept for partial back-substitution)
            res.fwd = {}
        return res

    # ---- which neurons depend on the wide inputs ---------------------------------------------------
    def _wide_inputs(self, lo, hi):
        """{0: (B, n_in) bool, the input entries wider than `forward_narrow` (x (1 + |x|))}, or None
        when every entry is wide in every box (then every neuron may depend on them)."""
        xp = self.ops.xp
        wide = (hi - lo) > self.forward_narrow * (1.0 + xp.maximum(abs(lo), abs(hi)))
        if bool(wide.all()):
            return None
        return {0: wide}

    def _dependence(self, L, res: Pass) -> None:
        """`res.dep[L]`: the neurons of layer L that depend on a wide input entry (`_wide_inputs`),
        from the sparsity of the terms (an affine row reads a dependent neuron through a nonzero
        weight) and the bounds already known (an inactive ReLU is 0 on the box). A neuron that
        depends on none is a function of inputs each fixed to within `forward_narrow`: its
        interval bound is as tight as back-substitution can make it, up to rounding
        (`_affine_bounds` skips such rows while they are narrower than `fixed_row_width`)."""
        ops = self.ops
        xp = ops.xp
        dep = res.dep
        k = L.index
        one, zero = ops.full((), 1.0), ops.full((), 0.0)
        if L.kind == "affine":
            acc = None
            for s_, _, absW in self.W[k]:
                if not bool(dep[s_].any()):  # (no wide source entry: nothing to carry)
                    continue
                v = ops.rowmm(xp.where(dep[s_], one, zero), absW)
                acc = v if acc is None else acc + v
            B = dep[0].shape[0]
            dep[k] = acc > 0 if acc is not None else (
                ops.torch.zeros((B, L.size), dtype=ops.torch.bool) if self.backend == "torch" else np.zeros((B, L.size), bool))
        elif L.kind == "relu":
            dep[k] = dep[L.source] & (res.affine[L.source][1] > 0)
        elif L.kind == "max":
            gi, valid = self.groups[k]
            dep[k] = ops.amax(xp.where(valid, ops.take_groups(xp.where(dep[L.source], one, zero), gi), zero), 2) > 0
        elif L.kind == "product":
            _, _, ia, ib = self.products[k]
            dep[k] = dep[L.source][:, ia] | dep[L.source_b][:, ib]
        else:
            dep[k] = dep[L.source]

    def _fixed_entry(self, k: int, res: Pass):
        """Layer k's entry of `Pass.fixed` from its dependence and bounds, None when no neuron of it
        is fixed."""
        if res.dep is None or k not in res.dep or bool(res.dep[k].all()):
            return None
        box = res.affine.get(k) if self.lg.layers[k].kind == "affine" else res.var.get(k)
        if box is None:
            return None
        lo, hi = box
        mask = self._fixed_rows(k, res, lo, hi)
        if not bool(mask.any()):
            return None
        if bool(mask.all()):
            return (mask, lo, hi, True)
        xp = self.ops.xp
        zero = self.ops.full((), 0.0)
        return (mask, xp.where(mask, lo, zero), xp.where(mask, hi, zero), False)

    def _fixed_rows(self, k: int, res: Pass, lo, hi):
        """(B, n) bool, or None: the rows of affine layer k that depend on no wide input entry and
        are already narrower than `fixed_row_width` (x (1 + |bound|)): back-substitution is skipped
        for them."""
        if res.dep is None or k not in res.dep:
            return None
        xp = self.ops.xp
        return ~res.dep[k] & ((hi - lo) <= self.fixed_row_width * (1.0 + xp.maximum(abs(lo), abs(hi))))

    # ---- the forward pass (few free inputs, large graphs) ---------------------------------------
    def _forward_columns(self, lo, hi) -> np.ndarray:
        """(B, n_in) bool: per box, the input entries the forward functions take as variables
        (columns): those wider than `forward_narrow` (relative to 1 + |x|). Narrower ones (an input
        a property fixes is one ulp wide after outward rounding) ride in the functions' constants as
        intervals, as sound as columns and cheaper: every product of the pass costs its columns.
        Each box has its own (a batch of cases fixing different inputs costs each box its own)."""
        lo_, hi_ = self.ops.numpy(lo), self.ops.numpy(hi)
        return (hi_ - lo_) > self.forward_narrow * (1.0 + np.maximum(np.abs(lo_), np.abs(hi_)))

    def _column_index(self, wide: np.ndarray, m: int):
        """(B, m): per box, the input entry of each column (its wide entries in order, padded with
        its first: a padding column's coefficients are all 0), and (B, m) bool: not padding."""
        order = np.argsort(~wide, axis=1, kind="stable")[:, :m]
        valid = np.arange(m)[None, :] < wide.sum(axis=1)[:, None]
        cols = np.where(valid, order, order[:, :1]).astype(np.int64)
        return (self.ops.torch.as_tensor(cols) if self.backend == "torch" else cols), valid

    def _at_columns(self, x, res):
        """x (B, n_in) at each box's columns (B, m)."""
        if self.backend == "torch":
            return self.ops.torch.gather(x, 1, res.free)
        return np.take_along_axis(x, res.free, axis=1)

    def _to_share_dims(self, M, res, n_in: int):
        """M (B, R, m) over each box's columns -> (B, R, dims) over the share dims (all inputs when
        None); a column off them adds nothing."""
        ops = self.ops
        if self._share_dims is None:
            return ops.scatter_cols(M, res.free, n_in)
        dims = ops.numpy(self._share_dims) if self.backend == "torch" else np.asarray(self._share_dims)
        cols = ops.numpy(res.free) if self.backend == "torch" else res.free
        if not dims.size:
            return ops.zeros(tuple(M.shape[:2]) + (0,))
        order = np.argsort(dims, kind="stable")
        at = np.clip(np.searchsorted(dims[order], cols), 0, dims.size - 1)
        on = dims[order][at] == cols
        at = order[at]
        idx = ops.torch.as_tensor(at) if self.backend == "torch" else at
        keep = ops.asarray(on.astype(np.float64))[:, None, :]
        return ops.scatter_cols(M * keep, idx, int(dims.size))

    def _forward_input(self, lo, hi, wide: np.ndarray, cols, valid: np.ndarray):
        """The input as (lower, upper) linear functions of each box's columns: (B, n_in, m + 1); the
        other entries constant, lo below and hi above (one object when they are equal)."""
        ops = self.ops
        B, n = lo.shape
        m = cols.shape[1]
        P = np.zeros((B, n, m + 1))
        bi, ji = np.nonzero(valid)
        P[bi, ops.numpy(cols)[bi, ji] if self.backend == "torch" else cols[bi, ji], ji] = 1.0
        F = ops.asarray(P)
        other = ops.asarray(np.where(wide, 0.0, 1.0))
        if not bool(((hi - lo) * other).any()):
            F[:, :, m] = lo * other
            return F, F
        G = F.clone() if self.backend == "torch" else F.copy()
        F[:, :, m] = lo * other
        G[:, :, m] = hi * other
        return F, G

    def _constant_functions(self, k: int, res: Pass, box=None):
        """Layer k's forward functions as constants, its lower and upper bounds (`box`, else its
        bounds in `res`), when it depends on no wide input entry in any box (`Pass.dep`: its
        functions' coefficients would all be 0); else None."""
        if box is None:
            if res.dep is None or bool(res.dep[k].any()):
                return None
            box = res.var[k]
        return _ConstFn(*box)

    def _fn(self, res: Pass, k: int):
        """Layer k's forward functions (lower, upper) (B, n, m + 1), constants made full."""
        f = res.fwd[k]
        if not isinstance(f, _ConstFn):
            return f
        B, n = f.lo.shape
        m = res.free.shape[1]
        F, G = self.ops.zeros((B, n, m + 1)), self.ops.zeros((B, n, m + 1))
        F[..., m] = f.lo
        G[..., m] = f.hi
        return F, G

    def _concretise(self, F, res, lower: bool):
        """Bounds (B, n) of linear functions F (B, n, m + 1) over the boxes' free entries."""
        ops = self.ops
        x_lo, x_hi = res.var[0]
        zl, zh = self._at_columns(x_lo, res), self._at_columns(x_hi, res)
        A, c = F[..., :-1], F[..., -1]
        pos = ops.pos(A)
        neg = A - pos
        if lower:
            return ops.bdot(pos, zl) + ops.bdot(neg, zh) + c
        return ops.bdot(pos, zh) + ops.bdot(neg, zl) + c

    def _forward_affine(self, k, res):
        """Each term applied to its source's linear functions: with mid = (L + U) / 2 and rad =
        (U - L) / 2, the lower side is W mid - |W| rad (= W+ L + W- U) and the upper W mid + |W|
        rad: two products per term, not four. The interval bounds from the sources' bounds ride
        along as one more column of the same products (a sparse product's cost is mostly its
        nonzeros, not its columns). Returns (lower, upper functions, interval lo, hi)."""
        ops = self.ops
        cat = ops.cat
        Fl = Fu = lo = hi = None
        m = res.free.shape[1]
        const = None
        for s_, W, absW in self.W[k]:
            sl, su = res.var[s_]
            if isinstance(res.fwd[s_], _ConstFn):  # constant functions (the source's bounds): constants only
                mid_i, rad_i = ops.rowmm((sl + su) / 2.0, W), ops.rowmm((su - sl) / 2.0, absW)
                part = (mid_i - rad_i, mid_i + rad_i)
                const = part if const is None else (const[0] + part[0], const[1] + part[1])
                lo = part[0] if lo is None else lo + part[0]
                hi = part[1] if hi is None else hi + part[1]
                continue
            Ls, Us = res.fwd[s_]
            if Ls is Us:  # the input: functions known exactly
                mid = ops.apply(W, cat([Ls, ((sl + su) / 2.0)[..., None]], 2))
                rad_i = ops.apply(absW, ((su - sl) / 2.0)[..., None])[..., 0]
                lo_part = hi_part = mid[..., :-1]
            else:
                mid = ops.apply(W, cat([(Ls + Us) / 2.0, ((sl + su) / 2.0)[..., None]], 2))
                rad = ops.apply(absW, cat([(Us - Ls) / 2.0, ((su - sl) / 2.0)[..., None]], 2))
                rad_i = rad[..., -1]
                lo_part, hi_part = mid[..., :-1] - rad[..., :-1], mid[..., :-1] + rad[..., :-1]
            mid_i = mid[..., -1]
            Fl = lo_part if Fl is None else Fl + lo_part
            Fu = hi_part if Fu is None else Fu + hi_part
            lo = mid_i - rad_i if lo is None else lo + mid_i - rad_i
            hi = mid_i + rad_i if hi is None else hi + mid_i + rad_i
        if Fl is None:  # (every source constant: the caller does not come here, but be whole)
            B, n = lo.shape
            Fl, Fu = ops.zeros((B, n, m + 1)), ops.zeros((B, n, m + 1))
        Fl = Fl.clone() if self.backend == "torch" else Fl.copy()
        Fu = Fu.clone() if self.backend == "torch" else Fu.copy()
        if const is not None:
            Fl[..., -1] = Fl[..., -1] + const[0]
            Fu[..., -1] = Fu[..., -1] + const[1]
        Fl[..., -1] = Fl[..., -1] + self.b[k]
        Fu[..., -1] = Fu[..., -1] + self.b[k]
        return Fl, Fu, lo + self.b[k], hi + self.b[k]

    def _forward_relu(self, F, l, u):
        """relu's relaxation applied to its input's linear functions (slopes >= 0 keep the sides)."""
        lo_s, up_s, up_b = relu_relaxation(l, u, self.ops.xp)
        Fl, Fu = F
        Gl = Fl * lo_s[..., None]
        Gu = Fu * up_s[..., None]
        Gu[..., -1] = Gu[..., -1] + up_b
        return Gl, Gu

    def _forward_smooth(self, L, res):
        """An act layer's lines (a product's planes) applied to its sources' linear functions: per
        neuron and side, the source's lower or upper function by the sign of the slope."""
        xp = self.ops.xp

        def side(F, slope, const, low: bool):
            Fl, Fu = F
            s = slope[..., None]
            G = xp.where(s >= 0, Fl * s, Fu * s) if low else xp.where(s >= 0, Fu * s, Fl * s)
            G[..., -1] = G[..., -1] + const
            return G

        if L.kind == "act":
            ls, lb, us, ub = res.lines[L.index]
            F = self._fn(res, L.source)
            return side(F, ls, lb, True), side(F, us, ub, False)
        (a_l, b_l, c_l), (a_u, b_u, c_u) = res.lines[L.index]
        _, _, ia, ib = self.products[L.index]
        Fa = tuple(f[:, ia] for f in self._fn(res, L.source))
        Fb = tuple(f[:, ib] for f in self._fn(res, L.source_b))
        zero = xp.zeros_like(c_l)
        lo = side(Fa, a_l, c_l, True) + side(Fb, b_l, zero, True)
        hi = side(Fa, a_u, c_u, False) + side(Fb, b_u, zero, False)
        return lo, hi

    def _forward_max(self, j, F, l, u):
        """The max relaxation: below, the entry with the largest lower bound; above, that entry
        where it dominates, else the constant max of the upper bounds."""
        ops = self.ops
        xp = ops.xp
        gi, valid = self.groups[j]
        ninf = ops.full((), -np.inf)
        index, exact, upper = max_relaxation(xp.where(valid, ops.take_groups(l, gi), ninf),
                                             xp.where(valid, ops.take_groups(u, gi), ninf), xp)
        best = ops.take_index(gi, index)  # (B, m)
        Fl, Fu = F
        Gl = ops.take_rows3(Fl, best)
        Gu = ops.take_rows3(Fu, best)
        const = ops.zeros(tuple(Gu.shape))
        const[..., -1] = xp.where(exact, ops.full((), 0.0), upper)
        Gu = xp.where(exact[..., None], Gu, const)
        return Gl, Gu

    def _forward_shares(self, k: int, res: Pass):
        """Layer k's split-score shares (B, n, dims) from its forward functions' coefficients."""
        ops = self.ops
        x_lo, x_hi = res.var[0]
        Fl, Fu = self._fn(res, k)
        rad = self._at_columns((x_hi - x_lo) / 2.0, res)
        contrib = ops.normalise_rows((abs(Fl[..., :-1]) + abs(Fu[..., :-1])) * rad[:, None, :])
        return self._to_share_dims(contrib, res, int(x_lo.shape[1]))

    def _affine_bounds(self, k: int, res: Pass, parent: Optional[BoxState], method: str, want_shares: bool, output: bool):
        ops = self.ops
        forward = res.fwd is not None and all(s in res.fwd for s, _, _ in self.W[k])
        if forward and res.dep is not None and not bool(res.dep[k].any()):
            forward = False  # a layer of no wide input: its functions are its (interval) bounds, set below
        if forward:
            Fl, Fu, lo, hi = self._forward_affine(k, res)
            res.fwd[k] = (Fl, Fu)
            if not self.input_only[k]:  # (over the input, the interval bounds are exact)
                fl, fh = self._concretise(Fl, res, True), self._concretise(Fu, res, False)
                lo, hi = ops.xp.maximum(lo, fl), ops.xp.minimum(hi, fh)
        else:
            lo = hi = None
            for s, W, absW in self.W[k]:
                sl, su = res.var[s]
                mid, rad = ops.rowmm((sl + su) / 2.0, W), ops.rowmm((su - sl) / 2.0, absW)
                lo = mid - rad if lo is None else lo + mid - rad
                hi = mid + rad if hi is None else hi + mid + rad
            b = self.b[k]
            lo, hi = lo + b, hi + b
        lo, hi = lo - slack(lo), hi + slack(hi)
        if parent is not None and k in parent.bounds:
            pl, pu = parent.bounds[k]
            lo, hi = ops.xp.maximum(lo, pl), ops.xp.minimum(hi, pu)
        if res.fwd is not None and not forward and all(s in res.fwd for s, _, _ in self.W[k]):
            res.fwd[k] = self._constant_functions(k, res, (lo, hi))
        x_lo, x_hi = res.var[0]
        if self.input_only[k]:
            if want_shares and self.readers.get(k) and all(r in _SCORED for r in self.readers[k]):
                _, _, absW = self.W[k][0]
                rad = (x_hi - x_lo) / 2.0
                absW = ops.columns(absW, self._share_dims)
                if self._share_dims is not None:
                    rad = rad[:, self._share_dims]
                res.shares[k] = ops.normalise_rows(absW[None] * rad[:, None, :])
            return lo, hi
        if method == "interval":
            return lo, hi
        readers = self.readers.get(k, [])
        relu_only = bool(readers) and all(r == "relu" for r in readers) and k not in self.all_rows
        scored = bool(readers) and all(r in _SCORED for r in readers)
        if not readers and not (output and k == self.lg.output):
            return lo, hi
        t0 = time.monotonic()
        B, n = lo.shape
        if relu_only:
            need = (lo < 0) & (hi > 0)
        else:
            need = ops.xp.ones_like(lo, dtype=bool) if self.backend == "numpy" else ops.torch.ones_like(lo, dtype=ops.torch.bool)
        if k in self.single and not (output and k == self.lg.output):
            need = need & ~self.single[k][None, :]
        fixed = self._fixed_rows(k, res, lo, hi)
        if fixed is not None:
            need = need & ~fixed
        counts = ops.count(need)
        U = int(counts.max()) if B else 0
        n_dims = x_lo.shape[1] if self._share_dims is None else len(self._share_dims)
        # (only when some row is back-substituted: the rows left out have no share, a fixed layer none at all)
        shares = ops.zeros((B, n, n_dims)) if (want_shares and scored and U > 0) else None
        partial = None
        budget = self.backward_budget
        if res.fwd is not None:  # never more than `backward_forward_ratio` forward passes (columns x entries)
            budget = 0.0 if res.forward_only else min(budget, self.backward_forward_ratio * 2.0 * (res.free.shape[1] + 1) * self.entries)
        sparse = U > 0 and res.fwd is not None and not res.forward_only and self._sparse_rows_fit(k)
        if not sparse and res.fwd is not None and U * self.prefix[k] > budget and not (output and k == self.lg.output):
            # too many rows to back-substitute to the input: back-substitute them only as far as
            # the budget pays for (per box), then through a ReLU layer's forward functions;
            # when not even the first step back is affordable, the forward bounds stand
            per_row = budget / max(1, U)
            if self._partial_fits(k, res, per_row):
                partial = per_row
        if not sparse and res.fwd is not None and partial is None and U * self.prefix[k] > budget \
                and not (output and k == self.lg.output):
            # the forward bounds stand (and give the scores' shares)
            if want_shares and scored:
                res.shares[k] = self._forward_shares(k, res)
            return lo, hi
        if U > 0:
            dense_step = step = max(1, self.chunk_values // max(1, B * 2 * self.widest))
            cap = row_macs = math.inf
            if sparse:
                # the rows of the widest relaxation gap first; with a finite `sparse_budget` (none by
                # default), only as many chunks as it pays for per box: the rows past it go back
                # partly (`backward_budget`), then through the forward functions
                order_all = self._widest_gaps_first(need, lo, hi, U)
                step = min(step, self.sparse_chunk)
                if not (output and k == self.lg.output):
                    cap, row_macs = self.sparse_budget, self.sparse_row_macs
                    if shares is not None:
                        shares = self._forward_shares(k, res)
            else:
                order_all = ops.order_first(need, U)
            spent = 0.0
            # (sparse, `sparse_row_macs` finite: a first pass with rows finishing through the forward
            # functions past it, then the full back-substitution of the rows still unstable)
            passes = [row_macs, math.inf] if row_macs < math.inf else [math.inf]
            for pi, pass_macs in enumerate(passes):
                if pi:  # (its own budget: the first pass's handover to dense rows can take all of one)
                    spent = 0.0
                    need = need & (lo < 0) & (hi > 0)
                    counts = ops.count(need)
                    U = int(counts.max()) if B else 0
                    order_all = self._widest_gaps_first(need, lo, hi, U)
                    self.stats["sparse_second_rows"] = self.stats.get("sparse_second_rows", 0) + int(ops.numpy(counts).sum())
                left = None  # (sparse, first pass) the rows past the budget: partial back-substitution
                c0, c1 = 0, 0
                while c1 < U:
                    c0 = c1
                    if time.monotonic() > self._deadline:
                        raise Expired()
                    if left is None and c0 and spent * (1.0 + step / c0) > cap:  # (the next chunk at the rows' mean cost so far)
                        self.stats["sparse_rows_left"] = self.stats.get("sparse_rows_left", 0) + int(U - c0)
                        # the rows left over go back as far as the dense budget pays for, then
                        # through the forward functions (as without the sparse rows), rather than
                        # keep their bounds so far (cgan 32_nCh_1 at half width, the
                        # discriminator's dense layer: 37 rows unstable instead of 182; 64_nCh_1
                        # at 1/8 width: -0.19 -> +0.006, the box refuted)
                        per_row = budget / max(1, U - c0)
                        if not self._partial_fits(k, res, per_row):
                            break
                        left = per_row
                        self.stats["sparse_left_partial"] = self.stats.get("sparse_left_partial", 0) + int(U - c0)
                        step = dense_step
                    c1 = min(U, c0 + step)
                    order = order_all[:, c0:c1]
                    Uc = order.shape[1]
                    valid = (ops.arange(Uc)[None, :] + c0) < counts[:, None]
                    if sparse and left is None:
                        lb, A, macs = self._backward_rows_sparse(k, order, valid, res, shares is not None, pass_macs)
                        spent += macs / max(1, B)
                    else:
                        start = {}
                        for s, W, _ in self.W[k]:
                            Wr = ops.gather_rows(W, order)
                            start[s] = ops.cat([Wr, -Wr], 1)
                        br = self.b[k][order]
                        stop = left if left is not None else partial
                        lb, A = self.backward(start, ops.cat([br, -br], 1), res.affine, res.var, want_A=shares is not None,
                                              stop=None if stop is None else (stop, res),
                                              lines=res.lines, fixed=res.fixed)
                    if shares is not None and self._share_dims is not None:
                        A = A[..., self._share_dims]
                    new_l, new_u = lb[:, :Uc], -lb[:, Uc:]
                    new_l, new_u = new_l - slack(new_l), new_u + slack(new_u)
                    rows = ops.arange(B)[:, None] + 0 * order
                    sel_r, sel_c = rows[valid], order[valid]
                    lo[sel_r, sel_c] = ops.xp.maximum(lo[sel_r, sel_c], new_l[valid])
                    hi[sel_r, sel_c] = ops.xp.minimum(hi[sel_r, sel_c], new_u[valid])
                    if shares is not None:
                        rad = (x_hi - x_lo) / 2.0
                        if self._share_dims is not None:
                            rad = rad[:, self._share_dims]
                        contrib = ops.normalise_rows((abs(A[:, :Uc]) + abs(A[:, Uc:])) * rad[:, None, :])
                        shares[sel_r, sel_c] = contrib[valid]
        if shares is not None:
            res.shares[k] = shares
        self.stats["crown_s"] += time.monotonic() - t0
        return lo, hi

    # ---- the linearised product relaxation (torch, few inputs) -------------------------------------
    def _factor_linear(self, k: int, res: Pass):
        """Affine layer k's linear bounds in x over each box, (AL, cL, AU, cU): AL x + cL <= value <=
        AU x + cU, AL (B, n, n_in): exact for a layer of the input alone, else CROWN's back-substitution
        of every row (`res` holds the bounds and relaxations of the layers before k). The constants
        are the concrete bounds minus the coefficients' extreme over the box."""
        ops = self.ops
        torch = ops.torch
        x_lo, x_hi = res.var[0]
        B, n_in = x_lo.shape
        n = self.lg.layers[k].size
        if self.input_only[k]:
            A = sum(ops.columns(W, None) for _, W, _ in self.W[k])
            A = A[None].expand(B, n, n_in)
            c = self.b[k][None].expand(B, n)
            return A, c, A, c
        AL, cL = ops.zeros((B, n, n_in)), ops.zeros((B, n))
        AU, cU = ops.zeros((B, n, n_in)), ops.zeros((B, n))
        # an unstable ReLU's lower line parallel to its chord (slope u / (u - l), valid as any slope in
        # [0, 1]): both bounds then move together and their gap, what the linearised product pays,
        # is -l u / (u - l) per unit coefficient, at most half of CROWN's lines' widest gap
        chord = {}
        for R_ in self.relus:
            if R_.index < k:
                l, u = res.affine[R_.source]
                chord[R_.index] = torch.where((l < 0) & (u > 0), u / (u - l).clamp(min=1e-300), torch.zeros((), dtype=l.dtype))
        step = max(1, self.chunk_values // max(1, B * 2 * self.widest))
        for c0 in range(0, n, step):
            rows = torch.arange(c0, min(n, c0 + step))
            start = {}
            for s_, W, _ in self.W[k]:
                Wr = ops.gather_rows(W, rows[None].expand(B, -1)) if isinstance(W, _TorchCsr) else W[rows][None].expand(B, -1, -1)
                start[s_] = ops.cat([Wr, -Wr], 1)
            br = self.b[k][rows][None].expand(B, -1)
            R2 = 2 * rows.numel()
            alphas = {j: c[:, None, :].expand(B, R2, c.shape[1]) for j, c in chord.items()} or None
            lb, A = self.backward(start, ops.cat([br, -br], 1), res.affine, res.var, want_A=True, lines=res.lines,
                                  alphas=alphas, fixed=res.fixed)
            pos = ops.pos(A)
            c = lb - ops.bdot(pos, x_lo) - ops.bdot(A - pos, x_hi)  # lb minus min over the box of A x
            m = rows.numel()
            AL[:, rows], cL[:, rows] = A[:, :m], c[:, :m]
            AU[:, rows], cU[:, rows] = -A[:, m:], -c[:, m:]
        return AL, cL, AU, cU

    def _quadratic_product(self, L, Lam, res: Pass):
        """The linearised relaxation of sum_p Lam[b, r, p] a_p b_p (a product layer L, Lam (B, R, P)) when
        both factors have linear bounds in x (`Pass.lin`): with each factor's reference function
        abar(x) = the mean of its two linear bounds and d_a = a - abar(x),
            a b = abar(x) bbar(x) + abar(x) d_b + b d_a,
        the first term is a quadratic in x, bounded below by its tangent plane at the box's centre
        less `smooth.quadratic_form_lower` of its curvature (exact for a convex form), the other two
        are McCormick's planes of (abar, d_b) and (b, d_a) over their intervals (d_a: within the
        gap of a's linear bounds and a's interval minus abar's range). Returns the coefficients on
        the factors (B, R, P) each, on x (B, R, n_in), the constant (B, R), and a mask (B,) of the
        boxes where some factor bound is not finite (no bound: the caller makes those rows -inf).
        Factors affine in x (d = 0) leave only the curvature term: x^T P x, a Lyapunov function's
        quadratic, is bounded as tightly as a linear bound can."""
        ops = self.ops
        torch = ops.torch
        _, _, ia, ib = self.products[L.index]
        x_lo, x_hi = res.var[0]
        m, r = (x_lo + x_hi) / 2.0, (x_hi - x_lo) / 2.0
        fac = []
        for src, idx in ((L.source, ia), (L.source_b, ib)):
            AL, cL, AU, cU = (v[:, idx] for v in res.lin[src])
            lo, hi = (v[:, idx] for v in res.affine[src])
            Abar, cbar = (AL + AU) / 2.0, (cL + cU) / 2.0
            centre = torch.einsum("bpn,bn->bp", Abar, m) + cbar
            reach = torch.einsum("bpn,bn->bp", Abar.abs(), r)
            fmin, fmax = centre - reach, centre + reach  # abar's range over the box
            G, g0 = (AU - AL) / 2.0, (cU - cL) / 2.0
            half = torch.einsum("bpn,bn->bp", G, m) + g0 + torch.einsum("bpn,bn->bp", G.abs(), r)
            dlo, dhi = torch.maximum(-half, lo - fmax), torch.minimum(half, hi - fmin)
            dlo, dhi = dlo - slack(dlo), dhi + slack(dhi)
            fmin, fmax = fmin - slack(fmin), fmax + slack(fmax)
            fac.append((Abar, cbar, centre, fmin, fmax, dlo, dhi, lo, hi))
        bad = None
        for (Abar, cbar, centre, fmin, fmax, dlo, dhi, lo, hi) in fac:
            ok = torch.isfinite(Abar).all(-1) & torch.isfinite(cbar) & torch.isfinite(dlo) & torch.isfinite(dhi) \
                & torch.isfinite(lo) & torch.isfinite(hi) & (dlo <= dhi)
            b_ = ~ok.all(-1)
            bad = b_ if bad is None else bad | b_
        zero = ops.full((), 0.0)
        clean = [tuple(torch.where(torch.isfinite(v), v, zero) for v in f) for f in fac]
        (Aa, ca, alpha, amin, amax, dla, dha, la, ua), (Ab, cb, beta, bmin, bmax, dlb, dhb, lb_, ub_) = clean
        # abar bbar = alpha beta + (alpha Ab + beta Aa) d + d^T Aa^T Ab d, d = x - m
        g = torch.einsum("brp,bpn->brn", Lam * beta[:, None, :], Aa) + torch.einsum("brp,bpn->brn", Lam * alpha[:, None, :], Ab)
        const = (Lam * (alpha * beta)[:, None, :]).sum(-1) - torch.einsum("brn,bn->br", g, m)
        Bn, R, _ = Lam.shape
        n_in = m.shape[1]
        live = (Lam != 0).any(-1)  # (B, R)
        coef_x = g
        if bool(live.any()):  # d^T Q d >= h . d + c, the tangent point where g . d + d^T Q d is least
            bi, ri = torch.nonzero(live, as_tuple=True)
            P_ = Lam.shape[2]
            step = max(1, self.chunk_values // max(1, P_ * n_in))  # (the gathered factors stay bounded)
            Q = torch.cat([torch.einsum("np,npi,npj->nij", Lam[bi[c0:c0 + step], ri[c0:c0 + step]], Aa[bi[c0:c0 + step]],
                                        Ab[bi[c0:c0 + step]]) for c0 in range(0, bi.numel(), step)])
            h, c = quadratic_form_lower(Q, r[bi], g[bi, ri])
            H, curv = ops.zeros((Bn, R, n_in)), ops.zeros((Bn, R))
            H[bi, ri], curv[bi, ri] = h, c
            coef_x = g + H
            const = const + curv - torch.einsum("brn,bn->br", H, m)
        # McCormick of abar * d_b and of b * d_a, the side by the sign of Lam
        pos = ops.pos(Lam)
        neg = Lam - pos
        coef_a = ops.zeros(Lam.shape)
        coef_b = ops.zeros(Lam.shape)
        for (xl, xu, yl, yu, which) in ((amin, amax, dlb, dhb, "abar_db"), (lb_, ub_, dla, dha, "b_da")):
            (p_l, q_l, c_l), (p_u, q_u, c_u) = bilinear_crown(xl, xu, yl, yu)
            c_l, c_u = (torch.where(torch.isfinite(v), v, zero) for v in (c_l, c_u))
            K1 = pos * p_l[:, None, :] + neg * p_u[:, None, :]  # on the first factor
            K2 = pos * q_l[:, None, :] + neg * q_u[:, None, :]  # on the d
            const = const + ops.bdot(pos, c_l) + ops.bdot(neg, c_u)
            if which == "abar_db":  # K1 abar = K1 (Aa x + ca); K2 d_b = K2 (b - Ab x - cb)
                coef_x = coef_x + torch.einsum("brp,bpn->brn", K1, Aa) - torch.einsum("brp,bpn->brn", K2, Ab)
                const = const + (K1 * ca[:, None, :]).sum(-1) - (K2 * cb[:, None, :]).sum(-1)
                coef_b = coef_b + K2
            else:  # K1 b; K2 d_a = K2 (a - Aa x - ca)
                coef_b = coef_b + K1
                coef_a = coef_a + K2
                coef_x = coef_x - torch.einsum("brp,bpn->brn", K2, Aa)
                const = const - (K2 * ca[:, None, :]).sum(-1)
        return coef_a, coef_b, coef_x, const, bad

    # ---- back-substitution -----------------------------------------------------------------------
    def relaxations(self, affine, upto: Optional[int] = None) -> Dict[int, tuple]:
        """relu layer -> (lower slope, upper slope, upper intercept, unstable mask (B, 1, n)), once
        for passes that repeat over the same intermediate bounds (alpha's steps); the relu layers
        before `upto` only when given."""
        out = {}
        for L in self.relus:
            if upto is not None and L.index >= upto:
                continue
            l, u = affine[L.source]
            out[L.index] = (*relu_relaxation(l, u, self.ops.xp), ((l < 0) & (u > 0))[:, None, :])
        return out

    def backward(self, start: Dict[int, object], bias, affine, var, want_A: bool = False,
                 alphas: Optional[Dict[int, object]] = None, slack_out: Optional[Dict[int, object]] = None,
                 relax: Optional[Dict[int, tuple]] = None, lines: Optional[Dict[int, tuple]] = None,
                 gaps: Optional[Dict[int, object]] = None, row_lines: Optional[Dict[int, tuple]] = None,
                 stop: Optional[tuple] = None, quadratic: Optional[Pass] = None, fixed: Optional[Dict[int, tuple]] = None):
        """Lower bounds (B, R) of sum_j start[j] . value(layer j) + bias over the boxes, by
        substituting every layer's relaxation back to the input box; with want_A also the
        coefficients (B, R, n_in) of the bound in x. `alphas`: relu layer -> lower slopes
        (B, R, n) for its unstable neurons (alpha-CROWN); `slack_out`: relu layer -> |coefficient|
        x triangle gap (B, R, n), the looseness splitting can remove (scores); `relax`: the relu
        relaxations made beforehand (`relaxations`); `lines`, `gaps`: the act and product layers'
        relaxations and gaps (`Pass.lines`, `Pass.gaps`: needed when the graph has such layers;
        with `slack_out`, |coefficient| x gap for them too); `row_lines`: act / product layer -> its
        lines (planes) per box, row and neuron (B, R, n) instead of `lines` (alpha, `optimise`; an
        act layer's: a function of its coefficients, `_act_row_lines`).
        `stop` (cost per row, the pass): stop where every pending layer has forward functions
        (`Pass.fwd`) and the next step back would take the entries multiplied per row past that
        cost, and finish through those functions. `quadratic` (a pass with `Pass.lin`): product
        layers whose factors both have linear bounds in x take the linearised relaxation
        (`_quadratic_product`) instead of McCormick's planes. `fixed` (`Pass.fixed`): the
        coefficients on a layer's fixed neurons are concretised by their bounds where the
        substitution reaches the layer (sound for any valid bounds; these are narrower than
        `fixed_row_width`), so the substitution goes on only through the rest (a layer wholly fixed
        ends there): a branch of the graph the property fixes costs nothing."""
        ops = self.ops
        xp = ops.xp
        pending = dict(start)
        layers = self.lg.layers
        spent = 0
        bad = None  # boxes a linearised product relaxation could not bound (-inf at the end)
        while pending:
            if time.monotonic() > self._deadline:
                raise Expired()
            j = max(pending)
            if stop is not None and j != 0 and spent + self.step_cost.get(j, 0) > stop[0] \
                    and all(p in stop[1].fwd for p in pending):
                self.stats["partial_rows"] = self.stats.get("partial_rows", 0) + int(bias.shape[0] * bias.shape[1])
                return self._through_forward(pending, bias, stop[1], want_A)
            if layers[j].kind == "affine":
                spent += self.step_cost[j]
            Lam = pending.pop(j)
            entry = fixed.get(j) if fixed is not None and j != 0 else None
            if entry is not None:
                mask, f_lo, f_hi, every = entry
                Lf = Lam if every else xp.where(mask[:, None, :], Lam, ops.full((), 0.0))
                pos = ops.pos(Lf)
                bias = bias + ops.bdot(pos, f_lo) + ops.bdot(Lf - pos, f_hi)
                if every:
                    continue
                Lam = Lam - Lf
            if j == 0:
                x_lo, x_hi = var[0]
                pos = ops.pos(Lam)
                lb = ops.bdot(pos, x_lo) + ops.bdot(Lam - pos, x_hi) + bias
                if bad is not None:
                    lb = xp.where(bad[:, None], ops.full((), -np.inf), lb)
                return lb, (Lam if want_A else None)
            L = layers[j]
            if L.kind == "affine":
                bias = bias + Lam @ self.b[j]
                for s, W, _ in self.W[j]:
                    M = ops.mm(Lam, W)
                    pending[s] = pending[s] + M if s in pending else M
            elif L.kind == "relu":
                if relax is not None:
                    lo_s, up_s, up_b, unstable = relax[j]
                else:
                    l, u = affine[L.source]
                    lo_s, up_s, up_b = relu_relaxation(l, u, xp)
                    unstable = ((l < 0) & (u > 0))[:, None, :] if alphas is not None and j in alphas else None
                pos = ops.pos(Lam)
                neg = Lam - pos
                if slack_out is not None:
                    slack_out[j] = abs(Lam) * up_b[:, None, :]  # the chord's gap at 0: -l u / (u - l)
                bias = bias + ops.bdot(neg, up_b)
                if alphas is not None and j in alphas:
                    lo_r = xp.where(unstable, alphas[j], lo_s[:, None, :])
                    M = pos * lo_r + neg * up_s[:, None, :]
                else:
                    M = pos * lo_s[:, None, :] + neg * up_s[:, None, :]
                pending[L.source] = pending[L.source] + M if L.source in pending else M
            elif L.kind == "max":
                l, u = affine[L.source]
                gi, valid = self.groups[j]
                ninf = ops.full((), -np.inf)
                index, exact, upper = max_relaxation(xp.where(valid, ops.take_groups(l, gi), ninf),
                                                     xp.where(valid, ops.take_groups(u, gi), ninf), xp)
                best = ops.take_index(gi, index)  # (B, m) source neuron of each window's lower bound
                pos = ops.pos(Lam)
                neg = Lam - pos
                exact_f = exact.astype(np.float64) if self.backend == "numpy" else exact.double()
                coef = pos + neg * exact_f[:, None, :]
                bias = bias + ops.bdot(neg * (1.0 - exact_f)[:, None, :], xp.where(exact, ops.full((), 0.0), upper))
                M = ops.scatter_cols(coef, best, int(l.shape[1]))
                pending[L.source] = pending[L.source] + M if L.source in pending else M
            elif L.kind == "act":  # the lower line where the coefficient is positive, the upper one where negative
                ls, lb, us, ub = lines[j]
                pos = ops.pos(Lam)
                neg = Lam - pos
                if slack_out is not None and gaps is not None:
                    slack_out[j] = abs(Lam) * gaps[j][:, None, :]
                if row_lines is not None and j in row_lines:
                    LS, LB, US, UB = row_lines[j](Lam)
                    bias = bias + self._bias_rows(pos, LB) + self._bias_rows(neg, UB)
                    M = pos * LS + neg * US
                else:
                    bias = bias + self._bias_term(pos, lb) + self._bias_term(neg, ub)
                    M = pos * ls[:, None, :] + neg * us[:, None, :]
                pending[L.source] = pending[L.source] + M if L.source in pending else M
            elif L.kind == "product" and quadratic is not None and j in self.linearised and L.source in quadratic.lin \
                    and L.source_b in quadratic.lin and not (row_lines is not None and j in row_lines):
                Pa, Pb, _, _ = self.products[j]
                Ma, Mb, Mx, c, bad_j = self._quadratic_product(L, Lam, quadratic)
                bias = bias + c
                bad = bad_j if bad is None else bad | bad_j
                for src, M in ((L.source, ops.mm(Ma, Pa)), (L.source_b, ops.mm(Mb, Pb)), (0, Mx)):
                    pending[src] = pending[src] + M if src in pending else M
            elif L.kind == "product":  # McCormick's lower plane where positive, upper where negative
                (a_l, b_l, c_l), (a_u, b_u, c_u) = lines[j]
                Pa, Pb, _, _ = self.products[j]
                pos = ops.pos(Lam)
                neg = Lam - pos
                if slack_out is not None and gaps is not None:
                    slack_out[j] = abs(Lam) * gaps[j][:, None, :]
                if row_lines is not None and j in row_lines:
                    (a_l, b_l, c_l), (a_u, b_u, c_u) = row_lines[j]
                    bias = bias + self._bias_rows(pos, c_l) + self._bias_rows(neg, c_u)
                    Ma, Mb = pos * a_l + neg * a_u, pos * b_l + neg * b_u
                else:
                    bias = bias + self._bias_term(pos, c_l) + self._bias_term(neg, c_u)
                    Ma = pos * a_l[:, None, :] + neg * a_u[:, None, :]
                    Mb = pos * b_l[:, None, :] + neg * b_u[:, None, :]
                for src, M in ((L.source, ops.mm(Ma, Pa)), (L.source_b, ops.mm(Mb, Pb))):
                    pending[src] = pending[src] + M if src in pending else M
        # nothing reached the input (a constant): the bias alone
        B, R = bias.shape
        if bad is not None:
            bias = xp.where(bad[:, None], ops.full((), -np.inf), bias)
        return bias, (ops.zeros((B, R, self.lg.n_inputs)) if want_A else None)

    def _bias_term(self, P, v):
        """bdot(P, v) (B, R) for the intercepts v (B, n) of the lines P (B, R, n) selects, where an
        infinite intercept (no bound on that side) makes any row touching it -inf, never NaN."""
        ops = self.ops
        xp = ops.xp
        finite = xp.isfinite(v)
        if bool(finite.all()):
            return ops.bdot(P, v)
        d = ops.bdot(P, xp.where(finite, v, ops.full((), 0.0)))
        hit = ops.bdot(abs(P), xp.where(finite, ops.full((), 0.0), ops.full((), 1.0))) > 0
        return xp.where(hit, ops.full((), -np.inf), d)

    def _bias_rows(self, P, V):
        """(P * V).sum(-1) (B, R) for per-row intercepts V (B, R, n), -inf (never NaN) where a row
        touches an infinite one."""
        xp = self.ops.xp
        finite = xp.isfinite(V)
        zero = self.ops.full((), 0.0)
        d = (P * xp.where(finite, V, zero)).sum(-1)
        if bool(finite.all()):
            return d
        hit = (abs(P) * xp.where(finite, zero, self.ops.full((), 1.0))).sum(-1) > 0
        return xp.where(hit, self.ops.full((), -np.inf), d)

    def _through_forward(self, pending, bias, res: Pass, want_A: bool):
        """The end of a partial back-substitution: each pending layer's coefficients applied to
        its forward functions (lower where positive, upper where negative), then the result's
        lower bound over the box's free inputs; with want_A its coefficients in x (the fixed
        inputs' part is in the constant, their columns 0)."""
        ops = self.ops
        G = None
        for p, Lam in pending.items():
            Fl, Fu = self._fn(res, p)
            pos = ops.pos(Lam)
            g = pos @ Fl + (Lam - pos) @ Fu  # (B, R, m + 1)
            G = g if G is None else G + g
        return self._finish_forward(G, bias, res, want_A)

    def _finish_forward(self, G, bias, res: Pass, want_A: bool):
        """Lower bounds (B, R) of linear functions G (B, R, m + 1) of the free inputs plus `bias`
        over the boxes, with want_A their coefficients in x."""
        ops = self.ops
        A_f, c = G[..., :-1], G[..., -1] + bias
        x_lo, x_hi = res.var[0]
        pos = ops.pos(A_f)
        lb = ops.bdot(pos, self._at_columns(x_lo, res)) + ops.bdot(A_f - pos, self._at_columns(x_hi, res)) + c
        A = None
        if want_A:
            A = ops.scatter_cols(A_f, res.free, int(x_lo.shape[1]))
        return lb, A

    # ---- sparse-row back-substitution (rows of local support: convolutions) -----------------------
    def _sparse_term(self, W):
        """A term's scipy CSR (a dense term's made once)."""
        import scipy.sparse as sp

        if isinstance(W, _TorchCsr):
            return W.sp
        if sp.issparse(W):
            return W.tocsr()
        key = id(W)
        if key not in self._csr_copies:
            self._csr_copies[key] = sp.csr_matrix(np.asarray(self.ops.numpy(W), np.float64))
        return self._csr_copies[key]

    def _partial_fits(self, k: int, res: Pass, per_row: float) -> bool:
        """Whether affine layer k's rows can go back partly (`backward`'s `stop`) at `per_row`
        multiply-adds each: its terms' sources carry forward functions and the first step back is
        affordable."""
        first = [s_ for s_, _, _ in self.W[k]]
        return all(s_ in res.fwd for s_ in first) and max(self.step_cost.get(s_, 0) for s_ in first) <= per_row

    def _widest_gaps_first(self, need, lo, hi, U: int):
        """(B, U) per box, the rows where `need` holds by their relaxation gap -l u / (u - l), widest
        (infinite bounds) first, then the others."""
        ops = self.ops
        gap = ops.xp.where(need, -lo * hi / ops.xp.where(need, hi - lo, ops.full((), 1.0)), ops.full((), -np.inf))
        gap = ops.xp.where(gap == gap, gap, ops.full((), np.inf))  # (infinite bounds: first)
        order = (ops.torch.sort(gap, dim=1, descending=True, stable=True).indices if self.backend == "torch"
                 else np.argsort(-gap, axis=1, kind="stable"))
        return order[:, :U]

    def _sparse_rows_fit(self, k: int) -> bool:
        """Whether affine layer k's rows go back by the sparse-row back-substitution: on (a
        positive `sparse_rows`) and some layer before k is a CSR term (a convolution: rows of
        local support)."""
        if self.sparse_rows <= 0:
            return False
        fit = self._sparse_fit.get(k)
        if fit is None:
            # (the layer graph's terms, not this backend's copies: torch keeps a fuller CSR term dense,
            # and numpy and torch must take the same path)
            fit = any(hasattr(W, "nnz") for L in self.lg.layers if L.index <= k and L.kind == "affine"
                      for _, W in L.terms)
            self._sparse_fit[k] = fit
        return fit

    def _backward_rows_sparse(self, k: int, order, valid, res: Pass, want_A: bool, row_macs: float = math.inf):
        """Lower bounds (B, 2U) of affine layer k's rows `order` (B, U) (its lower bounds first, then
        minus its upper bounds, as `backward` gets them), with want_A their coefficients in x, by
        back-substitution with the coefficients held as scipy CSR matrices, one row per box and
        bound (rows where `valid` is False are empty): a convolution's row reaches only its
        receptive field, so each step costs the entries it touches, not the whole layer's. A
        coefficient matrix that fills past `sparse_rows` of its layer goes on dense (`backward`).
        `row_macs` (the forward pass on): where the next step back would take the multiply-adds
        past this many per row and every pending layer has forward functions (`Pass.fwd`), finish
        through them (as `backward`'s `stop`). Returns (lb, A, the multiply-adds spent)."""
        import scipy.sparse as sp

        ops = self.ops
        B, U = order.shape
        order_np = np.asarray(ops.numpy(order), np.int64)
        valid_np = np.asarray(ops.numpy(valid), bool)
        R = 2 * U
        # the selection (B * 2U, n_k): +1 at (b, i), -1 at (b, U + i), for the valid rows
        bi, ii = np.nonzero(valid_np)
        rows = np.concatenate([bi * R + ii, bi * R + U + ii])
        cols = np.concatenate([order_np[bi, ii], order_np[bi, ii]])
        vals = np.concatenate([np.ones(bi.size), -np.ones(bi.size)])
        n_k = self.lg.layers[k].size
        P = sp.csr_matrix((vals, (rows, cols)), shape=(B * R, n_k))
        bias = P @ np.asarray(ops.numpy(self.b[k]), np.float64)
        pending = {}
        for s_, W, _ in self.W[k]:
            M = P @ self._sparse_term(W)
            pending[s_] = pending[s_] + M if s_ in pending else M
        layers = self.lg.layers
        spent = 0.0
        while pending:
            if time.monotonic() > self._deadline:
                raise Expired()
            j = max(pending)
            L = layers[j]
            Lam = pending[j]
            dense_next = L.kind not in ("affine", "relu", "input") or Lam.nnz > self.sparse_rows * Lam.shape[0] * Lam.shape[1]
            if j != 0 and res.fwd is not None and row_macs < math.inf and all(p in res.fwd for p in pending):
                nxt = self._sparse_step_cost(L.source if L.kind == "relu" else j, Lam)  # (a relu's: its source's, next)
                if spent + nxt > row_macs * 2 * bi.size:
                    self.stats["partial_rows"] = self.stats.get("partial_rows", 0) + int(bi.size * 2)
                    G = None
                    for p, M in pending.items():
                        g = self._sparse_apply_forward(M, self._fn(res, p), B, R)
                        G = g if G is None else G + g
                    lb, A = self._finish_forward(G, ops.asarray(bias.reshape(B, R)), res, want_A)
                    return lb, A, spent
            if dense_next:  # go on dense (its cost counted as the dense products')
                start = {p: ops.asarray(M.toarray().reshape(B, R, M.shape[1])) for p, M in pending.items()}
                self.stats["sparse_handover"] = self.stats.get("sparse_handover", 0) + 1
                rest = max(0 if p == 0 else self.prefix.get(p if layers[p].kind == "affine" else layers[p].source, 0)
                           for p in pending)
                lb, A = self.backward(start, ops.asarray(bias.reshape(B, R)), res.affine, res.var, want_A=want_A,
                                      lines=res.lines)
                return lb, A, spent + float(bi.size) * 2 * rest
            del pending[j]
            if j == 0:
                x_lo, x_hi = (np.asarray(ops.numpy(v), np.float64) for v in res.var[0])
                A = Lam.toarray().reshape(B, R, -1)
                pos = np.maximum(A, 0.0)
                lb = np.einsum("brn,bn->br", pos, x_lo) + np.einsum("brn,bn->br", A - pos, x_hi) + bias.reshape(B, R)
                return ops.asarray(lb), (ops.asarray(A) if want_A else None), spent
            if L.kind == "affine":
                step_macs = self._sparse_step_cost(j, Lam)
                spent += step_macs
                self.stats["sparse_macs"] = self.stats.get("sparse_macs", 0.0) + step_macs
                bias = bias + Lam @ np.asarray(ops.numpy(self.b[j]), np.float64)
                for s_, W, _ in self.W[j]:
                    M = Lam @ self._sparse_term(W)
                    pending[s_] = pending[s_] + M if s_ in pending else M
            else:  # relu: the lower slope where the coefficient is positive, the upper line where negative
                l, u = res.affine[L.source]
                lo_s, up_s, up_b = (np.asarray(ops.numpy(v), np.float64) for v in relu_relaxation(l, u, ops.xp))
                Lam = Lam.tocsr()
                r_of = np.repeat(np.arange(Lam.shape[0]), np.diff(Lam.indptr))
                b_of = r_of // R
                d, c = Lam.data, Lam.indices
                neg = d < 0
                bias = bias + np.bincount(r_of[neg], weights=d[neg] * up_b[b_of[neg], c[neg]], minlength=Lam.shape[0])
                data = np.where(neg, d * up_s[b_of, c], d * lo_s[b_of, c])
                M = sp.csr_matrix((data, c.copy(), Lam.indptr.copy()), shape=Lam.shape)
                M.eliminate_zeros()
                pending[L.source] = pending[L.source] + M if L.source in pending else M
        return ops.asarray(bias.reshape(B, R)), (ops.zeros((B, R, self.lg.n_inputs)) if want_A else None), spent

    def _sparse_step_cost(self, j: int, Lam) -> float:
        """Multiply-adds of taking CSR coefficients `Lam` one step back through layer j."""
        L = self.lg.layers[j]
        if L.kind != "affine":
            return 0.0
        cost = 0.0
        for _, W, _ in self.W[j]:
            nnz = self._row_counts.get(id(W))
            if nnz is None:
                nnz = np.diff(self._sparse_term(W).indptr)
                self._row_counts[id(W)] = nnz
            cost += float(nnz[Lam.indices].sum())
        return cost

    def _sparse_apply_forward(self, M, F, B: int, R: int):
        """CSR coefficients M (B * R, n) applied to forward functions F = (lower, upper) (B, n, m + 1):
        the lower function where a coefficient is positive, the upper where negative: (B, R, m + 1)."""
        Fl, Fu = (np.asarray(self.ops.numpy(v), np.float64) for v in F)  # (B, n, m + 1)
        pos = M.maximum(0).tocsr()
        neg = (M - pos).tocsr()
        out = np.zeros((B, R, Fl.shape[2]))
        for b in range(B):
            out[b] = pos[b * R:(b + 1) * R] @ Fl[b] + neg[b * R:(b + 1) * R] @ Fu[b]
        return self.ops.asarray(out)

    # ---- the final pass ----------------------------------------------------------------------------
    def final(self, C, res: Pass, want_A: bool = False, want_scores: bool = False, alphas=None, relax=None,
              slack_out: Optional[Dict[int, object]] = None):
        """Lower bounds (B, R) of C y (C (B, R, n_out)) given the intermediate bounds `res`; with
        want_A the coefficients in x, with want_scores the split scores (B, R, dims) over the dims
        `res.shares` were made for; `slack_out` (a dict) gets each relu, act and product layer's
        |coefficient| x gap (B, R, n) (the activation-split scores). The bounds are not widened
        here (`bounds.compute` does it)."""
        ops = self.ops
        C = ops.asarray(C)
        k = self.lg.output
        sl = {} if (want_scores or slack_out is not None) else None
        lb, A = self.backward({k: C}, ops.zeros(tuple(C.shape[:2])), res.affine, res.var, want_A=want_A,
                              alphas=alphas, slack_out=sl, relax=relax, lines=res.lines, gaps=res.gaps, fixed=res.fixed)
        if res.lin:  # the linearised product relaxation too: per row the better bound (and its A)
            lq, Aq = self.quadratic_final(C, res, want_A=want_A)
            better = lq > lb
            if want_A and A is not None:
                A = ops.xp.where(better[..., None], Aq, A)
            lb = ops.xp.where(better, lq, lb)
        if slack_out is not None:
            slack_out.update(sl)
        scores = None
        if want_scores:
            n_dims = self.lg.n_inputs if self._share_dims is None else len(self._share_dims)
            scores = ops.zeros(tuple(C.shape[:2]) + (n_dims,))
            for j, gap in sl.items():
                L = self.lg.layers[j]
                if L.kind == "product":  # half of a product's gap to each factor's share
                    _, _, ia, ib = self.products[j]
                    sha, shb = res.shares.get(L.source), res.shares.get(L.source_b)
                    if sha is not None and shb is not None:
                        scores = scores + gap @ (0.5 * (sha[:, ia] + shb[:, ib]))
                    continue
                sh = res.shares.get(L.source)
                if sh is not None:
                    scores = scores + gap @ sh
        return lb, A, scores

    def quadratic_final(self, C, res: Pass, want_A: bool = False):
        """Lower bounds (B, R) of C y (and with want_A their coefficients in x) with the linearised
        product relaxation on every product layer whose factors have linear bounds (`Pass.lin`)."""
        ops = self.ops
        C = ops.asarray(C)
        inv = None
        if C.shape[0] and C.shape[1] > 1 and bool((C == C[:1]).all()):  # the same rows on every box: each once
            uniq, inv = np.unique(ops.numpy(C[0]), axis=0, return_inverse=True)
            if uniq.shape[0] < C.shape[1]:
                C = ops.asarray(uniq)[None].expand(C.shape[0], -1, -1)
                inv = ops.torch.as_tensor(inv.reshape(-1))
            else:
                inv = None
        lb, A = self.backward({self.lg.output: C}, ops.zeros(tuple(C.shape[:2])), res.affine, res.var,
                              want_A=want_A, lines=res.lines, quadratic=res, fixed=res.fixed)
        if inv is not None:
            lb = lb[:, inv]
            A = A[:, inv] if A is not None else None
        return lb, A

    def unstable(self, res: Pass):
        """(B,) unstable ReLUs per box."""
        total = 0
        for R in self.relus:
            l, u = res.affine[R.source]
            total = total + self.ops.count((l < 0) & (u > 0))
        return total

    # ---- alpha: optimised relaxations (torch) ------------------------------------------------------
    def optimise_final(self, C, res: Pass, iters: int, lr: float):
        """Lower bounds (B, R) of C y with the final back-substitution's relaxations optimised per
        box, row and neuron (`optimise`; the intermediate bounds stay as given)."""
        C = self.ops.asarray(C)
        return self.optimise({self.lg.output: C}, self.ops.zeros(tuple(C.shape[:2])), res, iters, lr)

    def optimise(self, start: Dict[int, object], bias, res: Pass, iters: int, lr: float):
        """alpha-CROWN: lower bounds (B, R) of sum_j start[j] . value(layer j) + bias, the best over
        `iters` Adam steps (the first: CROWN's own relaxations) on, per box, row and neuron:
        * an unstable ReLU's lower slope in [0, 1] (any is valid);
        * an act neuron's two slopes, each s = s_min + t (s_max - s_min), t in [0, 1], between the
          smallest and largest of its derivative at l, m, u (and at an S-shape's inflection point),
          its chord and CROWN's slopes; the intercept of each is `smooth.intercept_point`'s exact
          sound one (float64, margin included), so every line is sound whatever t the optimiser
          reaches; the gradient in s is minus the point where the line touches (envelope theorem);
        * a product's lower (upper) plane: a convex combination, weight in [0, 1], of McCormick's
          two lower (upper) planes, sound as each of them is.
        Every step's bound is sound (evaluated in float64), so the elementwise best is returned."""
        torch = self.ops.torch
        upto = max(start) + 1  # the layers the back-substitution reaches
        B, R = bias.shape
        with torch.enable_grad():
            P = self._alpha_params(res, B, R, upto)
            relax = self.relaxations(res.affine, upto) if self.relus else None
            params = [t for group in P.values() for t in group["params"]]
            best = None
            opt = torch.optim.Adam(params, lr=lr) if params else None
            for it in range(iters + 1):
                alphas, rows = self._alpha_lines(res, P)
                lb = self.backward(dict(start), bias, res.affine, res.var, alphas=alphas or None, relax=relax,
                                   lines=res.lines, row_lines=rows, fixed=res.fixed)[0]
                cur = lb.detach()
                cur = torch.where(torch.isnan(cur), torch.full((), -np.inf, dtype=cur.dtype), cur)
                best = cur if best is None else torch.maximum(best, cur)
                if it == iters or opt is None or not lb.requires_grad:
                    break
                opt.zero_grad()
                (-torch.where(torch.isfinite(lb), lb, torch.zeros((), dtype=lb.dtype)).sum()).backward()
                opt.step()
                with torch.no_grad():
                    for t in params:
                        t.clamp_(0.0, 1.0)
        return best

    def _relaxed_before(self, k: int) -> int:
        """Neurons of the relu, act and product layers before layer k (the slopes a row of k has)."""
        return sum(L.size for L in self.lg.layers[:k] if L.kind in ("relu", "act", "product"))

    def optimise_rows(self, k: int, res: Pass, iters: int, lr: float) -> None:
        """Affine layer k's bounds in `res` tightened in place by alpha-CROWN (`optimise`) on its
        rows that the layers reading it relax: every row whose bounds differ when an act or product
        layer reads it, the unstable ones when only ReLUs do; in chunks of `chunk_values` slopes."""
        ops = self.ops
        torch = ops.torch
        lo, hi = res.affine[k]
        B, n = lo.shape
        readers = self.readers.get(k, [])
        if readers and all(r == "relu" for r in readers) and k not in self.all_rows:
            need = (lo < 0) & (hi > 0)
        else:
            need = (hi > lo) & torch.isfinite(lo) & torch.isfinite(hi)
        if k in self.single:
            need = need & ~self.single[k][None, :]
        fixed = self._fixed_rows(k, res, lo, hi)
        if fixed is not None:
            need = need & ~fixed
        counts = ops.count(need)
        U = int(counts.max()) if B else 0
        if U == 0:
            return
        t0 = time.monotonic()
        order_all = ops.order_first(need, U)
        earlier = self._relaxed_before(k)
        step = max(1, self.chunk_values // max(1, B * 2 * max(earlier, 1) * 4))
        for c0 in range(0, U, step):
            order = order_all[:, c0:c0 + step]
            Uc = order.shape[1]
            valid = (ops.arange(Uc)[None, :] + c0) < counts[:, None]
            start = {}
            for s_, W, _ in self.W[k]:
                Wr = ops.gather_rows(W, order)
                start[s_] = ops.cat([Wr, -Wr], 1)
            br = self.b[k][order]
            lb = self.optimise(start, ops.cat([br, -br], 1), res, iters, lr)
            new_l, new_u = lb[:, :Uc], -lb[:, Uc:]
            new_l, new_u = new_l - slack(new_l), new_u + slack(new_u)
            rows = ops.arange(B)[:, None] + 0 * order
            sel_r, sel_c = rows[valid], order[valid]
            lo[sel_r, sel_c] = torch.maximum(lo[sel_r, sel_c], new_l[valid])
            hi[sel_r, sel_c] = torch.minimum(hi[sel_r, sel_c], new_u[valid])
        self.stats["alpha_rows_s"] = self.stats.get("alpha_rows_s", 0.0) + time.monotonic() - t0

    def _alpha_params(self, res: Pass, B: int, R: int, upto: int) -> Dict[int, dict]:
        """The optimisable relaxations of the layers before `upto` (see `optimise`), per layer:
        {"params": [tensors (B, R, n)], ...what `_alpha_lines` needs}."""
        torch = self.ops.torch
        out: Dict[int, dict] = {}
        for L in self.lg.layers[:upto]:
            j = L.index
            if L.kind == "relu":
                l, u = res.affine[L.source]
                if not bool(((l < 0) & (u > 0)).any()):
                    continue
                lo_s, _, _ = relu_relaxation(l, u, torch)
                out[j] = {"params": [lo_s[:, None, :].expand(B, R, l.shape[1]).clone().requires_grad_(True)]}
            elif L.kind == "act" and j in res.lines:
                fn = L.function
                l, u = (v.detach().numpy() for v in res.affine[L.source])
                ls, lb, us, ub = (v.detach().numpy() for v in res.lines[j])
                with np.errstate(all="ignore"):
                    m = 0.5 * l + 0.5 * u
                    width = u - l
                    chord = (fn(u) - fn(l)) / np.where(width > 0, width, 1.0)
                    cands = [fn.df(l), fn.df(u), fn.df(m), chord, ls, us]
                    if fn.inflection is not None:
                        cands.append(fn.df(np.clip(fn.inflection, l, u)))
                    cands = np.stack([np.where(np.isfinite(c), c, np.nan) for c in cands])
                    smin, smax = np.nanmin(cands, axis=0), np.nanmax(cands, axis=0)
                    mask = (np.isfinite(l) & np.isfinite(u) & (width > 0) & np.isfinite(lb) & np.isfinite(ub)
                            & np.isfinite(smin) & np.isfinite(smax) & (smax > smin))
                    if fn.periodic:  # past a period Sin / Cos keep their constant bounds
                        mask &= (width <= TWO_PI) & (np.maximum(np.abs(l), np.abs(u)) <= PERIODIC_LIMIT)
                if not mask.any():
                    continue
                span = np.where(mask, smax - smin, 1.0)
                smin = np.where(mask, smin, 0.0)
                t0 = [np.clip(np.where(mask, (s0 - smin) / span, 0.0), 0.0, 1.0) for s0 in (ls, us)]
                params = [torch.as_tensor(t)[:, None, :].expand(B, R, l.shape[1]).clone().requires_grad_(True) for t in t0]
                out[j] = {"params": params, "l": l[:, None, :], "u": u[:, None, :], "smin": torch.as_tensor(smin)[:, None, :],
                          "span": torch.as_tensor(span)[:, None, :], "mask": torch.as_tensor(mask)[:, None, :]}
            elif L.kind == "product" and j in res.lines:
                _, _, ia, ib = self.products[j]
                (al, au), (bl, bu) = res.affine[L.source], res.affine[L.source_b]
                planes = bilinear_relaxation(al[:, ia], au[:, ia], bl[:, ib], bu[:, ib])
                finite = None
                for side in planes:
                    for (_, _, c) in side:
                        f = torch.isfinite(c)
                        finite = f if finite is None else finite & f
                if not bool(finite.any()):
                    continue
                n = al[:, ia].shape[1]
                params = [torch.ones((B, R, n), dtype=torch.float64).requires_grad_(True) for _ in range(2)]
                out[j] = {"params": params, "planes": planes, "mask": finite[:, None, :]}
        return out

    def _act_row_lines(self, L, g: dict, fixed):
        """An act layer's optimised lines as a function of the back-substituted coefficients Lam
        (B, R, n): each entry needs only the side its sign selects (the lower line where Lam > 0,
        the upper where Lam < 0), so only that side's intercept is computed (`backward` calls it)."""
        torch = self.ops.torch
        mask = g["mask"]

        def lines(Lam):
            out = []
            for t, upper, (fs, fb) in ((g["params"][0], False, fixed[:2]), (g["params"][1], True, fixed[2:])):
                s = g["smin"] + t * g["span"]
                sd = s.detach()
                need = (((Lam < 0) if upper else (Lam > 0)) & mask).detach().numpy()
                b_np, z = np.zeros(need.shape), np.zeros(need.shape)
                if need.any():
                    l_, u_ = (np.broadcast_to(v, need.shape)[need] for v in (g["l"], g["u"]))
                    b_np[need], z[need] = intercept_point(L.function, l_, u_, sd.numpy()[need], upper)
                # the value is exactly the sound intercept; its gradient in s is -z
                b = torch.as_tensor(b_np) - (s - sd) * torch.as_tensor(z)
                out += [torch.where(mask, s, fs[:, None, :]), torch.where(mask, b, fb[:, None, :])]
            return tuple(out)

        return lines

    def _alpha_lines(self, res: Pass, P: Dict[int, dict]):
        """(relu layer -> lower slopes (B, R, n), act / product layer -> its lines per row) from the
        parameters (`_alpha_params`)."""
        torch = self.ops.torch
        alphas, rows = {}, {}
        zero = torch.zeros((), dtype=torch.float64)
        for j, g in P.items():
            L = self.lg.layers[j]
            if L.kind == "relu":
                alphas[j] = g["params"][0]
            elif L.kind == "act":
                rows[j] = self._act_row_lines(L, g, res.lines[j])
            else:
                mask = g["mask"]
                sides = []
                for lam, (p1, p2), fixed in zip(g["params"], g["planes"], res.lines[j]):
                    comb = []
                    for v1, v2, v0 in zip(p1, p2, fixed):
                        v1, v2 = (torch.where(torch.isfinite(v), v, zero)[:, None, :] for v in (v1, v2))
                        comb.append(torch.where(mask, lam * v1 + (1.0 - lam) * v2, v0[:, None, :]))
                    sides.append(tuple(comb))
                rows[j] = tuple(sides)
        return alphas, rows
