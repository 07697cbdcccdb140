"""Add, Sub, Mul, Div (by constants or between two tensors) and Pow by a constant exponent.

Mul of two variable tensors is not piecewise linear: the layer graph lowers it to a
`ProductLayer` (relaxed by the bilinear planes, `smooth.bilinear_relaxation`; no MILP encodes
it), Div by a variable to a product with its Reciprocal (an `ActLayer`). Pow by a constant lowers
to an `ActLayer` relaxed by `smooth.power(p)`: any real base for an integer exponent, a base >= 0
otherwise."""
from __future__ import annotations

import numpy as np

from ...errors import NetworkError
from ..affine import broadcast_shape, broadcast_to, index_grid
from . import smooth
from .base import LazySteps, OpHandler, reference_evaluate, register


def broadcast_const(ctx, x: str, c: np.ndarray):
    """(tensor name, constant shaped for torch, output merged?) for `x (op) c` with ONNX broadcasting.

    The constant always gets the full torch rank, with a leading 1 on the batch axis: auto_LiRPA
    0.3 mis-broadcasts its bounds when a constant has a lower rank than the tensor it meets.
    """
    v = ctx.view(x)
    c = np.asarray(c)
    out_rank = max(v.rank, c.ndim)
    if v.merged and c.ndim <= v.rank and (c.ndim < v.rank or c.shape[0] == 1):
        if c.ndim == v.rank:
            c = c.reshape(c.shape[1:])
        return x, c.reshape((1,) * (v.rank - c.ndim) + c.shape), True
    return ctx.prepended(x, out_rank), c.reshape((1,) * (out_rank + 1 - c.ndim) + c.shape), False


def broadcast_index(shape_in, shape) -> np.ndarray:
    """The flat index into a tensor of `shape_in` of each entry of its ONNX broadcast to `shape`."""
    return np.ascontiguousarray(np.broadcast_to(index_grid(shape_in), tuple(shape))).reshape(-1)


@register("Add", "Sub", "Mul", "Div")
class ArithmeticOp(OpHandler):
    partial = {"relaxation": frozenset({"Mul"})}

    @staticmethod
    def relaxation(lx, ux, ly, uy, xp=None):
        """Mul of two variables: McCormick's planes of x * y over the box (`smooth.bilinear_relaxation`)."""
        return smooth.bilinear_relaxation(lx, ux, ly, uy, xp)

    def evaluate(self, node, values, opset):
        a, b = (np.asarray(v) for v in values[:2])
        if node.op_type == "Div" and not (np.issubdtype(a.dtype, np.floating) and np.issubdtype(b.dtype, np.floating)):
            return reference_evaluate(node, values, opset)  # integer division: ONNX's rounding
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[node.op_type]
        with np.errstate(all="ignore"):
            return [np.asarray(f(a, b))]

    def to_torch(self, node, ctx):
        a, b = node.inputs[0], node.inputs[1]
        out = node.outputs[0]
        ca, cb = ctx.is_const(a), ctx.is_const(b)
        if ca and cb:  # folded earlier; kept for completeness
            raise NetworkError(f"internal: {node.op_type} {node.name!r} on two constants was not folded")
        if ca or cb:
            x, c = (b, ctx.const(a)) if ca else (a, ctx.const(b))
            if not np.issubdtype(np.asarray(c).dtype, np.floating):
                c = np.asarray(c, dtype=np.float32)
            x, c, merged = broadcast_const(ctx, x, c)
            op = node.op_type
            const_first = ca and op in ("Sub", "Div")
            ctx.emit(steps.ConstOp(op, c, const_first), [x], [out], merged)
            return
        va, vb = ctx.view(a), ctx.view(b)
        if va.merged and vb.merged and va.rank == vb.rank:
            ctx.emit(steps.Binary(node.op_type), [a, b], [out], True)
            return
        rank = max(va.rank, vb.rank)
        pa, pb = ctx.prepended(a, rank), ctx.prepended(b, rank)
        ctx.emit(steps.Binary(node.op_type), [pa, pb], [out], False)

    def to_affine(self, node, ctx):
        """A tensor (op) a constant, or Add/Sub of two tensors (ONNX broadcasting)."""
        op = node.op_type
        a, b = ctx.sym(node.inputs[0]), ctx.sym(node.inputs[1])
        shape = broadcast_shape(a.shape, b.shape)
        if op in ("Add", "Sub"):
            a, b = broadcast_to(a, shape), broadcast_to(b, shape)
            ctx.set(node.outputs[0], a + b if op == "Add" else a - b)
            return
        if op == "Mul":
            if not a.is_constant and not b.is_constant:  # a product of two variables
                ctx.set(node.outputs[0], ctx.product(a, b, broadcast_index(a.shape, shape), broadcast_index(b.shape, shape),
                                                     shape, name=node.name))
                return
            x, c = (b, a) if a.is_constant else (a, b)
            x = broadcast_to(x, shape)
            cv = np.broadcast_to(c.bias.reshape(c.shape), shape).reshape(-1)
            ctx.set(node.outputs[0], x.scaled(cv))
            return
        if not b.is_constant:  # a * reciprocal(b)
            r = ctx.activation(b, "Reciprocal", name=node.name, op="Div")
            ctx.set(node.outputs[0], ctx.product(a, r, broadcast_index(a.shape, shape), broadcast_index(b.shape, shape),
                                                 shape, name=node.name, op="Div"))
            return
        x = broadcast_to(a, shape)
        cv = np.broadcast_to(b.bias.reshape(b.shape), shape).reshape(-1)
        if np.any(cv == 0):
            raise NetworkError(f"Div node {node.name!r}: division by zero")
        ctx.set(node.outputs[0], x.scaled(1.0 / cv))


@register("Pow")
class PowOp(OpHandler):
    @staticmethod
    def relaxation(l, u, xp=None, exponent: float = 2.0):
        """x ** exponent over [l, u]: (lower_slope, lower_intercept, upper_slope, upper_intercept)."""
        return smooth.relax(smooth.power(exponent), l, u, xp)

    def to_torch(self, node, ctx):
        x, e = node.inputs[0], node.inputs[1]
        if ctx.is_const(x) or not ctx.is_const(e) or np.asarray(ctx.const(e)).size != 1:
            raise NetworkError(f"Pow node {node.name!r}: only a variable base with a constant scalar exponent is supported")
        ctx.emit(steps.Pow(float(np.asarray(ctx.const(e)).reshape(-1)[0])), [x], [node.outputs[0]], ctx.view(x).merged)

    not_piecewise_linear = frozenset({"Pow"})

    def to_affine(self, node, ctx):
        """A variable base to a constant scalar exponent: an ActLayer of `smooth.power(p)` (p = 1: x)."""
        x, e = node.inputs[0], node.inputs[1]
        if ctx.is_const(x) or not ctx.is_const(e) or np.asarray(ctx.const(e)).size != 1:
            raise ctx.unsupported(node, "only a variable base with a constant scalar exponent")
        p = float(np.asarray(ctx.const(e)).reshape(-1)[0])
        s = ctx.sym(x)
        ctx.set(node.outputs[0], s if p == 1.0 else ctx.activation(s, "Pow", exponent=p, name=node.name))


def _define_steps():
    from .torch_base import Step, buffer, torch

    class ConstOp(Step):
        """x (op) c or c (op) x with a constant c broadcast over the batch."""

        def __init__(self, op: str, const: np.ndarray, const_first: bool):
            super().__init__()
            self.op = op
            self.const_first = const_first
            buffer(self, "c", const)

        @property
        def affine(self) -> bool:
            return not (self.op == "Div" and self.const_first)  # c / x is not affine

        def forward(self, x):
            c = self.c
            if self.op == "Add":
                return x + c
            if self.op == "Mul":
                return x * c
            if self.op == "Sub":
                return c - x if self.const_first else x - c
            if self.op == "Div":
                return c * torch.reciprocal(x) if self.const_first else x / c
            raise ValueError(self.op)

        def extra_repr(self) -> str:
            return f"{self.op}, const shape {tuple(self.c.shape)}, const_first={self.const_first}"

    class Binary(Step):
        """Two variable operands (both carry the batch on axis 0)."""

        def __init__(self, op: str):
            super().__init__()
            self.op = op

        @property
        def affine(self) -> bool:
            return self.op in ("Add", "Sub")

        def forward(self, x, y):
            if self.op == "Add":
                return x + y
            if self.op == "Sub":
                return x - y
            if self.op == "Mul":
                return x * y
            if self.op == "Div":
                return x / y
            if self.op == "MatMul":
                return torch.matmul(x, y)
            raise ValueError(self.op)

        def extra_repr(self) -> str:
            return self.op

    class Pow(Step):
        """x ** p; an integer p >= 3 is built from squares and products (auto_LiRPA 0.3 bounds only x ** 2)."""

        def __init__(self, exponent: float):
            super().__init__()
            self.exponent = float(exponent)

        def forward(self, x):
            p = self.exponent
            if p == int(p) and 3 <= p <= 16:
                return _int_power(x, int(p))
            return torch.pow(x, p)

    def _int_power(x, n: int):
        if n == 1:
            return x
        if n == 2:
            return torch.pow(x, 2.0)
        half = _int_power(x, n // 2)
        sq = torch.pow(half, 2.0)
        return sq * x if n % 2 else sq

    return {"ConstOp": ConstOp, "Binary": Binary, "Pow": Pow}


steps = LazySteps(_define_steps)
