"""Concat and Split: tensors joined or cut along one axis (index maps in the layer graph)."""
from __future__ import annotations

from typing import List

import numpy as np

from ...errors import NetworkError
from ..affine import Sym, index_grid, sparse, tidy
from .base import Constants, LazySteps, OpHandler, norm_axis, optional_input, register


def concat_syms(syms: List[Sym], axis: int) -> Sym:
    """ONNX Concat of Syms along a (normalised) axis."""
    grids, offset = [], 0
    for s in syms:
        grids.append(index_grid(s.shape) + offset)
        offset += s.size
    idx = np.concatenate(grids, axis=axis)
    sp = sparse()
    terms = {}
    for k in sorted({k for s in syms for k in s.terms}):
        width = next(s.terms[k].shape[1] for s in syms if k in s.terms)
        blocks = []
        for s in syms:
            m = s.terms.get(k)
            blocks.append(sp.csr_matrix((s.size, width)) if m is None else (m if sp.issparse(m) else sp.csr_matrix(m)))
        terms[k] = tidy(sp.vstack(blocks, format="csr"))
    stacked = Sym((offset,), terms, np.concatenate([s.bias for s in syms]))
    return stacked.take(idx)


@register("Concat")
class ConcatOp(OpHandler):
    def evaluate(self, node, values, opset):
        xs = [np.asarray(v) for v in values if v is not None]
        return [np.concatenate(xs, axis=norm_axis(node.attr("axis"), xs[0].ndim))]

    def to_torch(self, node, ctx):
        xs = [x for x in node.inputs if x]
        if any(ctx.is_const(x) for x in xs):
            raise NetworkError(f"Concat node {node.name!r}: constant operands are not supported")
        views = [ctx.view(x) for x in xs]
        axis = norm_axis(node.attr("axis"), views[0].rank)
        if all(v.merged for v in views) and axis != 0:
            ctx.emit(steps.Concat(axis), xs, [node.outputs[0]], True)
            return
        xs = [ctx.prepended(x) for x in xs]
        ctx.emit(steps.Concat(axis + 1), xs, [node.outputs[0]], False)

    def to_affine(self, node, ctx):
        syms = [ctx.sym(x) for x in node.inputs if x]
        ctx.set(node.outputs[0], concat_syms(syms, norm_axis(node.attr("axis"), len(syms[0].shape))))


def split_starts(node, ctx) -> tuple:
    """(axis, offsets [0, s1, s1+s2, ..., dim]) of a Split node's pieces (the one parser of Split)."""
    shape = ctx.shape(node.inputs[0])
    axis = norm_axis(node.attr("axis", 0), len(shape))
    dim = shape[axis]
    split = optional_input(node, ctx, 1)
    split = node.attr("split") if split is None else split.reshape(-1).tolist()
    n = len(node.outputs)
    if split is None:
        size = -(-dim // n)
        split = [min(size, dim - i * size) for i in range(n)]
    if sum(split) != dim or len(split) != n:
        raise NetworkError(f"Split node {node.name!r}: sizes {split} do not fit dim {dim}")
    return axis, np.cumsum([0] + list(split))


@register("Split")
class SplitOp(OpHandler):
    def evaluate(self, node, values, opset):
        x = np.asarray(values[0])
        axis, starts = split_starts(node, Constants(node, values, opset))
        return [np.take(x, np.arange(starts[i], starts[i + 1]), axis=axis) for i in range(len(node.outputs))]

    def to_torch(self, node, ctx):
        axis, starts = split_starts(node, ctx)
        x = ctx.not_on_batch(node.inputs[0], [axis])
        v = ctx.view(x)
        t_axis = v.axis(axis)
        pieces = []
        for i in range(len(node.outputs)):
            idx = [slice(None)] * (1 + len(v.rest))
            idx[t_axis] = slice(int(starts[i]), int(starts[i + 1]))
            pieces.append(tuple(idx[: t_axis + 1]))
        ctx.emit(steps.SplitSlices(pieces), [x], list(node.outputs), v.merged)

    def to_affine(self, node, ctx):
        s = ctx.sym(node.inputs[0])
        axis, starts = split_starts(node, ctx)
        grid = index_grid(s.shape)
        for i, out in enumerate(node.outputs):
            if out:
                part = np.take(grid, np.arange(starts[i], starts[i + 1]), axis=axis)
                ctx.set(out, s.take(np.ascontiguousarray(part)))


def _define_steps():
    from .torch_base import Step, torch

    class Concat(Step):
        affine = True

        def __init__(self, axis: int):
            super().__init__()
            self.axis = int(axis)

        def forward(self, *xs):
            return torch.cat(xs, dim=self.axis)

    class SplitSlices(Step):
        """Several slices of one tensor (Split): one output per slice tuple."""

        affine = True

        def __init__(self, indices):
            super().__init__()
            self.indices = [tuple(i) for i in indices]

        def forward(self, x):
            return tuple(x[i] for i in self.indices)

    return {"Concat": Concat, "SplitSlices": SplitSlices}


steps = LazySteps(_define_steps)
