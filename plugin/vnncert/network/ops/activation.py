"""Smooth elementwise activations (Sigmoid, Tanh, Exp, Log, Sqrt, Reciprocal, Softplus, Erf, Sin,
Cos), Sign, and Neg, Identity and Dropout: the tensor keeps its view.

The smooth ones have a torch step (auto_LiRPA 0.3 bounds all of them but Erf), a float-sound
linear relaxation (`smooth.relax`, interface in `smooth.py`) and a layer-graph lowering to an
`ActLayer` (not piecewise linear: our CROWN bounds it with the relaxation; no MILP encodes it).
Sign is not continuous: a torch step (its gradient is 0, so PGD learns nothing
from it, but sampling runs) and constant bounds (`smooth.sign_relaxation`), no affine lowering.
Relu and LeakyRelu (piecewise linear, with the relu relaxation) live in `relu.py`; their torch
step is this file's `Unary` too."""
from __future__ import annotations

import numpy as np

from ...errors import NetworkError
from . import smooth
from .base import LazySteps, OpHandler, register

SMOOTH = ("Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal", "Softplus", "Erf", "Sin", "Cos")


@register(*SMOOTH, "Sign", "Neg")
class UnaryOp(OpHandler):
    # evaluate: Neg here, the others by the reference evaluator; the layer graph lowers Neg (affine)
    # and the smooth ones (an ActLayer, not piecewise linear); every op but Neg has a relaxation
    partial = {"evaluate": frozenset({"Neg"}), "to_affine": frozenset(("Neg",) + SMOOTH),
               "relaxation": frozenset(SMOOTH + ("Sign",))}
    not_piecewise_linear = frozenset(SMOOTH)

    def evaluate(self, node, values, opset):
        return [np.negative(np.asarray(values[0]))]

    def relaxation(self, l, u, xp=None):
        """(lower_slope, lower_intercept, upper_slope, upper_intercept) over [l, u] (`smooth.py`)."""
        if self.op_type == "Sign":
            return smooth.sign_relaxation(l, u, xp)
        return smooth.relax(smooth.FUNCTIONS[self.op_type], l, u, xp)

    def to_torch(self, node, ctx):
        x = node.inputs[0]
        ctx.emit(steps.Unary(node.op_type), [x], [node.outputs[0]], ctx.view(x).merged)

    def to_affine(self, node, ctx):
        x = ctx.sym(node.inputs[0])
        if node.op_type == "Neg":
            ctx.set(node.outputs[0], -x)
            return
        ctx.set(node.outputs[0], ctx.activation(x, node.op_type, name=node.name))


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
            if op == "Log":
                return torch.log(x)
            if op == "Softplus":
                return F.softplus(x)
            if op == "Erf":
                return torch.erf(x)
            if op == "Sin":
                return torch.sin(x)
            if op == "Cos":
                return torch.cos(x)
            if op == "Sign":
                return torch.sign(x)
            if op == "Abs":
                return torch.abs(x)
            raise ValueError(op)

        def extra_repr(self) -> str:
            return self.op

    return {"Unary": Unary}


steps = LazySteps(_define_steps)
