"""MaxPool, AveragePool, GlobalAveragePool on merged (N = 1) tensors."""
from __future__ import annotations

from ...errors import NetworkError
from .base import OpHandler, register
from .conv import explicit_pads
from .relu import array_namespace


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


def _pool_args(node, ctx, x):
    kernel = list(node.attr("kernel_shape"))
    nd = len(kernel)
    strides = list(node.attr("strides", [1] * nd))
    dilations = list(node.attr("dilations", [1] * nd))
    pads = explicit_pads(node, ctx.view(x).shape[2:], kernel, strides, dilations)
    if pads[:nd] != pads[nd:]:
        raise NetworkError(f"{node.op_type} node {node.name!r}: asymmetric padding is not supported")
    return nd, kernel, strides, pads[:nd], dilations


@register("MaxPool")
class MaxPoolOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import MaxPool

        if len(node.outputs) > 1 and node.outputs[1]:
            raise NetworkError(f"MaxPool node {node.name!r}: the Indices output is not supported")
        x = ctx.require_merged(node.inputs[0], node)
        nd, kernel, strides, pads, dilations = _pool_args(node, ctx, x)
        if int(node.attr("storage_order", 0)) != 0:
            raise NetworkError(f"MaxPool node {node.name!r}: storage_order 1 is not supported")
        ctx.emit(MaxPool(nd, kernel, strides, pads, dilations, node.attr("ceil_mode", 0)), [x], [node.outputs[0]], True)

    def to_affine(self, node, ctx):
        from ..layers import maxpool

        if len(node.outputs) > 1 and node.outputs[1]:
            raise NetworkError(f"MaxPool node {node.name!r}: the Indices output is not supported")
        kernel = list(node.attr("kernel_shape"))
        nd = len(kernel)
        strides = list(node.attr("strides", [1] * nd))
        dilations = list(node.attr("dilations", [1] * nd))
        pads = explicit_pads(node, ctx.shape(node.inputs[0])[2:], kernel, strides, dilations)
        ctx.set(node.outputs[0], maxpool(ctx, node, kernel, strides, dilations, pads))

    @staticmethod
    def relaxation(l, u, xp=None):
        return max_relaxation(l, u, xp)


@register("AveragePool")
class AveragePoolOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import AvgPool

        x = ctx.require_merged(node.inputs[0], node)
        nd, kernel, strides, pads, dilations = _pool_args(node, ctx, x)
        if any(d != 1 for d in dilations):
            raise NetworkError(f"AveragePool node {node.name!r}: dilations are not supported")
        ctx.emit(AvgPool(nd, kernel, strides, pads, node.attr("ceil_mode", 0), node.attr("count_include_pad", 0)),
                 [x], [node.outputs[0]], True)

    def to_affine(self, node, ctx):
        from ..layers import avgpool

        kernel = list(node.attr("kernel_shape"))
        nd = len(kernel)
        strides = list(node.attr("strides", [1] * nd))
        dilations = list(node.attr("dilations", [1] * nd))
        if any(int(d) != 1 for d in dilations):
            raise NetworkError(f"AveragePool node {node.name!r}: dilations are not supported")
        pads = explicit_pads(node, ctx.shape(node.inputs[0])[2:], kernel, strides, dilations)
        ctx.set(node.outputs[0], avgpool(ctx, node, kernel, strides, pads))


@register("GlobalAveragePool")
class GlobalAveragePoolOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import GlobalAvgPool

        x = ctx.require_merged(node.inputs[0], node)
        ctx.emit(GlobalAvgPool(ctx.view(x).rank - 2), [x], [node.outputs[0]], True)

    def to_affine(self, node, ctx):
        from ..layers import global_avgpool

        ctx.set(node.outputs[0], global_avgpool(ctx, node))
