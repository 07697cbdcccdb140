"""ONNX (via the `graph` IR) -> a torch.nn.Module that auto_LiRPA 0.3 can bound.

THE CONTRACT (what every engine may rely on)
    module = network.torch_module()       # built once per network (graph_to_torch(network.graph))
    y = module(x)                         # x: (B, network.n_inputs) float32, flat C order
                                          # y: (B, network.n_outputs), flat C order
The module reshapes internally, so a flat input box (lower/upper of shape (n_inputs,)) can be
handed to auto_LiRPA as is; `module.double()` gives the same network in float64 (every constant
is a parameter or buffer). Models whose input has no batch axis (rank-1 `[1]`, or pensieve's
`[12, 8]`) are handled the same way: a leading batch axis is added inside the module.

How batches are carried: every torch tensor between steps has the batch on axis 0. For each
ONNX tensor of shape s the builder records a `View`:
  * merged    -- ONNX axis 0 IS the batch axis (s[0] == 1): torch shape (B, *s[1:])
  * prepended -- the batch is an extra axis in front:          torch shape (B, *s)
Conv/pooling want merged tensors; ops that touch ONNX axis 0 of a merged tensor first switch
it to prepended (a reshape). Reshape-like ops pick merged whenever the target starts with 1.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import NetworkError, UnsupportedOperator
from .graph import Graph, Node
from .ops import handler
from .ops.base import norm_axis
from .ops.torch_base import Reshape, StepModule, View


class TorchBuilder:
    """Walks the IR and emits torch steps; op handlers call back into it."""

    SAMPLE_BATCH = 2
    WHERE = "the torch converter"

    def __init__(self, graph: Graph):
        import torch

        self.torch = torch
        self.graph = graph
        self.steps: List = []
        self.views: Dict[str, View] = {}
        self.ref: Dict[str, str] = {}  # ONNX name -> name in the module's environment
        self.samples: Dict[str, "torch.Tensor"] = {}  # keyed by internal name
        self.skip: set = set()  # id() of nodes absorbed by an earlier handler
        self._n = 0
        shp = tuple(graph.input_shape)
        merged = len(shp) >= 2 and shp[0] == 1
        view = View(shp, merged)
        gen = torch.Generator().manual_seed(0)
        self.views[graph.input_name] = view
        self.ref[graph.input_name] = graph.input_name
        self.samples[graph.input_name] = torch.rand((self.SAMPLE_BATCH,) + view.rest, generator=gen) * 2 - 1

    # ---- queries -------------------------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return self.graph.is_const(name)

    def const(self, name: str) -> np.ndarray:
        if name not in self.graph.constants:
            raise NetworkError(f"internal: {name!r} is not a constant")
        return self.graph.constants[name]

    def shape(self, name: str) -> Tuple[int, ...]:
        """The ONNX shape of tensor `name` (a constant's, or a computed tensor's view)."""
        if self.is_const(name):
            return tuple(np.asarray(self.const(name)).shape)
        return self.view(name).shape

    def view(self, name: str) -> View:
        if name not in self.views:
            raise NetworkError(f"internal: tensor {name!r} used before it is computed")
        return self.views[name]

    def unsupported(self, node: Node, why: str = "") -> UnsupportedOperator:
        """The error for a use of an op this converter cannot take (the router treats it as the op)."""
        return UnsupportedOperator(node.op_type, where=self.WHERE + (f": {why}" if why else ""), node_name=node.name)

    def consumers(self, name: str) -> List[Node]:
        return [n for n in self.graph.consumers(name) if id(n) not in self.skip]

    def fresh(self, base: str) -> str:
        self._n += 1
        return f"{base}#{self._n}"

    # ---- emitting ------------------------------------------------------------------------------
    def emit(self, module, inputs: Sequence[str], outputs: Sequence[str], merged) -> None:
        """Append a step reading ONNX/internal tensors `inputs`; record views of `outputs`."""
        torch = self.torch
        if isinstance(merged, bool):
            merged = [merged] * len(outputs)
        module.in_names = [self.ref[i] for i in inputs]
        module.out_names = [self.fresh(o) if o in self.ref else o for o in outputs]
        with torch.no_grad():
            out = module(*[self.samples[self.ref[i]] for i in inputs])
        outs = [out] if len(outputs) == 1 else list(out)
        for o, internal, t, m in zip(outputs, module.out_names, outs, merged):
            rest = tuple(int(d) for d in t.shape[1:])
            if t.shape[0] != self.SAMPLE_BATCH:
                raise NetworkError(f"internal: step {type(module).__name__} lost the batch axis")
            shape = (1,) + rest if m else rest
            self.views[o] = View(shape, bool(m))
            self.samples[internal] = t
            self.ref[o] = internal
        self.steps.append(module)

    def alias(self, new: str, old: str, view: Optional[View] = None) -> None:
        self.ref[new] = self.ref[old]
        self.views[new] = view or self.views[old]

    def reshape(self, name: str, target: Sequence[int], out: Optional[str] = None, merged: Optional[bool] = None) -> str:
        """Reshape the per-sample content of `name` to ONNX shape `target` (fully resolved)."""
        target = tuple(int(d) for d in target)
        if merged is None:
            merged = len(target) >= 2 and target[0] == 1
        if merged and not (len(target) >= 1 and target[0] == 1):
            raise NetworkError("internal: merged view needs a leading 1")
        rest = target[1:] if merged else target
        out = out or self.fresh(name)
        v = self.view(name)
        if v.merged == merged and v.rest == rest:
            self.alias(out, name, View(target, merged))
            return out
        self.emit(Reshape(rest), [name], [out], merged)
        return out

    def prepended(self, name: str, rank: Optional[int] = None) -> str:
        """`name` as a prepended tensor, with leading ONNX 1-dims added up to `rank`."""
        v = self.view(name)
        rank = v.rank if rank is None else max(rank, v.rank)
        shape = (1,) * (rank - v.rank) + v.shape
        if not v.merged and shape == v.shape:
            return name
        return self.reshape(name, shape, merged=False)

    def merged(self, name: str) -> Optional[str]:
        """`name` as a merged tensor, or None when its ONNX leading dim is not 1."""
        v = self.view(name)
        if v.merged:
            return name
        if v.rank >= 2 and v.shape[0] == 1:
            return self.reshape(name, v.shape, merged=True)
        return None

    def require_merged(self, name: str, node: Node) -> str:
        m = self.merged(name)
        if m is None:
            raise NetworkError(f"{node.op_type} node {node.name!r}: input of shape {list(self.view(name).shape)} "
                               f"has a leading dim other than 1, which the torch converter cannot batch")
        return m

    def not_on_batch(self, name: str, onnx_axes: Sequence[int]) -> str:
        """`name` in a view where none of `onnx_axes` is the batch axis (switches to prepended if needed)."""
        v = self.view(name)
        if v.merged and any(norm_axis(a, v.rank) == 0 for a in onnx_axes):
            return self.prepended(name)
        return name

    # ---- the walk ------------------------------------------------------------------------------
    def build(self):
        g = self.graph
        for node in g.nodes:
            if id(node) in self.skip:
                continue
            h = handler(node.op_type, "to_torch", where=self.WHERE)
            for x in node.inputs:
                if x and not self.is_const(x) and x not in self.views:
                    raise NetworkError(f"internal: {node.op_type} {node.name!r} reads {x!r} before it is computed")
            h.to_torch(node, self)
        out_view = self.view(g.output_name)
        in_view = self.view(g.input_name)
        n_in = int(np.prod(g.input_shape)) if g.input_shape else 1
        n_out = int(np.prod(out_view.shape)) if out_view.shape else 1
        module = StepModule(self.steps, g.input_name, in_view.rest, self.ref[g.output_name], n_in, n_out,
                         g.input_shape, out_view.shape)
        module.eval()
        return module


def graph_to_torch(graph: Graph):
    """Torch module for an IR graph (see the module docstring for the contract)."""
    return TorchBuilder(graph).build()
