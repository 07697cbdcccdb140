"""Transpose: a permutation of the axes (an index map in the layer graph)."""
from __future__ import annotations

from typing import List

import numpy as np

from ...errors import NetworkError
from ..affine import index_grid
from .base import LazySteps, OpHandler, ints, register


def permutation(node, rank: int) -> List[int]:
    """The node's perm (reversed axes when absent)."""
    perm = node.attr("perm")
    perm = list(reversed(range(rank))) if perm is None else ints(perm)
    if sorted(perm) != list(range(rank)):
        raise NetworkError(f"Transpose node {node.name!r}: perm {perm} is not a permutation of {rank} axes")
    return perm


@register("Transpose")
class TransposeOp(OpHandler):
    def evaluate(self, node, values, opset):
        x = np.asarray(values[0])
        return [np.transpose(x, permutation(node, x.ndim))]

    def to_torch(self, node, ctx):
        x = node.inputs[0]
        v = ctx.view(x)
        perm = permutation(node, v.rank)
        if v.merged and perm[0] == 0:
            ctx.emit(steps.Transpose([0] + perm[1:]), [x], [node.outputs[0]], True)
            return
        x = ctx.prepended(x)
        ctx.emit(steps.Transpose([0] + [p + 1 for p in perm]), [x], [node.outputs[0]], False)

    def to_affine(self, node, ctx):
        s = ctx.sym(node.inputs[0])
        perm = permutation(node, len(s.shape))
        ctx.set(node.outputs[0], s.take(np.ascontiguousarray(np.transpose(index_grid(s.shape), perm))))


def _define_steps():
    from .torch_base import Step

    class Transpose(Step):
        affine = True

        def __init__(self, perm):
            super().__init__()
            self.perm = tuple(int(p) for p in perm)

        def forward(self, x):
            return x.permute(*self.perm)

    return {"Transpose": Transpose}


steps = LazySteps(_define_steps)
