"""Gemm and MatMul with a constant operand -> nn.Linear (a following constant Add becomes the bias)."""
from __future__ import annotations

import numpy as np

from ...errors import NetworkError
from .base import OpHandler, register


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
    from .torch_layers import Linear

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
    ctx.emit(Linear(weight, bias, on_rows=on_rows), [x], [out_name], v.merged)


@register("Gemm")
class GemmOp(OpHandler):
    def to_torch(self, node, ctx):
        a, b = node.inputs[0], node.inputs[1]
        c = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
        trans_a, trans_b = int(node.attr("transA", 0)), int(node.attr("transB", 0))
        if ctx.is_const(a) or not ctx.is_const(b) or (c is not None and not ctx.is_const(c)):
            raise NetworkError(f"Gemm node {node.name!r}: only a variable A with constant B and C is supported")
        B = np.asarray(ctx.const(b), dtype=np.float64)
        W = alpha * (B if trans_b else B.T)  # (N, K)
        n_out = W.shape[0]
        bias = None
        extra = None
        if c is not None:
            C = beta * np.asarray(ctx.const(c), dtype=np.float64)
            if C.size in (1, n_out) and all(d == 1 for d in C.shape[:-1]):
                bias = np.broadcast_to(C.reshape(-1), (n_out,)).copy()
            else:
                extra = C  # varies along rows: added after the product
        x = a
        if trans_a:
            from .torch_layers import Transpose

            x = ctx.prepended(a)
            t = ctx.fresh(a)
            ctx.emit(Transpose((0, 2, 1)), [x], [t], False)
            x = t
        if extra is None:
            _emit_linear(ctx, node, x, W, bias)
            return
        from .elementwise import broadcast_const
        from .torch_layers import ConstOp, Linear

        tmp = ctx.fresh(node.outputs[0])
        v = ctx.view(x)
        ctx.emit(Linear(W, None), [x], [tmp], v.merged)
        y, cc, merged = broadcast_const(ctx, tmp, extra)
        ctx.emit(ConstOp("Add", cc, False), [y], [node.outputs[0]], merged)

    def to_affine(self, node, ctx):
        from ..layers import gemm

        ctx.set(node.outputs[0], gemm(ctx, node))


@register("MatMul")
class MatMulOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Binary

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
            ctx.emit(Binary("MatMul"), [a, b], [node.outputs[0]], True)
            return
        rank = max(va.rank, vb.rank)
        ctx.emit(Binary("MatMul"), [ctx.prepended(a, rank), ctx.prepended(b, rank)], [node.outputs[0]], False)

    def to_affine(self, node, ctx):
        from ..layers import matmul_const_left, matmul_const_right

        a, b = node.inputs
        if ctx.is_const(b) and not ctx.is_const(a):
            ctx.set(node.outputs[0], matmul_const_right(ctx.sym(a), ctx.const(b)))
        elif ctx.is_const(a) and not ctx.is_const(b):
            ctx.set(node.outputs[0], matmul_const_left(ctx.const(a), ctx.sym(b)))
        else:
            raise ctx.unsupported(node, "product of two variable tensors")
