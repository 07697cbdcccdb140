"""BatchNormalization (inference) folded into the preceding Conv/Linear, else a per-channel affine."""
from __future__ import annotations

import numpy as np

from ...errors import NetworkError
from .base import OpHandler, register


@register("BatchNormalization")
class BatchNormalizationOp(OpHandler):
    def to_torch(self, node, ctx):
        import torch

        from .elementwise import broadcast_const
        from .torch_layers import Affine, Conv, Linear

        x = node.inputs[0]
        if not all(ctx.is_const(n) for n in node.inputs[1:5]):
            raise NetworkError(f"BatchNormalization node {node.name!r}: parameters must be constant")
        if int(node.attr("training_mode", 0)):
            raise NetworkError(f"BatchNormalization node {node.name!r}: training mode is not supported")
        gamma, beta, mean, var = (np.asarray(ctx.const(n), dtype=np.float64) for n in node.inputs[1:5])
        eps = float(node.attr("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        v = ctx.view(x)
        if v.rank < 2:
            raise NetworkError(f"BatchNormalization node {node.name!r}: input of rank {v.rank}")
        # fold into the step that produced x when nothing else reads x
        last = ctx.steps[-1] if ctx.steps else None
        if (last is not None and last.out_names == [ctx.ref[x]] and len(ctx.consumers(x)) == 1
                and x != ctx.graph.output_name and v.merged):
            layer = last.conv if isinstance(last, Conv) and last.pad is None else None
            if isinstance(last, Linear) and not last.on_rows and v.rank == 2:
                layer = last.linear
            if layer is not None:
                with torch.no_grad():
                    s = torch.as_tensor(scale, dtype=layer.weight.dtype)
                    layer.weight.mul_(s.reshape((-1,) + (1,) * (layer.weight.dim() - 1)))
                    b = layer.bias if layer.bias is not None else torch.zeros(layer.weight.shape[0])
                    new_b = b * s + torch.as_tensor(shift, dtype=layer.weight.dtype)
                    if layer.bias is None:
                        layer.bias = torch.nn.Parameter(new_b)
                    else:
                        layer.bias.copy_(new_b)
                    ctx.samples[ctx.ref[x]] = last(*[ctx.samples[n] for n in last.in_names])
                ctx.alias(node.outputs[0], x)
                return
        c_shape = (len(scale),) + (1,) * (v.rank - 2)
        xx, sc, merged = broadcast_const(ctx, x, scale.reshape(c_shape))
        _, sh, _ = broadcast_const(ctx, x, shift.reshape(c_shape))
        ctx.emit(Affine(sc, sh), [xx], [node.outputs[0]], merged)

    def to_affine(self, node, ctx):
        from ..layers import batchnorm

        ctx.set(node.outputs[0], batchnorm(ctx, node))

