"""Clip: min(max(x, lo), hi), bounds as constant inputs (opset >= 11) or attributes (opset 6-10).

Exact in ReLUs: clip(x, lo, hi) = x + relu(lo - x) - relu(x - hi) for lo <= hi, and ONNX's
"lo > hi gives hi" is the same formula with lo replaced by min(lo, hi). It keeps x itself in the
output (not lo + relu(x - lo) - ...), so a far bound such as opset 6's default -3.4e38 adds no
huge constant that would round x away; an absent bound adds no ReLU at all. The layer graph gets
the ReLUs (so the bounds layer relaxes them as ReLUs), the torch Step computes the same formula
(auto_LiRPA 0.3 has no Clip of its own).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ...errors import NetworkError
from .base import Constants, LazySteps, OpHandler, register


class ClipBounds(NamedTuple):
    lo: Optional[float]  # None: no lower bound
    hi: Optional[float]  # None: no upper bound


def clip_bounds(node, ctx) -> ClipBounds:
    """The node's bounds (the one parser of every Clip lowering), with lo > hi resolved to hi."""
    found = []
    for i, attr in ((1, "min"), (2, "max")):
        if len(node.inputs) > i and node.inputs[i]:
            if not ctx.is_const(node.inputs[i]):
                raise ctx.unsupported(node, f"a variable {attr}")
            v = np.asarray(ctx.const(node.inputs[i]))
        elif node.attr(attr) is not None:
            v = np.asarray(node.attr(attr))
        else:
            found.append(None)
            continue
        if v.size != 1:
            raise NetworkError(f"Clip node {node.name!r}: {attr} has {v.size} values, a scalar is needed")
        found.append(float(v.reshape(-1)[0]))
    lo, hi = found
    if lo is not None and hi is not None and lo > hi:
        lo = hi
    return ClipBounds(lo, hi)


@register("Clip")
class ClipOp(OpHandler):
    def evaluate(self, node, values, opset):
        x = np.asarray(values[0])
        b = clip_bounds(node, Constants(node, values, opset))
        y = x if b.lo is None else np.maximum(x, np.asarray(b.lo, x.dtype))
        return [np.asarray(y if b.hi is None else np.minimum(y, np.asarray(b.hi, x.dtype)))]

    def to_torch(self, node, ctx):
        from .elementwise import broadcast_const

        b = clip_bounds(node, ctx)
        x = node.inputs[0]
        lo = hi = None
        merged = ctx.view(x).merged
        if b.lo is not None:
            x, lo, merged = broadcast_const(ctx, x, np.float32(b.lo))
        if b.hi is not None:
            x, hi, merged = broadcast_const(ctx, x, np.float32(b.hi))
        ctx.emit(steps.Clip(lo, hi), [x], [node.outputs[0]], merged)

    def to_affine(self, node, ctx):
        b = clip_bounds(node, ctx)
        x = ctx.sym(node.inputs[0])
        y = x
        if b.lo is not None:  # + relu(lo - x)
            y = y + ctx.relu(x.scaled(-1.0, np.full(x.size, b.lo)), node.outputs[0] + "/lo")
        if b.hi is not None:  # - relu(x - hi)
            y = y - ctx.relu(x.scaled(1.0, np.full(x.size, -b.hi)), node.outputs[0] + "/hi")
        ctx.set(node.outputs[0], y)


def _define_steps():
    from .torch_base import F, Step, buffer

    class Clip(Step):
        """x + relu(lo - x) - relu(x - hi), a missing side left out."""

        def __init__(self, lo, hi):
            super().__init__()
            self.has_lo, self.has_hi = lo is not None, hi is not None
            if self.has_lo:
                buffer(self, "lo", lo)
            if self.has_hi:
                buffer(self, "hi", hi)

        def forward(self, x):
            y = x
            if self.has_lo:
                y = y + F.relu(self.lo - x)
            if self.has_hi:
                y = y - F.relu(x - self.hi)
            return y

    return {"Clip": Clip}


steps = LazySteps(_define_steps)
