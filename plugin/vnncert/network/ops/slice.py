"""Slice and Gather (constant indices): entries picked along axes (index maps in the layer graph).

`axis_slices` is the one place ONNX's Slice semantics (negative starts and ends, clamping,
negative steps) are written: evaluation, the torch lowering and the affine lowering use it."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from ...errors import NetworkError
from ..affine import index_grid
from .base import Constants, LazySteps, OpHandler, ints, norm_axis, optional_input, register


def axis_slices(node, ctx) -> List[slice]:
    """One Python slice per axis of the input, selecting what the Slice node selects."""
    shape = ctx.shape(node.inputs[0])
    rank = len(shape)
    starts, ends = optional_input(node, ctx, 1), optional_input(node, ctx, 2)
    if starts is None or ends is None:
        raise NetworkError(f"Slice node {node.name!r} has no starts or ends input")
    starts, ends = ints(starts), ints(ends)
    axes = optional_input(node, ctx, 3)
    axes = list(range(len(starts))) if axes is None else [norm_axis(a, rank) for a in ints(axes)]
    steps_ = optional_input(node, ctx, 4)
    steps_ = [1] * len(starts) if steps_ is None else ints(steps_)
    if not len(starts) == len(ends) == len(axes) == len(steps_):
        raise NetworkError(f"Slice node {node.name!r}: starts, ends, axes and steps differ in length")
    idx = [slice(None)] * rank
    for st, en, a, step in zip(starts, ends, axes, steps_):
        dim = shape[a]
        if step == 0:
            raise NetworkError(f"Slice node {node.name!r}: step 0")
        st = st + dim if st < 0 else st
        en = en + dim if en < 0 else en
        if step > 0:
            idx[a] = slice(min(max(st, 0), dim), min(max(en, 0), dim), step)
        else:
            st, en = min(max(st, 0), dim - 1), min(max(en, -1), dim - 1)
            idx[a] = slice(st, None if en < 0 else en, step)
    return idx


@register("Slice")
class SliceOp(OpHandler):
    def evaluate(self, node, values, opset):
        return [np.array(np.asarray(values[0])[tuple(axis_slices(node, Constants(node, values, opset)))])]

    def to_torch(self, node, ctx):
        x = node.inputs[0]
        v = ctx.view(x)
        per_axis = {}
        for a, sl in enumerate(axis_slices(node, ctx)):
            r = range(v.shape[a])[sl]
            if r.step < 0:
                raise NetworkError(f"Slice node {node.name!r}: step {r.step} is not supported by the torch converter")
            if len(r) == v.shape[a]:
                continue  # the whole axis
            per_axis[a] = slice(r.start, r.stop, r.step)
        if not per_axis:
            ctx.alias(node.outputs[0], x)
            return
        if v.merged and 0 in per_axis:
            raise NetworkError(f"Slice node {node.name!r}: slicing the batch axis away is not supported")
        t_axes = {v.axis(a): sl for a, sl in per_axis.items()}
        idx = [slice(None)] * (max(t_axes) + 1)
        for t, sl in t_axes.items():
            idx[t] = sl
        ctx.emit(steps.Slice(tuple(idx)), [x], [node.outputs[0]], v.merged)

    def to_affine(self, node, ctx):
        s = ctx.sym(node.inputs[0])
        ctx.set(node.outputs[0], s.take(np.ascontiguousarray(index_grid(s.shape)[tuple(axis_slices(node, ctx))])))


def gather_indices(node, ctx) -> Tuple[int, np.ndarray]:
    """(axis, indices made non-negative) of a Gather node with constant indices."""
    x, ind = node.inputs
    if not ctx.is_const(ind):
        raise NetworkError(f"Gather node {node.name!r}: only constant indices are supported")
    shape = ctx.shape(x)
    axis = norm_axis(node.attr("axis", 0), len(shape))
    dim = shape[axis]
    idx = np.asarray(ctx.const(ind)).astype(np.int64)
    idx = np.where(idx < 0, idx + dim, idx)
    if np.any((idx < 0) | (idx >= dim)):
        raise NetworkError(f"Gather node {node.name!r}: index out of range")
    return axis, idx


@register("Gather")
class GatherOp(OpHandler):
    def evaluate(self, node, values, opset):
        axis, idx = gather_indices(node, Constants(node, values, opset))
        return [np.take(np.asarray(values[0]), idx, axis=axis)]

    def to_torch(self, node, ctx):
        from .concat import steps as concat_steps
        from .torch_base import View

        x = node.inputs[0]
        axis, idx = gather_indices(node, ctx)
        v = ctx.view(x)
        out_shape = tuple(v.shape[:axis]) + tuple(idx.shape) + tuple(v.shape[axis + 1:])
        out = node.outputs[0]
        if v.merged and axis == 0 and idx.ndim == 0:
            # picking the only entry of the batch axis: same torch tensor, now without that ONNX axis
            ctx.alias(out, x, View(out_shape, False))
            return
        if v.merged and axis == 0:
            x = ctx.prepended(x)
            v = ctx.view(x)
        t = v.axis(axis)
        # runs of consecutive indices become one slice each
        runs = []
        for i in idx.reshape(-1).tolist():
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
        pieces = []
        for lo, hi in runs:
            sl = [slice(None)] * (t + 1)
            sl[t] = slice(lo, hi)
            p = ctx.fresh(out)
            ctx.emit(steps.Slice(tuple(sl)), [x], [p], v.merged)
            pieces.append(p)
        if len(pieces) == 1:
            cat = pieces[0]
        else:
            cat = ctx.fresh(out)
            ctx.emit(concat_steps.Concat(t), pieces, [cat], v.merged)
        ctx.reshape(cat, out_shape, out=out)

    def to_affine(self, node, ctx):
        axis, idx = gather_indices(node, ctx)
        s = ctx.sym(node.inputs[0])
        ctx.set(node.outputs[0], s.take(np.ascontiguousarray(np.take(index_grid(s.shape), idx, axis=axis))))


def _define_steps():
    from .torch_base import Step

    class Slice(Step):
        """Basic slicing on torch axes: `index` is a tuple of Python slices (axis 0, the batch, is ':')."""

        affine = True

        def __init__(self, index):
            super().__init__()
            self.index = tuple(index)

        def forward(self, x):
            return x[self.index]

        def extra_repr(self) -> str:
            return ", ".join(f"{s.start}:{s.stop}:{s.step}" for s in self.index)

    return {"Slice": Slice}


steps = LazySteps(_define_steps)
