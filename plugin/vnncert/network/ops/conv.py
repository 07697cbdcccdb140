"""Conv (1-D/2-D/3-D, groups, dilations, explicit or SAME pads) -> nn.ConvNd."""
from __future__ import annotations

import math

import numpy as np

from ...errors import NetworkError
from .base import OpHandler, register


def explicit_pads(node, in_spatial, kernel, strides, dilations):
    """ONNX pads [begin..., end...], with auto_pad SAME_UPPER/SAME_LOWER/VALID resolved."""
    nd = len(kernel)
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "", None):
        pads = list(node.attr("pads", [0] * (2 * nd)))
        return [int(p) for p in pads]
    if auto_pad == "VALID":
        return [0] * (2 * nd)
    begin, end = [], []
    for i in range(nd):
        out = math.ceil(in_spatial[i] / strides[i])
        eff = (kernel[i] - 1) * dilations[i] + 1
        total = max(0, (out - 1) * strides[i] + eff - in_spatial[i])
        small, big = total // 2, total - total // 2
        if auto_pad == "SAME_UPPER":
            begin.append(small)
            end.append(big)
        else:
            begin.append(big)
            end.append(small)
    return begin + end


@register("Conv")
class ConvOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Conv

        x, w = node.inputs[0], node.inputs[1]
        b = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        if ctx.is_const(x) or not ctx.is_const(w) or (b is not None and not ctx.is_const(b)):
            raise NetworkError(f"Conv node {node.name!r}: only constant weights and bias are supported")
        W = np.asarray(ctx.const(w))
        nd = W.ndim - 2
        if nd not in (1, 2, 3):
            raise NetworkError(f"Conv node {node.name!r}: {nd}-D convolution is not supported")
        x = ctx.require_merged(x, node)
        v = ctx.view(x)
        strides = list(node.attr("strides", [1] * nd))
        dilations = list(node.attr("dilations", [1] * nd))
        pads = explicit_pads(node, v.shape[2:], W.shape[2:], strides, dilations)
        bias = np.asarray(ctx.const(b)) if b is not None else None
        ctx.emit(Conv(W, bias, strides, pads, dilations, int(node.attr("group", 1))), [x], [node.outputs[0]], True)

    def to_affine(self, node, ctx):
        from ..layers import conv

        W = np.asarray(ctx.const(node.inputs[1])) if ctx.is_const(node.inputs[1]) else None
        if W is None:
            raise NetworkError(f"Conv node {node.name!r}: only constant weights and bias are supported")
        nd = W.ndim - 2
        strides = list(node.attr("strides", [1] * nd))
        dilations = list(node.attr("dilations", [1] * nd))
        pads = explicit_pads(node, ctx.shape(node.inputs[0])[2:], W.shape[2:], strides, dilations)
        ctx.set(node.outputs[0], conv(ctx, node, pads))
