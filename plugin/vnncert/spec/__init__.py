"""VNN-LIB text -> `Spec` (the normal form in `model.py`)."""
from __future__ import annotations

import os
from typing import Optional

from ..errors import SpecError
from ..files import MAX_PROPERTY_BYTES, read_maybe_gzip
from .model import Case, Halfspaces, InputRegion, Spec
from .vnnlib1 import parse_vnnlib1

__all__ = ["Spec", "Case", "Halfspaces", "InputRegion", "load_spec", "parse_spec", "read_text", "detect_version"]


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
               where: str = "<text>", network=None) -> Spec:
    version = detect_version(text)
    if version == "2.0":
        try:
            from .vnnlib2 import parse_vnnlib2
        except ImportError:
            raise SpecError(f"{where}: VNN-LIB 2.0 queries are not supported by this build") from None
        return parse_vnnlib2(text, where=where, network=network)
    return parse_vnnlib1(text, n_inputs, n_outputs, where=where)


def load_spec(path: str, network=None, n_inputs: Optional[int] = None, n_outputs: Optional[int] = None) -> Spec:
    """Load a VNN-LIB property; with `network` the variable counts are checked against its shapes."""
    if network is not None:
        n_inputs, n_outputs = network.n_inputs, network.n_outputs
    where = os.path.basename(path)
    return parse_spec(read_text(path), n_inputs, n_outputs, where=where, network=network)
