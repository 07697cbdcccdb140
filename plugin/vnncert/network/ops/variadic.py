"""Max, Min, Sum, Mean of any number of tensors (ONNX broadcasting).

Sum and Mean are affine. Max and Min are exact in ReLUs, folded left to right from the first
operand that is computed from the input (acc): max(acc, b) = acc + relu(b - acc), min(acc, b) =
acc - relu(acc - b). Keeping acc (not b) outside the ReLU keeps a far constant such as -3.4e38
from rounding acc away (as Clip does). The torch step computes the same formula (auto_LiRPA 0.3
has no elementwise Max/Min); the layer graph gets the ReLUs.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from ..affine import broadcast_shape, broadcast_to
from .base import LazySteps, OpHandler, register


def operands(node, ctx) -> Tuple[List[str], Tuple[int, ...]]:
    names = [x for x in node.inputs if x]
    return names, broadcast_shape(*[tuple(ctx.shape(x)) for x in names])


@register("Max", "Min", "Sum", "Mean")
class VariadicOp(OpHandler):
    def evaluate(self, node, values, opset):
        xs = [np.asarray(v) for v in values if v is not None]
        f = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add}.get(node.op_type, np.add)
        acc = xs[0]
        for x in xs[1:]:
            acc = f(acc, x)
        if node.op_type == "Mean":
            acc = acc / np.asarray(len(xs), acc.dtype)
        return [np.asarray(acc, dtype=np.result_type(*xs))]

    def to_torch(self, node, ctx):
        names, shape = operands(node, ctx)
        rank = len(shape)
        variables, consts, order = [], [], []
        for x in names:
            if ctx.is_const(x):
                c = np.asarray(ctx.const(x), np.float32)
                order.append(("c", len(consts)))
                consts.append(c.reshape((1,) * (rank + 1 - c.ndim) + c.shape))
            else:
                order.append(("v", len(variables)))
                variables.append(ctx.prepended(x, rank))
        ctx.emit(steps.Variadic(node.op_type, order, consts), variables, [node.outputs[0]], False)

    def to_affine(self, node, ctx):
        names, shape = operands(node, ctx)
        syms = [broadcast_to(ctx.sym(x), shape) for x in names]
        op = node.op_type
        if op in ("Sum", "Mean"):
            acc = syms[0]
            for s in syms[1:]:
                acc = acc + s
            ctx.set(node.outputs[0], acc.scaled(1.0 / len(syms)) if op == "Mean" else acc)
            return
        first = next((i for i, s in enumerate(syms) if not s.is_constant), 0)
        acc = syms[first]
        for i, s in enumerate(syms):
            if i == first:
                continue
            name = f"{node.outputs[0]}/{i}"
            acc = acc + ctx.relu(s - acc, name) if op == "Max" else acc - ctx.relu(acc - s, name)
        ctx.set(node.outputs[0], acc)


def _define_steps():
    from .torch_base import F, Step, buffer

    class Variadic(Step):
        """Max / Min (through relu, as the layer graph has it), Sum, Mean of variables and constants."""

        def __init__(self, op: str, order, consts):
            super().__init__()
            self.op = op
            self.order = list(order)
            for i, c in enumerate(consts):
                buffer(self, f"c{i}", c)

        @property
        def affine(self) -> bool:
            return self.op in ("Sum", "Mean")

        def forward(self, *xs):
            vals = [xs[i] if kind == "v" else getattr(self, f"c{i}") for kind, i in self.order]
            first = next(k for k, (kind, _) in enumerate(self.order) if kind == "v")
            acc = vals[first]
            for k, v in enumerate(vals):
                if k == first:
                    continue
                if self.op == "Max":
                    acc = acc + F.relu(v - acc)
                elif self.op == "Min":
                    acc = acc - F.relu(acc - v)
                else:
                    acc = acc + v
            if self.op == "Mean":
                acc = acc * (1.0 / len(vals))
            return acc

    return {"Variadic": Variadic}


steps = LazySteps(_define_steps)
