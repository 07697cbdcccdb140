"""VNN-LIB 1.0 (the VNN-COMP dialect) -> `Spec`.

Two front ends feed one vectorised back end:

* **Bulk front end** (`_bulk_parse`): the whole text is classified character by character with
  numpy (parentheses, whitespace, token boundaries), lists are found from the parenthesis depth,
  and the VNN-COMP shapes -- `(declare-const X_i Real)`, relations `(op A B)` between a variable
  or a number and a variable or a number, nested `assert`/`and`/`or` -- are decoded without a
  Python step per token or per relation: variable indices are read from their digits one
  character column at a time over all tokens, numbers by a finite automaton run the same way
  (the nearest float64, the same bits as float(), and the direction of its rounding, see
  `_numbers`). It gives up (returns None) on anything else: terms such as `(+ Y_0 Y_1)`,
  `true`, anything that is not a decimal number (`nan`, `inf`, `1_000`), a comparison of two
  constants, non-ASCII text, anything malformed -- and the tree front end takes over. Its
  structure passes (the lists of the text; the DNF of the asserts over atom ranges) are shared
  with VNN-LIB 2.0's bulk front end in spec/bulk.py.
* **Tree front end** (`_tree_parse`): one pass of a compiled tokenizer, an explicit-stack
  S-expression builder and a recursive walk with the full term language, in exact rational
  arithmetic (fractions.Fraction). It handles every input the bulk front end gave up on and
  produces every error message, with file:line:col.

Both produce the intermediate form that VNN-LIB 2.0 produces too (spec/vnnlib2.py): an atom
table (spec/atoms.py: each row `sum c_i v_i <= rhs` or `<` when strict, over inputs only, outputs
only, or no variable; the coefficients exact float64s, the right-hand side an exact real held as
its nearest float64 and the sign of the rounding error) and the disjunctive normal form of all
asserts as conjunctions of atom index ranges (spec/dnf.py, at most `dnf.MAX_DISJUNCTS`); the
shared case assembly (spec/cases.py) turns that into the normal form.

Constants are decimal numbers (spec/numbers.py); a single-variable relation with a coefficient
(`(<= (* 3 X_0) 1)`) is divided through exactly, so every input bound has coefficient ±1; a
relation over several variables whose coefficients are not all float64 numbers is scaled by a
positive integer until they are (`(* 0.1 Y_0)` ... -> `Y_0` ...).
"""
from __future__ import annotations

import re
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpecError
from .atoms import (CONST, IN, ONE, OUT, ZERO, AtomBuilder, Atoms, LinearForm, MixedKinds, NonLinear, combined,
                    difference, negated, number, product)
from .bulk import PAD as _PAD
from .bulk import GiveUp as _GiveUp
from .bulk import assertion_dnf, scan
from .bulk import is_word as _is_word
from .cases import Source, assemble
from .dnf import Conjunctions, TooManyDisjuncts, conjoin, disjoin, from_lists
from .model import Spec
from .numbers import clip, decimal_nearest, number_problem, scaled_dirs, shown

_TOKEN = re.compile(r";[^\n]*|\(|\)|[^\s();]+")
_VAR = re.compile(r"([XY])_(\d+)\Z")
_IGNORED_COMMANDS = {"check-sat", "get-model", "exit", "set-logic", "set-info", "set-option"}
_RELATIONS = {"<=", ">=", "<", ">", "="}
# relation codes (bulk front end), looked up by first character * 2 + (two characters, second '=')
_LE, _LT, _GE, _GT, _EQ = 0, 1, 2, 3, 4
_OPCODE = np.full(512, -1, dtype=np.int8)
_OPCODE[[ord("<") * 2 + 1, ord("<") * 2, ord(">") * 2 + 1, ord(">") * 2, ord("=") * 2]] = [_LE, _LT, _GE, _GT, _EQ]


class _Located(Exception):
    """Internal: a semantic error attached to the token index of the list it arose in."""

    def __init__(self, message: str, token: int, atom: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.token = token
        self.atom = atom


# ---------------------------------------------------------------------------------------------
# Tree front end (general, and the source of every positioned error message)
# ---------------------------------------------------------------------------------------------
def _position(text: str, token_index: int, atom: Optional[str]) -> Tuple[int, int]:
    """1-based (line, column) of the token with this index; with `atom`, of the first element of
    the list opened there (token_index -1: the top level) that is that atom."""
    offset = len(text)
    depth = 0
    for i, m in enumerate(_TOKEN.finditer(text)):
        if i < token_index:
            continue
        if atom is None:
            if i == token_index:
                offset = m.start()
                break
            continue
        tok = m.group(0)
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
            if depth < 0 if token_index < 0 else depth <= 0:
                break
        elif tok == atom and depth == (0 if token_index < 0 else 1):
            offset = m.start()
            break
    return _line_col(text, offset)


def _line_col(text: str, offset: int) -> Tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


MAX_DEPTH = 400  # nesting deeper than this is refused (the semantic pass recurses once per level)


def _may_nest_too_deeply(text: str) -> bool:
    """Cheap over-estimate (parentheses in comments count too): True sends the text to the exact,
    iterative tree builder, which refuses real nesting beyond MAX_DEPTH before anything recurses."""
    b = np.frombuffer(text.encode("utf-8", errors="replace"), dtype=np.uint8)
    steps = (b == 40).view(np.int8) - (b == 41).view(np.int8)  # +1 '(', -1 ')', 0 else (one byte each)
    steps = steps[np.flatnonzero(steps)]  # the depth changes only at parentheses
    return bool(steps.size) and int(np.cumsum(steps, dtype=np.int64).max()) > MAX_DEPTH


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
            if len(stack) > MAX_DEPTH:  # independent of sys.getrecursionlimit(), which libraries raise
                raise RecursionError
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


class _TreeParser:
    def __init__(self, n_inputs: Optional[int] = None, n_outputs: Optional[int] = None):
        self.declared: Dict[str, Tuple[str, int]] = {}
        self.limit = {"X": n_inputs, "Y": n_outputs}
        self.atoms = AtomBuilder()  # each atom's source: the token index of its relation's '('

    # ---- terms -------------------------------------------------------------------------
    def term(self, node, ctx: int) -> LinearForm:
        """Linear term -> ({(kind, idx): coef}, constant), exact."""
        if isinstance(node, str):
            var = self.declared.get(node)
            if var is not None:
                return {var: ONE}, ZERO
            try:
                return {}, number(node)
            except ValueError:
                if _VAR.match(node):
                    raise _Located(f"unknown variable {clip(node)} (not declared with declare-const)", ctx, node)
                why = number_problem(node)
                if why is not None and why != "not a number":
                    raise _Located(why, ctx, node)
                raise _Located(f"expected a declared variable or a number, found {shown(node)}", ctx, node)
        if len(node) < 2 or not isinstance(node[1], str):
            raise _Located("expected a term (variable, number or arithmetic expression)", node[0])
        op = node[1]
        args = [self.term(a, node[0]) for a in node[2:]]
        if op == "-" and len(args) == 1:
            return negated(args[0])
        if op in ("+", "-") and args:
            return combined(args, [1] + [1 if op == "+" else -1] * (len(args) - 1))
        if op == "*" and args:
            try:
                return product(args)
            except NonLinear:
                raise _Located("non-linear term: product of two variables", node[0]) from None
        raise _Located(f"unsupported term operator {shown(op)} (expected +, -, * or a number)", node[0])

    # ---- atoms and boolean structure -------------------------------------------------------
    def relation(self, node) -> Conjunctions:
        """A relation -> its DNF over one or two new atoms (`=` gives two)."""
        op = node[1]
        if len(node) != 4:
            raise _Located(f"relation {op} takes exactly two arguments, found {len(node) - 2}", node[0])
        coefs, rhs = difference(self.term(node[2], node[0]), self.term(node[3], node[0]))
        try:
            return self.atoms.relation(op, coefs, rhs, node[0])
        except MixedKinds:
            raise _Located("constraint mixes inputs (X) and outputs (Y); VNN-LIB 1.0 keeps them apart", node[0]) from None
        except ValueError as e:
            raise _Located(str(e), node[0]) from None

    def dnf(self, node, ctx: int) -> Conjunctions:
        """`node` is an element of the list whose '(' is token `ctx`."""
        if isinstance(node, str):
            if node == "true":
                return [[]]
            if node == "false":
                return []
            raise _Located(f"expected a constraint such as (<= X_0 1), found {shown(node)}", ctx, node)
        if len(node) < 2 or not isinstance(node[1], str):
            raise _Located("expected a constraint: (and ...), (or ...) or a relation", node[0])
        op = node[1]
        try:
            if op in _RELATIONS:
                return self.relation(node)
            if op == "and":
                result: Conjunctions = [[]]
                for child in node[2:]:
                    result = conjoin(result, self.dnf(child, node[0]))
                return result
            if op == "or":
                result = []
                for child in node[2:]:
                    result = disjoin(result, self.dnf(child, node[0]))
                return result
        except TooManyDisjuncts as e:
            raise _Located(str(e), node[0]) from None
        raise _Located(f"unsupported operator {shown(op)} (expected and, or, <=, >=, <, >, =)", node[0])

    # ---- declarations ------------------------------------------------------------------------
    def declare(self, node) -> None:
        if len(node) != 4 or not isinstance(node[2], str) or not isinstance(node[3], str):
            raise _Located("expected (declare-const NAME Real)", node[0])
        name, sort = node[2], node[3]
        m = _VAR.match(name)
        if not m:
            raise _Located(f"variable name {shown(name)} is not of the form X_<i> or Y_<j>", node[0], name)
        if sort != "Real":
            raise _Located(f"variable {clip(name)} has sort {shown(sort)}; VNN-LIB 1.0 variables are Real", node[0], sort)
        if name in self.declared:
            raise _Located(f"variable {clip(name)} declared twice", node[0], name)
        kind, digits = m.group(1), m.group(2)
        limit = self.limit[kind]
        what = "inputs" if kind == "X" else "outputs"
        if len(digits) > _MAX_INDEX_DIGITS or (limit is not None and int(digits) >= limit):
            has = f"the network has {limit} {what}" + (f" ({kind}_0..{kind}_{limit - 1})" if limit else "")
            if limit is None:
                has = f"indices must be below 10**{_MAX_INDEX_DIGITS}"
            raise _Located(f"variable {clip(name)} is out of range: {has}", node[0], name)
        self.declared[name] = (kind, int(digits))


def _tree_parse(text: str, where: str, n_inputs: Optional[int] = None, n_outputs: Optional[int] = None):
    """-> (n_in, n_out, atoms, dnf, number of asserts); every error is a SpecError. With the
    network's variable counts, a declaration beyond them is an error at its position."""
    tokens = _TOKEN.findall(text)
    tree = _build_tree(tokens, where, text)
    p = _TreeParser(n_inputs, n_outputs)
    conjs: Conjunctions = [[]]
    n_asserts = 0
    try:
        for item in tree[1:]:
            if isinstance(item, str):
                raise _Located(f"expected '(' to start a command, found {shown(item)}", -1, item)
            if len(item) < 2 or not isinstance(item[1], str):
                raise _Located("expected a command: (declare-const ...) or (assert ...)", item[0])
            cmd = item[1]
            if cmd == "declare-const":
                p.declare(item)
            elif cmd == "assert":
                if len(item) != 3:
                    raise _Located("assert takes exactly one constraint", item[0])
                n_asserts += 1
                try:
                    conjs = conjoin(conjs, p.dnf(item[2], item[0]))
                except TooManyDisjuncts as e:
                    raise _Located(str(e), item[0]) from None
            elif cmd in _IGNORED_COMMANDS:
                continue
            else:
                raise _Located(f"unknown command {shown(cmd)} (expected declare-const or assert)", item[0], cmd)
    except _Located as e:
        line, col = _position(text, e.token, e.atom)
        raise SpecError(f"{where}:{line}:{col}: {e.message}") from None
    if not tokens or not p.declared:
        raise SpecError(f"{where}: empty property: no declare-const found")
    if n_asserts == 0:
        raise SpecError(f"{where}: property has no assert")
    n_in = _count(p.declared, "X", where)
    n_out = _count(p.declared, "Y", where)
    return n_in, n_out, p.atoms.atoms(), from_lists(conjs), n_asserts


def _count(declared: Dict[str, Tuple[str, int]], kind: str, where: str) -> int:
    """The number of `kind` variables; they must be numbered 0..n-1 without gaps, so n is at most
    the number of declarations (whatever index a declaration names: no allocation follows it)."""
    idx = sorted(i for k, i in declared.values() if k == kind)
    for p, i in enumerate(idx):
        if i != p:
            if p and i == idx[p - 1]:
                raise SpecError(f"{where}: {kind}_{i} is declared twice under different spellings")
            raise SpecError(f"{where}: {kind}_ variables are not numbered 0..{idx[-1]} without gaps (missing {kind}_{p})")
    return len(idx)


# ---------------------------------------------------------------------------------------------
# Bulk front end (the VNN-COMP shapes, no Python step per token)
# ---------------------------------------------------------------------------------------------
_MAX_DIGITS = 9  # variable indices below 10**9 (bulk front end)
_MAX_INDEX_DIGITS = 9  # a declared index must be below 10**9 (tree front end)


_WIDE = 40  # longer number tokens take the float() path one by one


_VARKIND = np.zeros(256, dtype=np.int8)
_VARKIND[ord("X")] = IN
_VARKIND[ord("Y")] = OUT


def _variables(b: np.ndarray, ts: np.ndarray, te: np.ndarray):
    """Decode tokens of the canonical form [XY]_<digits> (no leading zero). `b` ends in _PAD zeros.

    -> (kind: 1 X / 2 Y / 0 other first letter, index, ok). `ok` is False for tokens that start
    with X or Y but are not canonical variable names.
    """
    kind = _VARKIND[b[ts]]
    idx = np.zeros(ts.size, dtype=np.int64)
    ok = np.ones(ts.size, dtype=bool)
    if kind.all():
        sel = slice(None)
        start, ndig = ts, te - ts - 2
    else:
        sel = np.flatnonzero(kind)
        if sel.size == 0:
            return kind, idx, ok
        start = ts[sel]
        ndig = te[sel] - start - 2
    shortest, longest = int(ndig.min()), int(ndig.max())
    if shortest < 1 or longest > _MAX_DIGITS:
        ok[sel] = False  # the caller gives up on any False
        return kind, idx, ok
    good = b[start + 1] == ord("_")
    good &= (ndig == 1) | (b[start + 2] != ord("0"))  # no leading zero: X_01 is not X_1
    value = np.zeros(start.size, dtype=np.int64)
    pos = start + 2
    for j in range(longest):
        d = b[pos] - np.uint8(ord("0"))  # wraps around below '0'
        pos += 1
        if j < shortest:
            good &= d < 10
            value = value * 10 + d
        else:
            inside = ndig > j
            good &= (d < 10) | ~inside
            value = np.where(inside, value * 10 + d, value)
    ok[sel] = good
    idx[sel] = value
    return kind, idx, ok


# Number syntax as a finite automaton run over all tokens at once, one character column at a time.
# character classes: 0 digit, 1 '.', 2 'e'/'E', 3 '+'/'-', 4 any other token character,
# 5 a character that ends a token (whitespace, parentheses, the zero padding)
_NUMCLASS = np.full(256, 4, dtype=np.intp)
_NUMCLASS[:33] = 5
_NUMCLASS[[ord("("), ord(")")]] = 5
_NUMCLASS[ord("0"):ord("9") + 1] = 0
_NUMCLASS[ord(".")] = 1
_NUMCLASS[[ord("e"), ord("E")]] = 2
_NUMCLASS[[ord("+"), ord("-")]] = 3
# states: 0 start, 1 sign, 2 integer digits, 3 '.' after digits, 4 '.' first, 5 fraction digits,
# 6 'e', 7 exponent sign, 8 exponent digits, 9 accepted, 10 rejected, 11 mantissa done, exponent
# follows (first pass only), 12 accepted with an exponent (first pass only)
_NUM_DFA_FULL = np.full((13, 6), 10, dtype=np.intp)
_NUM_DFA_FULL[0, [0, 1, 3]] = [2, 4, 1]
_NUM_DFA_FULL[1, [0, 1]] = [2, 4]
_NUM_DFA_FULL[2, [0, 1, 2, 5]] = [2, 3, 6, 9]
_NUM_DFA_FULL[3, [0, 2, 5]] = [5, 6, 9]
_NUM_DFA_FULL[4, 0] = 5
_NUM_DFA_FULL[5, [0, 2, 5]] = [5, 6, 9]
_NUM_DFA_FULL[6, [0, 3]] = [8, 7]
_NUM_DFA_FULL[7, 0] = 8
_NUM_DFA_FULL[8, [0, 5]] = [8, 9]
_NUM_DFA_FULL[9, :] = 9
# first pass: the mantissa only; a token with an exponent is set aside (state 12) for a second pass
_NUM_DFA_MANT = _NUM_DFA_FULL.copy()
_NUM_DFA_MANT[[2, 3, 5], 2] = 11
_NUM_DFA_MANT[11, :] = 11
_NUM_DFA_MANT[11, 5] = 12
_NUM_DFA_MANT[12, :] = 12
_NUM_DFA_FULL = (_NUM_DFA_FULL * 6).reshape(-1)  # entries are next_state * 6: one add per step
_NUM_DFA_MANT = (_NUM_DFA_MANT * 6).reshape(-1)
_MANT_STATE = np.zeros(13 * 6, dtype=bool)
_MANT_STATE[[2 * 6, 5 * 6]] = True
_FRAC_STATE = np.zeros(13 * 6, dtype=np.int8)
_FRAC_STATE[5 * 6] = 1
_POW10_EXACT = np.array([float(f"1e{k}") for k in range(23)])  # all exactly representable
_TWO_53 = 2 ** 53


def _numbers(text: str, b: np.ndarray, ts: np.ndarray, te: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(near, dir) of each token, in bulk: the nearest float64 (the same bits as float()) and the
    sign of (exact value - near); _GiveUp unless every token is a VNN-LIB decimal number
    ([+-] digits [. digits] [(e|E) [+-] digits], at least one mantissa digit). `b` ends in _PAD zeros.

    A token whose value is m * 10**e with m <= 2**53 and |e| <= 22 is converted with one IEEE
    multiplication or division of exactly representable operands, which is correctly rounded and
    so identical to float() (Clinger's fast path, the one CPython's dtoa takes first), and the
    sign of its rounding error comes from an exact product (`numbers.scaled_dirs`); any other
    token goes through `numbers.decimal_nearest` one by one.
    """
    m = ts.size
    vals = np.empty(m)
    dirs = np.zeros(m, dtype=np.int8)
    mant = np.zeros(m, dtype=np.int64)  # the digits as an integer (exact where `good`)
    e10 = np.zeros(m, dtype=np.int64)  # value = +-mant * 10**e10
    good = np.zeros(m, dtype=bool)
    if m == 0:
        return vals, dirs
    L = te - ts
    if int(L.max()) <= 8:
        groups = [(None, int(L.max()))]
    else:  # tokens of similar length share a pass over their columns
        order = np.argsort(np.minimum(L, 255).astype(np.uint8), kind="stable")
        cuts = np.searchsorted(L[order], [0, 4, 8, 12, 20, 28, _WIDE], side="right").tolist()
        groups = [(order[i:j], int(L[order[j - 1]])) for i, j in zip(cuts, cuts[1:]) if j > i]
    for sel, width in groups:
        if sel is None:
            vals[:], dirs[:], mant[:], e10[:], good[:] = _numbers_columns(b, ts, width, _NUM_DFA_MANT)
        else:
            vals[sel], dirs[sel], mant[sel], e10[sel], good[sel] = _numbers_columns(b, ts[sel], width, _NUM_DFA_MANT)
    deferred = np.flatnonzero(np.isinf(vals) & (vals > 0) & (L <= _WIDE))
    if deferred.size:  # tokens with an exponent
        vals[deferred], dirs[deferred], mant[deferred], e10[deferred], good[deferred] = \
            _numbers_columns(b, ts[deferred], int(L[deferred].max()), _NUM_DFA_FULL)
    slow = np.flatnonzero(np.isnan(vals) | (L > _WIDE))
    if slow.size:
        # well-formed (the automaton accepted them) and of at most 18 digits divided by at most 10**22
        # (e.g. 17 significant digits): float() for the value, the direction in bulk; any other one by one
        bulk = (L[slow] <= _WIDE) & good[slow] & (e10[slow] < 0) & (e10[slow] >= -22)
        sb, so = slow[bulk], slow[~bulk]
        if sb.size:
            vals[sb] = [float(text[s:e]) for s, e in zip(ts[sb].tolist(), te[sb].tolist())]
            d = _long_mantissa_dirs(mant[sb], e10[sb], vals[sb])
            dirs[sb] = np.where(b[ts[sb]] == ord("-"), -d, d)
        if so.size:
            try:
                pairs = [decimal_nearest(text[s:e]) for s, e in zip(ts[so].tolist(), te[so].tolist())]
            except ValueError:
                raise _GiveUp from None
            vals[so] = [p[0] for p in pairs]
            dirs[so] = [p[1] for p in pairs]
    return vals, dirs


def _long_mantissa_dirs(mant: np.ndarray, e10: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """sign(mant / 10**k - |val|) for mant < 10**18 (exact in int64, not in float64), k = -e10 in 1..22,
    |val| = fl(mant / 10**k): with mant = mh + ml (mh its float64 rounding, ml the small rest) and
    |val| * 10**k = hi + lo exactly (`numbers._product_error`), the residual is
    (mh - hi) + ml - lo, whose first two terms are small integers added exactly."""
    from .numbers import _product_error

    v = np.abs(vals)
    p10 = _POW10_EXACT[-e10]
    mh = mant.astype(np.float64)
    ml = (mant - mh.astype(np.int64)).astype(np.float64)  # |ml| <= 2**9: exact
    hi = v * p10
    lo = _product_error(v, p10, hi)
    r = ((mh - hi) + ml) - lo  # mh - hi exact (Sterbenz), + ml exact (small integers), one rounding last
    return np.sign(r).astype(np.int8)


def _numbers_columns(b: np.ndarray, ts: np.ndarray, width: int, dfa: np.ndarray):
    """_numbers for tokens of at most `width` characters: (values, directions, mantissas,
    exponents, mantissa and exponent exact): value NaN where the slow path has to decide, +inf
    for tokens with an exponent in the first pass (`_NUM_DFA_MANT`)."""
    m = ts.size
    state = np.zeros(m, dtype=np.intp)  # state * 6
    m_val = np.zeros(m, dtype=np.int64)
    m_cnt = np.zeros(m, dtype=np.int64) if width > 18 else None
    started = np.zeros(m, dtype=bool)
    frac = np.zeros(m, dtype=np.int64)
    full = dfa is _NUM_DFA_FULL
    if full:
        x_val = np.zeros(m, dtype=np.int64)
        x_cnt = np.zeros(m, dtype=np.int64)
        x_neg = np.zeros(m, dtype=bool)
    pos = ts.copy()
    for _ in range(width + 1):
        c = b[pos]
        pos += 1
        state = dfa[state + _NUMCLASS[c]]
        d = c - np.uint8(ord("0"))
        mant = _MANT_STATE[state]
        m_val = np.where(mant, m_val * 10 + d, m_val)
        frac += _FRAC_STATE[state]
        if m_cnt is not None:
            started |= mant & (d != 0)
            m_cnt += mant & started  # significant digits (leading zeros do not count)
        if full:
            expo = state == 8 * 6
            x_val = np.where(expo & (x_cnt < 7), x_val * 10 + d, x_val)
            x_cnt += expo
            x_neg |= (state == 7 * 6) & (c == ord("-"))
    accepted = state == 9 * 6
    if not full:
        later = state == 12 * 6
        if not (accepted | later).all():
            raise _GiveUp
    elif not accepted.all():
        raise _GiveUp
    e10 = -frac if not full else np.where(x_neg, -x_val, x_val) - frac
    fast = (m_val == 0) | ((m_val <= _TWO_53) & (e10 >= -22))
    if full:
        fast &= (e10 <= 22) & (x_cnt <= 6)
    if m_cnt is not None:
        fast &= m_cnt <= 18
    mf = m_val.astype(np.float64)
    if not full:
        divide = np.ones(m, dtype=bool)
        k10 = np.minimum(frac, 22)
        vals = mf / _POW10_EXACT[k10]
    else:
        divide = e10 < 0
        k10 = np.clip(np.abs(e10), 0, 22)
        p10 = _POW10_EXACT[k10]
        vals = np.where(divide, mf / p10, mf * p10)
    dirs = np.zeros(m, dtype=np.int8)
    ok = fast & np.isfinite(vals)
    if ok.all():
        dirs = scaled_dirs(m_val, k10, vals, divide)
    elif ok.any():
        dirs[ok] = scaled_dirs(m_val[ok], k10[ok], vals[ok], divide[ok])
    neg = b[ts] == ord("-")
    np.negative(vals, out=vals, where=neg)
    np.negative(dirs, out=dirs, where=neg)
    if not fast.all():
        vals[~fast] = np.nan
    if not full and later.any():
        vals[later] = np.inf
    good = np.ones(m, dtype=bool) if m_cnt is None else m_cnt <= 18
    if full:
        good &= x_cnt <= 6
    return vals, dirs, m_val, e10, good


def _bulk_parse(text: str, n_inputs: Optional[int] = None, n_outputs: Optional[int] = None):
    """-> (n_in, n_out, atoms, dnf, n_asserts) for the VNN-COMP shapes, or None."""
    try:
        return _bulk(text, n_inputs, n_outputs)
    except (_GiveUp, TooManyDisjuncts):  # the tree front end words the error, with its position
        return None


def _bulk(text: str, n_inputs: Optional[int] = None, n_outputs: Optional[int] = None):
    sc = scan(text)  # the list structure (spec/bulk.py)
    text, b, bp, ts, te, level = sc.text, sc.b, sc.bp, sc.ts, sc.te, sc.level
    first, open_at, ii, inner_ntok = sc.first, sc.open_at, sc.ii, sc.inner_ntok

    # ---- innermost lists: declarations, relations, ignored commands -----------------------------
    three = inner_ntok == 3
    top = level[ii] == 1
    if not three.all():
        for j in np.flatnonzero(~three).tolist():
            t = int(first[ii[j]])
            if not top[j] or text[ts[t]:te[t]] not in _IGNORED_COMMANDS:
                raise _GiveUp
    i3 = ii[three]
    h = first[i3]  # head token of each 3-token innermost list
    hs, hl = ts[h], te[h] - ts[h]
    # relation symbol from (first character, length, second character is '=')
    two_eq = (hl == 2) & (bp[hs + 1] == ord("="))
    op = _OPCODE[b[hs].astype(np.intp) * 2 + two_eq]
    op[(hl > 2) | ((hl == 2) & ~two_eq)] = -1
    is_rel = op >= 0
    is_decl = ~is_rel
    if is_decl.any():
        is_decl[is_decl] = _is_word(b, hs[is_decl], te[h[is_decl]], b"declare-const")
    other = ~is_rel & ~is_decl
    if other.any():
        for j in np.flatnonzero(other).tolist():
            t = int(h[j])
            if level[i3[j]] != 1 or text[ts[t]:te[t]] not in _IGNORED_COMMANDS:
                raise _GiveUp

    # declarations: top level, canonical X_i / Y_j, sort Real, every index once, before any assert
    d = np.flatnonzero(is_decl)
    if d.size == 0 or (level[i3[d]] != 1).any():
        raise _GiveUp
    if not _is_word(b, ts[h[d] + 2], te[h[d] + 2], b"Real").all():
        raise _GiveUp
    dkind, didx, dok = _variables(bp, ts[h[d] + 1], te[h[d] + 1])
    if not dok.all() or (dkind == CONST).any():
        raise _GiveUp
    counts = []
    for kind, known in ((IN, n_inputs), (OUT, n_outputs)):
        sel = didx[dkind == kind]
        n = sel.size
        if n and (sel.max() >= n or np.bincount(sel, minlength=n).max() != 1):
            raise _GiveUp  # gaps or duplicates: the tree front end words the error
        if known is not None and n > known:
            raise _GiveUp  # an index beyond the network's: the tree front end points at it
        counts.append(n)
    n_in, n_out = counts
    r = np.flatnonzero(is_rel)
    if r.size == 0:
        raise _GiveUp  # no relation (no assert, or asserts of odd shapes): the tree front end words it
    rel_list = i3[r]

    # ---- relations -> atoms -------------------------------------------------------------------------
    ta, tb = h[r] + 1, h[r] + 2
    ka, ia, oka = _variables(bp, ts[ta], te[ta])
    kb, ib, okb = _variables(bp, ts[tb], te[tb])
    if not (oka.all() and okb.all()):
        raise _GiveUp
    n_of = np.array([0, n_in, n_out])
    if ((ka != CONST) & (ia >= n_of[ka])).any() or ((kb != CONST) & (ib >= n_of[kb])).any():
        raise _GiveUp  # unknown variable
    va, vb = ka != CONST, kb != CONST
    rop = op[r]
    nr = r.size
    if va.all() and not vb.any() and not (rop == _EQ).any():
        # the usual shape, (op VARIABLE NUMBER), in few steps; same atoms as the general case below
        b_val, b_dir = _numbers(text, bp, ts[tb], te[tb])
        neg = (rop == _GE) | (rop == _GT)
        atoms = Atoms(ka, np.where(neg, -b_val, b_val), np.where(neg, -b_dir, b_dir), (rop == _LT) | (rop == _GT),
                       np.arange(nr + 1), ia, np.where(neg, -1.0, 1.0), open_at[rel_list],
                       spans=(text, ts[tb], te[tb], np.where(neg, -1, 1).astype(np.int8)))
        atom_off = np.arange(nr + 1)
    else:
        atoms, atom_off = _general_atoms(text, bp, ts, te, ta, tb, ka, ia, kb, ib, rop, open_at[rel_list])

    # ---- boolean structure -> DNF over atom ranges (spec/bulk.py) ---------------------------------
    dnf, n_asserts, assert_lists = assertion_dnf(sc, rel_list, atom_off)
    if open_at[i3[d]].max() > open_at[assert_lists].min():
        raise _GiveUp  # a declaration after an assert: the tree front end decides
    return n_in, n_out, atoms, dnf, n_asserts


def _general_atoms(text, bp, ts, te, ta, tb, ka, ia, kb, ib, rop, rel_src):
    """Atoms of relations `(op A B)` with A, B each a declared variable or a number (token indices ta, tb)."""
    va, vb = ka != CONST, kb != CONST
    nr = rop.size
    if (va & vb & (ka != kb)).any():
        raise _GiveUp  # mixes X and Y
    if (~va & ~vb).any():
        raise _GiveUp  # a comparison of two constants: the tree front end decides it exactly
    num_tok = np.sort(np.concatenate([ta[~va], tb[~vb]]))
    tok_val = np.zeros(ts.size)
    tok_dir = np.zeros(ts.size, dtype=np.int8)
    tok_val[num_tok], tok_dir[num_tok] = _numbers(text, bp, ts[num_tok], te[num_tok])
    # `A op B`  ->  coefs . v  op  rhs  with coefs = [A] - [B], rhs = const(B) - const(A) (one of them 0)
    rhs = np.where(va, np.where(vb, 0.0, tok_val[tb]), 0.0 - tok_val[ta])
    rdir = np.where(va, np.where(vb, 0, tok_dir[tb]), -tok_dir[ta]).astype(np.int8)
    same = va & vb & (ia == ib)
    nnz = np.where(same, 0, va.astype(np.int64) + vb.astype(np.int64))
    kind = np.where(va, ka, kb).astype(np.int8)
    kind[nnz == 0] = CONST
    lo_idx = np.where(va & (~vb | (ia < ib)), ia, ib)  # first (lower-index) entry
    lo_coef = np.where(va & (~vb | (ia < ib)), 1.0, -1.0)
    hi_idx = np.where(ia < ib, ib, ia)  # second entry when two
    hi_coef = np.where(ia < ib, -1.0, 1.0)
    # each relation gives one atom, `=` two; `>=`/`>` and the second of `=` are negated
    mult = np.where(rop == _EQ, 2, 1)
    rel_of = np.repeat(np.arange(nr), mult)
    second = np.zeros(rel_of.size, dtype=bool)
    second[1:] = rel_of[1:] == rel_of[:-1]
    aop = rop[rel_of]
    sign = np.where((aop == _GE) | (aop == _GT) | second, -1.0, 1.0)
    a_nnz = nnz[rel_of]
    cptr = np.zeros(rel_of.size + 1, dtype=np.int64)
    np.cumsum(a_nnz, out=cptr[1:])
    cidx = np.empty(int(cptr[-1]), dtype=np.int64)
    cval = np.empty(int(cptr[-1]))
    has1 = a_nnz >= 1
    cidx[cptr[:-1][has1]] = lo_idx[rel_of[has1]]
    cval[cptr[:-1][has1]] = (lo_coef[rel_of] * sign)[has1]
    has2 = a_nnz == 2
    cidx[cptr[:-1][has2] + 1] = hi_idx[rel_of[has2]]
    cval[cptr[:-1][has2] + 1] = (hi_coef[rel_of] * sign)[has2]
    num_t = np.where(vb, ta, tb)[rel_of]  # the number token of each atom (none for two variables: c = 0)
    num_sign = (np.where(vb, -1, 1)[rel_of] * sign).astype(np.int8)
    atoms = Atoms(kind[rel_of], rhs[rel_of] * sign, rdir[rel_of] * sign.astype(np.int8), (aop == _LT) | (aop == _GT),
                   cptr, cidx, cval, rel_src[rel_of], spans=(text, ts[num_t], te[num_t], num_sign))
    atom_off = np.zeros(nr + 1, dtype=np.int64)
    np.cumsum(mult, out=atom_off[1:])
    return atoms, atom_off


# ---------------------------------------------------------------------------------------------
def parse_vnnlib1(text: str, n_inputs: Optional[int] = None, n_outputs: Optional[int] = None,
                  where: str = "<text>", tensors: Optional[Tuple[str, str]] = None) -> Spec:
    """Parse VNN-LIB 1.0 text. With n_inputs/n_outputs (from the ONNX shapes) the declarations are
    checked (a declaration beyond them is an error before anything of that size is allocated).
    `tensors`: how the model's inputs and outputs are made up, for messages (a model with several
    inputs or outputs: X_i and Y_j run over them concatenated in the model's order)."""
    try:
        parsed = None if _may_nest_too_deeply(text) else _bulk_parse(text, n_inputs, n_outputs)
        if parsed is not None:
            def locate(offset: int) -> Tuple[int, int]:
                return _line_col(text, offset)
        else:
            parsed = _tree_parse(text, where, n_inputs, n_outputs)

            def locate(token: int) -> Tuple[int, int]:
                return _position(text, token, None)
    except RecursionError:
        raise SpecError(f"{where}: expressions nested too deeply to parse") from None
    n_in, n_out, atoms, dnf, _ = parsed
    made = tensors or ("", "")
    if n_inputs is not None and n_in != n_inputs:
        raise SpecError(f"{where}: property declares {n_in} inputs (X_0..X_{n_in - 1}) but the network has {n_inputs}"
                        f"{made[0]}")
    if n_outputs is not None and n_out != n_outputs:
        raise SpecError(f"{where}: property declares {n_out} outputs (Y_0..Y_{n_out - 1}) but the network has "
                        f"{n_outputs}{made[1]}")
    cases = assemble(atoms, dnf, n_in, n_out, Source(where, locate))
    return Spec(n_inputs=n_in, n_outputs=n_out, cases=cases, source=where, version="1.0")
