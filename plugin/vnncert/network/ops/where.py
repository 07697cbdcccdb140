"""Where with a constant condition: each entry taken from one operand (affine: a selection).

A condition computed from the input (a comparison of values) is not continuous and is refused
as an unsupported use. The values are selected, never mixed arithmetically, where a side is a
constant (so a constant -inf stays -inf); in torch: a * m + b * (1 - m) for two variables,
x * m + c' for a variable and a constant (c' the constant where it is chosen, else 0).
"""
from __future__ import annotations

import numpy as np

from ..affine import Sym, broadcast_shape, broadcast_to
from .base import LazySteps, OpHandler, register


def where_mask(node, ctx):
    """(mask as bool of the output shape, output shape): the one parser of Where."""
    c, a, b = node.inputs[:3]
    if not ctx.is_const(c):
        raise ctx.unsupported(node, "a condition computed from the input")
    shape = broadcast_shape(tuple(ctx.shape(c)), tuple(ctx.shape(a)), tuple(ctx.shape(b)))
    return np.broadcast_to(np.asarray(ctx.const(c)).astype(bool), shape), shape


@register("Where")
class WhereOp(OpHandler):
    def to_torch(self, node, ctx):
        mask, shape = where_mask(node, ctx)
        _, a, b = node.inputs[:3]
        rank = len(shape)
        m = mask.astype(np.float32).reshape((1,) + shape)
        if ctx.is_const(a) or ctx.is_const(b):
            x, c, x_first = (b, a, False) if ctx.is_const(a) else (a, b, True)
            keep = m if x_first else 1.0 - m
            const = np.broadcast_to(np.asarray(ctx.const(c), np.float32), shape).reshape((1,) + shape)
            fill = np.where(keep > 0, 0.0, const).astype(np.float32)
            ctx.emit(steps.SelectConst(keep, fill), [ctx.prepended(x, rank)], [node.outputs[0]], False)
            return
        ctx.emit(steps.Select(m), [ctx.prepended(a, rank), ctx.prepended(b, rank)], [node.outputs[0]], False)

    def to_affine(self, node, ctx):
        mask, shape = where_mask(node, ctx)
        _, a, b = node.inputs[:3]
        sa, sb = broadcast_to(ctx.sym(a), shape), broadcast_to(ctx.sym(b), shape)
        m = mask.reshape(-1)
        terms = {}
        for s, keep in ((sa, m), (sb, ~m)):
            for k, M in s.scaled(keep.astype(np.float64)).terms.items():
                terms[k] = M if k not in terms else terms[k] + M
        bias = np.where(m, sa.bias, sb.bias)
        ctx.set(node.outputs[0], Sym(tuple(shape), terms, bias))


def _define_steps():
    from .torch_base import Step, buffer

    class Select(Step):
        """a where the mask is 1, else b (two variables)."""

        affine = True

        def __init__(self, mask):
            super().__init__()
            buffer(self, "m", mask)

        def forward(self, a, b):
            return a * self.m + b * (1.0 - self.m)

    class SelectConst(Step):
        """x where keep is 1, else the constant (fill holds it there and 0 elsewhere)."""

        affine = True

        def __init__(self, keep, fill):
            super().__init__()
            buffer(self, "keep", keep)
            buffer(self, "fill", fill)

        def forward(self, x):
            return x * self.keep + self.fill

    return {"Select": Select, "SelectConst": SelectConst}


steps = LazySteps(_define_steps)
