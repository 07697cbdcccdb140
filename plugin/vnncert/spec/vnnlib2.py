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
from fractions import Fraction
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpecError
from ..signature import Signature
from .atoms import ONE, ZERO, AtomBuilder, Key, LinearForm, difference, number
# MAX_ELEMENTS_WITHOUT_MODEL and SOUND_ELEMENT_TYPES are read from here (`vnncert supports`, the tests)
from .query import (MAX_ELEMENTS_WITHOUT_MODEL, MAX_POLY_TERMS, SOUND_ELEMENT_TYPES, Declaration,  # noqa: F401
                    Layout, NetworkDecl, Query, _at, _check_structure, _check_unique_networks, _decl_error,
                    _line_col, _signatures, _spec)
from .cases import Source, assemble
from .dnf import Conjunctions, TooManyDisjuncts, conjoin, disjoin, from_lists
from .model import Case, InputRegion, Spec
from .numbers import (NON_FINITE, decimal_for, decimal_nearest, near_of_down, near_of_up, number_problem,
                      round_to_dtype, shown, terminating_decimal)

# The package's DType enum member name -> the standard's element-type name (ONNX "Set 1" names).
DTYPE_NAMES: Dict[str, str] = {
    "Real": "real", "F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16",
    "F8E4M3FN": "float8e4m3fn", "F8E5M2": "float8e5m2", "F8E4M3FNUZ": "float8e4m3fnuz",
    "F8E5M2FNUZ": "float8e5m2fnuz", "F4E2M1": "float4e2m1", "I8": "int8", "I16": "int16",
    "I32": "int32", "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64",
    "C64": "complex64", "C128": "complex128", "Bool": "bool",
}

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
