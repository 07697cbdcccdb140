"""Elementwise activations: the tensor keeps its view (merged/prepended)."""
from __future__ import annotations

from .base import OpHandler, register


@register("Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Sqrt", "Reciprocal")
class UnaryOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Unary

        x = node.inputs[0]
        ctx.emit(Unary(node.op_type), [x], [node.outputs[0]], ctx.view(x).merged)


@register("LeakyRelu")
class LeakyReluOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import LeakyRelu

        x = node.inputs[0]
        ctx.emit(LeakyRelu(node.attr("alpha", 0.01)), [x], [node.outputs[0]], ctx.view(x).merged)


@register("Identity", "Dropout")
class IdentityOp(OpHandler):
    """Identity, and Dropout at inference (its optional mask output must be unused)."""

    def to_torch(self, node, ctx):
        from ...errors import NetworkError

        if len(node.outputs) > 1 and node.outputs[1] and ctx.consumers(node.outputs[1]):
            raise NetworkError(f"Dropout node {node.name!r}: the mask output is used")
        ctx.alias(node.outputs[0], node.inputs[0])
