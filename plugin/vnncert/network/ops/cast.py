"""Cast and CastLike: the identity on a float tensor cast to float32 or float64.

The converters compute in float32 (torch) and float64 (layer graph) anyway; a cast of a tensor
computed from the input to a narrower float (float16, bfloat16, float8) rounds its values and a
cast to an integer or bool type is not continuous: both are refused as unsupported uses. Casts of
constants are folded (shape arithmetic).
"""
from __future__ import annotations

import numpy as np

from .base import OpHandler, register

FLOAT32, FLOAT64 = 1, 11  # TensorProto element types the cast keeps exact


def target_type(node, ctx) -> int:
    """The element type a Cast / CastLike node casts to, refused unless float32 or float64."""
    if node.op_type == "CastLike":
        from onnx import helper

        if not ctx.is_const(node.inputs[1]):
            raise ctx.unsupported(node, "a target type given by a tensor computed from the input")
        to = helper.np_dtype_to_tensor_dtype(np.asarray(ctx.const(node.inputs[1])).dtype)
    else:
        to = int(node.attr("to", 0))
    if to not in (FLOAT32, FLOAT64):
        from onnx import helper

        name = helper.tensor_dtype_to_np_dtype(to).name if to else "?"
        raise ctx.unsupported(node, f"a cast of a tensor computed from the input to {name}")
    return to


@register("Cast", "CastLike")
class CastOp(OpHandler):
    def to_torch(self, node, ctx):
        target_type(node, ctx)
        ctx.alias(node.outputs[0], node.inputs[0])

    def to_affine(self, node, ctx):
        target_type(node, ctx)
        ctx.set(node.outputs[0], ctx.sym(node.inputs[0]))
