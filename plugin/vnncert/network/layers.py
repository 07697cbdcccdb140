"""The layer graph: the network as a DAG of affine maps on flat vectors and nonlinear nodes.

Built from the IR (`Network.graph`) by asking each op's handler for its `to_affine(node, ctx)`
lowering (one handler per op in `vnncert.network.ops`), with this module's `LayerBuilder` as
the ctx. While lowering, every tensor is a `Sym` (`vnncert.network.affine`): an affine function
of the outputs of earlier *variable* layers (the input, ReLUs, max nodes, act and product
layers), flat in C order. Affine ops only compose these maps; a nonlinear op materialises its
input as an `AffineLayer` and adds a `ReluLayer`, `MaxLayer`, `ActLayer` (a smooth elementwise
function: Sigmoid, Tanh, Exp, Log, Sqrt, Reciprocal, Softplus, Erf, Sin, Cos, Pow by a constant)
or `ProductLayer` (two variables multiplied: Mul, Div, MatMul of two variable tensors). So the
graph alternates input -> affine -> nonlinear -> affine -> ... -> affine (output), and every
affine layer reads variable layers only. The act and product kinds are not piecewise linear
(`SMOOTH_KINDS`): the MILP does not encode them (`LayerGraph.require_piecewise_linear`).

Piecewise-linear ops other than Relu are rewritten exactly into ReLUs by their handlers (e.g.
LeakyRelu(x) = a x + (1 - a) relu(x)); an op with no lowering raises `UnsupportedOperator`
naming it. Everything here is float64. `Network.layer_graph` builds it once per network.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import NetworkError, UnsupportedOperator
from .affine import Matrix, Sym, as_dense, sparse, tidy  # noqa: F401  (as_dense: used by engines from here)
from .ops import handler, smooth


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


@dataclass
class ActLayer:
    """value = fn(source), elementwise, for a smooth function (not piecewise linear): `fn` names
    the op (Sigmoid, Tanh, Exp, Log, Sqrt, Reciprocal, Softplus, Erf, Sin, Cos, or Pow with its
    constant `exponent`); `function` is its `smooth.Scalar` (evaluation and relaxation)."""

    index: int
    size: int
    source: int  # an AffineLayer of the same size
    fn: str
    exponent: Optional[float] = None  # Pow only
    name: str = ""  # the ONNX node's name
    op: str = ""  # the ONNX op it lowers (fn; Div for the reciprocal of a divisor)
    kind: str = "act"

    @property
    def function(self):
        return smooth_function(self.fn, self.exponent)

    def relax(self, l, u, xp=None):
        """(lower_slope, lower_intercept, upper_slope, upper_intercept) over [l, u] (`smooth.relax`)."""
        return smooth.relax(self.function, l, u, xp)


@dataclass
class ProductLayer:
    """value[j] = source[ia[j]] * source_b[ib[j]]: products of two variables (Mul of two variable
    tensors, with broadcasting; the products of a MatMul of two variable tensors, which the
    affine layer after it sums). `source` and `source_b` are AffineLayers (possibly the same)."""

    index: int
    size: int
    source: int
    source_b: int
    ia: np.ndarray  # (size,) int64
    ib: np.ndarray  # (size,) int64
    name: str = ""  # the ONNX node's name
    op: str = ""  # the ONNX op it lowers (Mul, Div, MatMul)
    kind: str = "product"


Layer = Union[InputLayer, AffineLayer, ReluLayer, MaxLayer, ActLayer, ProductLayer]

# the kinds that are not piecewise linear: no exact MILP / LP encoding exists for them
SMOOTH_KINDS = ("act", "product")


def smooth_function(fn: str, exponent: Optional[float] = None):
    """The `smooth.Scalar` of an act layer's function."""
    return smooth.power(exponent) if fn == "Pow" else smooth.FUNCTIONS[fn]


def sources(L) -> List[int]:
    """The layers a layer reads (affine: its terms' sources; product: both factors)."""
    if L.kind == "affine":
        return [s for s, _ in L.terms]
    if L.kind == "input":
        return []
    if L.kind == "product":
        return [L.source] if L.source == L.source_b else [L.source, L.source_b]
    return [L.source]


@dataclass
class LayerGraph:
    layers: List[Layer]
    output: int  # index of the AffineLayer that computes the network output
    input_shape: Tuple[int, ...]
    output_shape: Tuple[int, ...]

    @property
    def n_inputs(self) -> int:
        return self.layers[0].size

    @property
    def n_outputs(self) -> int:
        return self.layers[self.output].size

    @property
    def n_relus(self) -> int:
        return sum(L.size for L in self.layers if L.kind == "relu")

    @property
    def smooth_layers(self) -> List[Layer]:
        """The layers that are not piecewise linear (act, product): no MILP encodes them."""
        return [L for L in self.layers if L.kind in SMOOTH_KINDS]

    @property
    def piecewise_linear(self) -> bool:
        return not self.smooth_layers

    def require_piecewise_linear(self) -> "LayerGraph":
        """self; else `UnsupportedOperator` naming the op and node of the first layer that is not
        piecewise linear (what the MILP and LP engines raise: the router reads it as the op kept
        out of the MILP encoding, and says which modes take the network)."""
        for L in self.smooth_layers:
            what = "a product of two variable tensors" if L.kind == "product" else "not piecewise linear"
            raise UnsupportedOperator(L.op, where=f"the MILP encoder: {what}, no MILP encoding", node_name=L.name)
        return self

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
            elif L.kind == "act":
                vals[L.index] = L.function(vals[L.source])
            elif L.kind == "product":
                vals[L.index] = vals[L.source][:, L.ia] * vals[L.source_b][:, L.ib]
            else:
                raise NetworkError(f"internal: unknown layer kind {L.kind}")
        return vals if all_layers else vals[self.output]

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
        if L.kind == "act":
            sl, su = bounds[L.source]
            return smooth.value_bounds(L.function, sl, su)
        if L.kind == "product":
            (al, au), (bl, bu) = bounds[L.source], bounds[L.source_b]
            return smooth.product_bounds(al[..., L.ia], au[..., L.ia], bl[..., L.ib], bu[..., L.ib])
        raise NetworkError(f"internal: unknown layer kind {L.kind}")


# ---- the builder the op handlers call back into ----------------------------------------------
class LayerBuilder:
    """Walks the IR; op handlers' `to_affine(node, ctx)` read and write `Sym`s through this object."""

    WHERE = "the MILP encoder"

    def __init__(self, graph):
        sp = sparse()
        self.graph = graph
        shape = tuple(int(d) for d in graph.input_shape) or (1,)
        n = int(np.prod(shape))
        self.layers: List[Layer] = [InputLayer(0, n, shape, graph.input_name)]
        self.syms: Dict[str, Sym] = {graph.input_name: Sym(shape, {0: sp.identity(n, format="csr", dtype=np.float64)}, np.zeros(n))}
        self._materialised: Dict[int, Tuple[weakref.ref, int]] = {}  # id(Sym) -> (that Sym, its layer)

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
        """Materialise s as an AffineLayer (reused when the same Sym object is materialised twice).

        The cache is keyed by id(s) but holds a weak reference to s and is hit only when that still
        is s: a temporary Sym materialised and then freed leaves its id to whatever object CPython
        allocates at the same address next, and a hit on the id alone once handed a later Sym of
        another size the earlier Sym's layer (the graph then depended on memory addresses)."""
        hit = self._materialised.get(id(s))
        if hit is not None and hit[0]() is s:
            return hit[1]
        idx = len(self.layers)
        terms = [(k, tidy(m)) for k, m in sorted(s.terms.items())]
        self.layers.append(AffineLayer(idx, s.size, terms, s.bias.astype(np.float64).copy(), name))
        self._materialised[id(s)] = (weakref.ref(s), idx)
        return idx

    def relu(self, s: Sym, name: str = "") -> Sym:
        """relu(s) as a new variable layer; returns the Sym of its output."""
        if s.is_constant:
            return Sym(s.shape, {}, np.maximum(s.bias, 0.0))
        src = self.affine_layer(s, name)
        idx = len(self.layers)
        self.layers.append(ReluLayer(idx, s.size, src, name))
        sp = sparse()
        return Sym(s.shape, {idx: sp.identity(s.size, format="csr", dtype=np.float64)}, np.zeros(s.size))

    def maximum(self, s: Sym, groups: np.ndarray, shape: Sequence[int], name: str = "") -> Sym:
        """out[j] = max_i s[groups[j, i]] (entries -1 ignored) as a new variable layer."""
        groups = np.asarray(groups, dtype=np.int64)
        if groups.shape[1] == 1:  # windows of one entry are a plain selection
            return s.take(groups[:, 0].reshape(tuple(shape)))
        src = self.affine_layer(s, name)
        idx = len(self.layers)
        self.layers.append(MaxLayer(idx, groups.shape[0], src, groups, name))
        sp = sparse()
        n = groups.shape[0]
        return Sym(tuple(shape), {idx: sp.identity(n, format="csr", dtype=np.float64)}, np.zeros(n))

    def activation(self, s: Sym, fn: str, exponent: Optional[float] = None, name: str = "", op: str = "") -> Sym:
        """fn(s) elementwise (a smooth function: `ActLayer`) as a new variable layer."""
        if s.is_constant:
            with np.errstate(all="ignore"):
                return Sym(s.shape, {}, np.asarray(smooth_function(fn, exponent)(s.bias), np.float64))
        src = self.affine_layer(s, name)
        idx = len(self.layers)
        self.layers.append(ActLayer(idx, s.size, src, fn, None if exponent is None else float(exponent), name, op or fn))
        sp = sparse()
        return Sym(s.shape, {idx: sp.identity(s.size, format="csr", dtype=np.float64)}, np.zeros(s.size))

    def product(self, a: Sym, b: Sym, ia: np.ndarray, ib: np.ndarray, shape: Sequence[int], name: str = "",
                op: str = "Mul") -> Sym:
        """out[j] = a[ia[j]] * b[ib[j]] (flat indices; `shape` the output's) as a new variable layer;
        a constant factor scales the other (affine)."""
        ia = np.asarray(ia, np.int64).reshape(-1)
        ib = np.asarray(ib, np.int64).reshape(-1)
        shape = tuple(int(d) for d in shape)
        if a.is_constant or b.is_constant:
            x, c, ix, ic = (b, a, ib, ia) if a.is_constant else (a, b, ia, ib)
            return x.take(ix.reshape(shape)).scaled(c.bias[ic])
        sa = self.affine_layer(a, name)
        sb = self.affine_layer(b, name) if b is not a else sa
        idx = len(self.layers)
        self.layers.append(ProductLayer(idx, ia.size, sa, sb, ia, ib, name, op))
        sp = sparse()
        return Sym(shape, {idx: sp.identity(ia.size, format="csr", dtype=np.float64)}, np.zeros(ia.size))

    # ---- the walk ----
    def build(self) -> LayerGraph:
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
        return LayerGraph(self.layers, out_idx, tuple(self.layers[0].shape), tuple(out.shape))


def build_layer_graph(graph) -> LayerGraph:
    return LayerBuilder(graph).build()


def layer_graph(network) -> LayerGraph:
    """`network.layer_graph` (a lazy property of `Network`); kept for callers outside network/."""
    return network.layer_graph
