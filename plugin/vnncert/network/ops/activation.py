"""Smooth elementwise activations and Neg: the tensor keeps its view (merged/prepended).

Relu and LeakyRelu (piecewise linear, with the relu relaxation) live in `relu.py`."""
from __future__ import annotations

from .base import OpHandler, register


@register("Sigmoid", "Tanh", "Exp", "Neg", "Sqrt", "Reciprocal")
class UnaryOp(OpHandler):
    def to_torch(self, node, ctx):
        from .torch_layers import Unary

        x = node.inputs[0]
        ctx.emit(Unary(node.op_type), [x], [node.outputs[0]], ctx.view(x).merged)

    # the MILP encoder lowers only the affine one
    partial = {"to_affine": frozenset({"Neg"})}

    def to_affine(self, node, ctx):
        x = ctx.sym(node.inputs[0])
        if node.op_type == "Neg":
            ctx.set(node.outputs[0], -x)
        else:
            raise ctx.unsupported(node, "not piecewise linear")


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
