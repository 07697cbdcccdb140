"""ReduceSum / ReduceMean over constant axes: torch sum/mean, a sparse matrix in the layer graph;
ReduceMax / ReduceMin: torch amax/amin, a max node over each reduced group in the layer graph
(ReduceMin as -max(-x)), relaxed like MaxPool's windows (`pool.max_relaxation`)."""
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


def reduced_groups(shape, axes):
    """(groups (n_out, k) of flat input indices reduced into each output, kept shape with 1s)."""
    rank = len(shape)
    kept_shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
    grid = np.indices(shape).reshape(rank, -1)
    for a in axes:
        grid[a] = 0
    rows = np.ravel_multi_index(tuple(grid), kept_shape) if rank else np.zeros(1, np.int64)
    n_out = int(np.prod(kept_shape))
    return np.argsort(rows, kind="stable").reshape(n_out, -1), kept_shape


class _ReduceOp(OpHandler):
    """The reductions' one torch step (`Reduce`); each family lowers to the layer graph its own way."""

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


@register("ReduceMax", "ReduceMin")
class ReduceMaxOp(_ReduceOp):

    def to_affine(self, node, ctx):
        s = ctx.sym(node.inputs[0])
        axes, keep = reduce_axes(node, ctx, len(s.shape))
        if axes is None:
            ctx.set(node.outputs[0], s)
            return
        groups, kept_shape = reduced_groups(s.shape, axes)
        out_shape = kept_shape if keep else tuple(d for i, d in enumerate(s.shape) if i not in axes)
        if node.op_type == "ReduceMax":
            ctx.set(node.outputs[0], ctx.maximum(s, groups, out_shape, node.outputs[0]))
        else:
            ctx.set(node.outputs[0], -ctx.maximum(-s, groups, out_shape, node.outputs[0]))

    @staticmethod
    def relaxation(l, u, xp=None):
        """Over the last axis of (..., k) bounds: `pool.max_relaxation` (ReduceMin: of -x)."""
        from .pool import max_relaxation

        return max_relaxation(l, u, xp)


@register("ReduceSum", "ReduceMean")
class ReduceOp(_ReduceOp):

    def to_affine(self, node, ctx):
        s = ctx.sym(node.inputs[0])
        axes, keep = reduce_axes(node, ctx, len(s.shape))
        if axes is None:
            ctx.set(node.outputs[0], s)
            return
        groups, kept_shape = reduced_groups(s.shape, axes)
        n_out, k = groups.shape
        val = 1.0 / k if node.op_type == "ReduceMean" else 1.0
        M = sparse().csr_matrix((np.full(groups.size, val), (np.repeat(np.arange(n_out), k), groups.ravel())),
                                shape=(n_out, s.size))
        out_shape = kept_shape if keep else tuple(d for i, d in enumerate(s.shape) if i not in axes)
        ctx.set(node.outputs[0], s.linear(M, None, out_shape))


def _define_steps():
    from .torch_base import Step, torch

    class Reduce(Step):
        def __init__(self, op: str, axes, keepdims: bool):
            super().__init__()
            self.op = op
            self.axes = tuple(int(a) for a in axes)
            self.keepdims = bool(keepdims)

        @property
        def affine(self) -> bool:
            return self.op in ("ReduceSum", "ReduceMean")

        def forward(self, x):
            if self.op == "ReduceSum":
                return torch.sum(x, dim=self.axes, keepdim=self.keepdims)
            if self.op == "ReduceMean":
                return torch.mean(x, dim=self.axes, keepdim=self.keepdims)
            if self.op == "ReduceMax":
                return torch.amax(x, dim=self.axes, keepdim=self.keepdims)
            if self.op == "ReduceMin":
                return torch.amin(x, dim=self.axes, keepdim=self.keepdims)
            raise ValueError(self.op)

    return {"Reduce": Reduce}


steps = LazySteps(_define_steps)
