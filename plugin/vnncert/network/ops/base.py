"""The op-handler registry: one class per ONNX op type (or tight family), one instance per op.

A handler implements the lowerings its op has, each a method:
* `evaluate(node, values, opset) -> [outputs]`: the op on numpy constants (constant folding in
  `vnncert.network.graph`); the base class runs onnx's reference evaluator, so every op folds,
  and a handler overrides it where the op's own code (its attribute parsing, its index maps)
  computes it directly;
* `to_torch(node, ctx)`: the torch Steps (`vnncert.network.torch_convert` is the ctx);
* `to_affine(node, ctx)`: the exact lowering to the layer graph's affine maps, ReLUs and max
  nodes (`vnncert.network.layers.LayerBuilder` is the ctx) for piecewise-linear ops, and act
  layers (smooth functions) and product layers (two variables multiplied) for the others. The
  MILP encodes only the piecewise-linear kinds: `supports("to_milp")` is `to_affine` without the
  ops in `not_piecewise_linear` (Sigmoid, ..., Pow); Mul, Div and MatMul are piecewise linear with
  a constant operand, and the MILP engines refuse their products of two variables when they meet
  them in the layer graph (`UnsupportedOperator`, which the router reads as for any op);
* `relaxation(l, u, xp)`: the linear relaxation the bounds layer uses for the op's nonlinear
  layer (Relu: `relu.relu_relaxation`, MaxPool: `pool.max_relaxation`, the smooth ops:
  `smooth.relax`, Mul/MatMul of two variables: `smooth.bilinear_relaxation`).
A handler with `constant_only = True` has none of the converters: its op is supported where its
inputs are constant (shape arithmetic), which constant folding takes care of.
`supported_ops(method)` and `lowerings(op)` are read off the classes, so `vnncert supports
--onnx-operators` and the router never keep a list by hand. The ctx of every method answers
`is_const(name)`, `const(name)` and `shape(name)`, so an op parses its attributes once, in one
function, for all of its lowerings; a converter's ctx also makes `unsupported(node, why)`, the
error for a use of the op it cannot take (the router treats it as the op being unsupported).
"""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional, Sequence, Type

import numpy as np

from ...errors import NetworkError, UnsupportedOperator

_REGISTRY: Dict[str, "OpHandler"] = {}

# the lowerings a handler may implement, in the order `lowerings()` lists them
METHODS = ("evaluate", "to_torch", "to_affine", "relaxation")
# the converters among them: an op is "supported" when a converter handles it
CONVERTERS = ("to_torch", "to_affine")
# not a lowering of its own: the layer graph's piecewise-linear part, what the MILP encodes
MILP = "to_milp"


class OpHandler:
    """Base class: override the lowerings the op has."""

    op_type: str = ""
    # an op of shape arithmetic (Shape, ConstantOfShape, comparisons, Floor, ...): supported where
    # all its inputs are constants (shapes count: symbolic dims as 1), which constant folding
    # evaluates before any converter runs; it has no converter, so an engine meeting it on a
    # tensor computed from the input is kept out as for any unsupported op
    constant_only: bool = False
    # method -> the op types (of a class registered for several) that it handles;
    # a method missing here handles all of them
    partial: Dict[str, FrozenSet[str]] = {}
    # op types (of this class) whose `to_affine` always adds a layer that is not piecewise linear
    # (an act layer): the layer graph has them, the MILP does not (`supports("to_milp")`)
    not_piecewise_linear: FrozenSet[str] = frozenset()

    def evaluate(self, node, values: List[Optional[np.ndarray]], opset: int) -> List[np.ndarray]:
        """The op on numpy inputs (None for an absent optional input), by onnx's reference evaluator."""
        return reference_evaluate(node, values, opset)

    def to_torch(self, node, ctx) -> None:  # pragma: no cover - overridden
        raise UnsupportedOperator(node.op_type, where="the torch converter", node_name=node.name)

    def to_affine(self, node, ctx) -> None:  # pragma: no cover - overridden
        raise UnsupportedOperator(node.op_type, where="the MILP encoder", node_name=node.name)

    def supports(self, method: str) -> bool:
        """Whether this op's handler implements `method` itself (the base evaluate counts for
        every op: the reference evaluator runs any op). "to_milp": `to_affine`, piecewise linear."""
        if method == MILP:
            return self.supports("to_affine") and self.op_type not in self.not_piecewise_linear
        impl = getattr(type(self), method, None)
        if impl is None or (method != "evaluate" and impl is getattr(OpHandler, method, None)):
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


def operators() -> List[str]:
    """Sorted op types some converter handles, and the constant-only ops (which folding removes):
    what `vnncert supports --onnx-operators` lists."""
    return sorted(op for op, h in _REGISTRY.items() if h.constant_only or any(h.supports(m) for m in CONVERTERS))


def constant_only_ops() -> List[str]:
    """Sorted op types supported only on constants (folded before any converter runs)."""
    return sorted(op for op, h in _REGISTRY.items() if h.constant_only)


def lowerings(op_type: str) -> List[str]:
    """The methods (of METHODS) the op's handler implements; [] for an op without a handler."""
    h = _REGISTRY.get(op_type)
    return [m for m in METHODS if h is not None and h.supports(m)]


def all_handlers() -> Dict[str, OpHandler]:
    return dict(_REGISTRY)


# ---- shared by the handlers ----------------------------------------------------------------------
def reference_evaluate(node, values: List[Optional[np.ndarray]], opset: int) -> List[np.ndarray]:
    """One node on numpy inputs with onnx's reference evaluator (ops without their own evaluate).

    The node runs inside a one-node model that declares `opset`: the evaluator then picks the
    op's version of that opset (a bare node gets the newest version, which reads e.g. a
    Squeeze-11's `axes` attribute wrongly). Tensor attributes (ConstantOfShape's `value`) go
    back as tensors."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if v is not None else "" for i, v in enumerate(values)]
    outs = [f"out{i}" for i in range(len(node.outputs))]
    try:
        proto = helper.make_node(node.op_type, names, outs)
        for k, v in node.attrs.items():
            # a tensor attribute (the IR keeps it as an array) goes back as a tensor, not a list
            proto.attribute.append(helper.make_attribute(k, numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v))
        ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), np.shape(v))
               for n, v in zip(names, values) if n]
        model = helper.make_model(helper.make_graph([proto], "fold", ins, [helper.make_empty_tensor_value_info(o) for o in outs]),
                                  opset_imports=[helper.make_opsetid("", opset)])
        feed = {n: np.asarray(v) for n, v in zip(names, values) if n}
        return [np.asarray(r) for r in ReferenceEvaluator(model).run(None, feed)]
    except Exception as e:
        raise NetworkError(f"cannot fold constant node {node.op_type} {node.name!r}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


class Constants:
    """The ctx of `evaluate`: every input is a constant (so the ops' attribute parsers run on it)."""

    def __init__(self, node, values: Sequence[Optional[np.ndarray]], opset: int):
        self.values = {n: np.asarray(v) for n, v in zip(node.inputs, values) if n and v is not None}
        self.opset = opset

    def is_const(self, name: str) -> bool:
        return name in self.values

    def const(self, name: str) -> np.ndarray:
        return self.values[name]

    def shape(self, name: str):
        return tuple(self.values[name].shape)


def optional_input(node, ctx, i: int) -> Optional[np.ndarray]:
    """Constant input i of node, None when absent; a variable there is a NetworkError."""
    if len(node.inputs) > i and node.inputs[i]:
        if not ctx.is_const(node.inputs[i]):
            raise NetworkError(f"{node.op_type} node {node.name!r}: input {i} must be constant")
        return np.asarray(ctx.const(node.inputs[i]))
    return None


def ints(v) -> List[int]:
    """An int list from an attribute or a constant tensor (any shape)."""
    return [int(a) for a in np.asarray(v).reshape(-1)]


def norm_axis(a, rank: int) -> int:
    """ONNX axis a (negative counts from the end) as 0..rank-1; out of range is a NetworkError."""
    a = int(a)
    if a < 0:
        a += rank
    if not 0 <= a < max(rank, 1):
        raise NetworkError(f"axis {a} out of range for rank {rank}")
    return a


def prod(xs) -> int:
    return int(np.prod(xs)) if len(xs) else 1


class LazySteps:
    """An op file's torch Step classes, made by `define()` (which imports torch) on first use, so
    the registry imports without torch: `steps = LazySteps(_define)`, then `steps.Conv(...)`."""

    def __init__(self, define):
        self._define = define
        self._classes: Optional[Dict[str, type]] = None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._classes is None:
            self._classes = self._define()
        try:
            return self._classes[name]
        except KeyError:
            raise AttributeError(name) from None
