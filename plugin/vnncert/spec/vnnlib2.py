"""VNN-LIB 2.0 (parsed and type-checked by the `vnnlib` package) -> `Spec`, the 1.0 normal form.

What is accepted (the standard's theories, VNN-LIB 2.0 chapter 4) is declared once, in
`THEORIES` and `SOUND_ELEMENT_TYPES`, and `vnncert supports` prints those same tuples:

- one network (SNET), one input and one output (SIO), no hidden nodes (NH), and no comparison
  that mixes the input with the output (SNC): the normal form keeps input region and output
  set apart. Anything else is a `SpecError` naming the theory it needs.
- `X[i,j]` is the flat C-order position over the declared shape, which must be the ONNX shape
  (symbolic ONNX dims count as 1, so a query must instantiate them to 1). The model is known
  through its `Signature` (vnncert/signature.py), never as a `Network`.
- Element types: the query's types must be the model's (error condition 2 of the standard's
  `verify`) unless the query is written over `real` throughout. vnncert analyses `float32`
  and `float64` (`SOUND_ELEMENT_TYPES`); any other declared type is refused (error
  condition 3) and the user may consent to real-valued analysis by declaring `real`.
- Arithmetic, soundly for the declared type:
  * over `real`, any linear expression (sums, differences, negation, scaling by constants;
    theory LIN); a product of two variables is refused (POLY);
  * over a floating-point type, the comparisons whose floating-point meaning the normal form
    states exactly: variable against constant (the constant is rounded to the element type,
    round-to-nearest-even, as the type's semantics reads it), variable against variable, and
    a sum or difference of two variables against 0 (its sign is exact in IEEE arithmetic);
    each variable may carry a sign or a factor of +-1 (theories BND and OUTC). Any other
    expression would be analysed in real arithmetic while the query asks about rounded
    float arithmetic, so it is refused with a message that says to declare `real`.
- `<` / `>` stay strict (Halfspaces.strict, InputRegion.*_strict): only an unsat proof may
  relax them. `==` becomes two non-strict rows. `!=` becomes the disjunction of `<` and `>`
  (exact: there are no NaNs among the values a query ranges over).
- From the comparisons on, 2.0 is 1.0: the comparisons become atoms of the shared atom table
  (spec/atoms.py: one normalisation rule), the query's disjunctive normal form has the shared
  limit (spec/dnf.py, `MAX_DISJUNCTS`), and the shared case assembly (spec/cases.py) writes
  the normal form with the one rounding rule and its rules on disjuncts (dropped when they can
  never hold; every input bounded in every disjunct).
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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpecError
from ..signature import Signature
from .atoms import (ONE, ZERO, AtomBuilder, Key, LinearForm, MixedKinds, NonLinear, combined, difference, negated,
                    number, product)
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
# that type with ONNX Runtime and checked exactly; the comparisons accepted over these types are the
# ones the normal form states exactly (see the module docstring). float16 and the integer types are
# not claimed; `real` is always accepted (the user's consent to real-valued analysis).
SOUND_ELEMENT_TYPES: Tuple[str, ...] = ("float32", "float64")

# The theories (standard chapter 4) the parser below accepts; `vnncert supports` prints these.
THEORIES: Dict[str, Tuple[str, ...]] = {
    "hidden-node": ("NH",),
    "multiple-input-output": ("SIO",),
    "multiple-network": ("SNET",),
    "multiple-node-comparison": ("SNC",),
    "arithmetic-complexity": ("BND", "OUTC", "LIN"),  # LIN over `real`; over float types see above
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
    """A parsed, type-checked 2.0 query: its networks and declarations in order, and the AST."""

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


def _find_decl(text: str, keyword: str, name: str) -> Tuple[Optional[int], Optional[int]]:
    m = re.search(r"\(\s*" + re.escape(keyword) + r"\s+" + re.escape(name) + r"\b", text)
    if not m:
        return None, None
    off = m.start()
    return text.count("\n", 0, off) + 1, off - (text.rfind("\n", 0, off) + 1) + 1


def _decl_error(where: str, text: str, keyword: str, name: str, message: str) -> SpecError:
    line, col = _find_decl(text, keyword, name)
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
    return Query(text, where, version, tuple(networks), warnings, ast)


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


class _Builder:
    """Walks the package's typed AST into atoms over flat input/output positions (spec/atoms.py)
    and their disjunctive normal form (spec/dnf.py). The source of an atom is the index of its
    comparison in `self.comparisons` (`locate` finds its line and column)."""

    def __init__(self, query: Query):
        import vnnlib

        self.v = vnnlib
        self.q = query
        self.atoms = AtomBuilder()
        self.comparisons: list = []
        self.kind_of: Dict[str, Tuple[str, Declaration]] = {}
        for d in query.declarations:
            self.kind_of[d.name] = ("X" if d.kind == "input" else "Y" if d.kind == "output" else "H", d)
        self.type_of_kind = {k: d.element_type for k, d in self.kind_of.values()}
        self.ops = {vnnlib.LessEqual: ("<=", False), vnnlib.LessThan: ("<", False),
                    vnnlib.GreaterEqual: ("<=", True), vnnlib.GreaterThan: ("<", True),
                    vnnlib.Equal: ("==", False), vnnlib.NotEqual: ("!=", False)}

    def locate(self, src: int) -> Optional[Tuple[int, int]]:
        line, needle = _first_located(self.comparisons[src])
        line, col = _line_col(self.q.text, line, needle)
        return (line, col) if line else None

    # variables
    def var(self, node) -> Key:
        kind, decl = self.kind_of[node.name]
        if kind == "H":
            raise _Unsupported(f"hidden node {node.name} (theory H) is not supported", node)
        idx = list(node.indices)
        flat = 0
        for i, s in zip(idx, decl.shape):
            flat = flat * s + int(i)
        return kind, flat

    # linear forms (real queries), in exact rational arithmetic
    def linear(self, e) -> LinearForm:
        v = self.v
        if isinstance(e, v.Var):
            return {self.var(e): ONE}, ZERO
        if isinstance(e, v.Literal):
            return {}, _literal(e)
        if isinstance(e, v.Negate):
            return negated(self.linear(e.expr))
        if isinstance(e, v.Plus):
            return combined([self.linear(a) for a in e.args], [1] * len(e.args))
        if isinstance(e, v.Minus):
            parts = [self.linear(e.head)] + [self.linear(a) for a in e.rest]
            return combined(parts, [1] + [-1] * (len(parts) - 1))
        if isinstance(e, v.Multiply):
            try:
                return product([self.linear(a) for a in e.args])
            except NonLinear:
                raise _Unsupported("product of two variables: polynomial arithmetic (theory POLY) is not supported",
                                   e) from None
        raise _Unsupported(f"unsupported arithmetic expression {e}", e)

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
                return self.kind_of[n.name][1].element_type
            stack.extend(n.children())
        return None

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
        etype = self._type_of(a) or self._type_of(b) or self.element_type(node)
        if etype is None or etype == "real":
            coefs, bound = difference(self.linear(lhs), self.linear(rhs))
        else:
            fcoefs, fbound = self._exact(a, b, etype, node)
            if not math.isfinite(fbound):
                raise _Unsupported("comparison has a constant that is not finite in its element type", node)
            # the constant rounded to the element type is the exact value the query compares with
            coefs, bound = {k: Fraction(x) for k, x in fcoefs.items()}, Fraction(fbound)
        self.comparisons.append(node)
        try:
            return self.atoms.relation(op, coefs, bound, len(self.comparisons) - 1)
        except MixedKinds:
            raise _Unsupported("comparison relates the input and the output of the network: multi-node "
                               "comparisons (theory MNC) are not supported", node) from None
        except ValueError as e:
            raise _Unsupported(str(e), node) from None

    def _bound(self, op: str, a, b, node) -> Conjunctions:
        """A variable (with a sign) against a constant: `s v op c`, or `c op s v` = `-s v op -c`
        (op is <=, <, == or !=). The constant is exact over `real`, rounded to the element type over
        a float type; the same atoms `comparison` would make."""
        (_, s, key), (_, t, lexeme) = (a, b) if a[0] == "var" else (b, a)
        etype = self.type_of_kind[key[0]]
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

    def _type_of(self, s) -> Optional[str]:
        if s is None or s[0] == "const":
            return None
        key = s[2] if s[0] == "var" else s[1][0][1]
        return self.type_of_kind[key[0]]

    def _exact(self, a, b, etype: str, node):
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
        raise _Unsupported(
            f"vnncert cannot evaluate this comparison exactly in {etype} arithmetic (it can: variable vs "
            f"constant, variable vs variable, sum or difference of two variables vs 0, each variable with an "
            f"optional sign); declare the query's variables `real` to consent to real-valued analysis "
            f"(VNN-LIB 2.0: queries over real; verify error condition 3)", node)

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
def _check_structure(q: Query, signature: Optional[Signature]) -> Tuple[Declaration, Declaration]:
    where, text = q.where, q.text
    if len(q.networks) != 1:
        names = ", ".join(n.name for n in q.networks)
        raise _decl_error(where, text, "declare-network", q.networks[1].name,
                          f"the query declares {len(q.networks)} networks ({names}); vnncert handles one "
                          f"network (theory SNET)")
    net = q.networks[0]
    if net.hidden:
        h = net.hidden[0]
        raise _decl_error(where, text, "declare-hidden", h.name,
                          f"hidden node {h.name} ({h.onnx_name!r}): hidden-node declarations (theory H) are not supported")
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        raise _decl_error(where, text, "declare-network", net.name,
                          f"network {net.name} declares {len(net.inputs)} input(s) and {len(net.outputs)} output(s); "
                          f"vnncert handles one of each (theory SIO)")
    x, y = net.inputs[0], net.outputs[0]
    types = {x.element_type, y.element_type}
    if "real" in types and len(types) > 1:
        raise _decl_error(where, text, "declare-input", x.name,
                          f"the query mixes `real` with {', '.join(sorted(types - {'real'}))}: a query over real must "
                          f"declare every variable `real`")
    if signature is not None:
        _check_against_model(q, x, y, signature)
    else:
        for d in (x, y):
            if d.size > MAX_ELEMENTS_WITHOUT_MODEL:
                raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                  f"{d.name} has {d.size} elements; without a model to check its shape against, "
                                  f"vnncert reads at most {MAX_ELEMENTS_WITHOUT_MODEL} (give the model)")
    if "real" not in types:
        for d in (x, y):
            if d.element_type not in SOUND_ELEMENT_TYPES:
                raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                  f"{d.name} is declared {d.element_type}, which vnncert cannot analyse soundly "
                                  f"(it does {', '.join(SOUND_ELEMENT_TYPES)}); declare the query's variables "
                                  f"`real` to consent to real-valued analysis")
    return x, y


def _check_against_model(q: Query, x: Declaration, y: Declaration, signature: Signature) -> None:
    """The declared element types and shapes against the model's (its `Signature`)."""
    where, text = q.where, q.text
    model = signature.model
    real = x.element_type == "real"
    for d, tensors in ((x, signature.inputs), (y, signature.outputs)):
        what = "input" if d.kind == "input" else "output"
        if len(tensors) != 1:
            raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                              f"{model} has {len(tensors)} {what}s; the query declares one (theory SIO)")
        t = tensors[0]
        if not real and d.element_type != t.element_type:
            raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                              f"{d.name} is declared {d.element_type} but the {what} of {model} is {t.element_type} "
                              f"(element types must match unless the query is over `real`)")
        shape = t.shape
        if len(d.shape) == len(shape) and all(a == b for a, b in zip(d.shape, shape)):
            continue
        if len(d.shape) == len(shape):
            bad = [i for i, (a, b) in enumerate(zip(d.shape, shape)) if a != b]
            if all(t.symbolic[i] for i in bad):
                raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                  f"{d.name} instantiates the dynamic dimension(s) {bad} of {model}'s {what} to "
                                  f"{[d.shape[i] for i in bad]}; vnncert evaluates dynamic dimensions as 1")
        raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                          f"{d.name} is declared with shape [{','.join(map(str, d.shape))}] but the {what} of "
                          f"{model} has shape [{','.join(map(str, shape))}]")


# ---- normal form -------------------------------------------------------------------------------
def _index_name(decl: Declaration, flat: int) -> str:
    if not decl.shape:
        return decl.name
    idx = np.unravel_index(flat, decl.shape)
    return f"{decl.name}[{','.join(str(int(i)) for i in idx)}]"


def spec_from_query(q: Query, signature: Optional[Signature] = None) -> Spec:
    """The normal form of a parsed query; with the model's `signature` its declared element types
    and shapes are checked against the model's."""
    x, y = _check_structure(q, signature)
    b = _Builder(q)
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
    cases = assemble(b.atoms.atoms(), from_lists(conjs), x.size, y.size,
                     Source(q.where, b.locate, functools.partial(_index_name, x)))
    decl = {"version": q.version, "real": q.real, "warnings": list(q.warnings),
            "networks": [{"name": n.name, "equal_to": n.equal_to, "isomorphic_to": n.isomorphic_to} for n in q.networks],
            "variables": [d.as_dict() for d in q.declarations]}
    return Spec(n_inputs=x.size, n_outputs=y.size, cases=cases, source=q.where, version="2.0", declarations=decl)


def parse_vnnlib2(text: str, where: str = "<text>", signature: Optional[Signature] = None) -> Spec:
    """Parse VNN-LIB 2.0 text; with the model's `signature` the declared element types and shapes
    are checked."""
    return spec_from_query(read_query(text, where), signature)


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
