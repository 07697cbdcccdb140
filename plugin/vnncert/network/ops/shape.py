"""Ops that move data without arithmetic: Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
Concat, Split, Slice, Gather (constant indices)."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ...errors import NetworkError
from .base import OpHandler, register


def _prod(xs) -> int:
    return int(np.prod(xs)) if len(xs) else 1


def _opt_const(node, ctx, i: int) -> Optional[np.ndarray]:
    if len(node.inputs) > i and node.inputs[i]:
        if not ctx.is_const(node.inputs[i]):
            raise NetworkError(f"{node.op_type} node {node.name!r}: input {i} must be constant")
        return np.asarray(ctx.const(node.inputs[i]))
    return None


@register("Reshape")
class ReshapeOp(OpHandler):
    def to_torch(self, node, ctx):
        from ..torch_convert import resolve_reshape

        x = node.inputs[0]
        target = _opt_const(node, ctx, 1)
        if target is None:
            target = np.asarray(node.attr("shape"))
        shape = resolve_reshape(ctx.view(x).shape, target.reshape(-1).tolist(), bool(node.attr("allowzero", 0)))
        ctx.reshape(x, shape, out=node.outputs[0])

    def to_affine(self, node, ctx):
        from ..torch_convert import resolve_reshape

        s = ctx.sym(node.inputs[0])
        target = _opt_const(node, ctx, 1)
        if target is None:
            target = np.asarray(node.attr("shape"))
        shape = resolve_reshape(s.shape, target.reshape(-1).tolist(), bool(node.attr("allowzero", 0)))
        ctx.set(node.outputs[0], s.reshaped(shape))


@register("Flatten")
class FlattenOp(OpHandler):
    def to_torch(self, node, ctx):
        x = node.inputs[0]
        s = ctx.view(x).shape
        a = int(node.attr("axis", 1))
        if a < 0:
            a += len(s)
        ctx.reshape(x, (_prod(s[:a]), _prod(s[a:])), out=node.outputs[0])

    def to_affine(self, node, ctx):
        s = ctx.sym(node.inputs[0])
        a = int(node.attr("axis", 1))
        a = a + len(s.shape) if a < 0 else a
        ctx.set(node.outputs[0], s.reshaped((_prod(s.shape[:a]), _prod(s.shape[a:]))))


@register("Squeeze")
class SqueezeOp(OpHandler):
    def to_torch(self, node, ctx):
        x = node.inputs[0]
        s = ctx.view(x).shape
        axes = _opt_const(node, ctx, 1)
        axes = node.attr("axes") if axes is None else axes.reshape(-1).tolist()
        if axes is None:
            axes = [i for i, d in enumerate(s) if d == 1]
        axes = {int(a) + len(s) if int(a) < 0 else int(a) for a in axes}
        if any(s[a] != 1 for a in axes):
            raise NetworkError(f"Squeeze node {node.name!r}: axis of size other than 1")
        ctx.reshape(x, tuple(d for i, d in enumerate(s) if i not in axes), out=node.outputs[0])

    def to_affine(self, node, ctx):
        s = ctx.sym(node.inputs[0])
        axes = _opt_const(node, ctx, 1)
        axes = node.attr("axes") if axes is None else axes.reshape(-1).tolist()
        if axes is None:
            axes = [i for i, d in enumerate(s.shape) if d == 1]
        axes = {int(a) + len(s.shape) if int(a) < 0 else int(a) for a in axes}
        if any(s.shape[a] != 1 for a in axes):
            raise NetworkError(f"Squeeze node {node.name!r}: axis of size other than 1")
        ctx.set(node.outputs[0], s.reshaped(tuple(d for i, d in enumerate(s.shape) if i not in axes)))


@register("Unsqueeze")
class UnsqueezeOp(OpHandler):
    def to_torch(self, node, ctx):
        x = node.inputs[0]
        s = list(ctx.view(x).shape)
        axes = _opt_const(node, ctx, 1)
        axes = node.attr("axes") if axes is None else axes.reshape(-1).tolist()
        rank = len(s) + len(axes)
        axes = sorted(int(a) + rank if int(a) < 0 else int(a) for a in axes)
        for a in axes:
            s.insert(a, 1)
        ctx.reshape(x, tuple(s), out=node.outputs[0])

    def to_affine(self, node, ctx):
        s = ctx.sym(node.inputs[0])
        axes = _opt_const(node, ctx, 1)
        axes = node.attr("axes") if axes is None else axes.reshape(-1).tolist()
        shape = list(s.shape)
        rank = len(shape) + len(axes)
        for a in sorted(int(a) + rank if int(a) < 0 else int(a) for a in axes):
            shape.insert(a, 1)
        ctx.set(node.outputs[0], s.reshaped(tuple(shape)))


@register("Transpose")
class TransposeOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Transpose

        x = node.inputs[0]
        v = ctx.view(x)
        perm = node.attr("perm")
        perm = list(reversed(range(v.rank))) if perm is None else [int(p) for p in perm]
        if v.merged and perm[0] == 0:
            ctx.emit(Transpose([0] + perm[1:]), [x], [node.outputs[0]], True)
            return
        x = ctx.prepended(x)
        ctx.emit(Transpose([0] + [p + 1 for p in perm]), [x], [node.outputs[0]], False)

    def to_affine(self, node, ctx):
        from ..layers import index_grid

        s = ctx.sym(node.inputs[0])
        perm = node.attr("perm")
        perm = list(reversed(range(len(s.shape)))) if perm is None else [int(p) for p in perm]
        ctx.set(node.outputs[0], s.take(np.ascontiguousarray(np.transpose(index_grid(s.shape), perm))))


@register("Concat")
class ConcatOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Concat

        xs = [x for x in node.inputs if x]
        if any(ctx.is_const(x) for x in xs):
            raise NetworkError(f"Concat node {node.name!r}: constant operands are not supported")
        views = [ctx.view(x) for x in xs]
        rank = views[0].rank
        axis = int(node.attr("axis"))
        axis = axis + rank if axis < 0 else axis
        if all(v.merged for v in views) and axis != 0:
            ctx.emit(Concat(axis), xs, [node.outputs[0]], True)
            return
        xs = [ctx.prepended(x) for x in xs]
        ctx.emit(Concat(axis + 1), xs, [node.outputs[0]], False)

    def to_affine(self, node, ctx):
        from ..layers import concat

        ctx.set(node.outputs[0], concat([ctx.sym(x) for x in node.inputs if x], int(node.attr("axis"))))


def _slices_along(view, t_axis: int, pieces: List[slice]):
    """Index tuples taking `pieces` along torch axis t_axis."""
    n_torch = 1 + len(view.rest)
    out = []
    for p in pieces:
        idx = [slice(None)] * n_torch
        idx[t_axis] = p
        out.append(tuple(idx[: t_axis + 1]))
    return out



def _split_starts(node, ctx, dim: int) -> np.ndarray:
    """Offsets [0, s1, s1+s2, ..., dim] of a Split node's pieces along its axis of size dim."""
    split = _opt_const(node, ctx, 1)
    split = node.attr("split") if split is None else split.reshape(-1).tolist()
    n = len(node.outputs)
    if split is None:
        size = -(-dim // n)
        split = [min(size, dim - i * size) for i in range(n)]
    if sum(split) != dim or len(split) != n:
        raise NetworkError(f"Split node {node.name!r}: sizes {split} do not fit dim {dim}")
    return np.cumsum([0] + list(split))

@register("Split")
class SplitOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import SplitSlices

        x = node.inputs[0]
        axis = int(node.attr("axis", 0))
        x = ctx.not_on_batch(x, [axis])
        v = ctx.view(x)
        a = axis + v.rank if axis < 0 else axis
        dim = v.shape[a]
        starts = _split_starts(node, ctx, dim)
        n = len(node.outputs)
        pieces = [slice(int(starts[i]), int(starts[i + 1])) for i in range(n)]
        ctx.emit(SplitSlices(_slices_along(v, v.axis(a), pieces)), [x], list(node.outputs), v.merged)

    def to_affine(self, node, ctx):
        from ..layers import index_grid

        s = ctx.sym(node.inputs[0])
        axis = int(node.attr("axis", 0))
        axis = axis + len(s.shape) if axis < 0 else axis
        dim = s.shape[axis]
        starts = _split_starts(node, ctx, dim)
        grid = index_grid(s.shape)
        for i, out in enumerate(node.outputs):
            if out:
                part = np.take(grid, np.arange(starts[i], starts[i + 1]), axis=axis)
                ctx.set(out, s.take(np.ascontiguousarray(part)))


@register("Slice")
class SliceOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Slice

        x = node.inputs[0]
        v = ctx.view(x)
        if ctx.graph.opset < 10 and "starts" in node.attrs:
            starts, ends = node.attr("starts"), node.attr("ends")
            axes, steps = node.attr("axes"), None
        else:
            starts, ends = _opt_const(node, ctx, 1), _opt_const(node, ctx, 2)
            axes, steps = _opt_const(node, ctx, 3), _opt_const(node, ctx, 4)
        starts = [int(s) for s in np.asarray(starts).reshape(-1)]
        ends = [int(e) for e in np.asarray(ends).reshape(-1)]
        axes = list(range(len(starts))) if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
        steps = [1] * len(starts) if steps is None else [int(s) for s in np.asarray(steps).reshape(-1)]
        per_axis = {}
        for s, e, a, st in zip(starts, ends, axes, steps):
            a = a + v.rank if a < 0 else a
            if st <= 0:
                raise NetworkError(f"Slice node {node.name!r}: step {st} is not supported")
            start, stop, step = slice(s, e, st).indices(v.shape[a])
            if len(range(start, stop, step)) == v.shape[a]:
                continue  # the whole axis
            per_axis[a] = slice(start, stop, step)
        if not per_axis:
            ctx.alias(node.outputs[0], x)
            return
        if v.merged and 0 in per_axis:
            raise NetworkError(f"Slice node {node.name!r}: slicing the batch axis away is not supported")
        t_axes = {v.axis(a): sl for a, sl in per_axis.items()}
        idx = [slice(None)] * (max(t_axes) + 1)
        for t, sl in t_axes.items():
            idx[t] = sl
        ctx.emit(Slice(tuple(idx)), [x], [node.outputs[0]], v.merged)

    def to_affine(self, node, ctx):
        from ..layers import slice_indices

        s = ctx.sym(node.inputs[0])
        if ctx.graph.opset < 10 and "starts" in node.attrs:
            starts, ends, axes, steps = node.attr("starts"), node.attr("ends"), node.attr("axes"), None
        else:
            starts, ends = _opt_const(node, ctx, 1), _opt_const(node, ctx, 2)
            axes, steps = _opt_const(node, ctx, 3), _opt_const(node, ctx, 4)
        ctx.set(node.outputs[0], s.take(slice_indices(s.shape, starts, ends, axes, steps)))


@register("Gather")
class GatherOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Concat, Slice

        x, ind = node.inputs
        if ctx.is_const(x) or not ctx.is_const(ind):
            raise NetworkError(f"Gather node {node.name!r}: only constant indices into a variable tensor are supported")
        v = ctx.view(x)
        axis = int(node.attr("axis", 0))
        a = axis + v.rank if axis < 0 else axis
        dim = v.shape[a]
        idx = np.asarray(ctx.const(ind)).astype(np.int64)
        idx = np.where(idx < 0, idx + dim, idx)
        if np.any((idx < 0) | (idx >= dim)):
            raise NetworkError(f"Gather node {node.name!r}: index out of range")
        out_shape = tuple(v.shape[:a]) + tuple(idx.shape) + tuple(v.shape[a + 1:])
        out = node.outputs[0]
        if v.merged and a == 0 and idx.ndim == 0:
            # picking the only entry of the batch axis: same torch tensor, now without that ONNX axis
            from ..torch_convert import View

            ctx.alias(out, x, View(out_shape, False) if len(out_shape) < 2 or out_shape[0] != 1 else View(out_shape, False))
            return
        if v.merged and a == 0:
            x = ctx.prepended(x)
            v = ctx.view(x)
        t = v.axis(a)
        flat = idx.reshape(-1).tolist()
        # runs of consecutive indices become one slice each
        runs = []
        for i in flat:
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
        pieces = []
        for lo, hi in runs:
            sl = [slice(None)] * (t + 1)
            sl[t] = slice(lo, hi)
            p = ctx.fresh(out)
            ctx.emit(Slice(tuple(sl)), [x], [p], v.merged)
            pieces.append(p)
        if len(pieces) == 1:
            cat = pieces[0]
        else:
            cat = ctx.fresh(out)
            ctx.emit(Concat(t), pieces, [cat], v.merged)
        ctx.reshape(cat, out_shape, out=out)

    def to_affine(self, node, ctx):
        from ..layers import index_grid

        x, ind = node.inputs
        if not ctx.is_const(ind):
            raise NetworkError(f"Gather node {node.name!r}: only constant indices are supported")
        s = ctx.sym(x)
        axis = int(node.attr("axis", 0))
        axis = axis + len(s.shape) if axis < 0 else axis
        dim = s.shape[axis]
        idx = np.asarray(ctx.const(ind)).astype(np.int64)
        idx = np.where(idx < 0, idx + dim, idx)
        if np.any((idx < 0) | (idx >= dim)):
            raise NetworkError(f"Gather node {node.name!r}: index out of range")
        ctx.set(node.outputs[0], s.take(np.ascontiguousarray(np.take(index_grid(s.shape), idx, axis=axis))))
