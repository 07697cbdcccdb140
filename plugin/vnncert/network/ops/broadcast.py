"""Expand and Tile (constant shape / repeats): copies of entries, so index maps (affine).

Expand(x, shape) is x broadcast against `shape` (ONNX's two-way broadcast); in torch it is x
times a constant tensor of ones of the output shape (exact, and a product auto_LiRPA 0.3 bounds).
Tile repeats each axis; in torch a selection along each repeated axis (`axismap`).
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from ...errors import NetworkError
from ..affine import broadcast_shape, broadcast_to
from . import axismap
from .base import Constants, OpHandler, ints, register


def expand_shape(node, ctx) -> Tuple[int, ...]:
    """The output shape of an Expand node (its shape input must be constant)."""
    if not ctx.is_const(node.inputs[1]):
        raise ctx.unsupported(node, "a shape computed from the input")
    return broadcast_shape(tuple(ctx.shape(node.inputs[0])), tuple(ints(ctx.const(node.inputs[1]))))


def tile_mats(node, ctx) -> Dict[int, np.ndarray]:
    """Axis -> the selection that repeats it (the one parser of Tile)."""
    if not ctx.is_const(node.inputs[1]):
        raise ctx.unsupported(node, "repeats computed from the input")
    shape = tuple(ctx.shape(node.inputs[0]))
    reps = ints(ctx.const(node.inputs[1]))
    if len(reps) != len(shape) or any(r < 0 for r in reps):
        raise NetworkError(f"Tile node {node.name!r}: repeats {reps} for a tensor of shape {list(shape)}")
    mats = {}
    for a, (n, r) in enumerate(zip(shape, reps)):
        if r != 1:
            if n * r == 0:
                raise NetworkError(f"Tile node {node.name!r}: axis {a} becomes empty")
            mats[a] = np.tile(np.eye(n), (r, 1))
    return mats


@register("Expand")
class ExpandOp(OpHandler):
    def to_torch(self, node, ctx):
        from .elementwise import broadcast_const, steps as elementwise_steps

        shape = expand_shape(node, ctx)
        x, ones, merged = broadcast_const(ctx, node.inputs[0], np.ones(shape, np.float32))
        ctx.emit(elementwise_steps.ConstOp("Mul", ones, False), [x], [node.outputs[0]], merged)

    def to_affine(self, node, ctx):
        ctx.set(node.outputs[0], broadcast_to(ctx.sym(node.inputs[0]), expand_shape(node, ctx)))


@register("Tile")
class TileOp(OpHandler):
    def evaluate(self, node, values, opset):
        x = np.asarray(values[0])
        tile_mats(node, Constants(node, values, opset))  # the same checks
        return [np.tile(x, ints(values[1]))]

    def to_torch(self, node, ctx):
        axismap.emit_torch(ctx, node.inputs[0], tile_mats(node, ctx), node.outputs[0])

    def to_affine(self, node, ctx):
        ctx.set(node.outputs[0], axismap.apply_affine(ctx.sym(node.inputs[0]), tile_mats(node, ctx)))
