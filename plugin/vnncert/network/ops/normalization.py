"""BatchNormalization (inference): folded into the preceding Conv/Linear step, else a per-channel
affine. LayerNormalization (opset 17): a torch lowering only (it divides by a standard deviation
computed from the input: not piecewise linear), written in the ops auto_LiRPA 0.3 bounds (mean,
difference, square, sqrt, division)."""
from __future__ import annotations

import numpy as np

from ...errors import NetworkError
from .base import LazySteps, OpHandler, register


def scale_shift(node, ctx):
    """(scale, shift), float64 per channel: y = scale * x + shift (the one parser of BatchNormalization)."""
    if not all(ctx.is_const(n) for n in node.inputs[1:5]):
        raise NetworkError(f"BatchNormalization node {node.name!r}: parameters must be constant")
    if int(node.attr("training_mode", 0)):
        raise NetworkError(f"BatchNormalization node {node.name!r}: training mode is not supported")
    if len(ctx.shape(node.inputs[0])) < 2:
        raise NetworkError(f"BatchNormalization node {node.name!r}: input of rank {len(ctx.shape(node.inputs[0]))}")
    gamma, beta, mean, var = (np.asarray(ctx.const(n), dtype=np.float64).reshape(-1) for n in node.inputs[1:5])
    scale = gamma / np.sqrt(var + float(node.attr("epsilon", 1e-5)))
    return scale, beta - mean * scale


@register("BatchNormalization")
class BatchNormalizationOp(OpHandler):
    def to_torch(self, node, ctx):
        import torch

        from .conv import steps as conv_steps
        from .elementwise import broadcast_const
        from .linear import steps as linear_steps

        x = node.inputs[0]
        scale, shift = scale_shift(node, ctx)
        v = ctx.view(x)
        # fold into the step that produced x when nothing else reads x
        last = ctx.steps[-1] if ctx.steps else None
        if (last is not None and last.out_names == [ctx.ref[x]] and len(ctx.consumers(x)) == 1
                and x != ctx.graph.output_name and v.merged):
            layer = last.conv if isinstance(last, conv_steps.Conv) and last.pad is None else None
            if isinstance(last, linear_steps.Linear) and not last.on_rows and v.rank == 2:
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
        ctx.emit(steps.Affine(sc, sh), [xx], [node.outputs[0]], merged)

    def to_affine(self, node, ctx):
        x = ctx.sym(node.inputs[0])
        scale, shift = scale_shift(node, ctx)
        shp = (1, -1) + (1,) * (len(x.shape) - 2)
        ctx.set(node.outputs[0], x.scaled(np.broadcast_to(scale.reshape(shp), x.shape).reshape(-1),
                                          np.broadcast_to(shift.reshape(shp), x.shape).reshape(-1)))


def layer_norm_attrs(node, ctx):
    """(axes from `axis` to the last, epsilon, scale, bias or None): the one parser of LayerNormalization."""
    from .base import norm_axis

    if any(o for o in node.outputs[1:]):
        if any(ctx.consumers(o) for o in node.outputs[1:] if o):
            raise ctx.unsupported(node, "its Mean or InvStdDev output is used")
    rank = len(ctx.shape(node.inputs[0]))
    axis = norm_axis(node.attr("axis", -1), rank)
    if not all(ctx.is_const(n) for n in node.inputs[1:] if n):
        raise ctx.unsupported(node, "a scale or bias computed from the input")
    scale = np.asarray(ctx.const(node.inputs[1]), np.float32)
    bias = np.asarray(ctx.const(node.inputs[2]), np.float32) if len(node.inputs) > 2 and node.inputs[2] else None
    return list(range(axis, rank)), float(node.attr("epsilon", 1e-5)), scale, bias


@register("LayerNormalization")
class LayerNormalizationOp(OpHandler):
    def to_torch(self, node, ctx):
        from .elementwise import broadcast_const

        axes, eps, scale, bias = layer_norm_attrs(node, ctx)
        x = ctx.not_on_batch(node.inputs[0], axes)
        if bias is not None:  # one shape for both, so both get the same torch layout
            both = np.broadcast_shapes(scale.shape, bias.shape)
            scale, bias = np.broadcast_to(scale, both), np.broadcast_to(bias, both)
        x, sc, merged = broadcast_const(ctx, x, scale)
        bi = broadcast_const(ctx, x, bias)[1] if bias is not None else None
        v = ctx.view(x)
        ctx.emit(steps.LayerNorm([v.axis(a) for a in axes], eps, sc, bi), [x], [node.outputs[0]], merged)


def _define_steps():
    from .torch_base import Step, buffer, torch

    class Affine(Step):
        """x * scale + shift (a BatchNormalization not folded into its producer)."""

        affine = True

        def __init__(self, scale: np.ndarray, shift: np.ndarray):
            super().__init__()
            buffer(self, "scale", scale)
            buffer(self, "shift", shift)

        def forward(self, x):
            return x * self.scale + self.shift

    class LayerNorm(Step):
        """(x - mean) / sqrt(var + eps) * scale + bias over the trailing axes."""

        def __init__(self, axes, eps: float, scale, bias):
            super().__init__()
            self.axes, self.eps = tuple(int(a) for a in axes), float(eps)
            buffer(self, "scale", scale)
            self.has_bias = bias is not None
            if self.has_bias:
                buffer(self, "bias", bias)

        def forward(self, x):
            d = x - torch.mean(x, dim=self.axes, keepdim=True)
            var = torch.mean(d * d, dim=self.axes, keepdim=True)
            y = d / torch.sqrt(var + self.eps) * self.scale
            return y + self.bias if self.has_bias else y

    return {"Affine": Affine, "LayerNorm": LayerNorm}


steps = LazySteps(_define_steps)
