"""What the property parser learns of a model: its input and output tensors, as a small value.

`Network.signature` (network/loader.py) builds it; spec/ reads it (the declared counts of a 1.0
property, the declared shapes and element types of a 2.0 query are checked against it) and never
sees the `Network`. It lives in the lowest layer because both network/ and spec/ use it and
neither may import the other (docs/architecture.md).

`Composition` goes the other way: what a VNN-LIB 2.0 query asks of its models beyond one
input box and output halfspaces (several networks, several inputs and outputs, hidden nodes,
comparisons across them, arithmetic), written by spec/ from the declarations and assertions and
built into one ONNX graph by network/compose.py.

Shapes follow the project's conventions (docs/formats.md, "Our conventions"): a symbolic dim
counts as 1 (`symbolic` says which dims were symbolic in the model), a fixed leading dim is part
of the shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Optional, Tuple

if TYPE_CHECKING:  # numpy is imported where arrays are made: this module stays import-light
    import numpy as np


@dataclass(frozen=True)
class TensorSignature:
    """One input or output tensor: its name in the model, its shape (symbolic dims as 1), its
    element type (`float32`, `float64`, `float16`, ...: the standard's names) and which dims
    were symbolic."""

    name: str
    shape: Tuple[int, ...]
    element_type: str
    symbolic: Tuple[bool, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "symbolic", tuple(bool(s) for s in self.symbolic) or (False,) * len(self.shape))
        if len(self.symbolic) != len(self.shape):
            raise ValueError(f"tensor {self.name!r}: {len(self.symbolic)} symbolic flags for {len(self.shape)} dims")
        if any(d < 1 for d in self.shape):
            raise ValueError(f"tensor {self.name!r}: shape {list(self.shape)} has a dim below 1")

    @property
    def size(self) -> int:
        """The flat number of elements (1 for a scalar)."""
        return prod(self.shape)


@dataclass(frozen=True)
class Signature:
    """The model's input and output tensors, in the model's order, and a name for messages (the
    model file's base name)."""

    inputs: Tuple[TensorSignature, ...]
    outputs: Tuple[TensorSignature, ...]
    model: str = "the model"

    @property
    def n_inputs(self) -> int:
        """Flat input count over all inputs: the X_i of a VNN-LIB 1.0 property."""
        return sum(t.size for t in self.inputs)

    @property
    def n_outputs(self) -> int:
        """Flat output count over all outputs: the Y_j of a VNN-LIB 1.0 property."""
        return sum(t.size for t in self.outputs)

    @staticmethod
    def flat(n_inputs: int, n_outputs: int, element_type: str = "float32",
             model: Optional[str] = None) -> "Signature":
        """A one-input, one-output signature with flat shapes `[n_inputs]`, `[n_outputs]` (for
        tests and tools that know only the counts)."""
        return Signature((TensorSignature("X", (n_inputs,), element_type),),
                         (TensorSignature("Y", (n_outputs,), element_type),), model or "the model")


# ---- what a query asks of its models: the composition plan (spec/ builds it, network/ reads it) ----
@dataclass(frozen=True, eq=False)
class HiddenNode:
    """A declared hidden node: the ONNX tensor `onnx_name` exposed as the variable `tensor.name`
    (declared shape and element type in `tensor`); `where` is `file:line:col` of its declaration,
    for messages about it."""

    onnx_name: str
    tensor: TensorSignature
    where: str = ""


@dataclass(frozen=True, eq=False)
class NetworkUse:
    """One declared network of a query, as the composed network runs it.

    `model` names the declared network whose model file it runs (itself, or the one it is
    declared `equal-to`); `isomorphic_to` the one it must be isomorphic to. `inputs` and
    `outputs` are its declared tensors (declared names, shapes, element types) in declaration
    order, which the standard makes the model's order; `hidden` its hidden nodes.
    `input_index[k]` is the position in the free input vector of the k-th element of its inputs,
    concatenated in order, each flattened in C order."""

    name: str
    model: str
    inputs: Tuple[TensorSignature, ...]
    hidden: Tuple[HiddenNode, ...]
    outputs: Tuple[TensorSignature, ...]
    input_index: "np.ndarray"
    isomorphic_to: Optional[str] = None
    where: str = ""

    @property
    def exposed(self) -> Tuple[TensorSignature, ...]:
        """The tensors this network contributes to the output vector: hidden nodes, then outputs."""
        return tuple(h.tensor for h in self.hidden) + self.outputs


@dataclass(frozen=True, eq=False)
class Derived:
    """A group of values computed from the output vector by one arithmetic program, vectorised over
    `size` members (docs/vnnlib2.md, "Arithmetic").

    `program` is a tuple of steps, each reading earlier steps by index: ("in", k) the base
    positions `leaves[k]`, ("c", k) the constants `consts[k]` (values of `element_type`, as
    float64), ("neg", a), ("add", a, b), ("sub", a, b), ("mul", a, b); the group's value is its
    last step. Over float32 / float64 every step is one IEEE operation in that type, in this
    order; over `real` the program is a product of leaves, exact."""

    element_type: str
    program: Tuple[tuple, ...]
    leaves: Tuple["np.ndarray", ...]
    consts: Tuple["np.ndarray", ...]

    @property
    def size(self) -> int:
        arrays = self.leaves or self.consts
        return int(arrays[0].size) if arrays else 0


@dataclass(frozen=True, eq=False)
class Composition:
    """One network over everything a 2.0 query names, as a flat input and a flat output vector.

    Input: the free input vector u. The declared inputs of every network, concatenated in
    declaration order (networks in order, each input flattened in C order), are `u[index]`
    (`declared_inputs`): inputs the query equates in every disjunct share one position of u
    (`NetworkUse.input_index`); u lists the remaining positions in order.
    Output: the vector z, in this order: per network in declaration order its hidden nodes and
    then its outputs (declaration order, each flattened); then `exposed`, inputs copied to the
    output (`u[exposed]`) because a comparison relates them to other variables; then the
    `derived` groups, values computed by the query's arithmetic. `n_declared` counts the first
    part (the declared hidden and output variables)."""

    networks: Tuple[NetworkUse, ...]
    n_free: int
    exposed: "np.ndarray"
    derived: Tuple[Derived, ...]

    @property
    def n_declared(self) -> int:
        return sum(t.size for n in self.networks for t in n.exposed)

    @property
    def n_outputs(self) -> int:
        return self.n_declared + int(self.exposed.size) + sum(d.size for d in self.derived)

    @property
    def declared_inputs(self) -> "np.ndarray":
        """Position in u of each declared input element (declaration order)."""
        import numpy as np

        parts = [n.input_index for n in self.networks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @property
    def models(self) -> Tuple[str, ...]:
        """The declared networks that need a model file, in order."""
        seen = []
        for n in self.networks:
            if n.model not in seen:
                seen.append(n.model)
        return tuple(seen)
