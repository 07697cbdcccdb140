"""VNN-LIB 1.0 (the VNN-COMP dialect) -> `Spec`.

One pass of a single compiled tokenizer over the whole text, an explicit-stack S-expression
builder, then a semantic pass that turns every assert into disjunctive normal form over linear
atoms. Conjunctions that share an input region are grouped into one `Case`.

Errors carry file, line and column; positions are only computed on the error path, so the fast
path does not pay for them.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpecError
from .model import Case, Halfspaces, InputRegion, Spec

_TOKEN = re.compile(r";[^\n]*|\(|\)|[^\s();]+")
_VAR = re.compile(r"([XY])_(\d+)\Z")
_IGNORED_COMMANDS = {"check-sat", "get-model", "exit", "set-logic", "set-info", "set-option"}
_RELATIONS = {"<=", ">=", "<", ">", "="}
MAX_CONJUNCTIONS = 2_000_000

# A linear atom: (kind, ((index, coef), ...), rhs, strict) meaning sum coef*v <= rhs (or <).
# kind is "X" (inputs only), "Y" (outputs only) or "" (no variables: constant comparison).
Atom = Tuple[str, Tuple[Tuple[int, float], ...], float, bool]


class _Located(Exception):
    """Internal: a semantic error attached to the token index of the list it arose in."""

    def __init__(self, message: str, token: int, atom: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.token = token
        self.atom = atom


def _position(text: str, token_index: int, atom: Optional[str]) -> Tuple[int, int]:
    """1-based (line, column) of the token with this index (of the atom inside it, if given)."""
    offset = len(text)
    for i, m in enumerate(_TOKEN.finditer(text)):
        if i == token_index:
            offset = m.start()
            break
    if atom is not None:
        found = text.find(atom, offset)
        if found >= 0:
            offset = found
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _build_tree(tokens: Sequence[str], where: str, text: str) -> list:
    """Nested lists; each list's element 0 is the index of its '(' token."""
    root: list = [-1]
    stack = [root]
    top = root
    for i, tok in enumerate(tokens):
        if tok == "(":
            node = [i]
            top.append(node)
            stack.append(node)
            top = node
        elif tok == ")":
            if len(stack) == 1:
                line, col = _position(text, i, None)
                raise SpecError(f"{where}:{line}:{col}: unbalanced ')': no open expression to close")
            stack.pop()
            top = stack[-1]
        elif tok[0] == ";":
            continue
        else:
            top.append(tok)
    if len(stack) > 1:
        line, col = _position(text, stack[1][0], None)
        raise SpecError(f"{where}:{line}:{col}: unbalanced '(': expression opened here is never closed")
    return root


class _Parser:
    def __init__(self, n_inputs: Optional[int], n_outputs: Optional[int]):
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        self.declared: Dict[str, Tuple[str, int]] = {}
        self.var_cache: Dict[str, Tuple[str, int]] = {}

    # ---- terms -------------------------------------------------------------------------
    def term(self, node, ctx: int) -> Tuple[Dict[Tuple[str, int], float], float]:
        """Linear term -> ({(kind, idx): coef}, constant)."""
        if isinstance(node, str):
            var = self.declared.get(node)
            if var is not None:
                return {var: 1.0}, 0.0
            try:
                return {}, float(node)
            except ValueError:
                if _VAR.match(node):
                    raise _Located(f"unknown variable {node} (not declared with declare-const)", ctx, node)
                raise _Located(f"expected a declared variable or a number, found {node!r}", ctx, node)
        if len(node) < 2 or not isinstance(node[1], str):
            raise _Located("expected a term (variable, number or arithmetic expression)", node[0])
        op = node[1]
        args = [self.term(a, node[0]) for a in node[2:]]
        if op == "-" and len(args) == 1:
            coefs, c = args[0]
            return {k: -v for k, v in coefs.items()}, -c
        if op in ("+", "-") and args:
            coefs = dict(args[0][0])
            const = args[0][1]
            sign = 1.0 if op == "+" else -1.0
            for cf, c in args[1:]:
                for k, v in cf.items():
                    coefs[k] = coefs.get(k, 0.0) + sign * v
                const += sign * c
            return coefs, const
        if op == "*" and args:
            coefs, const = args[0]
            for cf, c in args[1:]:
                if coefs and cf:
                    raise _Located("non-linear term: product of two variables", node[0])
                if cf:
                    coefs, const, cf, c = cf, c, coefs, const
                coefs = {k: v * c for k, v in coefs.items()}
                const *= c
            return coefs, const
        raise _Located(f"unsupported term operator {op!r} (expected +, -, * or a number)", node[0])

    # ---- atoms and boolean structure -------------------------------------------------------
    def atoms(self, node) -> List[Atom]:
        """A relation -> one or two atoms (`=` gives two)."""
        op = node[1]
        if len(node) != 4:
            raise _Located(f"relation {op} takes exactly two arguments, found {len(node) - 2}", node[0])
        a, b = node[2], node[3]
        # fast path: variable vs number / variable vs variable
        if isinstance(a, str) and isinstance(b, str):
            va = self.declared.get(a)
            vb = self.declared.get(b)
            if va is not None and vb is None:
                try:
                    c = float(b)
                except ValueError:
                    self.term(b, node[0])  # raises the precise error
                    raise
                return self._rel(op, {va: 1.0}, c, node[0])
            if va is not None and vb is not None:
                coefs = {va: 1.0}
                coefs[vb] = coefs.get(vb, 0.0) - 1.0
                return self._rel(op, coefs, 0.0, node[0])
        la, ca = self.term(a, node[0])
        lb, cb = self.term(b, node[0])
        coefs = dict(la)
        for k, v in lb.items():
            coefs[k] = coefs.get(k, 0.0) - v
        return self._rel(op, coefs, cb - ca, node[0])

    def _rel(self, op: str, coefs: Dict[Tuple[str, int], float], rhs: float, ctx: int) -> List[Atom]:
        """`coefs . v  op  rhs` -> atoms of the form `sum <= rhs`."""
        coefs = {k: v for k, v in coefs.items() if v != 0.0}
        kinds = {k[0] for k in coefs}
        if len(kinds) > 1:
            raise _Located("constraint mixes inputs (X) and outputs (Y); VNN-LIB 1.0 keeps them apart", ctx)
        kind = kinds.pop() if kinds else ""
        items = tuple(sorted((k[1], v) for k, v in coefs.items()))
        neg = tuple((i, -v) for i, v in items)
        if op == "<=":
            return [(kind, items, rhs, False)]
        if op == "<":
            return [(kind, items, rhs, True)]
        if op == ">=":
            return [(kind, neg, -rhs, False)]
        if op == ">":
            return [(kind, neg, -rhs, True)]
        return [(kind, items, rhs, False), (kind, neg, -rhs, False)]  # "="

    def dnf(self, node) -> List[List[Atom]]:
        if isinstance(node, str):
            if node == "true":
                return [[]]
            if node == "false":
                return []
            raise _Located(f"expected a constraint such as (<= X_0 1), found {node!r}", -2, node)
        if len(node) < 2 or not isinstance(node[1], str):
            raise _Located("expected a constraint: (and ...), (or ...) or a relation", node[0])
        op = node[1]
        if op in _RELATIONS:
            return [self.atoms(node)]
        if op == "and":
            result: List[List[Atom]] = [[]]
            for child in node[2:]:
                sub = self.dnf(child)
                if len(sub) == 1:
                    for conj in result:
                        conj.extend(sub[0])
                else:
                    if len(result) * len(sub) > MAX_CONJUNCTIONS:
                        raise _Located(f"property expands to more than {MAX_CONJUNCTIONS} disjuncts", node[0])
                    result = [r + s for r in result for s in sub]
            return result
        if op == "or":
            result = []
            for child in node[2:]:
                result.extend(self.dnf(child))
            return result
        raise _Located(f"unsupported operator {op!r} (expected and, or, <=, >=, <, >, =)", node[0])

    # ---- declarations ------------------------------------------------------------------------
    def declare(self, node) -> None:
        if len(node) != 4 or not isinstance(node[2], str) or not isinstance(node[3], str):
            raise _Located("expected (declare-const NAME Real)", node[0])
        name, sort = node[2], node[3]
        m = _VAR.match(name)
        if not m:
            raise _Located(f"variable name {name!r} is not of the form X_<i> or Y_<j>", node[0], name)
        if sort != "Real":
            raise _Located(f"variable {name} has sort {sort!r}; VNN-LIB 1.0 variables are Real", node[0], sort)
        if name in self.declared:
            raise _Located(f"variable {name} declared twice", node[0], name)
        self.declared[name] = (m.group(1), int(m.group(2)))


def _count(declared: Dict[str, Tuple[str, int]], kind: str) -> int:
    idx = sorted(i for k, i in declared.values() if k == kind)
    if not idx:
        return 0
    if idx != list(range(len(idx))):
        missing = sorted(set(range(idx[-1] + 1)) - set(idx))
        raise SpecError(f"{kind}_ variables are not numbered 0..{idx[-1]} without gaps (missing {kind}_{missing[0]})")
    return len(idx)


def _case_parts(conj: List[Atom], n_in: int, n_out: int, k: int):
    lower = np.full(n_in, -np.inf)
    upper = np.full(n_in, np.inf)
    lo_strict = np.zeros(n_in, dtype=bool)
    hi_strict = np.zeros(n_in, dtype=bool)
    g_rows: List[Tuple[tuple, float, bool]] = []
    y_rows: List[Tuple[tuple, float, bool]] = []
    const_false = False
    for kind, items, rhs, strict in conj:
        if kind == "X":
            if len(items) == 1:
                i, c = items[0]
                bound = rhs / c
                if c > 0:
                    if bound < upper[i] or (bound == upper[i] and strict):
                        upper[i] = bound
                        hi_strict[i] = strict
                else:
                    if bound > lower[i] or (bound == lower[i] and strict):
                        lower[i] = bound
                        lo_strict[i] = strict
            else:
                g_rows.append((items, rhs, strict))
        elif kind == "Y":
            y_rows.append((items, rhs, strict))
        else:  # constant comparison 0 <= rhs
            if not (0.0 < rhs if strict else 0.0 <= rhs):
                const_false = True
    return lower, upper, lo_strict, hi_strict, g_rows, y_rows, const_false


def _rows_to_matrix(rows, n: int):
    A = np.zeros((len(rows), n))
    b = np.empty(len(rows))
    s = np.empty(len(rows), dtype=bool)
    for r, (items, rhs, strict) in enumerate(rows):
        for i, c in items:
            A[r, i] = c
        b[r] = rhs
        s[r] = strict
    return A, b, s


def parse_vnnlib1(text: str, n_inputs: Optional[int] = None, n_outputs: Optional[int] = None,
                  where: str = "<text>") -> Spec:
    """Parse VNN-LIB 1.0 text. With n_inputs/n_outputs (from the ONNX shapes) the declarations are checked."""
    tokens = _TOKEN.findall(text)
    tree = _build_tree(tokens, where, text)
    p = _Parser(n_inputs, n_outputs)
    conjs: List[List[Atom]] = [[]]
    n_asserts = 0
    try:
        for item in tree[1:]:
            if isinstance(item, str):
                raise _Located(f"expected '(' to start a command, found {item!r}", -2, item)
            if len(item) < 2 or not isinstance(item[1], str):
                raise _Located("expected a command: (declare-const ...) or (assert ...)", item[0])
            cmd = item[1]
            if cmd == "declare-const":
                p.declare(item)
            elif cmd == "assert":
                if len(item) != 3:
                    raise _Located("assert takes exactly one constraint", item[0])
                n_asserts += 1
                sub = p.dnf(item[2])
                if len(sub) == 1:
                    for c in conjs:
                        c.extend(sub[0])
                else:
                    if len(conjs) * len(sub) > MAX_CONJUNCTIONS:
                        raise _Located(f"property expands to more than {MAX_CONJUNCTIONS} disjuncts", item[0])
                    conjs = [c + s for c in conjs for s in sub]
            elif cmd in _IGNORED_COMMANDS:
                continue
            else:
                raise _Located(f"unknown command {cmd!r} (expected declare-const or assert)", item[0], cmd)
    except _Located as e:
        if e.token == -2:  # bare atom at top level or in boolean position: find it by text
            line, col = _position(text, len(tokens), None) if e.atom is None else _atom_position(text, e.atom)
        else:
            line, col = _position(text, e.token, e.atom)
        raise SpecError(f"{where}:{line}:{col}: {e.message}") from None

    if not tokens or not p.declared:
        raise SpecError(f"{where}: empty property: no declare-const found")
    if n_asserts == 0:
        raise SpecError(f"{where}: property has no assert")
    n_in = _count(p.declared, "X")
    n_out = _count(p.declared, "Y")
    if n_inputs is not None and n_in != n_inputs:
        raise SpecError(f"{where}: property declares {n_in} inputs (X_0..X_{n_in - 1}) but the network has {n_inputs}")
    if n_outputs is not None and n_out != n_outputs:
        raise SpecError(f"{where}: property declares {n_out} outputs (Y_0..Y_{n_out - 1}) but the network has {n_outputs}")

    groups: Dict[bytes, Tuple[InputRegion, List[Halfspaces]]] = {}
    order: List[bytes] = []
    for k, conj in enumerate(conjs):
        lower, upper, lo_s, hi_s, g_rows, y_rows, const_false = _case_parts(conj, n_in, n_out, k)
        if const_false:
            continue
        bad = np.flatnonzero(~np.isfinite(lower))
        if bad.size:
            raise SpecError(f"{where}: input X_{bad[0]} has no lower bound" + (f" in disjunct {k + 1}" if len(conjs) > 1 else ""))
        bad = np.flatnonzero(~np.isfinite(upper))
        if bad.size:
            raise SpecError(f"{where}: input X_{bad[0]} has no upper bound" + (f" in disjunct {k + 1}" if len(conjs) > 1 else ""))
        empty = np.flatnonzero((lower > upper) | ((lower == upper) & (lo_s | hi_s)))
        if empty.size:
            i = empty[0]
            raise SpecError(f"{where}: empty input box: X_{i} has lower bound {lower[i]!r} above upper bound {upper[i]!r}"
                            + (f" in disjunct {k + 1}" if len(conjs) > 1 else ""))
        G = h = G_s = None
        if g_rows:
            G, h, G_s = _rows_to_matrix(g_rows, n_in)
        key = b"".join(a.tobytes() for a in (lower, upper, lo_s, hi_s)) + (b"" if G is None else G.tobytes() + h.tobytes() + G_s.tobytes())
        A, b, s = _rows_to_matrix(y_rows, n_out)
        hs = Halfspaces(A, b, s)
        if key not in groups:
            region = InputRegion(lower, upper, G, h, lo_s if lo_s.any() else None, hi_s if hi_s.any() else None, G_s)
            groups[key] = (region, [])
            order.append(key)
        groups[key][1].append(hs)
    cases = [Case(groups[k][0], groups[k][1]) for k in order]
    return Spec(n_inputs=n_in, n_outputs=n_out, cases=cases, source=where, version="1.0")


def _atom_position(text: str, atom: str) -> Tuple[int, int]:
    offset = 0
    for m in _TOKEN.finditer(text):
        if m.group(0) == atom:
            offset = m.start()
            break
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col
