"""Reshape, Flatten, Squeeze, Unsqueeze: the data stays in C order, only the shape changes.

`output_shape` is the one parser of the four: evaluation reshapes the array, the torch lowering
reshapes the per-sample tensor (`TorchBuilder.reshape`), the affine lowering relabels the Sym."""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from ...errors import NetworkError
from .base import Constants, OpHandler, ints, norm_axis, optional_input, prod, register


def resolve_reshape(in_shape: Sequence[int], target: Sequence[int], allowzero: bool = False) -> Tuple[int, ...]:
    """ONNX Reshape semantics: 0 copies the input dim (unless allowzero), one -1 is inferred."""
    total = prod(in_shape)
    out = []
    for i, t in enumerate(int(t) for t in target):
        if t == 0 and not allowzero:
            if i >= len(in_shape):
                raise NetworkError(f"Reshape target {list(target)} copies dim {i} of a rank-{len(in_shape)} input")
            out.append(int(in_shape[i]))
        else:
            out.append(t)
    if out.count(-1) > 1:
        raise NetworkError(f"Reshape target {list(target)} has more than one -1")
    if -1 in out:
        known = prod([d for d in out if d != -1])
        out[out.index(-1)] = total // known if known else 0
    if prod(out) != total or any(d < 0 for d in out):
        raise NetworkError(f"Reshape of {list(in_shape)} to {list(target)} changes the element count")
    return tuple(out)


def output_shape(node, ctx) -> Tuple[int, ...]:
    """The output shape of a Reshape / Flatten / Squeeze / Unsqueeze node."""
    shape = tuple(ctx.shape(node.inputs[0]))
    rank = len(shape)
    op = node.op_type
    if op == "Reshape":
        target = optional_input(node, ctx, 1)
        if target is None:
            raise NetworkError(f"Reshape node {node.name!r} has no shape input")
        return resolve_reshape(shape, ints(target), bool(node.attr("allowzero", 0)))
    if op == "Flatten":
        a = int(node.attr("axis", 1))
        a = a + rank if a < 0 else a
        return (prod(shape[:a]), prod(shape[a:]))
    axes = optional_input(node, ctx, 1)
    axes = node.attr("axes") if axes is None else ints(axes)
    if op == "Squeeze":
        if axes is None:
            axes = [i for i, d in enumerate(shape) if d == 1]
        axes = {norm_axis(a, rank) for a in axes}
        if any(shape[a] != 1 for a in axes):
            raise NetworkError(f"Squeeze node {node.name!r}: axis of size other than 1")
        return tuple(d for i, d in enumerate(shape) if i not in axes)
    if axes is None:
        raise NetworkError(f"Unsqueeze node {node.name!r} has no axes")
    out = list(shape)
    for a in sorted(norm_axis(a, rank + len(axes)) for a in axes):
        out.insert(a, 1)
    return tuple(out)


@register("Reshape", "Flatten", "Squeeze", "Unsqueeze")
class ReshapeOp(OpHandler):
    def evaluate(self, node, values, opset):
        return [np.asarray(values[0]).reshape(output_shape(node, Constants(node, values, opset)))]

    def to_torch(self, node, ctx):
        ctx.reshape(node.inputs[0], output_shape(node, ctx), out=node.outputs[0])

    def to_affine(self, node, ctx):
        ctx.set(node.outputs[0], ctx.sym(node.inputs[0]).reshaped(output_shape(node, ctx)))
