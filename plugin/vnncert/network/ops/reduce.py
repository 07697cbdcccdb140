"""ReduceSum / ReduceMean over constant axes: torch sum/mean, a sparse matrix in the layer graph."""
from __future__ import annotations

import numpy as np

from ...errors import NetworkError
from ..affine import sparse
from .base import LazySteps, OpHandler, register


def reduce_axes(node, ctx, rank: int):
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
        x = node.inputs[0]
        axes, keep = reduce_axes(node, ctx, ctx.view(x).rank)
        if axes is None:
            ctx.alias(node.outputs[0], x)
            return
        x = ctx.not_on_batch(x, axes)
        v = ctx.view(x)
        merged = v.merged and (keep or 0 not in axes)
        ctx.emit(steps.Reduce(node.op_type, [v.axis(a) for a in axes], keep), [x], [node.outputs[0]], merged)

    def to_affine(self, node, ctx):
        s = ctx.sym(node.inputs[0])
        axes, keep = reduce_axes(node, ctx, len(s.shape))
        if axes is None:
            ctx.set(node.outputs[0], s)
            return
        rank = len(s.shape)
        kept_shape = tuple(1 if i in axes else d for i, d in enumerate(s.shape))
        grid = np.indices(s.shape).reshape(rank, -1)
        for a in axes:
            grid[a] = 0
        rows = np.ravel_multi_index(tuple(grid), kept_shape)
        n_out = int(np.prod(kept_shape))
        val = 1.0 / (s.size // max(n_out, 1)) if node.op_type == "ReduceMean" else 1.0
        M = sparse().csr_matrix((np.full(s.size, val), (rows, np.arange(s.size))), shape=(n_out, s.size))
        out_shape = kept_shape if keep else tuple(d for i, d in enumerate(s.shape) if i not in axes)
        ctx.set(node.outputs[0], s.linear(M, None, out_shape))


def _define_steps():
    from .torch_base import Step, torch

    class Reduce(Step):
        affine = True  # a sum or a mean

        def __init__(self, op: str, axes, keepdims: bool):
            super().__init__()
            self.op = op
            self.axes = tuple(int(a) for a in axes)
            self.keepdims = bool(keepdims)

        def forward(self, x):
            if self.op == "ReduceSum":
                return torch.sum(x, dim=self.axes, keepdim=self.keepdims)
            if self.op == "ReduceMean":
                return torch.mean(x, dim=self.axes, keepdim=self.keepdims)
            raise ValueError(self.op)

    return {"Reduce": Reduce}


steps = LazySteps(_define_steps)
