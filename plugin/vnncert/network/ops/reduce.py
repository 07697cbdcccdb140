"""ReduceSum / ReduceMean over constant axes."""
from __future__ import annotations

import numpy as np

from ...errors import NetworkError
from .base import OpHandler, register


def _axes(node, ctx, rank: int):
    """(sorted non-negative axes, keepdims) of a Reduce node; axes None for a no-op (noop_with_empty_axes)."""
    axes = None
    if len(node.inputs) > 1 and node.inputs[1]:
        if not ctx.is_const(node.inputs[1]):
            raise NetworkError(f"{node.op_type} node {node.name!r}: axes must be constant")
        axes = np.asarray(ctx.const(node.inputs[1])).reshape(-1).tolist()
    elif node.attr("axes") is not None:
        axes = list(node.attr("axes"))
    keep = bool(node.attr("keepdims", 1))
    if not axes:
        if int(node.attr("noop_with_empty_axes", 0)):
            return None, keep
        axes = list(range(rank))
    return sorted({int(a) + rank if int(a) < 0 else int(a) for a in axes}), keep


@register("ReduceSum", "ReduceMean")
class ReduceOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Reduce

        x = node.inputs[0]
        v = ctx.view(x)
        axes, keep = _axes(node, ctx, v.rank)
        if axes is None:
            ctx.alias(node.outputs[0], x)
            return
        x = ctx.not_on_batch(x, axes)
        v = ctx.view(x)
        merged = v.merged and (keep or 0 not in axes)
        ctx.emit(Reduce(node.op_type, [v.axis(a) for a in axes], keep), [x], [node.outputs[0]], merged)

    def to_affine(self, node, ctx):
        from ..layers import reduce

        s = ctx.sym(node.inputs[0])
        axes, keep = _axes(node, ctx, len(s.shape))
        if axes is None:
            ctx.set(node.outputs[0], s)
            return
        ctx.set(node.outputs[0], reduce(ctx, node, axes, keep, node.op_type == "ReduceMean"))
