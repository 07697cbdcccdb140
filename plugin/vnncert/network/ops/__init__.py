"""One handler class per ONNX op type (or tight family), in a registry: one file per op.

Each file owns its op's attribute parsing, evaluation (constant folding), torch lowering (its
Steps), affine lowering (the layer graph) where piecewise linear, and its linear relaxation
(docs/architecture.md, "How to add an ONNX operator"). Every module of this package is imported
here, which registers its handlers, except `torch_*.py` (the torch side, imported only when a
torch module is built): a new op is a new file and nothing else. `operators()` is what `vnncert
supports --onnx-operators` prints; `lowerings(op)` says which lowerings the op has.
"""
import importlib
import pkgutil

from .base import OpHandler, all_handlers, constant_only_ops, handler, lowerings, operators, register, supported_ops

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("torch_"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["OpHandler", "register", "handler", "supported_ops", "operators", "lowerings", "all_handlers",
           "constant_only_ops"]
