"""Gemm and MatMul with a constant operand: torch nn.Linear (a following constant Add becomes
the bias), sparse Kronecker matrices in the layer graph. MatMul of two variable tensors (attention)
has a torch step, and in the layer graph a `ProductLayer` of every product a[.., i, t] b[.., t, j]
summed by the affine layer after it (relaxed by the bilinear planes; no MILP encodes it)."""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ...errors import NetworkError
from ..affine import Sym, index_grid, sparse
from . import elementwise
from .base import LazySteps, OpHandler, register


class GemmAttrs(NamedTuple):
    """Y = A' @ B + C for Gemm's A (A' = A transposed when trans_a), alpha and beta folded in."""

    a: str
    trans_a: bool
    B: np.ndarray  # (K, N) float64: alpha * B', B' = B transposed when transB
    C: Optional[np.ndarray]  # beta * C, float64, or None


def gemm_attrs(node, ctx) -> GemmAttrs:
    """A Gemm node's constants and attributes (the one parser of every Gemm lowering)."""
    a, b = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if ctx.is_const(a) or not ctx.is_const(b) or (c is not None and not ctx.is_const(c)):
        raise NetworkError(f"Gemm node {node.name!r}: only a variable A with constant B and C is supported")
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    B = np.asarray(ctx.const(b), dtype=np.float64)
    C = beta * np.asarray(ctx.const(c), dtype=np.float64) if c is not None else None
    return GemmAttrs(a, bool(int(node.attr("transA", 0))), alpha * (B.T if int(node.attr("transB", 0)) else B), C)


def _fusable_bias(ctx, y: str, n_out: int, out_rank: int):
    """(Add node, bias vector) when y's only consumer adds a constant along the last axis only."""
    if y == ctx.graph.output_name:
        return None, None
    users = ctx.consumers(y)
    if len(users) != 1 or users[0].op_type != "Add":
        return None, None
    add = users[0]
    other = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
    if other == y or not ctx.is_const(other):
        return None, None
    c = np.asarray(ctx.const(other))
    if c.ndim > out_rank or c.size == 0 or any(d != 1 for d in c.shape[:-1]) or c.shape[-1] not in (1, n_out):
        return None, None
    return add, np.broadcast_to(c.reshape(-1).astype(np.float64), (n_out,)).copy()


def _emit_linear(ctx, node, x: str, weight: np.ndarray, bias, on_rows: bool = False):
    """weight (N, K); x's last axis (or second-to-last when on_rows) has K entries."""
    v = ctx.view(x)
    n_out = weight.shape[0]
    out_rank = max(v.rank, 1)
    out_name = node.outputs[0]
    add = None
    if not on_rows:
        add, fused = _fusable_bias(ctx, out_name, n_out, out_rank)
        if add is not None:
            bias = fused if bias is None else bias + fused
            ctx.skip.add(id(add))
            out_name = add.outputs[0]
    if on_rows and v.merged and v.rank == 2:
        x = ctx.prepended(x)
        v = ctx.view(x)
    ctx.emit(steps.Linear(weight, bias, on_rows=on_rows), [x], [out_name], v.merged)


@register("Gemm")
class GemmOp(OpHandler):
    def to_torch(self, node, ctx):
        g = gemm_attrs(node, ctx)
        W = g.B.T  # (N, K)
        n_out = W.shape[0]
        bias = None
        extra = None
        if g.C is not None:
            if g.C.size in (1, n_out) and all(d == 1 for d in g.C.shape[:-1]):
                bias = np.broadcast_to(g.C.reshape(-1), (n_out,)).copy()
            else:
                extra = g.C  # varies along rows: added after the product
        x = g.a
        if g.trans_a:
            from .transpose import steps as transpose_steps

            x = ctx.prepended(g.a)
            t = ctx.fresh(g.a)
            ctx.emit(transpose_steps.Transpose((0, 2, 1)), [x], [t], False)
            x = t
        if extra is None:
            _emit_linear(ctx, node, x, W, bias)
            return
        tmp = ctx.fresh(node.outputs[0])
        v = ctx.view(x)
        ctx.emit(steps.Linear(W, None), [x], [tmp], v.merged)
        y, cc, merged = elementwise.broadcast_const(ctx, tmp, extra)
        ctx.emit(elementwise.steps.ConstOp("Add", cc, False), [y], [node.outputs[0]], merged)

    def to_affine(self, node, ctx):
        g = gemm_attrs(node, ctx)
        x = ctx.sym(g.a)
        if len(x.shape) != 2:
            raise NetworkError(f"Gemm node {node.name!r}: A of rank {len(x.shape)}")
        if g.trans_a:
            x = x.take(np.ascontiguousarray(index_grid(x.shape).T))
        y = matmul_const_right(x, g.B)
        if g.C is not None:
            y = y + Sym.constant(np.broadcast_to(g.C, y.shape))
        ctx.set(node.outputs[0], y)


@register("MatMul")
class MatMulOp(OpHandler):
    @staticmethod
    def relaxation(lx, ux, ly, uy, xp=None):
        """Two variable operands: each product x_ik y_kj by McCormick's planes (`smooth.bilinear_relaxation`)."""
        from .smooth import bilinear_relaxation

        return bilinear_relaxation(lx, ux, ly, uy, xp)

    def to_torch(self, node, ctx):
        a, b = node.inputs
        ca, cb = ctx.is_const(a), ctx.is_const(b)
        if cb and not ca:
            B = np.asarray(ctx.const(b), dtype=np.float64)
            if B.ndim == 2:
                _emit_linear(ctx, node, a, B.T, None)
                return
            if B.ndim == 1:  # (.., K) @ (K,) -> (..): linear to one output, then drop that axis
                tmp = ctx.fresh(node.outputs[0])
                fake = type(node)(node.op_type, node.name, node.inputs, [tmp], node.attrs)
                _emit_linear(ctx, fake, a, B.reshape(1, -1), None)
                ctx.reshape(tmp, ctx.view(tmp).shape[:-1], out=node.outputs[0])
                return
        if ca and not cb:
            A = np.asarray(ctx.const(a), dtype=np.float64)
            vb = ctx.view(b)
            if A.ndim == 2 and vb.rank == 1:  # W @ x with x a vector: x W^T
                _emit_linear(ctx, node, b, A, None)
                return
            if A.ndim == 2 and vb.rank >= 2:  # W @ X: acts on the rows of X
                _emit_linear(ctx, node, b, A, None, on_rows=True)
                return
        if ca or cb:
            raise NetworkError(f"MatMul node {node.name!r}: constant operand of rank "
                               f"{np.asarray(ctx.const(a if ca else b)).ndim} is not supported")
        va, vb = ctx.view(a), ctx.view(b)
        if va.rank < 2 or vb.rank < 2:
            raise NetworkError(f"MatMul node {node.name!r}: two variable operands need rank >= 2")
        if va.merged and vb.merged and va.rank == vb.rank:
            ctx.emit(elementwise.steps.Binary("MatMul"), [a, b], [node.outputs[0]], True)
            return
        rank = max(va.rank, vb.rank)
        ctx.emit(elementwise.steps.Binary("MatMul"), [ctx.prepended(a, rank), ctx.prepended(b, rank)], [node.outputs[0]], False)

    def evaluate(self, node, values, opset):
        return [np.asarray(np.matmul(values[0], values[1]))]

    def to_affine(self, node, ctx):
        a, b = node.inputs
        if ctx.is_const(b) and not ctx.is_const(a):
            ctx.set(node.outputs[0], matmul_const_right(ctx.sym(a), ctx.const(b)))
        elif ctx.is_const(a) and not ctx.is_const(b):
            ctx.set(node.outputs[0], matmul_const_left(ctx.const(a), ctx.sym(b)))
        elif not ctx.is_const(a) and not ctx.is_const(b):
            ctx.set(node.outputs[0], matmul_variables(ctx, ctx.sym(a), ctx.sym(b), node.name))
        else:
            raise NetworkError(f"internal: MatMul {node.name!r} on two constants was not folded")


def matmul_variables(ctx, a: Sym, b: Sym, name: str = "") -> Sym:
    """a @ b of two variable tensors (ONNX MatMul: rank-1 operands promoted, batch dims broadcast):
    every product a[.., i, t] * b[.., t, j] as a ProductLayer, then summed over t."""
    sa, sb = a.shape, b.shape
    if len(sa) == 0 or len(sb) == 0:
        raise NetworkError("MatMul of a scalar")
    a2 = a.reshaped((1,) + sa) if len(sa) == 1 else a
    b2 = b.reshaped(sb + (1,)) if len(sb) == 1 else b
    (n, k), (k2, m) = a2.shape[-2:], b2.shape[-2:]
    if k != k2:
        raise NetworkError(f"MatMul shapes {list(sa)} and {list(sb)} do not match")
    from ..affine import broadcast_shape

    batch = broadcast_shape(a2.shape[:-2], b2.shape[:-2])
    pshape = tuple(batch) + (n, k, m)
    ia = np.broadcast_to(index_grid(a2.shape)[..., None], a2.shape + (1,))
    ib = np.broadcast_to(index_grid(b2.shape)[..., None, :, :], b2.shape[:-2] + (1, k, m))
    ia = np.ascontiguousarray(np.broadcast_to(ia, pshape)).reshape(-1)
    ib = np.ascontiguousarray(np.broadcast_to(ib, pshape)).reshape(-1)
    prod_ = ctx.product(a2, b2, ia, ib, pshape, name=name, op="MatMul")
    sp = sparse()
    rows = int(np.prod(batch)) * n if batch else n
    S = sp.kron(sp.identity(rows, format="csr"), sp.kron(sp.csr_matrix(np.ones((1, k))), sp.identity(m, format="csr")), format="csr")
    out_shape = tuple(batch) + ((n,) if len(sa) > 1 else ()) + ((m,) if len(sb) > 1 else ())
    return prod_.linear(S, None, out_shape)


def matmul_const_right(x: Sym, B: np.ndarray) -> Sym:
    """x @ B with B constant of rank 1 or 2 (ONNX MatMul semantics)."""
    sp = sparse()
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
    sp = sparse()
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


def _define_steps():
    from .torch_base import Step, nn, torch

    class Linear(Step):
        """y = x W^T + b on the last axis (optionally on the second-to-last: transpose around it)."""

        affine = True

        def __init__(self, weight: np.ndarray, bias=None, on_rows: bool = False):
            super().__init__()
            w = np.array(weight, dtype=np.float32)
            self.linear = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
            with torch.no_grad():
                self.linear.weight.copy_(torch.as_tensor(w))
                if bias is not None:
                    self.linear.bias.copy_(torch.as_tensor(np.array(bias, dtype=np.float32).reshape(-1)))
            self.on_rows = on_rows

        def forward(self, x):
            if self.on_rows:
                return self.linear(x.transpose(-1, -2)).transpose(-1, -2)
            return self.linear(x)

    return {"Linear": Linear}


steps = LazySteps(_define_steps)
