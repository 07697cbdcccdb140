"""A small intermediate representation of a normalised ONNX model, with constants folded.

`Graph` holds the nodes that depend on the network input, in topological order, and every
constant tensor (initializers, `Constant` nodes, `Shape` of a tensor with a known shape, and
any node whose inputs are all constant, evaluated with onnx's reference evaluator) as a numpy
array. Nodes that do not contribute to the output are dropped. Converters (torch, MILP) walk
`graph.nodes` and look each op up in the handler registry (`vnncert.network.ops`).

Shapes: `graph.shapes` has the static shape of tensors where ONNX shape inference knows it,
symbolic dims counted as 1 (docs/formats.md, "Our conventions").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import NetworkError

# ops whose value is never folded even when their inputs are constant
_NON_DETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


@dataclass
class Node:
    """One ONNX node: `inputs` keeps '' for an absent optional input."""

    op_type: str
    name: str
    inputs: List[str]
    outputs: List[str]
    attrs: Dict[str, Any] = field(default_factory=dict)
    domain: str = ""

    def attr(self, key: str, default=None):
        return self.attrs.get(key, default)

    def __repr__(self) -> str:
        return f"Node({self.op_type} {self.name!r}: {self.inputs} -> {self.outputs})"


@dataclass
class Graph:
    input_name: str
    input_shape: Tuple[int, ...]
    output_name: str
    output_shape: Tuple[int, ...]
    nodes: List[Node]
    constants: Dict[str, np.ndarray]
    shapes: Dict[str, Tuple[int, ...]]
    opset: int
    folded: List[str] = field(default_factory=list)  # op types folded away (one entry per node)

    @property
    def op_types(self) -> List[str]:
        return sorted({n.op_type for n in self.nodes})

    def is_const(self, name: str) -> bool:
        return name in self.constants

    def consumers(self, name: str) -> List[Node]:
        return [n for n in self.nodes if name in n.inputs]


def _attr_value(a):
    from onnx import helper, numpy_helper

    v = helper.get_attribute_value(a)
    if hasattr(v, "dims") and hasattr(v, "data_type"):  # TensorProto
        return numpy_helper.to_array(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [s.decode("utf-8", errors="replace") for s in v]
    return v


def _dims_of(value_info) -> Optional[Tuple[int, ...]]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        out.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else 1)
    return tuple(out)


def _constant_value(node: Node) -> np.ndarray:
    a = node.attrs
    if "value" in a:
        return np.asarray(a["value"])
    if "value_float" in a:
        return np.asarray(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.asarray(a["value_floats"], dtype=np.float32)
    if "value_int" in a:
        return np.asarray(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.asarray(a["value_ints"], dtype=np.int64)
    raise NetworkError(f"Constant node {node.name!r} has no supported value attribute ({', '.join(a) or 'none'})")


def _topological(nodes: List[Node], available: set) -> List[Node]:
    """Kahn's order (stable: keeps file order among ready nodes)."""
    produced_by = {}
    for i, n in enumerate(nodes):
        for o in n.outputs:
            produced_by[o] = i
    order, done, ready_names = [], set(), set(available)
    remaining = list(range(len(nodes)))
    while remaining:
        progress = False
        rest = []
        for i in remaining:
            n = nodes[i]
            if all((not x) or x in ready_names or x not in produced_by for x in n.inputs):
                order.append(n)
                done.add(i)
                ready_names.update(o for o in n.outputs if o)
                progress = True
            else:
                rest.append(i)
        remaining = rest
        if not progress:
            names = ", ".join(nodes[i].name or nodes[i].op_type for i in remaining[:5])
            raise NetworkError(f"the ONNX graph has a cycle or dangling inputs (nodes {names})")
    return order


def evaluate_node(node: Node, values: List[Optional[np.ndarray]], opset: int) -> List[np.ndarray]:
    """One node on numpy inputs: its handler's own evaluation where it has one, else onnx's reference evaluator."""
    from .ops import all_handlers
    from .ops.base import reference_evaluate

    h = all_handlers().get(node.op_type)
    if h is not None and h.supports("evaluate") and not node.domain:
        return h.evaluate(node, values, opset)
    return reference_evaluate(node, values, opset)


def graph_from_model(model) -> Graph:
    """IR of a normalised model (see `Network.normalised_model`): one real input, one output."""
    import onnx
    from onnx import numpy_helper

    g = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    constants: Dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    real_inputs = [i for i in g.input if i.name not in constants]
    if len(real_inputs) != 1 or len(g.output) != 1:
        raise NetworkError("the converter needs exactly one real input and one output")
    input_name, output_name = real_inputs[0].name, g.output[0].name
    shapes: Dict[str, Tuple[int, ...]] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            d = _dims_of(vi)
            if d is not None:
                shapes[vi.name] = d
    except Exception:
        pass
    input_shape = _dims_of(real_inputs[0]) or ()
    output_shape = _dims_of(g.output[0]) or ()
    shapes[input_name] = input_shape

    raw = [Node(n.op_type, n.name, list(n.input), list(n.output), {a.name: _attr_value(a) for a in n.attribute}, n.domain)
           for n in g.node]
    for n in raw:
        if n.domain not in ("", "ai.onnx"):
            from ..errors import UnsupportedOperator

            raise UnsupportedOperator(f"{n.domain}.{n.op_type}", node_name=n.name)
    ordered = _topological(raw, {input_name} | set(constants))

    nodes: List[Node] = []
    folded: List[str] = []
    for n in ordered:
        ins = [x for x in n.inputs if x]
        if n.op_type == "Constant":
            constants[n.outputs[0]] = _constant_value(n)
            folded.append(n.op_type)
            continue
        if n.op_type in ("Shape", "Size") and ins and ins[0] not in constants and ins[0] in shapes:
            shp = np.asarray(shapes[ins[0]], dtype=np.int64)
            if n.op_type == "Size":
                constants[n.outputs[0]] = np.asarray(int(np.prod(shp)), dtype=np.int64)
            else:
                start, end = n.attr("start", 0), n.attr("end", None)
                constants[n.outputs[0]] = shp[start:end] if end is not None else shp[start:]
            folded.append(n.op_type)
            continue
        if n.op_type not in _NON_DETERMINISTIC and all(x in constants for x in ins) and n.op_type not in ("If", "Loop", "Scan"):
            vals = [constants[x] if x else None for x in n.inputs]
            outs = evaluate_node(n, vals, opset)
            for name, v in zip(n.outputs, outs):
                if name:
                    constants[name] = v
            folded.append(n.op_type)
            continue
        nodes.append(n)

    # drop nodes that do not lead to the output
    needed = {output_name}
    kept: List[Node] = []
    for n in reversed(nodes):
        if any(o in needed for o in n.outputs):
            kept.append(n)
            needed.update(x for x in n.inputs if x)
    kept.reverse()
    used_consts = {x for n in kept for x in n.inputs if x in constants}
    constants = {k: v for k, v in constants.items() if k in used_consts or k == output_name}
    if output_name in constants:
        raise NetworkError("the model's output does not depend on its input")
    return Graph(input_name=input_name, input_shape=tuple(input_shape), output_name=output_name,
                 output_shape=tuple(output_shape), nodes=kept, constants=constants, shapes=shapes,
                 opset=opset, folded=folded)


def graph_of(network) -> Graph:
    """`network.graph` (a lazy property of `Network`); kept for callers outside network/."""
    return network.graph
