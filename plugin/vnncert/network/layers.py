"""The layer graph for the MILP: the network as a DAG of affine maps on flat vectors and nonlinear nodes.

Built from the IR (`network.graph`) by asking each op's handler for its `to_affine(node, ctx)`
lowering (one handler per op in `network.ops`, beside its torch conversion). While lowering,
every tensor is a `Sym`: an affine function `sum_s M_s v_s + c` of the outputs `v_s` of earlier
*variable* layers (the input, ReLUs, max nodes), kept flat in C order. Affine ops (Gemm, MatMul,
Conv unrolled to a sparse matrix, BatchNorm, Add/Sub/Mul/Div by constants, Reshape, Transpose,
Slice, Concat, Pad, pooling averages, residual adds ...) only compose these maps; a nonlinear
op materialises its input as an `AffineLayer` and adds a `ReluLayer` or `MaxLayer`. So the
resulting graph alternates: input -> affine -> relu/max -> affine -> ... -> affine (output),
and every affine layer reads variable layers only.

Piecewise-linear ops that are not ReLU are rewritten exactly into ReLUs by their handlers
(LeakyRelu(x) = a x + (1 - a) relu(x), Clip(x, lo, hi) = lo + relu(x - lo) - relu(x - hi),
Max(a, b) = a + relu(b - a), Abs(x) = relu(x) + relu(-x)). An op with no lowering raises
`UnsupportedOperator` naming it.

Everything here is float64 and exact real arithmetic on the model's float32 constants.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import NetworkError, UnsupportedOperator

DENSE_FRACTION = 0.25  # a product with more nonzeros than this fraction is kept dense
DENSE_MAX_ENTRIES = 50_000_000  # ... unless the dense matrix would be larger than this


def _sp():
    import scipy.sparse as sp

    return sp


Matrix = Union[np.ndarray, "scipy.sparse.csr_matrix"]  # noqa: F821


def _tidy(m):
    """Keep a matrix dense or CSR sparse, whichever suits its fill."""
    sp = _sp()
    if sp.issparse(m):
        rows, cols = m.shape
        if rows * cols and m.nnz > DENSE_FRACTION * rows * cols and rows * cols <= DENSE_MAX_ENTRIES:
            return np.asarray(m.toarray(), dtype=np.float64)
        return m.tocsr()
    return np.asarray(m, dtype=np.float64)


def matmul(a, b):
    """a @ b for any mix of dense and sparse operands, tidied."""
    sp = _sp()
    if sp.issparse(a) and not sp.issparse(b):
        return _tidy(np.asarray(a @ b))
    if not sp.issparse(a) and sp.issparse(b):
        return _tidy(np.asarray((b.T @ a.T).T))
    return _tidy(a @ b)


def as_dense(m) -> np.ndarray:
    sp = _sp()
    return np.asarray(m.toarray() if sp.issparse(m) else m, dtype=np.float64)


def _take_rows(m, idx: np.ndarray):
    sp = _sp()
    if sp.issparse(m):
        return _tidy(m[idx])
    return m[idx]


def _scale_rows(m, s: np.ndarray):
    sp = _sp()
    if sp.issparse(m):
        return _tidy(sp.diags(s) @ m)
    return m * s[:, None]


# ---- the symbolic tensor used while lowering ----------------------------------------------------
@dataclass
class Sym:
    """An affine function of variable layers: value = sum_s terms[s] @ v_s + bias (flat, C order)."""

    shape: Tuple[int, ...]
    terms: Dict[int, Matrix]
    bias: np.ndarray

    @property
    def size(self) -> int:
        return int(self.bias.size)

    @staticmethod
    def constant(value: np.ndarray) -> "Sym":
        v = np.asarray(value, dtype=np.float64)
        return Sym(tuple(v.shape), {}, v.reshape(-1).copy())

    @property
    def is_constant(self) -> bool:
        return not self.terms

    def reshaped(self, shape: Sequence[int]) -> "Sym":
        shape = tuple(int(d) for d in shape)
        if int(np.prod(shape)) != self.size:
            raise NetworkError(f"internal: reshape of {self.size} entries to {list(shape)}")
        return Sym(shape, self.terms, self.bias)

    def take(self, idx: np.ndarray, fill: Optional[np.ndarray] = None) -> "Sym":
        """Entries idx (an int array of flat indices, shape = the new shape); idx < 0 takes `fill`."""
        idx = np.asarray(idx, dtype=np.int64)
        shape = tuple(idx.shape)
        flat = idx.reshape(-1)
        pad = flat < 0
        if pad.any():
            sp = _sp()
            safe = np.where(pad, 0, flat)
            keep = (~pad).astype(np.float64)
            terms = {s: _scale_rows(_take_rows(m, safe), keep) for s, m in self.terms.items()}
            for s, m in terms.items():
                if sp.issparse(m):
                    m.eliminate_zeros()
            fv = np.zeros(flat.size) if fill is None else np.broadcast_to(np.asarray(fill, np.float64).reshape(-1), (flat.size,))
            bias = np.where(pad, fv, self.bias[safe])
            return Sym(shape, terms, bias)
        return Sym(shape, {s: _take_rows(m, flat) for s, m in self.terms.items()}, self.bias[flat].copy())

    def linear(self, M, c: Optional[np.ndarray], shape: Sequence[int]) -> "Sym":
        """M @ self + c with M (n_out, size) dense or sparse."""
        shape = tuple(int(d) for d in shape)
        terms = {s: matmul(M, m) for s, m in self.terms.items()}
        bias = np.asarray(M @ self.bias).reshape(-1)
        if c is not None:
            bias = bias + np.broadcast_to(np.asarray(c, np.float64).reshape(-1), bias.shape)
        return Sym(shape, terms, bias)

    def scaled(self, scale: np.ndarray, shift: Optional[np.ndarray] = None) -> "Sym":
        """Elementwise scale * self + shift (both flat, of this size)."""
        scale = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (self.size,))
        terms = {s: _scale_rows(m, scale) for s, m in self.terms.items()}
        bias = self.bias * scale
        if shift is not None:
            bias = bias + np.broadcast_to(np.asarray(shift, np.float64).reshape(-1), bias.shape)
        return Sym(self.shape, terms, bias)

    def __add__(self, other: "Sym") -> "Sym":
        if self.size != other.size:
            raise NetworkError("internal: adding tensors of different sizes")
        terms = dict(self.terms)
        for s, m in other.terms.items():
            terms[s] = _tidy(terms[s] + m) if s in terms else m
        return Sym(self.shape, terms, self.bias + other.bias)

    def __neg__(self) -> "Sym":
        return self.scaled(-np.ones(self.size))

    def __sub__(self, other: "Sym") -> "Sym":
        return self + (-other)


def index_grid(shape: Sequence[int]) -> np.ndarray:
    """np.arange over the flat C-order positions of `shape`, in that shape (index maps start here)."""
    n = int(np.prod(shape)) if len(shape) else 1
    return np.arange(n, dtype=np.int64).reshape(tuple(shape))


def broadcast_to(s: Sym, shape: Sequence[int]) -> Sym:
    shape = tuple(int(d) for d in shape)
    if s.shape == shape:
        return s
    try:
        idx = np.broadcast_to(index_grid(s.shape), shape)
    except ValueError:
        raise NetworkError(f"cannot broadcast shape {list(s.shape)} to {list(shape)}") from None
    return s.take(np.ascontiguousarray(idx))


def concat(syms: List[Sym], axis: int) -> Sym:
    """ONNX Concat of tensors along axis."""
    rank = len(syms[0].shape)
    axis = axis + rank if axis < 0 else axis
    grids, offset = [], 0
    for s in syms:
        grids.append(index_grid(s.shape) + offset)
        offset += s.size
    idx = np.concatenate(grids, axis=axis)
    sp = _sp()
    sources = sorted({k for s in syms for k in s.terms})
    terms = {}
    for k in sources:
        blocks = []
        width = None
        for s in syms:
            if k in s.terms:
                width = s.terms[k].shape[1]
        for s in syms:
            m = s.terms.get(k)
            blocks.append(sp.csr_matrix((s.size, width)) if m is None else (sp.csr_matrix(m) if not sp.issparse(m) else m))
        terms[k] = _tidy(sp.vstack(blocks, format="csr"))
    stacked = Sym((offset,), terms, np.concatenate([s.bias for s in syms]))
    return stacked.take(idx)


# ---- the layer graph --------------------------------------------------------------------------
@dataclass
class InputLayer:
    index: int
    size: int
    shape: Tuple[int, ...]
    name: str = "input"
    kind: str = "input"


@dataclass
class AffineLayer:
    """value = sum over terms (source layer, matrix (size, source size)) of matrix @ source + bias."""

    index: int
    size: int
    terms: List[Tuple[int, Matrix]]
    bias: np.ndarray
    name: str = ""
    kind: str = "affine"


@dataclass
class ReluLayer:
    index: int
    size: int
    source: int  # an AffineLayer of the same size
    name: str = ""
    kind: str = "relu"


@dataclass
class MaxLayer:
    """value[j] = max over i in groups[j] (entries >= 0) of source[i] (MaxPool windows)."""

    index: int
    size: int
    source: int
    groups: np.ndarray  # (size, k) int64, -1 = no entry
    name: str = ""
    kind: str = "max"


Layer = Union[InputLayer, AffineLayer, ReluLayer, MaxLayer]


@dataclass
class LayerGraph:
    layers: List[Layer]
    output: int  # index of the AffineLayer that computes the network output
    input_shape: Tuple[int, ...]
    output_shape: Tuple[int, ...]
    ops: List[str] = field(default_factory=list)

    @property
    def n_inputs(self) -> int:
        return self.layers[0].size

    @property
    def n_outputs(self) -> int:
        return self.layers[self.output].size

    def nonlinear(self) -> List[Layer]:
        return [L for L in self.layers if L.kind in ("relu", "max")]

    @property
    def n_relus(self) -> int:
        return sum(L.size for L in self.layers if L.kind == "relu")

    def describe(self) -> str:
        parts = []
        for L in self.layers:
            if L.kind == "affine":
                nnz = sum((m.nnz if hasattr(m, "nnz") else int(np.count_nonzero(m))) for _, m in L.terms)
                parts.append(f"affine[{L.size}, nnz {nnz}, from {[s for s, _ in L.terms]}]")
            else:
                parts.append(f"{L.kind}[{L.size}]")
        return " -> ".join(parts)

    def evaluate(self, xs: np.ndarray, all_layers: bool = False):
        """float64 forward pass over a batch of flat inputs (B, n_inputs) -> (B, n_outputs)."""
        xs = np.atleast_2d(np.asarray(xs, dtype=np.float64))
        vals: List[Optional[np.ndarray]] = [None] * len(self.layers)
        vals[0] = xs
        for L in self.layers[1:]:
            if L.kind == "affine":
                acc = np.broadcast_to(L.bias, (xs.shape[0], L.size)).copy()
                for s, m in L.terms:
                    acc += np.asarray((m @ vals[s].T).T)
                vals[L.index] = acc
            elif L.kind == "relu":
                vals[L.index] = np.maximum(vals[L.source], 0.0)
            elif L.kind == "max":
                v = vals[L.source]
                g = L.groups
                gathered = np.where(g[None, :, :] >= 0, v[:, np.where(g >= 0, g, 0)], -np.inf)
                vals[L.index] = gathered.max(axis=2)
        return vals if all_layers else vals[self.output]

    def interval_bounds(self, lower: np.ndarray, upper: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
        """IBP bounds of every layer over the box (the floor every tighter method improves on)."""
        out: List[Tuple[np.ndarray, np.ndarray]] = [None] * len(self.layers)  # type: ignore
        out[0] = (np.asarray(lower, np.float64), np.asarray(upper, np.float64))
        for L in self.layers[1:]:
            out[L.index] = self.layer_interval(L, out)
        return out

    def layer_interval(self, L: Layer, bounds) -> Tuple[np.ndarray, np.ndarray]:
        """IBP bounds of one layer from the bounds of the layers it reads."""
        if L.kind == "affine":
            lo = L.bias.copy()
            hi = L.bias.copy()
            for s, m in L.terms:
                sl, su = bounds[s]
                mid, rad = (sl + su) / 2.0, (su - sl) / 2.0
                c = np.asarray(m @ mid).reshape(-1)
                r = np.asarray(abs(m) @ rad).reshape(-1)
                lo += c - r
                hi += c + r
            return lo, hi
        if L.kind == "relu":
            sl, su = bounds[L.source]
            return np.maximum(sl, 0.0), np.maximum(su, 0.0)
        if L.kind == "max":
            sl, su = bounds[L.source]
            g = L.groups
            valid = g >= 0
            gi = np.where(valid, g, 0)
            return (np.where(valid, sl[gi], -np.inf).max(axis=1), np.where(valid, su[gi], -np.inf).max(axis=1))
        raise NetworkError(f"internal: unknown layer kind {L.kind}")


# ---- the builder the op handlers call back into ----------------------------------------------
class LayerBuilder:
    """Walks the IR; op handlers' `to_affine(node, ctx)` read and write `Sym`s through this object."""

    WHERE = "the MILP encoder"

    def __init__(self, graph):
        sp = _sp()
        self.graph = graph
        shape = tuple(int(d) for d in graph.input_shape) or (1,)
        n = int(np.prod(shape))
        self.layers: List[Layer] = [InputLayer(0, n, shape, graph.input_name)]
        self.syms: Dict[str, Sym] = {graph.input_name: Sym(shape, {0: sp.identity(n, format="csr", dtype=np.float64)}, np.zeros(n))}
        self._materialised: Dict[int, int] = {}

    # ---- queries used by handlers ----
    def is_const(self, name: str) -> bool:
        return self.graph.is_const(name)

    def const(self, name: str) -> np.ndarray:
        if name not in self.graph.constants:
            raise NetworkError(f"internal: {name!r} is not a constant")
        return np.asarray(self.graph.constants[name])

    def sym(self, name: str) -> Sym:
        """The tensor `name` as a Sym (constants included, as Syms without terms)."""
        if name in self.syms:
            return self.syms[name]
        if self.is_const(name):
            return Sym.constant(self.const(name))
        raise NetworkError(f"internal: tensor {name!r} used before it is computed")

    def shape(self, name: str) -> Tuple[int, ...]:
        return self.sym(name).shape

    def set(self, name: str, s: Sym) -> None:
        self.syms[name] = s

    def unsupported(self, node, why: str = ""):
        where = self.WHERE + (f": {why}" if why else "")
        return UnsupportedOperator(node.op_type, where=where, node_name=node.name)

    # ---- nonlinear nodes ----
    def affine_layer(self, s: Sym, name: str = "") -> int:
        """Materialise s as an AffineLayer (reused when the same Sym object is materialised twice)."""
        key = id(s)
        if key in self._materialised:
            return self._materialised[key]
        idx = len(self.layers)
        terms = [(k, _tidy(m)) for k, m in sorted(s.terms.items())]
        self.layers.append(AffineLayer(idx, s.size, terms, s.bias.astype(np.float64).copy(), name))
        self._materialised[key] = idx
        return idx

    def relu(self, s: Sym, name: str = "") -> Sym:
        """relu(s) as a new variable layer; returns the Sym of its output."""
        if s.is_constant:
            return Sym(s.shape, {}, np.maximum(s.bias, 0.0))
        src = self.affine_layer(s, name)
        idx = len(self.layers)
        self.layers.append(ReluLayer(idx, s.size, src, name))
        sp = _sp()
        return Sym(s.shape, {idx: sp.identity(s.size, format="csr", dtype=np.float64)}, np.zeros(s.size))

    def maximum(self, s: Sym, groups: np.ndarray, shape: Sequence[int], name: str = "") -> Sym:
        """out[j] = max_i s[groups[j, i]] (entries -1 ignored) as a new variable layer."""
        groups = np.asarray(groups, dtype=np.int64)
        if groups.shape[1] == 1:  # windows of one entry are a plain selection
            return s.take(groups[:, 0].reshape(tuple(shape)))
        src = self.affine_layer(s, name)
        idx = len(self.layers)
        self.layers.append(MaxLayer(idx, groups.shape[0], src, groups, name))
        sp = _sp()
        n = groups.shape[0]
        return Sym(tuple(shape), {idx: sp.identity(n, format="csr", dtype=np.float64)}, np.zeros(n))

    # ---- the walk ----
    def build(self) -> LayerGraph:
        from .ops import handler

        g = self.graph
        for node in g.nodes:
            try:
                h = handler(node.op_type, "to_affine", where=self.WHERE)
            except UnsupportedOperator:
                raise UnsupportedOperator(node.op_type, where=self.WHERE, node_name=node.name) from None
            h.to_affine(node, self)
        out = self.sym(g.output_name)
        if out.is_constant:
            raise NetworkError("the model's output does not depend on its input")
        out_idx = self.affine_layer(Sym(out.shape, out.terms, out.bias), g.output_name)
        layers = self.layers
        return LayerGraph(layers, out_idx, tuple(self.layers[0].shape), tuple(out.shape), g.op_types)


def build_layer_graph(graph) -> LayerGraph:
    return LayerBuilder(graph).build()


def layer_graph(network) -> LayerGraph:
    """`network.layer_graph` (a lazy property of `Network`); kept for callers outside network/."""
    return network.layer_graph


# ---- helpers for the op handlers' lowerings -------------------------------------------------------
def broadcast_shape(*shapes) -> Tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise NetworkError(f"shapes {[list(s) for s in shapes]} do not broadcast") from None


def elementwise(ctx: LayerBuilder, node, op: str) -> Sym:
    """Add/Sub/Mul/Div of a tensor and a constant, or Add/Sub of two tensors (ONNX broadcasting)."""
    a, b = ctx.sym(node.inputs[0]), ctx.sym(node.inputs[1])
    shape = broadcast_shape(a.shape, b.shape)
    if op in ("Add", "Sub"):
        a, b = broadcast_to(a, shape), broadcast_to(b, shape)
        return a + b if op == "Add" else a - b
    if op == "Mul":
        if not a.is_constant and not b.is_constant:
            raise ctx.unsupported(node, "product of two variable tensors")
        x, c = (b, a) if a.is_constant else (a, b)
        x = broadcast_to(x, shape)
        cv = np.broadcast_to(c.bias.reshape(c.shape), shape).reshape(-1)
        return x.scaled(cv)
    if op == "Div":
        if not b.is_constant:
            raise ctx.unsupported(node, "division by a variable tensor")
        x = broadcast_to(a, shape)
        cv = np.broadcast_to(b.bias.reshape(b.shape), shape).reshape(-1)
        if np.any(cv == 0):
            raise NetworkError(f"Div node {node.name!r}: division by zero")
        return x.scaled(1.0 / cv)
    raise ctx.unsupported(node)


def matmul_const_right(x: Sym, B: np.ndarray) -> Sym:
    """x @ B with B constant of rank 1 or 2 (ONNX MatMul semantics)."""
    sp = _sp()
    B = np.asarray(B, dtype=np.float64)
    if x.shape == ():
        raise NetworkError("MatMul of a scalar")
    vec_b = B.ndim == 1
    if vec_b:
        B = B.reshape(-1, 1)
    if B.ndim != 2:
        raise NetworkError(f"MatMul with a constant operand of rank {B.ndim} is not supported")
    K, M = B.shape
    if x.shape[-1] != K:
        raise NetworkError(f"MatMul shapes {list(x.shape)} and {list(B.shape)} do not match")
    rows = x.size // K
    mat = sp.kron(sp.identity(rows, format="csr"), sp.csr_matrix(B.T), format="csr")
    out_shape = tuple(x.shape[:-1]) + (() if vec_b else (M,))
    return x.linear(mat, None, out_shape)


def matmul_const_left(A: np.ndarray, x: Sym) -> Sym:
    """A @ x with A constant of rank 2 (or 1) and x of rank >= 1."""
    sp = _sp()
    A = np.asarray(A, dtype=np.float64)
    vec_a = A.ndim == 1
    if vec_a:
        A = A.reshape(1, -1)
    if A.ndim != 2:
        raise NetworkError(f"MatMul with a constant operand of rank {A.ndim} is not supported")
    N, K = A.shape
    if len(x.shape) == 1:
        if x.shape[0] != K:
            raise NetworkError("MatMul shapes do not match")
        return x.linear(sp.csr_matrix(A), None, () if vec_a else (N,))
    if x.shape[-2] != K:
        raise NetworkError(f"MatMul shapes {list(A.shape)} and {list(x.shape)} do not match")
    Mcols = x.shape[-1]
    batch = x.size // (K * Mcols)
    mat = sp.kron(sp.identity(batch, format="csr"), sp.kron(sp.csr_matrix(A), sp.identity(Mcols, format="csr")), format="csr")
    out_shape = tuple(x.shape[:-2]) + (() if vec_a else (N,)) + (Mcols,)
    return x.linear(mat, None, out_shape)


def window_positions(in_spatial, kernel, strides, pads_begin, pads_end, dilations, ceil_mode=False):
    """Per kernel offset: (input spatial flat index, valid-in-input mask, valid-in-padded mask)
    arrays over the output grid, plus the output spatial shape."""
    nd = len(kernel)
    out = []
    for i in range(nd):
        span = in_spatial[i] + pads_begin[i] + pads_end[i] - dilations[i] * (kernel[i] - 1) - 1
        if ceil_mode:
            o = -(-span // strides[i]) + 1
            # the last window must start inside the padded input (ONNX / torch rule)
            if (o - 1) * strides[i] >= in_spatial[i] + pads_begin[i]:
                o -= 1
        else:
            o = span // strides[i] + 1
        if o <= 0:
            raise NetworkError(f"window of size {list(kernel)} does not fit input {list(in_spatial)}")
        out.append(int(o))
    grids = np.meshgrid(*[np.arange(o) for o in out], indexing="ij")
    offsets = []
    for kk in np.ndindex(*kernel):
        pos = [grids[i] * strides[i] + kk[i] * dilations[i] - pads_begin[i] for i in range(nd)]
        inside = np.ones(tuple(out), dtype=bool)
        padded = np.ones(tuple(out), dtype=bool)
        for i in range(nd):
            inside &= (pos[i] >= 0) & (pos[i] < in_spatial[i])
            padded &= (pos[i] >= -pads_begin[i]) & (pos[i] < in_spatial[i] + pads_end[i])
        flat = np.zeros(tuple(out), dtype=np.int64)
        for i in range(nd):
            flat = flat * in_spatial[i] + np.clip(pos[i], 0, in_spatial[i] - 1)
        offsets.append((kk, flat.reshape(-1), inside.reshape(-1), padded.reshape(-1)))
    return offsets, tuple(out)


def conv_matrix(in_shape, W: np.ndarray, strides, pads, dilations, group: int):
    """Sparse matrix of an N-D convolution (no bias) on a (N, C, *S) input, and the output shape."""
    sp = _sp()
    W = np.asarray(W, dtype=np.float64)
    N, C = int(in_shape[0]), int(in_shape[1])
    S = [int(d) for d in in_shape[2:]]
    OC, Cg = W.shape[0], W.shape[1]
    nd = len(S)
    kernel = list(W.shape[2:])
    if C != Cg * group or OC % group:
        raise NetworkError(f"Conv: {C} input channels do not fit weight {list(W.shape)} with group {group}")
    offsets, out_s = window_positions(S, kernel, strides, pads[:nd], pads[nd:], dilations)
    n_pos = int(np.prod(out_s))
    n_in_sp = int(np.prod(S))
    OCg = OC // group
    oc = np.arange(OC)
    ic_of = (oc // OCg)[:, None] * Cg + np.arange(Cg)[None, :]  # (OC, Cg) absolute input channel
    rows_l, cols_l, vals_l = [], [], []
    for kk, flat, inside, _ in offsets:
        w = W[(slice(None), slice(None)) + tuple(kk)]  # (OC, Cg)
        pos = np.flatnonzero(inside)
        if pos.size == 0:
            continue
        r = oc[:, None, None] * n_pos + pos[None, None, :]  # (OC, 1, P)
        c = ic_of[:, :, None] * n_in_sp + flat[pos][None, None, :]  # (OC, Cg, P)
        v = np.broadcast_to(w[:, :, None], (OC, Cg, pos.size))
        nz = v != 0
        rows_l.append(np.broadcast_to(r, v.shape)[nz])
        cols_l.append(np.broadcast_to(c, v.shape)[nz])
        vals_l.append(v[nz])
    rows = np.concatenate(rows_l) if rows_l else np.zeros(0, np.int64)
    cols = np.concatenate(cols_l) if cols_l else np.zeros(0, np.int64)
    vals = np.concatenate(vals_l) if vals_l else np.zeros(0)
    one = sp.csr_matrix((vals, (rows, cols)), shape=(OC * n_pos, C * n_in_sp))
    mat = sp.kron(sp.identity(N, format="csr"), one, format="csr") if N > 1 else one
    return mat, (N, OC) + tuple(out_s)


def const_input(ctx: LayerBuilder, node, i: int) -> Optional[np.ndarray]:
    """Optional constant input i of node (None when absent); a variable there is an error."""
    if len(node.inputs) > i and node.inputs[i]:
        if not ctx.is_const(node.inputs[i]):
            raise NetworkError(f"{node.op_type} node {node.name!r}: input {i} must be constant")
        return np.asarray(ctx.const(node.inputs[i]))
    return None


def norm_axis(a, rank: int) -> int:
    a = int(a)
    return a + rank if a < 0 else a


def gemm(ctx: LayerBuilder, node) -> Sym:
    """Y = alpha A' B' + beta C with A variable, B and C constant."""
    a, b = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if ctx.is_const(a) or not ctx.is_const(b) or (c is not None and not ctx.is_const(c)):
        raise NetworkError(f"Gemm node {node.name!r}: only a variable A with constant B and C is supported")
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    x = ctx.sym(a)
    if len(x.shape) != 2:
        raise NetworkError(f"Gemm node {node.name!r}: A of rank {len(x.shape)}")
    if int(node.attr("transA", 0)):
        x = x.take(np.ascontiguousarray(index_grid(x.shape).T))
    B = np.asarray(ctx.const(b), dtype=np.float64)
    y = matmul_const_right(x, alpha * (B.T if int(node.attr("transB", 0)) else B))
    if c is not None:
        C = beta * np.asarray(ctx.const(c), dtype=np.float64)
        y = y + Sym.constant(np.broadcast_to(C, y.shape))
    return y


def conv(ctx: LayerBuilder, node, pads: Sequence[int]) -> Sym:
    """Conv with constant weights (and bias) as a sparse matrix; `pads` resolved by the caller."""
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if ctx.is_const(x) or not ctx.is_const(w) or (b is not None and not ctx.is_const(b)):
        raise NetworkError(f"Conv node {node.name!r}: only constant weights and bias are supported")
    W = np.asarray(ctx.const(w), dtype=np.float64)
    s = ctx.sym(x)
    nd = W.ndim - 2
    strides = [int(v) for v in node.attr("strides", [1] * nd)]
    dilations = [int(v) for v in node.attr("dilations", [1] * nd)]
    M, out_shape = conv_matrix(s.shape, W, strides, list(pads), dilations, int(node.attr("group", 1)))
    c = None
    if b is not None:
        bias = np.asarray(ctx.const(b), dtype=np.float64).reshape(-1)
        c = np.broadcast_to(bias.reshape((1, -1) + (1,) * nd), out_shape).reshape(-1)
    return s.linear(M, c, out_shape)


def batchnorm(ctx: LayerBuilder, node) -> Sym:
    x = ctx.sym(node.inputs[0])
    if not all(ctx.is_const(n) for n in node.inputs[1:5]):
        raise NetworkError(f"BatchNormalization node {node.name!r}: parameters must be constant")
    if int(node.attr("training_mode", 0)):
        raise NetworkError(f"BatchNormalization node {node.name!r}: training mode is not supported")
    gamma, beta, mean, var = (np.asarray(ctx.const(n), dtype=np.float64).reshape(-1) for n in node.inputs[1:5])
    scale = gamma / np.sqrt(var + float(node.attr("epsilon", 1e-5)))
    shift = beta - mean * scale
    shp = (1, -1) + (1,) * (len(x.shape) - 2)
    return x.scaled(np.broadcast_to(scale.reshape(shp), x.shape).reshape(-1),
                    np.broadcast_to(shift.reshape(shp), x.shape).reshape(-1))


def pool_windows(s: Sym, kernel, strides, dilations, pads, ceil_mode: bool):
    nd = len(kernel)
    return window_positions(list(s.shape[2:]), [int(k) for k in kernel], [int(v) for v in strides], list(pads[:nd]),
                            list(pads[nd:]), [int(v) for v in dilations], ceil_mode)


def maxpool(ctx: LayerBuilder, node, kernel, strides, dilations, pads) -> Sym:
    """MaxPool as a max layer over its windows (padding never wins)."""
    s = ctx.sym(node.inputs[0])
    offsets, out_s = pool_windows(s, kernel, strides, dilations, pads, bool(node.attr("ceil_mode", 0)))
    N, C = s.shape[0], s.shape[1]
    n_sp = int(np.prod(s.shape[2:]))
    cols = np.stack([np.where(inside, flat, -1) for _, flat, inside, _ in offsets], axis=1)  # (n_pos, K)
    base = (np.arange(N * C) * n_sp)[:, None, None]
    groups = np.where(cols[None] >= 0, cols[None] + base, -1).reshape(N * C * cols.shape[0], -1)
    groups = groups[:, (groups >= 0).any(axis=0)]
    if (groups < 0).all(axis=1).any():
        raise NetworkError(f"MaxPool node {node.name!r}: a window covers only padding")
    return ctx.maximum(s, groups, (N, C) + tuple(out_s), node.outputs[0])


def avgpool(ctx: LayerBuilder, node, kernel, strides, pads) -> Sym:
    """AveragePool as a sparse matrix (count_include_pad and ceil_mode as ONNX defines them)."""
    sp = _sp()
    s = ctx.sym(node.inputs[0])
    nd = len(kernel)
    offsets, out_s = pool_windows(s, kernel, strides, [1] * nd, pads, bool(node.attr("ceil_mode", 0)))
    include_pad = bool(node.attr("count_include_pad", 0))
    N, C = s.shape[0], s.shape[1]
    n_pos, n_sp = int(np.prod(out_s)), int(np.prod(s.shape[2:]))
    rows, cols = [], []
    count = np.zeros(n_pos)
    for _, flat, inside, padded in offsets:
        count += padded if include_pad else inside
        pos = np.flatnonzero(inside)
        rows.append(pos)
        cols.append(flat[pos])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    one = sp.csr_matrix((1.0 / count[rows], (rows, cols)), shape=(n_pos, n_sp))
    return s.linear(sp.kron(sp.identity(N * C, format="csr"), one, format="csr"), None, (N, C) + tuple(out_s))


def global_avgpool(ctx: LayerBuilder, node) -> Sym:
    sp = _sp()
    s = ctx.sym(node.inputs[0])
    N, C = s.shape[0], s.shape[1]
    n_sp = int(np.prod(s.shape[2:]))
    one = sp.csr_matrix(np.full((1, n_sp), 1.0 / n_sp))
    return s.linear(sp.kron(sp.identity(N * C, format="csr"), one, format="csr"), None, (N, C) + (1,) * (len(s.shape) - 2))


def slice_indices(shape, starts, ends, axes, steps) -> np.ndarray:
    """Flat indices an ONNX Slice selects (negative steps and clamping as the operator defines)."""
    rank = len(shape)
    starts = [int(v) for v in np.asarray(starts).reshape(-1)]
    ends = [int(v) for v in np.asarray(ends).reshape(-1)]
    axes = list(range(len(starts))) if axes is None else [norm_axis(a, rank) for a in np.asarray(axes).reshape(-1)]
    steps = [1] * len(starts) if steps is None else [int(v) for v in np.asarray(steps).reshape(-1)]
    idx = [slice(None)] * rank
    for st, en, a, step in zip(starts, ends, axes, steps):
        dim = shape[a]
        if step == 0:
            raise NetworkError("Slice with step 0")
        st = st + dim if st < 0 else st
        en = en + dim if en < 0 else en
        if step > 0:
            idx[a] = slice(min(max(st, 0), dim), min(max(en, 0), dim), step)
        else:
            st, en = min(max(st, 0), dim - 1), min(max(en, -1), dim - 1)
            idx[a] = slice(st, None if en < 0 else en, step)
    return np.ascontiguousarray(index_grid(shape)[tuple(idx)])


def reduce(ctx: LayerBuilder, node, axes, keep: bool, mean: bool) -> Sym:
    """ReduceSum / ReduceMean over `axes` (already normalised, non-empty) as a sparse matrix."""
    sp = _sp()
    s = ctx.sym(node.inputs[0])
    rank = len(s.shape)
    kept_shape = tuple(1 if i in axes else d for i, d in enumerate(s.shape))
    grid = np.indices(s.shape).reshape(rank, -1)
    for a in axes:
        grid[a] = 0
    rows = np.ravel_multi_index(tuple(grid), kept_shape)
    n_out = int(np.prod(kept_shape))
    val = 1.0 / (s.size // max(n_out, 1)) if mean else 1.0
    M = sp.csr_matrix((np.full(s.size, val), (rows, np.arange(s.size))), shape=(n_out, s.size))
    out_shape = kept_shape if keep else tuple(d for i, d in enumerate(s.shape) if i not in axes)
    return s.linear(M, None, out_shape)
