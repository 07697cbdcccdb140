"""One handler class per ONNX op type, in a registry (docs/architecture.md: like onnx/reference/ops/).

`supported_ops()` is what `vnncert supports --onnx-operators` prints. Adding an op is one
small class in the file of its family, decorated with `@register("OpType")`.
"""
from .base import OpHandler, all_handlers, handler, register, supported_ops
from . import activation, relu, elementwise, linear, conv, pool, normalization, shape, reduce  # noqa: F401  (register)

__all__ = ["OpHandler", "register", "handler", "supported_ops", "all_handlers"]
