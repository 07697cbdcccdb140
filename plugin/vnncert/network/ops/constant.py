"""Shape arithmetic: ops supported where their inputs are constants.

Exported models compute shapes at run time (Shape -> Gather -> Concat -> Reshape, Shape ->
ConstantOfShape, Range, comparisons and Where on shapes, Floor/Ceil of scaled sizes). For a
fixed input shape (symbolic dims count as 1) every such value is a constant: `network/graph.py`
folds `Shape` and `Size` of any tensor whose shape is known and every node whose inputs are all
constant (each op's own `evaluate`, else onnx's reference evaluator in the model's opset), so
these ops never reach a converter. Met on a tensor computed from the input (a comparison of
values, Floor of an activation) they are not continuous and no converter takes them: the
engines that need a converter are kept out, naming the op, like any unsupported op.
"""
from __future__ import annotations

from .base import OpHandler, register


@register("Constant", "Shape", "Size", "ConstantOfShape", "Range", "Equal", "Less", "LessOrEqual", "Greater",
          "GreaterOrEqual", "Not", "And", "Or", "Xor", "Floor", "Ceil", "Round")
class ConstantOnlyOp(OpHandler):
    constant_only = True
