"""Add, Sub, Mul, Div (by constants or between two tensors) and Pow by a constant exponent."""
from __future__ import annotations

import numpy as np

from ...errors import NetworkError
from .base import OpHandler, register


def broadcast_const(ctx, x: str, c: np.ndarray):
    """(tensor name, constant shaped for torch, output merged?) for `x (op) c` with ONNX broadcasting.

    The constant always gets the full torch rank, with a leading 1 on the batch axis: auto_LiRPA
    0.3 mis-broadcasts its bounds when a constant has a lower rank than the tensor it meets.
    """
    v = ctx.view(x)
    c = np.asarray(c)
    out_rank = max(v.rank, c.ndim)
    if v.merged and c.ndim <= v.rank and (c.ndim < v.rank or c.shape[0] == 1):
        if c.ndim == v.rank:
            c = c.reshape(c.shape[1:])
        return x, c.reshape((1,) * (v.rank - c.ndim) + c.shape), True
    return ctx.prepended(x, out_rank), c.reshape((1,) * (out_rank + 1 - c.ndim) + c.shape), False


@register("Add", "Sub", "Mul", "Div")
class ArithmeticOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Binary, ConstOp

        a, b = node.inputs[0], node.inputs[1]
        out = node.outputs[0]
        ca, cb = ctx.is_const(a), ctx.is_const(b)
        if ca and cb:  # folded earlier; kept for completeness
            raise NetworkError(f"internal: {node.op_type} {node.name!r} on two constants was not folded")
        if ca or cb:
            x, c = (b, ctx.const(a)) if ca else (a, ctx.const(b))
            if not np.issubdtype(np.asarray(c).dtype, np.floating):
                c = np.asarray(c, dtype=np.float32)
            x, c, merged = broadcast_const(ctx, x, c)
            op = node.op_type
            const_first = ca and op in ("Sub", "Div")
            ctx.emit(ConstOp(op, c, const_first), [x], [out], merged)
            return
        va, vb = ctx.view(a), ctx.view(b)
        if va.merged and vb.merged and va.rank == vb.rank:
            ctx.emit(Binary(node.op_type), [a, b], [out], True)
            return
        rank = max(va.rank, vb.rank)
        pa, pb = ctx.prepended(a, rank), ctx.prepended(b, rank)
        ctx.emit(Binary(node.op_type), [pa, pb], [out], False)

    def to_affine(self, node, ctx):
        from ..layers import elementwise

        ctx.set(node.outputs[0], elementwise(ctx, node, node.op_type))


@register("Pow")
class PowOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Pow

        x, e = node.inputs[0], node.inputs[1]
        if ctx.is_const(x) or not ctx.is_const(e) or np.asarray(ctx.const(e)).size != 1:
            raise NetworkError(f"Pow node {node.name!r}: only a variable base with a constant scalar exponent is supported")
        ctx.emit(Pow(float(np.asarray(ctx.const(e)).reshape(-1)[0])), [x], [node.outputs[0]], ctx.view(x).merged)
