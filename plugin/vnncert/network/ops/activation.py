"""Elementwise activations: the tensor keeps its view (merged/prepended)."""
from __future__ import annotations

from .base import OpHandler, register


@register("Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Sqrt", "Reciprocal")
class UnaryOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Unary

        x = node.inputs[0]
        ctx.emit(Unary(node.op_type), [x], [node.outputs[0]], ctx.view(x).merged)

    # the MILP encoder lowers only the piecewise-linear ones
    partial = {"to_affine": frozenset({"Relu", "Neg"})}

    def to_affine(self, node, ctx):
        x = ctx.sym(node.inputs[0])
        if node.op_type == "Relu":
            ctx.set(node.outputs[0], ctx.relu(x, node.outputs[0]))
        elif node.op_type == "Neg":
            ctx.set(node.outputs[0], -x)
        else:
            raise ctx.unsupported(node, "not piecewise linear")


@register("LeakyRelu")
class LeakyReluOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import LeakyRelu

        x = node.inputs[0]
        ctx.emit(LeakyRelu(node.attr("alpha", 0.01)), [x], [node.outputs[0]], ctx.view(x).merged)

    def to_affine(self, node, ctx):
        # exact for every slope a: a x + (1 - a) relu(x)
        a = float(node.attr("alpha", 0.01))
        x = ctx.sym(node.inputs[0])
        ctx.set(node.outputs[0], x.scaled(a) + ctx.relu(x, node.outputs[0]).scaled(1.0 - a))


@register("Identity", "Dropout")
class IdentityOp(OpHandler):
    """Identity, and Dropout at inference (its optional mask output must be unused)."""

    def to_torch(self, node, ctx):
        from ...errors import NetworkError

        if len(node.outputs) > 1 and node.outputs[1] and ctx.consumers(node.outputs[1]):
            raise NetworkError(f"Dropout node {node.name!r}: the mask output is used")
        ctx.alias(node.outputs[0], node.inputs[0])

    def to_affine(self, node, ctx):
        ctx.set(node.outputs[0], ctx.sym(node.inputs[0]))
