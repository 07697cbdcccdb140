"""Relu, LeakyRelu, PRelu, Abs, HardSigmoid: the piecewise-linear activations, and THE linear
relaxation of relu.

Each lowers exactly to ReLUs in the layer graph (so the bounds layer relaxes them as ReLUs):
LeakyRelu / PRelu a x + (1 - a) relu(x) (any slope a; PRelu's slope a constant tensor broadcast to
x), Abs x + 2 relu(-x), HardSigmoid clip(alpha x + beta, 0, 1) as t + relu(-t) - relu(t - 1).
Their torch steps compute the same formulas where auto_LiRPA 0.3 lacks the op (PRelu,
HardSigmoid); Abs is torch's (auto_LiRPA bounds it).
`relu_relaxation(l, u, xp)` is the one place the project writes CROWN's relaxation of relu; the
bounds layer calls it (numpy or torch, any shape, elementwise) instead of keeping its own copy.
"""
from __future__ import annotations

import numpy as np

from ...errors import NetworkError
from . import activation
from .base import LazySteps, OpHandler, register


def array_namespace(x):
    """`torch` for a torch tensor, else `numpy` (the `xp` of the relaxation functions)."""
    if type(x).__module__.startswith("torch"):
        import torch

        return torch
    return np


def relu_relaxation(l, u, xp=None):
    """CROWN's linear relaxation of relu(z) for z in [l, u], elementwise.

    Returns `(lower_slope, upper_slope, upper_intercept)`, arrays of l's shape and dtype, with
        lower_slope * z  <=  relu(z)  <=  upper_slope * z + upper_intercept   for every z in [l, u].
    * active   (l >= 0): 1, 1, 0     (exact: relu(z) = z)
    * inactive (u <= 0): 0, 0, 0     (exact: relu(z) = 0); l = u = 0 counts as active
    * unstable (l < 0 < u): the upper line is the chord through (l, 0) and (u, u):
      slope u / (u - l), intercept -slope * l; the lower slope is CROWN's adaptive choice,
      1 where u >= -l (the identity is the closer bound) else 0. The tie u == -l takes 1.
    `xp` is the array namespace (numpy or torch; None: read off `l`). The arithmetic is in l's
    dtype, rounded to nearest: the outward margin that makes a bound float-sound is the bounds
    layer's one margin rule, not this function's. Any lower slope in [0, 1] is also valid on
    unstable neurons (alpha-CROWN optimises it; it starts from this one).
    """
    xp = xp or array_namespace(l)
    active = l >= 0
    inactive = (u <= 0) & ~active
    unstable = ~(active | inactive)
    one, zero = xp.ones_like(l), xp.zeros_like(l)
    stable_slope = xp.where(active, one, zero)
    denom = xp.where(unstable, u - l, one)
    upper_slope = xp.where(unstable, u / denom, stable_slope)
    upper_intercept = xp.where(unstable, -upper_slope * l, zero)
    lower_slope = xp.where(unstable, xp.where(u >= -l, one, zero), stable_slope)
    return lower_slope, upper_slope, upper_intercept


@register("Relu")
class ReluOp(OpHandler):
    def evaluate(self, node, values, opset):
        x = np.asarray(values[0])
        return [np.maximum(x, np.zeros((), x.dtype))]

    def to_torch(self, node, ctx):
        x = node.inputs[0]
        ctx.emit(activation.steps.Unary("Relu"), [x], [node.outputs[0]], ctx.view(x).merged)

    def to_affine(self, node, ctx):
        ctx.set(node.outputs[0], ctx.relu(ctx.sym(node.inputs[0]), node.outputs[0]))

    @staticmethod
    def relaxation(l, u, xp=None):
        return relu_relaxation(l, u, xp)


@register("LeakyRelu")
class LeakyReluOp(OpHandler):
    def to_torch(self, node, ctx):
        x = node.inputs[0]
        ctx.emit(steps.LeakyRelu(node.attr("alpha", 0.01)), [x], [node.outputs[0]], ctx.view(x).merged)

    def to_affine(self, node, ctx):
        # exact for every slope a: a x + (1 - a) relu(x)
        a = float(node.attr("alpha", 0.01))
        x = ctx.sym(node.inputs[0])
        ctx.set(node.outputs[0], x.scaled(a) + ctx.relu(x, node.outputs[0]).scaled(1.0 - a))


def prelu_slope(node, ctx) -> np.ndarray:
    """PRelu's slope, broadcast (one-way) to the shape of x, as float64 (the one parser of PRelu)."""
    if not ctx.is_const(node.inputs[1]):
        raise ctx.unsupported(node, "a slope computed from the input")
    shape = tuple(ctx.shape(node.inputs[0]))
    slope = np.asarray(ctx.const(node.inputs[1]), np.float64)
    try:
        return np.broadcast_to(slope, shape)
    except ValueError:
        raise NetworkError(f"PRelu node {node.name!r}: slope of shape {list(slope.shape)} for x of shape {list(shape)}") from None


@register("PRelu")
class PReluOp(OpHandler):
    def to_torch(self, node, ctx):
        from .elementwise import broadcast_const

        x, slope, merged = broadcast_const(ctx, node.inputs[0], prelu_slope(node, ctx).astype(np.float32))
        ctx.emit(steps.PRelu(slope), [x], [node.outputs[0]], merged)

    def to_affine(self, node, ctx):
        a = prelu_slope(node, ctx).reshape(-1)
        x = ctx.sym(node.inputs[0])
        ctx.set(node.outputs[0], x.scaled(a) + ctx.relu(x, node.outputs[0]).scaled(1.0 - a))


@register("Abs")
class AbsOp(OpHandler):
    def to_torch(self, node, ctx):
        x = node.inputs[0]
        ctx.emit(activation.steps.Unary("Abs"), [x], [node.outputs[0]], ctx.view(x).merged)

    def to_affine(self, node, ctx):
        # |x| = x + 2 relu(-x): one ReLU, whose chord is the chord of |x|
        x = ctx.sym(node.inputs[0])
        ctx.set(node.outputs[0], x + ctx.relu(-x, node.outputs[0]).scaled(2.0))


def hard_sigmoid_attrs(node):
    return float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))


@register("HardSigmoid")
class HardSigmoidOp(OpHandler):
    def to_torch(self, node, ctx):
        x = node.inputs[0]
        ctx.emit(steps.HardSigmoid(*hard_sigmoid_attrs(node)), [x], [node.outputs[0]], ctx.view(x).merged)

    def to_affine(self, node, ctx):
        alpha, beta = hard_sigmoid_attrs(node)
        t = ctx.sym(node.inputs[0]).scaled(alpha, np.full(ctx.sym(node.inputs[0]).size, beta))
        lo = ctx.relu(-t, node.outputs[0] + "/lo")
        hi = ctx.relu(t.scaled(1.0, np.full(t.size, -1.0)), node.outputs[0] + "/hi")
        ctx.set(node.outputs[0], t + lo - hi)


def _define_steps():
    from .torch_base import F, Step, buffer

    class PRelu(Step):
        """a x + (1 - a) relu(x) with a constant slope a (auto_LiRPA 0.3 has no PRelu)."""

        def __init__(self, slope):
            super().__init__()
            buffer(self, "a", slope)
            buffer(self, "b", 1.0 - np.asarray(slope, np.float64))

        def forward(self, x):
            return x * self.a + F.relu(x) * self.b

    class HardSigmoid(Step):
        """t + relu(-t) - relu(t - 1), t = alpha x + beta: clip(t, 0, 1) in ops auto_LiRPA 0.3 bounds."""

        def __init__(self, alpha: float, beta: float):
            super().__init__()
            self.alpha, self.beta = float(alpha), float(beta)

        def forward(self, x):
            t = x * self.alpha + self.beta
            return t + F.relu(-t) - F.relu(t - 1.0)

    class LeakyRelu(Step):
        def __init__(self, alpha: float):
            super().__init__()
            self.alpha = float(alpha)

        def forward(self, x):
            return F.leaky_relu(x, self.alpha)

    return {"LeakyRelu": LeakyRelu, "PRelu": PRelu, "HardSigmoid": HardSigmoid}


steps = LazySteps(_define_steps)
