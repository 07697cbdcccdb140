"""MaxPool, AveragePool, GlobalAveragePool (windows over the spatial axes of an (N, C, ...) tensor).

MaxPool lowers to the layer graph's max nodes, with `max_relaxation` the bounds layer uses for
them; the averages are linear (sparse matrices)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...errors import NetworkError
from ..affine import sparse
from .base import LazySteps, OpHandler, register
from .relu import array_namespace
from .windows import Window, window, window_positions


def max_relaxation(l, u, xp=None):
    """The linear relaxation of y = max_i z_i over the last axis, for z_i in [l_i, u_i].

    l, u: (..., k) bounds of the k entries of each max (MaxPool: one row per window); an entry to
    ignore (padding) has l = u = -inf, and each row has at least one finite entry.
    Returns `(index, exact, upper)`, each of shape (...):
    * index: the entry with the largest lower bound (the first one on ties); z_index <= y always;
    * exact: that entry's lower bound is >= every other entry's upper bound, so y == z_index;
    * upper: max_i u_i, the constant upper bound of y where not exact.
    `xp` is the array namespace (numpy or torch; None: read off `l`). No arithmetic is done,
    only comparisons, so the result is exact in any dtype.
    """
    xp = xp or array_namespace(l)
    if xp.__name__ == "torch":
        index = l.argmax(dim=-1)
        best_l = xp.take_along_dim(l, index[..., None], dim=-1)[..., 0]
        positions = xp.arange(l.shape[-1], device=l.device)
        upper = u.max(dim=-1).values
    else:
        index = l.argmax(axis=-1)
        best_l = xp.take_along_axis(l, index[..., None], axis=-1)[..., 0]
        positions = xp.arange(l.shape[-1])
        upper = u.max(axis=-1)
    others = xp.where(positions == index[..., None], xp.full_like(u, -float("inf")), u)
    others_u = others.max(dim=-1).values if xp.__name__ == "torch" else others.max(axis=-1)
    return index, best_l >= others_u, upper


class PoolAttrs(NamedTuple):
    window: Window
    ceil_mode: bool
    count_include_pad: bool


def pool_attrs(node, ctx) -> PoolAttrs:
    """A MaxPool / AveragePool node's attributes (the one parser of every pooling lowering)."""
    if node.op_type == "MaxPool" and len(node.outputs) > 1 and node.outputs[1]:
        raise NetworkError(f"MaxPool node {node.name!r}: the Indices output is not supported")
    w = window(node, ctx.shape(node.inputs[0])[2:], node.attr("kernel_shape"))
    if node.op_type == "AveragePool" and any(d != 1 for d in w.dilations):
        raise NetworkError(f"AveragePool node {node.name!r}: dilations are not supported")
    return PoolAttrs(w, bool(node.attr("ceil_mode", 0)), bool(node.attr("count_include_pad", 0)))


def _torch_window(node, ctx, a: PoolAttrs):
    if not a.window.symmetric:
        raise NetworkError(f"{node.op_type} node {node.name!r}: asymmetric padding is not supported")
    return a.window.kernel, a.window.strides, a.window.pads[:a.window.nd]


def pool_windows(s, w: Window, ceil_mode: bool):
    nd = w.nd
    return window_positions(list(s.shape[2:]), w.kernel, w.strides, w.pads[:nd], w.pads[nd:], w.dilations, ceil_mode)


@register("MaxPool")
class MaxPoolOp(OpHandler):
    def to_torch(self, node, ctx):
        a = pool_attrs(node, ctx)
        x = ctx.require_merged(node.inputs[0], node)
        kernel, strides, pads = _torch_window(node, ctx, a)
        ctx.emit(steps.MaxPool(a.window.nd, kernel, strides, pads, a.window.dilations, a.ceil_mode), [x], [node.outputs[0]], True)

    def to_affine(self, node, ctx):
        """A max layer over the windows (padding never wins)."""
        a = pool_attrs(node, ctx)
        s = ctx.sym(node.inputs[0])
        offsets, out_s = pool_windows(s, a.window, a.ceil_mode)
        N, C = s.shape[0], s.shape[1]
        n_sp = int(np.prod(s.shape[2:]))
        cols = np.stack([np.where(inside, flat, -1) for _, flat, inside, _ in offsets], axis=1)  # (n_pos, K)
        base = (np.arange(N * C) * n_sp)[:, None, None]
        groups = np.where(cols[None] >= 0, cols[None] + base, -1).reshape(N * C * cols.shape[0], -1)
        groups = groups[:, (groups >= 0).any(axis=0)]
        if (groups < 0).all(axis=1).any():
            raise NetworkError(f"MaxPool node {node.name!r}: a window covers only padding")
        ctx.set(node.outputs[0], ctx.maximum(s, groups, (N, C) + tuple(out_s), node.outputs[0]))

    @staticmethod
    def relaxation(l, u, xp=None):
        return max_relaxation(l, u, xp)


@register("AveragePool")
class AveragePoolOp(OpHandler):
    def to_torch(self, node, ctx):
        a = pool_attrs(node, ctx)
        x = ctx.require_merged(node.inputs[0], node)
        kernel, strides, pads = _torch_window(node, ctx, a)
        ctx.emit(steps.AvgPool(a.window.nd, kernel, strides, pads, a.ceil_mode, a.count_include_pad),
                 [x], [node.outputs[0]], True)

    def to_affine(self, node, ctx):
        """A sparse matrix (count_include_pad and ceil_mode as ONNX defines them)."""
        a = pool_attrs(node, ctx)
        sp = sparse()
        s = ctx.sym(node.inputs[0])
        offsets, out_s = pool_windows(s, a.window, a.ceil_mode)
        N, C = s.shape[0], s.shape[1]
        n_pos, n_sp = int(np.prod(out_s)), int(np.prod(s.shape[2:]))
        rows, cols = [], []
        count = np.zeros(n_pos)
        for _, flat, inside, padded in offsets:
            count += padded if a.count_include_pad else inside
            pos = np.flatnonzero(inside)
            rows.append(pos)
            cols.append(flat[pos])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        one = sp.csr_matrix((1.0 / count[rows], (rows, cols)), shape=(n_pos, n_sp))
        ctx.set(node.outputs[0], s.linear(sp.kron(sp.identity(N * C, format="csr"), one, format="csr"), None,
                                          (N, C) + tuple(out_s)))


@register("GlobalAveragePool")
class GlobalAveragePoolOp(OpHandler):
    def to_torch(self, node, ctx):
        x = ctx.require_merged(node.inputs[0], node)
        ctx.emit(steps.GlobalAvgPool(ctx.view(x).rank - 2), [x], [node.outputs[0]], True)

    def to_affine(self, node, ctx):
        sp = sparse()
        s = ctx.sym(node.inputs[0])
        N, C = s.shape[0], s.shape[1]
        n_sp = int(np.prod(s.shape[2:]))
        one = sp.csr_matrix(np.full((1, n_sp), 1.0 / n_sp))
        ctx.set(node.outputs[0], s.linear(sp.kron(sp.identity(N * C, format="csr"), one, format="csr"), None,
                                          (N, C) + (1,) * (len(s.shape) - 2)))


def _define_steps():
    from .torch_base import Step, nn, torch

    class MaxPool(Step):
        def __init__(self, nd: int, kernel, stride, padding, dilation, ceil_mode: bool):
            super().__init__()
            cls = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[nd]
            self.pool = cls(kernel_size=tuple(kernel), stride=tuple(stride), padding=tuple(padding),
                            dilation=tuple(dilation), ceil_mode=bool(ceil_mode))

        def forward(self, x):
            return self.pool(x)

    class AvgPool(Step):
        affine = True

        def __init__(self, nd: int, kernel, stride, padding, ceil_mode: bool, count_include_pad: bool):
            super().__init__()
            cls = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[nd]
            self.pool = cls(kernel_size=tuple(kernel), stride=tuple(stride), padding=tuple(padding),
                            ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad))

        def forward(self, x):
            return self.pool(x)

    class GlobalAvgPool(Step):
        affine = True

        def __init__(self, nd: int):
            super().__init__()
            self.dims = tuple(range(2, 2 + nd))

        def forward(self, x):
            return torch.mean(x, dim=self.dims, keepdim=True)

    return {"MaxPool": MaxPool, "AvgPool": AvgPool, "GlobalAvgPool": GlobalAvgPool}


steps = LazySteps(_define_steps)
