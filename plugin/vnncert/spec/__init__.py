"""VNN-LIB text -> `Spec` (the normal form in `model.py`).

Two front ends, one back end: VNN-LIB 1.0 (`vnnlib1.py`) and 2.0 (`vnnlib2.py`, read with the
`vnnlib` package) both write the atom table of `atoms.py`, put the property in disjunctive normal
form with `dnf.py` (one limit) and hand both to the case assembly of `cases.py` (one rounding
rule). What the parser learns of the model is a `Signature` (vnncert/signature.py): the input and
output tensors' names, shapes and element types, never the `Network`.
"""
from __future__ import annotations

import os
from typing import Optional

from ..errors import SpecError
from ..files import MAX_PROPERTY_BYTES, read_maybe_gzip
from ..signature import Signature, TensorSignature
from .model import Case, Halfspaces, InputRegion, Spec
from .vnnlib1 import parse_vnnlib1

__all__ = ["Spec", "Case", "Halfspaces", "InputRegion", "Signature", "TensorSignature", "load_spec", "parse_spec",
           "read_text", "detect_version"]


def read_text(path: str) -> str:
    """Read a (possibly gzip-compressed) text file of at most `files.MAX_PROPERTY_BYTES` bytes
    (decompressed); binary garbage, a FIFO or a device is a SpecError."""
    data = read_maybe_gzip(path, SpecError, "property file", MAX_PROPERTY_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not a VNN-LIB text file (invalid UTF-8 at byte {e.start})") from None
    if "\x00" in text:
        raise SpecError(f"{path}: not a VNN-LIB text file (contains NUL bytes)")
    return text


def detect_version(text: str) -> str:
    """'2.0' when the text carries a VNN-LIB 2.0 header or network declaration, else '1.0'."""
    head = text[:4096]
    if "vnnlib-version" in head or "declare-network" in text[:200000]:
        return "2.0"
    return "1.0"


def parse_spec(text: str, n_inputs: Optional[int] = None, n_outputs: Optional[int] = None,
               where: str = "<text>", signature: Optional[Signature] = None) -> Spec:
    """Parse VNN-LIB 1.0 or 2.0 text. With the model's `signature` a 1.0 property's variable counts
    and a 2.0 query's declared shapes and element types are checked against the model (a 1.0
    property can also be checked against bare counts, `n_inputs` / `n_outputs`)."""
    tensors = None
    if signature is not None:
        n_inputs, n_outputs = signature.n_inputs, signature.n_outputs

        def made(kind: str, ts) -> str:
            if len(ts) < 2:
                return ""
            shapes = ", ".join(f"{t.name} [{','.join(map(str, t.shape))}]" for t in ts)
            return f" ({len(ts)} real {kind}: {shapes}, flattened and concatenated in the model's order)"

        tensors = (made("inputs", signature.inputs), made("outputs", signature.outputs))
    if detect_version(text) == "2.0":
        from .vnnlib2 import parse_vnnlib2  # loaded when needed: a 1.0 run never imports it

        return parse_vnnlib2(text, where=where, signature=signature)
    return parse_vnnlib1(text, n_inputs, n_outputs, where=where, tensors=tensors)


def load_spec(path: str, signature: Optional[Signature] = None, n_inputs: Optional[int] = None,
              n_outputs: Optional[int] = None) -> Spec:
    """Load a VNN-LIB property (1.0 or 2.0, `.gz` accepted); with the model's `signature`
    (`Network.signature`) it is checked against the model (see `parse_spec`)."""
    return parse_spec(read_text(path), n_inputs, n_outputs, where=os.path.basename(path), signature=signature)
