"""One handler class per ONNX op type (or tight family), in a registry: one file per op.

Each file owns its op's attribute parsing, evaluation (constant folding), torch lowering (its
Steps), affine lowering (the layer graph) where piecewise linear, and its linear relaxation
(docs/architecture.md, "How to add an ONNX operator"). `operators()` is what `vnncert supports
--onnx-operators` prints; `lowerings(op)` says which of those the op has.
"""
from .base import OpHandler, all_handlers, handler, lowerings, operators, register, supported_ops
from . import activation, relu, elementwise, linear, conv, pool, normalization, reduce  # noqa: F401  (register)
from . import reshape, transpose, concat, slice  # noqa: F401  (register)

__all__ = ["OpHandler", "register", "handler", "supported_ops", "operators", "lowerings", "all_handlers"]
