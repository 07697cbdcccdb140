"""What the property parser learns of a model: its input and output tensors, as a small value.

`Network.signature` (network/loader.py) builds it; spec/ reads it (the declared counts of a 1.0
property, the declared shapes and element types of a 2.0 query are checked against it) and never
sees the `Network`. It lives in the lowest layer because both network/ and spec/ use it and
neither may import the other (docs/architecture.md).

Shapes follow the project's conventions (docs/formats.md, "Our conventions"): a symbolic dim
counts as 1 (`symbolic` says which dims were symbolic in the model), a fixed leading dim is part
of the shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Optional, Tuple


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
    """The model's input and output tensors (vnncert loads models with exactly one of each) and a
    name for messages (the model file's base name)."""

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
