"""The op-handler registry: one class per ONNX op type, one instance registered per op.

A handler is a class with one method per converter. Today that is `to_torch(node, ctx)`
(see `vnncert.network.torch_convert`), `to_affine(node, ctx)`, the lowering to the MILP's
layer graph (see `vnncert.network.layers`), and `relaxation(l, u, xp)`, the linear relaxation
the bounds layer uses for a nonlinear layer (Relu: `relu.relu_relaxation`, MaxPool:
`pool.max_relaxation`). `supported_ops(method)` lists the op types whose
handler implements that method, so `vnncert supports --onnx-operators` is read off the
registry, never kept by hand.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Type

from ...errors import UnsupportedOperator

_REGISTRY: Dict[str, "OpHandler"] = {}


class OpHandler:
    """Base class: override the converter methods the op supports."""

    op_type: str = ""
    # converter method -> the op types (of a class registered for several) that it handles;
    # a method missing here handles all of them
    partial: Dict[str, FrozenSet[str]] = {}

    def to_torch(self, node, ctx) -> None:  # pragma: no cover - overridden
        raise UnsupportedOperator(node.op_type, where="the torch converter", node_name=node.name)

    def supports(self, method: str) -> bool:
        impl = getattr(type(self), method, None)
        if impl is None or impl is getattr(OpHandler, method, None):
            return False
        only = self.partial.get(method)
        return only is None or self.op_type in only


def register(*op_types: str):
    """Class decorator: register one instance of the class for each ONNX op type."""

    def deco(cls: Type[OpHandler]) -> Type[OpHandler]:
        for op in op_types:
            inst = cls()
            inst.op_type = op
            _REGISTRY[op] = inst
        return cls

    return deco


def handler(op_type: str, method: str = "to_torch", where: str = "") -> OpHandler:
    """The handler for op_type that implements `method`, else UnsupportedOperator(op_type)."""
    h = _REGISTRY.get(op_type)
    if h is None or not h.supports(method):
        raise UnsupportedOperator(op_type, where=where)
    return h


def supported_ops(method: str = "to_torch") -> List[str]:
    """Sorted op types whose handler implements `method`."""
    return sorted(op for op, h in _REGISTRY.items() if h.supports(method))


def all_handlers() -> Dict[str, OpHandler]:
    return dict(_REGISTRY)
