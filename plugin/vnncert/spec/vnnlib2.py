"""VNN-LIB 2.0 -> `Spec`, the 1.0 normal form, and the `Composition` the query needs.

Two front ends, as for 1.0: the bulk front end (spec/vnnlib2_bulk.py) reads the common shapes
(declarations, asserts of `and` / `or` over comparisons of a variable with a number or with a
variable of the same kind) in bulk; everything else is parsed and type-checked by the `vnnlib`
package, whose typed AST `_Builder` walks here. The package is also the reference the tests
compare the bulk front end against. Both write the atoms of spec/atoms.py over the flat vectors
of `Layout`, so from the atoms on 2.0 is 1.0 (spec/dnf.py, spec/cases.py).

What is accepted (the standard's theories, VNN-LIB 2.0 chapter 4) is declared once, in
`THEORIES` and `SOUND_ELEMENT_TYPES`, and `vnncert supports` prints those same tuples. Beyond
one network's input box and output halfspaces, everything is turned into one composed network
whose flat output vector the normal form talks about (signature.Composition; network/compose.py
builds it), so the engines do not change:

- several networks (MNET, MENET, MINET: `equal-to` runs the same model, `isomorphic-to` a model
  of the same structure), several inputs and outputs per network (MIO): the free input vector u
  holds every declared input, flattened in declaration order (the standard makes it the model's
  order); inputs the query equates in every disjunct (`(== X[i] A[j])` at the top level) share
  one position of u, so that `f(x) - g(x)` is bounded over one shared x;
- hidden nodes (H): the declared tensors become outputs of the composed graph;
- comparisons relating inputs to hidden nodes or outputs (MNC): the inputs are copied to the
  output vector, so every such row is an output row;
- arithmetic: over `real`, linear expressions are exact rows (LIN) and a product of variables
  (POLY) is a derived output (the product of its factors, exact); over `float32` / `float64`
  a comparison of a variable with a constant or a variable, or of a sum or difference of two
  variables with 0, is a row as it stands (its float meaning is exact), and any other
  expression (LIN, POLY) is a derived output computed in the standard's float semantics: one
  IEEE operation per step, n-ary sums and products folded left, `(- a b c)` as
  `a + -(b + c)`, constants rounded to the element type (docs/vnnlib2.md, "Arithmetic").
- `X[i,j]` is the flat C-order position over the declared shape, which must be the ONNX shape
  (symbolic ONNX dims count as 1, so a query must instantiate them to 1). The models are known
  through their `Signature`s (vnncert/signature.py), never as `Network`s.
- Element types: the query's types must be the models' (error condition 2 of the standard's
  `verify`) unless the query is written over `real` throughout. vnncert analyses `float32`
  and `float64` (`SOUND_ELEMENT_TYPES`); any other declared type is refused (error
  condition 3) and the user may consent to real-valued analysis by declaring `real`.
- `<` / `>` stay strict (Halfspaces.strict, InputRegion.*_strict): only an unsat proof may
  relax them. `==` becomes two non-strict rows. `!=` becomes the disjunction of `<` and `>`
  (exact: there are no NaNs among the values a query ranges over).
- Constants are exact: over `real` a literal is the real number it spells (fractions.Fraction,
  linear forms computed exactly), over a float type the literal rounded to that type (correctly,
  from its exact value: numbers.round_to_dtype). Without a model a declared tensor may have at
  most MAX_ELEMENTS_WITHOUT_MODEL elements (with one, its shape must be the model's).

Errors carry `file:line:column` where the package reports a line (column: where the offending
symbol sits on that line); warnings of the package (e.g. a 2.x minor version) are kept in
`Spec.declarations["warnings"]` rather than printed.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpecError
from ..signature import Composition, Derived, HiddenNode, NetworkUse, Signature, TensorSignature
from .atoms import ONE, ZERO, AtomBuilder, Key, LinearForm, difference, number
from .cases import Source, assemble
from .dnf import Conjunctions, TooManyDisjuncts, conjoin, disjoin, from_lists
from .model import Case, InputRegion, Spec
from .numbers import (NON_FINITE, decimal_for, decimal_nearest, near_of_down, near_of_up, number_problem,
                      round_to_dtype, shown, terminating_decimal)

# Without a model to check shapes against, a declared input or output may have at most this many
# elements (2**24: sixteen times an ImageNet image); the normal form holds a few arrays of this size
# per disjunct. With a model, the declared shapes must be the model's.
MAX_ELEMENTS_WITHOUT_MODEL = 1 << 24

# The package's DType enum member name -> the standard's element-type name (ONNX "Set 1" names).
DTYPE_NAMES: Dict[str, str] = {
    "Real": "real", "F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16",
    "F8E4M3FN": "float8e4m3fn", "F8E5M2": "float8e5m2", "F8E4M3FNUZ": "float8e4m3fnuz",
    "F8E5M2FNUZ": "float8e5m2fnuz", "F4E2M1": "float4e2m1", "I8": "int8", "I16": "int16",
    "I32": "int32", "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64",
    "C64": "complex64", "C128": "complex128", "Bool": "bool",
}

# Element types vnncert analyses for the declared type's own semantics: witnesses are replayed in
# that type with ONNX Runtime and checked exactly, the query's arithmetic is evaluated in that type
# (see the module docstring). float16 and the integer types are not claimed; `real` is always
# accepted (the user's consent to real-valued analysis).
SOUND_ELEMENT_TYPES: Tuple[str, ...] = ("float32", "float64")

# The theories (standard chapter 4) the parser below accepts; `vnncert supports` prints these.
THEORIES: Dict[str, Tuple[str, ...]] = {
    "hidden-node": ("NH", "H"),
    "multiple-input-output": ("SIO", "MIO"),
    "multiple-network": ("SNET", "MENET", "MINET", "MNET"),
    "multiple-node-comparison": ("SNC", "MNC"),
    "arithmetic-complexity": ("BND", "OUTC", "LIN", "POLY"),
}
VNNLIB_VERSIONS = ("1.0", "2.0")

_VERSION = re.compile(r"\(\s*vnnlib-version\s*<(\d+)\.(\d+)>\s*\)")
_PARSE_ERROR = re.compile(r"line (\d+), column (\d+): '(.*)'", re.S)


# ---- declarations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Declaration:
    name: str
    kind: str  # "input" | "hidden" | "output"
    element_type: str  # the standard's name, "real" included
    shape: Tuple[int, ...]
    network: str
    onnx_name: Optional[str] = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def header(self) -> str:
        """The command-line assignment header: `NAME TYPE [d1,d2]`."""
        return f"{self.name} {self.element_type} [{','.join(str(d) for d in self.shape)}]"

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "element_type": self.element_type,
                "shape": list(self.shape), "network": self.network, "onnx_name": self.onnx_name}


@dataclass(frozen=True)
class NetworkDecl:
    name: str
    equal_to: Optional[str]
    isomorphic_to: Optional[str]
    declarations: Tuple[Declaration, ...]

    @property
    def inputs(self) -> List[Declaration]:
        return [d for d in self.declarations if d.kind == "input"]

    @property
    def hidden(self) -> List[Declaration]:
        return [d for d in self.declarations if d.kind == "hidden"]

    @property
    def outputs(self) -> List[Declaration]:
        return [d for d in self.declarations if d.kind == "output"]


@dataclass
class Query:
    """A parsed, type-checked 2.0 query: its networks and declarations in order, and the package's
    AST."""

    text: str
    where: str
    version: str
    networks: Tuple[NetworkDecl, ...]
    warnings: List[str]
    ast: object  # vnnlib.Query

    @property
    def declarations(self) -> List[Declaration]:
        return [d for n in self.networks for d in n.declarations]

    @property
    def real(self) -> bool:
        return all(d.element_type == "real" for d in self.declarations)

    def networks_needing_models(self) -> List[str]:
        """Names that take a `--network NAME=FILE` (every network not declared `equal-to` another)."""
        return [n.name for n in self.networks if n.equal_to is None]


# ---- positions ---------------------------------------------------------------------------------
def _line_col(text: str, line: Optional[int], needle: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
    """1-based column of `needle` on `line` (1 when not found there)."""
    if not line or line < 1:
        return None, None
    lines = text.split("\n")
    if line > len(lines):
        return line, 1
    src = lines[line - 1]
    col = 1
    if needle:
        k = src.find(needle)
        if k < 0:
            compact = re.sub(r"\s+", "", needle)
            # variables are printed with spaces by the package ("X [0, 2]"); find them loosely
            m = re.search(r"\s*".join(re.escape(c) for c in compact), src) if compact else None
            k = m.start() if m else -1
        if k >= 0:
            col = k + 1
    return line, col


def _at(where: str, text: str, line: Optional[int], needle: Optional[str], message: str) -> SpecError:
    line, col = _line_col(text, line, needle)
    loc = f"{where}:{line}:{col}" if line else where
    return SpecError(f"{loc}: {message}")


def _find_decl(text: str, keyword: str, name: str, nth: int = 0) -> Tuple[Optional[int], Optional[int]]:
    """(line, column) of the nth `(keyword name` in the text."""
    found = re.finditer(r"\(\s*" + re.escape(keyword) + r"\s+" + re.escape(name) + r"(?![\w])", text)
    m = next((m for k, m in enumerate(found) if k == nth), None)
    if not m:
        return None, None
    off = m.start()
    return text.count("\n", 0, off) + 1, off - (text.rfind("\n", 0, off) + 1) + 1


def _decl_error(where: str, text: str, keyword: str, name: str, message: str, nth: int = 0) -> SpecError:
    line, col = _find_decl(text, keyword, name, nth)
    return SpecError(f"{where}:{line}:{col}: {message}" if line else f"{where}: {message}")


# ---- the package -------------------------------------------------------------------------------
def _call_quietly(fn, *args):
    """Run a native call with fd 2 captured (the package prints type-checking warnings there)."""
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            result = fn(*args)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        captured = tmp.read().decode("utf-8", errors="replace")
    return result, captured


def _report_lines(where: str, text: str, body: str, label: str) -> List[str]:
    """The package's JSON report -> one line per entry, `file:line:col: [label: ]message: hint`."""
    start = body.find("{")
    try:
        report = json.loads(body[start:]) if start >= 0 else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        return []
    out = []
    for key in ("errors", "warnings"):
        for e in report.get(key) or []:
            if not isinstance(e, dict):
                continue
            line, col = _line_col(text, e.get("line"), e.get("offendingSymbol"))
            loc = f"{where}:{line}:{col}" if line else where
            msg = str(e.get("message") or e.get("errorCode") or "problem")[:400]
            hint = e.get("hint")
            sym = str(e.get("offendingSymbol") or "")
            if NON_FINITE.match(sym):  # `nan`, `inf` read as names by the package
                msg, hint = number_problem(sym), None
            out.append(f"{loc}: {label}{msg}" + (f": {str(hint)[:400]}" if hint else ""))
    return out


def _package_error(where: str, text: str, exc: Exception) -> SpecError:
    body = str(exc)
    m = _PARSE_ERROR.search(body)
    if body.startswith("Parse error") and m:
        line, col, tok = int(m.group(1)), int(m.group(2)), m.group(3)
        lines = text.split("\n")
        if tok and 1 <= line <= len(lines):  # the package's column is not always the token's: find it
            k = lines[line - 1].find(tok, max(0, col - 2))
            if k >= 0:
                col = k + 1
        hint = ""
        if re.fullmatch(r"[eE][+-]?\d+", tok):
            hint = " (VNN-LIB 2.0 numbers have no exponent: write them in positional notation)"
        elif tok == "":
            hint = " (unexpected end of the query: an expression is not closed, or there is no assert)"
        what = f"syntax error at {shown(tok)}" if tok else "syntax error"
        return SpecError(f"{where}:{line}:{col}: {what}{hint}")
    lines = _report_lines(where, text, body, "")
    if lines:
        more = f" (and {len(lines) - 1} more problem(s))" if len(lines) > 1 else ""
        return SpecError(lines[0] + more)
    first = body.strip().splitlines()[0] if body.strip() else type(exc).__name__
    return SpecError(f"{where}: VNN-LIB 2.0 query rejected: {first}")


_LITERAL = re.compile(r"(?<![\w.\]\[])-?(?:\d+\.\d*|\.\d+|\d+)(?![\w.])")


def _native_error(where: str, text: str, exc: Exception) -> SpecError:
    """A one-line SpecError for an exception the `vnnlib` package should have reported itself;
    for a literal it cannot hold in a double, the first such literal's position."""
    for m in _LITERAL.finditer(text):
        tok = m.group(0)
        if len(tok) > 400 or tok.strip("-.0") and not (2.3e-308 <= abs(float(tok)) <= 1.7e308):
            line = text.count("\n", 0, m.start()) + 1
            col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
            return SpecError(f"{where}:{line}:{col}: the number {tok[:200]!r} is beyond what the VNN-LIB 2.0 parser "
                             f"(package vnnlib) reads: it needs numbers within the range of a double")
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return SpecError(f"{where}: the VNN-LIB 2.0 parser (package vnnlib) failed: {type(exc).__name__}"
                     + (f": {first}" if first else ""))


def read_query(text: str, where: str = "<text>") -> Query:
    """Parse and type-check 2.0 text with the `vnnlib` package; errors -> SpecError with positions."""
    try:
        import vnnlib
    except ImportError:
        raise SpecError(f"{where}: VNN-LIB 2.0 needs the `vnnlib` package (pip install 'vnnlib>=1.0.2')") from None
    m = _VERSION.search(text)
    version = f"{m.group(1)}.{m.group(2)}" if m else "?"
    try:
        ast, captured = _call_quietly(vnnlib.parse_query_string, text)
    except vnnlib.VNNLibException as e:
        raise _package_error(where, text, e) from None
    except (IndexError, OverflowError, ValueError, RuntimeError, MemoryError) as e:
        # the package's C++ leaks std::out_of_range (IndexError "stod") for a literal beyond a double
        raise _native_error(where, text, e) from None
    if ast is None:
        raise SpecError(f"{where}: the VNN-LIB 2.0 parser could not read the query and gave no reason")
    warnings = _report_lines(where, text, captured, "warning: ") if captured.strip() else []
    networks = []
    for net in ast.networks:
        decls = []
        for kind, group in (("input", net.inputs), ("hidden", net.hidden), ("output", net.outputs)):
            keyword = f"declare-{kind}"
            for d in group:
                etype = DTYPE_NAMES.get(d.dtype.name)
                if etype is None:
                    raise _decl_error(where, text, keyword, d.name,
                                      f"{d.name} has an element type the standard does not define "
                                      f"(expected one of {', '.join(sorted(DTYPE_NAMES.values()))})")
                onnx_name = d.onnx_name
                if onnx_name and len(onnx_name) >= 2 and onnx_name[0] == onnx_name[-1] == '"':
                    onnx_name = onnx_name[1:-1]
                decls.append(Declaration(d.name, kind, etype, tuple(int(s) for s in d.shape), net.name, onnx_name))
        networks.append(NetworkDecl(net.name, net.equal_to or None, net.isometric_to or None, tuple(decls)))
    q = Query(text, where, version, tuple(networks), warnings, ast)
    _check_unique_networks(q)
    return q


def _check_unique_networks(q: "Query") -> None:
    """The standard asks for unique names; the package does not check network names."""
    seen = set()
    for n in q.networks:
        if n.name in seen:
            raise _decl_error(q.where, q.text, "declare-network", n.name, f"network {n.name} is declared twice (the "
                                                                           f"standard asks for unique network names)", 1)
        seen.add(n.name)


# ---- constants ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def round_to_type(lexeme: str, element_type: str) -> float:
    """The value a decimal literal denotes in `element_type` (round to nearest, ties to even), as
    float64: correctly rounded from the literal's exact value (numbers.round_to_dtype: no double
    rounding through float64). `real` and `float64` keep the nearest float64. ValueError when the
    lexeme is not a decimal number."""
    near, d = decimal_nearest(lexeme)
    if element_type != "float32":
        return near
    return float(round_to_dtype(np.array([near]), np.array([d], dtype=np.int8), np.float32)[0])


# ---- where each variable lives: the layout of u and z ---------------------------------------------
# provisional output positions of derived values (their final place is known once the walk is over)
_DERIVED_BASE = 1 << 40
MAX_POLY_TERMS = 10_000  # monomials of one expanded product (a product of sums multiplies out)


class Layout:
    """The flat vectors of the normal form for a query (signature.Composition says the order).

    Inputs: every declared input element has a position in the declared-inputs vector (networks
    in order, inputs in order, each flattened in C order); `ties` (pairs of such positions that
    the query equates in every disjunct) merge positions, and u lists what remains in order.
    Outputs: the declared hidden nodes and outputs (per network, in declaration order), then the
    inputs exposed to the output, then the derived values."""

    def __init__(self, q: "Query", ties: Sequence[Tuple[int, int]] = ()):
        self.q = q
        self.offset: Dict[str, int] = {}  # declared variable -> offset in its vector
        self.decl: Dict[str, Declaration] = {}
        nx = nz = 0
        for d in q.declarations:
            self.decl[d.name] = d
            if d.kind == "input":
                self.offset[d.name] = nx
                nx += d.size
            else:
                self.offset[d.name] = nz
                nz += d.size
        self.n_declared_inputs = nx
        self.n_declared = nz
        parent = list(range(nx)) if ties else None
        if ties:
            def find(i: int) -> int:
                while parent[i] != i:
                    parent[i] = parent[parent[i]]
                    i = parent[i]
                return i

            for a, b in ties:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            roots = np.array([find(i) for i in range(nx)], dtype=np.int64)
            _, self.u_of = np.unique(roots, return_inverse=True)
            self.u_of = self.u_of.reshape(-1).astype(np.int64)
            self.n_free = int(self.u_of.max()) + 1 if nx else 0
        else:
            self.u_of = None
            self.n_free = nx
        self.exposed: Dict[int, int] = {}  # u position -> exposure index
        self.derived: List[tuple] = []  # (element type, program, leaves, consts)
        self.derived_id: Dict[tuple, int] = {}

    def key(self, d: Declaration, flat: int) -> Key:
        pos = self.offset[d.name] + flat
        if d.kind == "input":
            return "X", int(self.u_of[pos]) if self.u_of is not None else pos
        return "Y", pos

    def expose(self, u: int) -> int:
        """The output position of input u copied to the output."""
        k = self.exposed.setdefault(u, len(self.exposed))
        return self.n_declared + k

    def base_position(self, key: Key) -> int:
        """The position of a variable in the base vector (declared outputs, then exposed inputs)."""
        return self.expose(key[1]) if key[0] == "X" else key[1]

    def derive(self, etype: str, program: tuple, leaves: Sequence[int], consts: Sequence[float]) -> Key:
        """The provisional output key of a derived value (equal ones share one)."""
        sig = (etype, program, tuple(leaves), tuple(consts))
        j = self.derived_id.get(sig)
        if j is None:
            j = self.derived_id[sig] = len(self.derived)
            self.derived.append(sig)
        return "Y", _DERIVED_BASE + j

    @property
    def n_outputs(self) -> int:
        return self.n_declared + len(self.exposed) + len(self.derived)

    def finish(self, atoms: AtomBuilder) -> Tuple[Derived, ...]:
        """Group the derived values (one group per element type and program, in order of first
        use), give them their final positions and move the atoms' provisional keys there."""
        groups: Dict[tuple, List[int]] = {}
        for j, (etype, program, _, _) in enumerate(self.derived):
            groups.setdefault((etype, program), []).append(j)
        final = np.empty(len(self.derived), dtype=np.int64)
        pos = self.n_declared + len(self.exposed)
        out = []
        for (etype, program), members in groups.items():
            final[members] = pos + np.arange(len(members))
            pos += len(members)
            n_leaves = sum(1 for s in program if s[0] == "in")
            n_consts = sum(1 for s in program if s[0] == "c")
            leaves = tuple(np.array([self.derived[j][2][k] for j in members], dtype=np.int64) for k in range(n_leaves))
            consts = tuple(np.array([self.derived[j][3][k] for j in members], dtype=np.float64) for k in range(n_consts))
            out.append(Derived(etype, program, leaves, consts))
        if self.derived:
            for a, (kind, items, rhs, strict) in enumerate(atoms.rows):
                if kind == "Y" and any(i >= _DERIVED_BASE for i, _ in items):
                    atoms.rows[a] = (kind, tuple((int(final[i - _DERIVED_BASE]) if i >= _DERIVED_BASE else i, c)
                                                 for i, c in items), rhs, strict)
        return tuple(out)

    def needs_composition(self) -> bool:
        q = self.q
        return (len(q.networks) > 1 or any(len(n.inputs) != 1 or len(n.outputs) != 1 or n.hidden for n in q.networks)
                or bool(self.exposed) or bool(self.derived) or self.n_free != self.n_declared_inputs)

    def composition(self, derived: Tuple[Derived, ...]) -> Composition:
        q = self.q
        u_of = self.u_of if self.u_of is not None else np.arange(self.n_declared_inputs, dtype=np.int64)
        uses = []
        for n in q.networks:
            def sig(d: Declaration) -> TensorSignature:
                return TensorSignature(d.name, d.shape, d.element_type)

            start = self.offset[n.inputs[0].name] if n.inputs else 0
            size = sum(d.size for d in n.inputs)
            line, col = _find_decl(q.text, "declare-network", n.name)
            where = f"{q.where}:{line}:{col}" if line else q.where
            hidden = []
            for d in n.hidden:
                hl, hc = _find_decl(q.text, "declare-hidden", d.name)
                hidden.append(HiddenNode(d.onnx_name or "", sig(d), f"{q.where}:{hl}:{hc}" if hl else q.where))
            uses.append(NetworkUse(n.name, n.equal_to or n.name, tuple(sig(d) for d in n.inputs), tuple(hidden),
                                   tuple(sig(d) for d in n.outputs), u_of[start:start + size].copy(),
                                   n.isomorphic_to, where))
        exposed = np.array(list(self.exposed), dtype=np.int64)
        return Composition(tuple(uses), self.n_free, exposed, derived)

    def input_name(self, u: int) -> str:
        """How an element of u is written: its first declared input element."""
        u_of = self.u_of if self.u_of is not None else None
        pos = int(np.argmax(u_of == u)) if u_of is not None else int(u)
        for d in self.q.declarations:
            if d.kind == "input" and self.offset[d.name] <= pos < self.offset[d.name] + d.size:
                return _index_name(d, pos - self.offset[d.name])
        return f"input {u}"


def _index_name(decl: Declaration, flat: int) -> str:
    if not decl.shape:
        return decl.name
    idx = np.unravel_index(flat, decl.shape)
    return f"{decl.name}[{','.join(str(int(i)) for i in idx)}]"


# ---- assertions --------------------------------------------------------------------------------
class _Unsupported(Exception):
    def __init__(self, message: str, node=None):
        super().__init__(message)
        self.message = message
        self.node = node


def _literal(e) -> Fraction:
    """The exact value of a literal of a `real` query."""
    try:
        return number(e.lexeme)
    except ValueError as why:
        raise _Unsupported(str(why) if str(why) != "not a number" else f"{shown(e.lexeme)} is not a number", e) from None


def _first_located(node):
    """(line, needle) of the first variable or literal under node, for error positions."""
    import vnnlib

    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, vnnlib.Var):
            idx = list(n.indices)
            return n.line, n.name + (f"[{','.join(str(i) for i in idx)}]" if idx else "")
        if isinstance(n, vnnlib.Literal):
            return n.line, n.lexeme
        stack.extend(reversed(n.children()))
    return None, None


def _ties(q: "Query", layout_offsets: Dict[str, int], decls: Dict[str, Declaration]) -> List[Tuple[int, int]]:
    """Pairs of declared-input positions that the query equates in every disjunct: `(== A B)` of two
    input variables at the top level (an assert, or an `and` of the top level)."""
    import vnnlib

    out = []
    stack = [a.expr for a in q.ast.assertions]
    while stack:
        e = stack.pop()
        if isinstance(e, vnnlib.And):
            stack.extend(e.args)
        elif isinstance(e, vnnlib.Equal) and isinstance(e.lhs, vnnlib.Var) and isinstance(e.rhs, vnnlib.Var):
            da, db = decls[e.lhs.name], decls[e.rhs.name]
            if da.kind == db.kind == "input" and da.element_type == db.element_type:
                out.append((layout_offsets[da.name] + _flat(e.lhs, da), layout_offsets[db.name] + _flat(e.rhs, db)))
    return out


def _flat(node, decl: Declaration) -> int:
    flat = 0
    for i, s in zip(list(node.indices), decl.shape):
        flat = flat * s + int(i)
    return flat


Poly = Dict[Tuple[Key, ...], Fraction]  # monomial (sorted keys, () for the constant) -> exact coefficient


class _TooManyTerms(ValueError):
    pass


def _poly_product(a: Poly, b: Poly) -> Poly:
    out: Poly = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            m = tuple(sorted(ma + mb))
            out[m] = out.get(m, ZERO) + ca * cb
        if len(out) > MAX_POLY_TERMS:
            raise _TooManyTerms()
    return out


class _Builder:
    """Walks the package's typed AST into atoms over the flat vectors of `Layout` (spec/atoms.py)
    and their disjunctive normal form (spec/dnf.py). The source of an atom is the index of its
    comparison in `self.comparisons` (`locate` finds its line and column).

    A comparison whose sides relate inputs to hidden nodes or outputs has its inputs copied to
    the output (`Layout.expose`); a product of variables (any query) and, over a float type, any
    arithmetic whose float value the normal form cannot state as a row becomes a derived value
    (`Layout.derive`), which the composed network computes and the witness replay evaluates in
    the standard's arithmetic."""

    def __init__(self, query: "Query", layout: Layout):
        import vnnlib

        self.v = vnnlib
        self.q = query
        self.layout = layout
        self.atoms = AtomBuilder()
        self.comparisons: list = []
        self.decl: Dict[str, Declaration] = layout.decl
        self.ops = {vnnlib.LessEqual: ("<=", False), vnnlib.LessThan: ("<", False),
                    vnnlib.GreaterEqual: ("<=", True), vnnlib.GreaterThan: ("<", True),
                    vnnlib.Equal: ("==", False), vnnlib.NotEqual: ("!=", False)}

    def locate(self, src: int) -> Optional[Tuple[int, int]]:
        line, needle = _first_located(self.comparisons[src])
        line, col = _line_col(self.q.text, line, needle)
        return (line, col) if line else None

    # variables
    def var(self, node) -> Key:
        d = self.decl[node.name]
        return self.layout.key(d, _flat(node, d))

    # polynomial forms (real queries), in exact rational arithmetic
    def poly(self, e) -> Poly:
        v = self.v
        if isinstance(e, v.Var):
            return {(self.var(e),): ONE}
        if isinstance(e, v.Literal):
            return {(): _literal(e)}
        if isinstance(e, v.Negate):
            return {m: -c for m, c in self.poly(e.expr).items()}
        if isinstance(e, (v.Plus, v.Minus)):
            parts = [self.poly(a) for a in e.args] if isinstance(e, v.Plus) else \
                [self.poly(e.head)] + [{m: -c for m, c in self.poly(a).items()} for a in e.rest]
            out: Poly = {}
            for p in parts:
                for m, c in p.items():
                    out[m] = out.get(m, ZERO) + c
            return out
        if isinstance(e, v.Multiply):
            out = {(): ONE}
            for a in e.args:
                try:
                    out = _poly_product(out, self.poly(a))
                except _TooManyTerms:
                    raise _Unsupported(f"the product expands to more than {MAX_POLY_TERMS} monomials", e) from None
            return out
        raise _Unsupported(f"unsupported arithmetic expression {e}", e)

    def linear(self, e) -> LinearForm:
        """The exact linear form of a real expression; a monomial of degree >= 2 (theory POLY) is a
        derived value, the product of its factors."""
        coefs: Dict[Key, Fraction] = {}
        const = ZERO
        for m, c in self.poly(e).items():
            if c == 0:
                continue
            if not m:
                const += c
                continue
            if len(m) == 1:
                key = m[0]
            else:
                leaves = [self.layout.base_position(k) for k in m]
                program = [("in", 0)]
                for i in range(1, len(m)):
                    program += [("in", i), ("mul", len(program) - 1, len(program))]
                key = self.layout.derive("real", tuple(program), leaves, ())
            coefs[key] = coefs.get(key, ZERO) + c
        return coefs, const

    # exact shapes (floating-point queries)
    def simple(self, e):
        """('var', sign, key) | ('const', sign, lexeme) | ('pair', ((s, key), (s, key))) | None."""
        v = self.v
        t = type(e)
        if t is v.Var:
            return ("var", 1.0, self.var(e))
        if t is v.Float or t is v.Int or isinstance(e, v.Literal):
            return ("const", 1.0, e.lexeme)
        if isinstance(e, v.Negate):
            s = self.simple(e.expr)
            if s is None:
                return None
            if s[0] == "pair":
                return ("pair", tuple((-sg, key) for sg, key in s[1]))
            return (s[0], -s[1], s[2])
        if isinstance(e, v.Multiply):
            args = list(e.args)
            unit = [a for a in args if isinstance(a, v.Literal) and _unit(a.lexeme)]
            rest = [a for a in args if not (isinstance(a, v.Literal) and _unit(a.lexeme))]
            if len(rest) == 1 and len(unit) == len(args) - 1:
                s = self.simple(rest[0])
                if s is None or s[0] != "var":
                    return None
                sign = s[1]
                for a in unit:
                    sign *= _unit(a.lexeme)
                return ("var", sign, s[2])
            return None
        if isinstance(e, v.Plus):
            parts = [self.simple(a) for a in e.args]
            if len(parts) == 1:
                return parts[0]
            if len(parts) == 2 and all(p is not None and p[0] == "var" for p in parts):
                return ("pair", tuple((p[1], p[2]) for p in parts))
            return None
        if isinstance(e, v.Minus):
            rest = list(e.rest)
            if len(rest) != 1:
                return None
            a, b = self.simple(e.head), self.simple(rest[0])
            if a is not None and b is not None and a[0] == "var" and b[0] == "var":
                return ("pair", ((a[1], a[2]), (-b[1], b[2])))
            return None
        return None

    def element_type(self, node) -> Optional[str]:
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, self.v.Var):
                return self.decl[n.name].element_type
            stack.extend(n.children())
        return None

    # derived values over a float type: the expression in the standard's float semantics
    def derived(self, e, etype: str) -> Key:
        steps: List[tuple] = []
        leaves: List[int] = []
        consts: List[float] = []
        v = self.v

        def emit(step: tuple) -> int:
            steps.append(step)
            return len(steps) - 1

        def walk(x) -> int:
            if isinstance(x, v.Var):
                leaves.append(self.layout.base_position(self.var(x)))
                return emit(("in", len(leaves) - 1))
            if isinstance(x, v.Literal):
                try:
                    c = round_to_type(x.lexeme, etype)
                except ValueError as why:
                    raise _Unsupported(str(why) if str(why) != "not a number" else f"{shown(x.lexeme)} is not a number",
                                       x) from None
                if not math.isfinite(c):
                    raise _Unsupported(f"the constant {shown(x.lexeme)} is not finite in {etype}", x)
                consts.append(c)
                return emit(("c", len(consts) - 1))
            if isinstance(x, v.Negate):
                return emit(("neg", walk(x.expr)))
            if isinstance(x, (v.Plus, v.Multiply)):
                op = "add" if isinstance(x, v.Plus) else "mul"
                args = list(x.args)
                acc = walk(args[0])
                for a in args[1:]:
                    acc = emit((op, acc, walk(a)))
                return acc
            if isinstance(x, v.Minus):
                # the standard's semantics: (- a b c ...) is a + -(b + c + ...), the sum folded left;
                # a + -(s) is the same IEEE operation as a - s
                head = walk(x.head)
                rest = list(x.rest)
                acc = walk(rest[0])
                for a in rest[1:]:
                    acc = emit(("add", acc, walk(a)))
                return emit(("sub", head, acc))
            raise _Unsupported(f"unsupported arithmetic expression {x}", x)

        walk(e)
        return self.layout.derive(etype, tuple(steps), leaves, consts)

    def side(self, e, s, etype: str) -> LinearForm:
        """One side of a float comparison as an exact linear form over values: a variable (with a
        sign), a constant in the element type, or a derived value."""
        if s is not None and s[0] == "var":
            return {s[2]: Fraction(s[1])}, ZERO
        if s is not None and s[0] == "const":
            try:
                c = round_to_type(s[2], etype)
            except ValueError as why:
                raise _Unsupported(str(why) if str(why) != "not a number" else f"{shown(s[2])} is not a number",
                                   e) from None
            if not math.isfinite(c):
                raise _Unsupported("comparison has a constant that is not finite in its element type", e)
            return {}, Fraction(s[1] * c)
        return {self.derived(e, etype): ONE}, ZERO

    # comparisons -> atoms: `coefs . v  op  rhs`, op one of <=, <, ==, !=
    def comparison(self, node) -> Conjunctions:
        try:
            op, flip = self.ops[type(node)]
        except KeyError:
            raise _Unsupported(f"unsupported comparison {node}", node) from None
        lhs, rhs = node.lhs, node.rhs
        if flip:
            lhs, rhs = rhs, lhs
        a, b = self.simple(lhs), self.simple(rhs)
        if a is not None and b is not None and {a[0], b[0]} == {"var", "const"}:
            return self._bound(op, a, b, node)  # the common atom, `+-v op c` or `c op +-v`
        etype = self.element_type(node)
        if etype is None or etype == "real":
            coefs, bound = difference(self.linear(lhs), self.linear(rhs))
        else:
            exact = self._exact(a, b, etype, node)
            if exact is not None:
                fcoefs, fbound = exact
                if not math.isfinite(fbound):
                    raise _Unsupported("comparison has a constant that is not finite in its element type", node)
                # the constant rounded to the element type is the exact value the query compares with
                coefs, bound = {k: Fraction(x) for k, x in fcoefs.items()}, Fraction(fbound)
            else:
                coefs, bound = difference(self.side(lhs, a, etype), self.side(rhs, b, etype))
        kinds = {k[0] for k, c in coefs.items() if c != 0}
        if len(kinds) > 1:  # inputs related to outputs or hidden nodes: the inputs are copied to the output
            moved: Dict[Key, Fraction] = {}
            for k, c in coefs.items():
                k2 = ("Y", self.layout.expose(k[1])) if k[0] == "X" else k
                moved[k2] = moved.get(k2, ZERO) + c
            coefs = moved
        self.comparisons.append(node)
        try:
            return self.atoms.relation(op, coefs, bound, len(self.comparisons) - 1)
        except ValueError as e:
            raise _Unsupported(str(e), node) from None

    def _bound(self, op: str, a, b, node) -> Conjunctions:
        """A variable (with a sign) against a constant: `s v op c`, or `c op s v` = `-s v op -c`
        (op is <=, <, == or !=). The constant is exact over `real`, rounded to the element type over
        a float type; the same atoms `comparison` would make."""
        (_, s, key), (_, t, lexeme) = (a, b) if a[0] == "var" else (b, a)
        etype = self.element_type(node)
        try:
            if etype == "real":
                c = number(lexeme)
            else:
                f = round_to_type(lexeme, etype)
                if not math.isfinite(f):
                    raise _Unsupported("comparison has a constant that is not finite in its element type", node)
                c = Fraction(f)
        except ValueError as why:
            raise _Unsupported(str(why) if str(why) != "not a number" else f"{shown(lexeme)} is not a number",
                               node) from None
        if t < 0:
            c = -c
        if a[0] == "const":
            s, c = -s, -c
        self.comparisons.append(node)
        return self.atoms.bound(op, key, s, c, len(self.comparisons) - 1)

    def _exact(self, a, b, etype: str, node):
        """The comparisons whose float meaning is a row over the variables themselves: variable vs
        constant, variable vs variable, a sum or difference of two variables vs 0 (its sign is
        exact). None for any other shape (derived values then)."""
        kinds = (a[0] if a else None, b[0] if b else None)
        coefs: Dict[Key, float] = {}
        try:
            if kinds == ("var", "const"):
                return {a[2]: a[1]}, b[1] * round_to_type(b[2], etype)
            if kinds == ("const", "var"):
                return {b[2]: -b[1]}, -a[1] * round_to_type(a[2], etype)
            if kinds == ("var", "var"):
                coefs[a[2]] = a[1]
                coefs[b[2]] = coefs.get(b[2], 0.0) - b[1]
                return coefs, 0.0
            if kinds == ("pair", "const") and round_to_type(b[2], etype) == 0.0:
                for s, key in a[1]:
                    coefs[key] = coefs.get(key, 0.0) + s
                return coefs, 0.0
            if kinds == ("const", "pair") and round_to_type(a[2], etype) == 0.0:
                for s, key in b[1]:
                    coefs[key] = coefs.get(key, 0.0) - s
                return coefs, 0.0
        except ValueError as why:
            raise _Unsupported(str(why), node) from None
        return None

    def dnf(self, node) -> Conjunctions:
        v = self.v
        if type(node) in self.ops:
            return self.comparison(node)
        try:
            if isinstance(node, v.And):
                result: Conjunctions = [[]]
                for child in node.args:
                    result = conjoin(result, self.dnf(child))
                return result
            if isinstance(node, v.Or):
                out: Conjunctions = []
                for child in node.args:
                    out = disjoin(out, self.dnf(child))
                return out
        except TooManyDisjuncts as e:
            raise _Unsupported(str(e), node) from None
        if isinstance(node, v.Comparison):
            return self.comparison(node)
        raise _Unsupported(f"unsupported boolean expression {node}", node)


def _unit(lexeme: str) -> float:
    """+-1.0 when the literal is one or minus one, else 0.0 (false)."""
    try:
        v = float(lexeme)
    except ValueError:
        return 0.0
    return v if v in (1.0, -1.0) else 0.0


# ---- structure checks ----------------------------------------------------------------------------
def _check_structure(q: "Query", signatures: Mapping[str, Signature]) -> None:
    """Names, element types and shapes of the declarations; against the models' signatures where
    given (`signatures[network]`; a network declared `equal-to` another runs that one's model)."""
    where, text = q.where, q.text
    _check_unique_networks(q)
    decls = q.declarations
    types = {d.element_type for d in decls}
    if "real" in types and len(types) > 1:
        first = next(d for d in decls if d.element_type != "real")
        raise _decl_error(where, text, f"declare-{first.kind}", first.name,
                          f"the query mixes `real` with {', '.join(sorted(types - {'real'}))}: a query over real must "
                          f"declare every variable `real`")
    for d in decls:
        if any(s < 1 for s in d.shape):
            raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                              f"{d.name} is declared with shape [{','.join(map(str, d.shape))}]: no elements")
    for n in q.networks:
        sig = signatures.get(n.equal_to or n.name)
        if sig is not None:
            _check_against_model(q, n, sig)
        else:
            for d in n.inputs + n.outputs + n.hidden:
                if d.size > MAX_ELEMENTS_WITHOUT_MODEL:
                    raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                      f"{d.name} has {d.size} elements; without a model to check its shape against, "
                                      f"vnncert reads at most {MAX_ELEMENTS_WITHOUT_MODEL} (give the model)")
    if "real" not in types:
        for d in decls:
            if d.element_type not in SOUND_ELEMENT_TYPES:
                raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                  f"{d.name} is declared {d.element_type}, which vnncert cannot analyse soundly "
                                  f"(it does {', '.join(SOUND_ELEMENT_TYPES)}); declare the query's variables "
                                  f"`real` to consent to real-valued analysis")


def _check_against_model(q: "Query", net: NetworkDecl, signature: Signature) -> None:
    """The declared inputs and outputs of one network against its model's (count, order, element
    types, shapes): the standard asks for all of them, in the model's order."""
    where, text = q.where, q.text
    model = signature.model
    real = q.real
    for what, declared, tensors in (("input", net.inputs, signature.inputs), ("output", net.outputs, signature.outputs)):
        if len(declared) != len(tensors):
            raise _decl_error(where, text, "declare-network", net.name,
                              f"network {net.name} declares {len(declared)} {what}(s) but {model} has {len(tensors)} "
                              f"({', '.join(t.name for t in tensors)}): the standard asks for every {what} of the model, "
                              f"in the model's order")
        for d, t in zip(declared, tensors):
            the = f"the {what} of {model}" if len(tensors) == 1 else f"the {what} {t.name!r} of {model}"
            if not real and d.element_type != t.element_type:
                raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                  f"{d.name} is declared {d.element_type} but {the} is {t.element_type} (element "
                                  f"types must match unless the query is over `real`)")
            shape = t.shape
            if len(d.shape) == len(shape) and all(a == b for a, b in zip(d.shape, shape)):
                continue
            if len(d.shape) == len(shape):
                bad = [i for i, (a, b) in enumerate(zip(d.shape, shape)) if a != b]
                if all(t.symbolic[i] for i in bad):
                    raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                      f"{d.name} instantiates the dynamic dimension(s) {bad} of {the} to "
                                      f"{[d.shape[i] for i in bad]}; vnncert evaluates dynamic dimensions as 1")
            raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                              f"{d.name} is declared with shape [{','.join(map(str, d.shape))}] but {the} has "
                              f"shape [{','.join(map(str, shape))}]")


def _signatures(q: "Query", signature: Optional[Signature],
                signatures: Optional[Mapping[str, Signature]]) -> Dict[str, Signature]:
    """The models' signatures by declared network name; a lone `signature` is the model of the one
    network that needs one."""
    out: Dict[str, Signature] = dict(signatures or {})
    if signature is not None:
        need = q.networks_needing_models()
        if len(need) != 1:
            raise SpecError(f"{q.where}: the query declares {len(need)} networks that need a model "
                            f"({', '.join(need)}); one model was given (name each: --network NAME=FILE)")
        out[need[0]] = signature
    return out


# ---- normal form -------------------------------------------------------------------------------
def spec_from_query(q: "Query", signature: Optional[Signature] = None,
                    signatures: Optional[Mapping[str, Signature]] = None) -> Spec:
    """The normal form of a parsed query (and its `Composition` when it needs more than one
    network's input box and outputs); with the models' signatures the declared element types and
    shapes are checked against the models'."""
    if q.ast is None:  # declarations read by the header reader: the package parses the assertions
        q = read_query(q.text, q.where)
    _check_structure(q, _signatures(q, signature, signatures))
    layout = Layout(q)
    ties = _ties(q, {k: v for k, v in layout.offset.items() if layout.decl[k].kind == "input"}, layout.decl)
    if ties:
        layout = Layout(q, ties)
    b = _Builder(q, layout)
    conjs: Conjunctions = [[]]
    try:
        for assertion in q.ast.assertions:
            try:
                conjs = conjoin(conjs, b.dnf(assertion.expr))
            except TooManyDisjuncts as e:
                raise _Unsupported(str(e), assertion.expr) from None
    except _Unsupported as e:
        line, needle = _first_located(e.node) if e.node is not None else (None, None)
        raise _at(q.where, q.text, line, needle, e.message) from None
    derived = layout.finish(b.atoms)
    composition = layout.composition(derived) if layout.needs_composition() else None
    cases = assemble(b.atoms.atoms(), from_lists(conjs), layout.n_free, layout.n_outputs,
                     Source(q.where, b.locate, layout.input_name))
    return _spec(q, layout, cases, composition)


def _spec(q: "Query", layout: Layout, cases, composition) -> Spec:
    decl = {"version": q.version, "real": q.real, "warnings": list(q.warnings),
            "networks": [{"name": n.name, "equal_to": n.equal_to, "isomorphic_to": n.isomorphic_to} for n in q.networks],
            "variables": [d.as_dict() for d in q.declarations]}
    return Spec(n_inputs=layout.n_free, n_outputs=layout.n_outputs, cases=cases, source=q.where, version="2.0",
                declarations=decl, composition=composition)


def parse_vnnlib2(text: str, where: str = "<text>", signature: Optional[Signature] = None,
                  signatures: Optional[Mapping[str, Signature]] = None, front_end: str = "auto",
                  query: Optional["Query"] = None) -> Spec:
    """Parse VNN-LIB 2.0 text; with the model's `signature` (one network needs a model) or the
    models' `signatures` (by declared network name) the declared element types and shapes are
    checked. `front_end`: "auto" (the bulk front end for the common shapes, the `vnnlib`
    package for the rest), "package" (the package only: the reference) or "bulk" (the bulk
    front end only; SpecError where it does not apply). `query`: the text's declarations when
    already read (`read_declarations`); the package's parse is reused when it holds one."""
    if front_end not in ("auto", "package", "bulk"):
        raise ValueError(f"front_end must be auto, package or bulk, got {front_end!r}")
    if front_end != "package":
        from .vnnlib2_bulk import bulk_parse

        spec = bulk_parse(text, where, signature, signatures)
        if spec is not None:
            return spec
        if front_end == "bulk":
            raise SpecError(f"{where}: not a shape the bulk front end reads")
    if query is None or query.ast is None:
        query = read_query(text, where)
    return spec_from_query(query, signature, signatures)


def read_declarations(text: str, where: str = "<text>") -> "Query":
    """The query's version, networks and declarations: read by the bulk front end's header reader
    for the common shapes (no AST then: `Query.ast` is None), else by the package (which parses and
    type-checks the whole query)."""
    from .vnnlib2_bulk import read_header

    q = read_header(text, where)
    return q if q is not None else read_query(text, where)


# ---- writing 2.0 ---------------------------------------------------------------------------------
def format_number(v: float) -> str:
    """A VNN-LIB 2.0 number: positional notation (no exponent), always with a fractional part."""
    v = float(v)
    if not np.isfinite(v):
        raise ValueError(f"{v} cannot be written in VNN-LIB 2.0")
    return np.format_float_positional(v, unique=True, trim="0")


def _ref(name: str, shape: Sequence[int], flat: int) -> str:
    if not len(shape):
        return name
    idx = np.unravel_index(flat, tuple(shape))
    return f"{name}[{','.join(str(int(i)) for i in idx)}]"


def _constant(up: float, d: int, exact: Optional[Fraction] = None, negate: bool = False) -> str:
    """A decimal for the exact right-hand side c whose upward rounding is `up` and direction `d`
    (for -c with `negate`): c's own digits when c is known and terminates, else a decimal with
    c's nearest float64 and direction (numbers.decimal_for), which reads back the same."""
    if exact is not None:
        text = terminating_decimal(-exact if negate else exact)
        if text is not None:
            return text
    near = float(near_of_up(up, d))
    return decimal_for(-near, -d) if negate else decimal_for(near, d)


def _row_text(A_row, b: float, strict: bool, name: str, shape, d: int = 0, exact: Optional[Fraction] = None) -> str:
    op = "<" if strict else "<="
    nz = [(int(i), float(A_row[i])) for i in np.flatnonzero(A_row)]
    if len(nz) == 1 and abs(nz[0][1]) == 1.0:
        i, c = nz[0]
        if c > 0:
            return f"({op} {_ref(name, shape, i)} {_constant(b, d, exact)})"
        return f"({'>' if strict else '>='} {_ref(name, shape, i)} {_constant(b, d, exact, negate=True)})"
    if len(nz) == 2 and b == 0.0 and d == 0 and sorted(c for _, c in nz) == [-1.0, 1.0]:
        (i, ci), (j, _) = nz
        pos, neg = (i, j) if ci > 0 else (j, i)
        return f"({op} {_ref(name, shape, pos)} {_ref(name, shape, neg)})"
    if not nz:
        return f"({op} (* 0.0 {_ref(name, shape, 0)}) {_constant(b, d, exact)})"
    terms = " ".join(f"(* {format_number(c)} {_ref(name, shape, i)})" for i, c in nz)
    return f"({op} (+ {terms}) {_constant(b, d, exact)})"


def _row_float_exact(a_row, b: float, d: int = 0) -> bool:
    nz = np.flatnonzero(a_row)
    c = sorted(float(a_row[i]) for i in nz)
    return (len(nz) == 1 and abs(c[0]) == 1.0) or (len(nz) == 2 and b == 0.0 and d == 0 and all(abs(x) == 1.0 for x in c))


def _dir(dirs: Optional[np.ndarray], k: int) -> int:
    return 0 if dirs is None else int(dirs[k])


def spec_float_exact(spec: Spec) -> bool:
    """Whether `spec_to_vnnlib2` writes every row of `spec` as a comparison a float-typed query states
    exactly (variable vs constant, variable vs variable, +-v +-w vs 0); else only a `real` query can hold it."""
    for case in spec.cases:
        r = case.region
        if r.G is not None and not all(_row_float_exact(r.G[k], float(r.h[k]), _dir(r.h_dir, k))
                                       for k in range(r.G.shape[0])):
            return False
        for hs in case.output:
            if not all(_row_float_exact(hs.A[k], float(hs.b[k]), _dir(hs.b_dir, k)) for k in range(hs.rows)):
                return False
    return True


def spec_to_vnnlib2(spec: Spec, input_shape: Sequence[int], output_shape: Sequence[int],
                    element_type: str = "float32", network: str = "net", x: str = "X", y: str = "Y") -> str:
    """Write a `Spec` (e.g. parsed from VNN-LIB 1.0) as a VNN-LIB 2.0 query over one network.

    Rows with one ±1 coefficient become variable-vs-constant comparisons and rows `y_i - y_j <= 0`
    become `(<= Y[i] Y[j])`; other rows are written as weighted sums (which a float-typed query
    then refuses: use element_type="real" for those). Strictness is kept. Constants are written so
    that a `real` query reads back the same normal form (the same outward floats and directions;
    the exact decimal where it is known and terminates, e.g. every constant that is a float64).
    """
    if int(np.prod(input_shape, dtype=np.int64)) != spec.n_inputs or int(np.prod(output_shape, dtype=np.int64)) != spec.n_outputs:
        raise ValueError("shapes do not match the spec's variable counts")
    dims = lambda s: "[" + ",".join(str(int(d)) for d in s) + "]"  # noqa: E731
    out = ["(vnnlib-version <2.0>)",
           f"(declare-network {network}",
           f"    (declare-input {x} {element_type} {dims(input_shape)})",
           f"    (declare-output {y} {element_type} {dims(output_shape)})",
           ")"]

    def region_terms(r: InputRegion) -> List[str]:
        terms = []
        for i in range(spec.n_inputs):
            ls = r.lower_strict is not None and r.lower_strict[i]
            us = r.upper_strict is not None and r.upper_strict[i]
            d_lo, d_hi = _dir(r.lower_dir, i), _dir(r.upper_dir, i)
            lo = decimal_for(float(near_of_down(r.lower[i], d_lo)), d_lo)
            hi = decimal_for(float(near_of_up(r.upper[i], d_hi)), d_hi)
            terms.append(f"({'>' if ls else '>='} {_ref(x, input_shape, i)} {lo})")
            terms.append(f"({'<' if us else '<='} {_ref(x, input_shape, i)} {hi})")
        if r.G is not None:
            for k in range(r.G.shape[0]):
                strict = bool(r.G_strict[k]) if r.G_strict is not None else False
                terms.append(_row_text(r.G[k], float(r.h[k]), strict, x, input_shape, _dir(r.h_dir, k),
                                       r.h_exact[k] if r.h_exact is not None else None))
        return terms

    def output_terms(case: Case) -> str:
        conj = []
        for hs in case.output:
            rows = [_row_text(hs.A[k], float(hs.b[k]), bool(hs.strict[k]), y, output_shape, _dir(hs.b_dir, k),
                              hs.b_exact[k] if hs.b_exact is not None else None) for k in range(hs.rows)]
            if not rows:  # no output constraint: always true
                rows = [f"(<= {_ref(y, output_shape, 0)} {_ref(y, output_shape, 0)})"]
            conj.append("(and " + " ".join(rows) + ")")
        return "(or " + " ".join(conj) + ")" if len(conj) > 1 else conj[0]

    if not spec.cases:
        raise ValueError("a spec without cases has no 2.0 text")
    if len(spec.cases) == 1:
        c = spec.cases[0]
        out += [f"(assert {t})" for t in region_terms(c.region)]
        out.append(f"(assert {output_terms(c)})")
    else:
        parts = ["(and " + " ".join(region_terms(c.region)) + " " + output_terms(c) + ")" for c in spec.cases]
        out.append("(assert (or\n    " + "\n    ".join(parts) + "\n))")
    return "\n".join(out) + "\n"
