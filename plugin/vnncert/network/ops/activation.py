"""Smooth elementwise activations and Neg, Identity and Dropout: the tensor keeps its view.

Relu and LeakyRelu (piecewise linear, with the relu relaxation) live in `relu.py`; their torch
step is this file's `Unary` too."""
from __future__ import annotations

import numpy as np

from ...errors import NetworkError
from .base import LazySteps, OpHandler, register


@register("Sigmoid", "Tanh", "Exp", "Neg", "Sqrt", "Reciprocal")
class UnaryOp(OpHandler):
    # evaluate: Neg here, the others by the reference evaluator; the MILP lowers only Neg (affine)
    partial = {"evaluate": frozenset({"Neg"}), "to_affine": frozenset({"Neg"})}

    def evaluate(self, node, values, opset):
        return [np.negative(np.asarray(values[0]))]

    def to_torch(self, node, ctx):
        x = node.inputs[0]
        ctx.emit(steps.Unary(node.op_type), [x], [node.outputs[0]], ctx.view(x).merged)

    def to_affine(self, node, ctx):
        ctx.set(node.outputs[0], -ctx.sym(node.inputs[0]))


@register("Identity", "Dropout")
class IdentityOp(OpHandler):
    """Identity, and Dropout at inference (its optional mask output must be unused)."""

    partial = {"evaluate": frozenset({"Identity"})}

    def evaluate(self, node, values, opset):
        return [np.asarray(values[0])]

    def to_torch(self, node, ctx):
        if len(node.outputs) > 1 and node.outputs[1] and ctx.consumers(node.outputs[1]):
            raise NetworkError(f"Dropout node {node.name!r}: the mask output is used")
        ctx.alias(node.outputs[0], node.inputs[0])

    def to_affine(self, node, ctx):
        ctx.set(node.outputs[0], ctx.sym(node.inputs[0]))


def _define_steps():
    from .torch_base import F, Step, torch

    class Unary(Step):
        """An elementwise function of one tensor (Relu included: see `relu.py`)."""

        def __init__(self, op: str):
            super().__init__()
            self.op = op

        @property
        def relu(self) -> bool:
            return self.op == "Relu"

        @property
        def affine(self) -> bool:
            return self.op == "Neg"

        def forward(self, x):
            op = self.op
            if op == "Relu":
                return F.relu(x)
            if op == "Sigmoid":
                return torch.sigmoid(x)
            if op == "Tanh":
                return torch.tanh(x)
            if op == "Exp":
                return torch.exp(x)
            if op == "Neg":
                return -x
            if op == "Sqrt":
                return torch.sqrt(x)
            if op == "Reciprocal":
                return torch.reciprocal(x)
            raise ValueError(op)

        def extra_repr(self) -> str:
            return self.op

    return {"Unary": Unary}


steps = LazySteps(_define_steps)
