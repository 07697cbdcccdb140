"""VNN-LIB 2.0, the bulk front end: the common shapes of a query read in bulk, as fast as 1.0.

The `vnnlib` package parses and type-checks every query, but it takes seconds on a few megabytes
(a 2.3 MB query: 1.3 s, where the 1.0 text of the same property takes 0.1 s). This front end
reads the shapes queries are made of in practice and gives up (None) on anything else, which the
package then reads (vnnlib2.parse_vnnlib2):

- the header (`read_header`): `(vnnlib-version <2.0>)` and networks of `declare-input`,
  `declare-hidden`, `declare-output` with types `float32`, `float64` or `real` and shapes written
  `[d1,d2]` without spaces; `equal-to` / `isomorphic-to` where neither network declares hidden
  nodes and the two agree in counts, shapes and types (what the package checks);
- the asserts, with the structure passes of the 1.0 bulk front end (spec/bulk.py): `(assert ...)`
  over nested `and` / `or` whose leaves are comparisons `(op A B)`, op one of `<= < >= > ==`, A
  and B a declared variable written `NAME[i,j]` (or `NAME` for a scalar) or a number written
  `-?digits.digits`, not two numbers, not an input with an output or hidden node (that is MNC:
  the package path copies the input), not two variables of different element types, and no `==`
  between two variables (the package path ties equated inputs).

Whatever it accepts, the package accepts too, and both give the same normal form bit for bit
(same atoms in the same order, same exact constants, same `Layout`, same error positions:
`file:line:column` of the comparison's first variable or number, its first occurrence on its
line); tests/test_vnnlib2_front_ends.py compares them on every 2.0 text the tests write and on
the benchmark properties converted to 2.0.
"""
from __future__ import annotations

import re
from typing import List, Mapping, Optional, Tuple

import numpy as np

from ..signature import Signature
from .atoms import CONST, IN, OUT, Atoms
from .bulk import GiveUp, assertion_dnf, chars, scan
from .cases import Source, assemble
from .dnf import TooManyDisjuncts
from .numbers import round_to_dtype
from .vnnlib1 import _EQ, _GE, _GT, _LE, _LT, _general_atoms, _numbers

_TYPES = ("float32", "float64", "real")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_RESERVED = {"and", "or", "initialized"}
_SHAPE = re.compile(r"\[((?:[1-9][0-9]{0,8})(?:,[1-9][0-9]{0,8})*)?\]\Z")
_HEADER_TOKEN = re.compile(r'\(|\)|"[^"\\]*"|[^\s()"]+|"')
_ASSERT = re.compile(r"\(assert[\s(]")
_OPS = {"<=": _LE, "<": _LT, ">=": _GE, ">": _GT, "==": _EQ}
_MAX_NUMBER = 400  # longer number tokens go to the package (it reads numbers as doubles)


# ---- the header ----------------------------------------------------------------------------------
def _tokens(header: str) -> List[Tuple[str, int]]:
    return [(m.group(0), m.start()) for m in _HEADER_TOKEN.finditer(header)]


def read_header(text: str, where: str):
    """The query's declarations (a `vnnlib2.Query` without the package's AST) for the common shapes
    (module docstring), or None."""
    got = _header(text, where)
    return None if got is None else got[0]


def _uncommented(text: str) -> str:
    """Comments blanked, same length (offsets, lines and columns stay the text's)."""
    return re.sub(r";[^\n]*", lambda c: " " * len(c.group(0)), text)


def _header(text: str, where: str):
    """(Query, offset of the first assert) or None."""
    from .query import Declaration, NetworkDecl, Query

    original = text
    if ";" in text:
        if '"' in text:
            return None  # a ';' may sit inside an ONNX name: the package decides
        text = _uncommented(text)
    m = _ASSERT.search(text)
    if m is None:
        return None
    header = text[:m.start()]
    toks = _tokens(header)
    k = 0

    def tok() -> str:
        return toks[k][0] if k < len(toks) else ""

    def keyword(word: str) -> bool:
        """'(' immediately followed by `word` (the grammar's `(word` tokens)."""
        nonlocal k
        if k + 1 < len(toks) and toks[k][0] == "(" and toks[k + 1][0] == word and toks[k + 1][1] == toks[k][1] + 1:
            k += 2
            return True
        return False

    def close() -> bool:
        nonlocal k
        if tok() == ")":
            k += 1
            return True
        return False

    if not keyword("vnnlib-version") or tok() != "<2.0>":
        return None
    k += 1
    if not close():
        return None
    networks: List[NetworkDecl] = []
    names = set()
    while k < len(toks):
        if not keyword("declare-network"):
            return None
        net = tok()
        k += 1
        if not _NAME.match(net) or net in _RESERVED:
            return None
        equal_to = iso = None
        while k + 1 < len(toks) and toks[k + 1][0] in ("equal-to", "isomorphic-to"):
            which = toks[k + 1][0]
            if not keyword(which) or equal_to is not None or iso is not None:
                return None
            target = tok()
            k += 1
            if not close():
                return None
            if which == "equal-to":
                equal_to = target
            else:
                iso = target
        decls: List[Declaration] = []
        order = {"declare-input": 0, "declare-hidden": 1, "declare-output": 2}
        last = 0
        while k + 1 < len(toks) and toks[k + 1][0] in order:
            word = toks[k + 1][0]
            if order[word] < last or not keyword(word):
                return None
            last = order[word]
            name, etype, shape = tok(), toks[k + 1][0] if k + 1 < len(toks) else "", toks[k + 2][0] if k + 2 < len(toks) else ""
            k += 3
            ms = _SHAPE.match(shape)
            if not _NAME.match(name) or name in _RESERVED or name in names or etype not in _TYPES or ms is None:
                return None
            names.add(name)
            dims = tuple(int(d) for d in ms.group(1).split(",")) if ms.group(1) else ()
            onnx_name = None
            if word == "declare-hidden":
                s = tok()
                if len(s) < 2 or s[0] != '"' or s[-1] != '"':
                    return None
                onnx_name = s[1:-1]
                k += 1
            if not close():
                return None
            decls.append(Declaration(name, word[len("declare-"):], etype, dims, net, onnx_name))
        if not close() or any(n.name == net for n in networks):
            return None  # a network declared twice: the package path words it
        nd = NetworkDecl(net, equal_to, iso, tuple(decls))
        if not nd.inputs or not nd.outputs:
            return None
        target = equal_to or iso
        if target is not None:
            ref = next((n for n in networks if n.name == target), None)
            if ref is None or ref.equal_to or ref.isomorphic_to or ref.hidden or nd.hidden:
                return None
            for mine, theirs in ((nd.inputs, ref.inputs), (nd.outputs, ref.outputs)):
                if len(mine) != len(theirs) or any(a.shape != b.shape or a.element_type != b.element_type
                                                   for a, b in zip(mine, theirs)):
                    return None
        networks.append(nd)
    if not networks:
        return None
    return Query(original, where, "2.0", tuple(networks), [], None), m.start()


# ---- the asserts ----------------------------------------------------------------------------------
def _variables(bp: np.ndarray, ts: np.ndarray, te: np.ndarray, decls, layout):
    """(kind: IN / OUT, position in u or z, element type index) of variable tokens `NAME[i,j]`;
    GiveUp for anything else (an undeclared name, an index out of range, leading zeros, spaces)."""
    n = ts.size
    kind = np.zeros(n, dtype=np.int8)
    pos = np.full(n, -1, dtype=np.int64)
    etype = np.full(n, -1, dtype=np.int8)
    length = te - ts
    for d in decls:
        name = d.name.encode("ascii")
        L = len(name)
        cand = np.flatnonzero(length >= L)
        if not cand.size:
            continue
        head = chars(bp, ts[cand], L)
        cand = cand[(head == np.frombuffer(name, np.uint8)).all(axis=1)]
        if not cand.size:
            continue
        nxt = bp[ts[cand] + L]
        cand = cand[(length[cand] == L) | (nxt == ord("["))]  # X2[0] is not X
        if not cand.size:
            continue
        base_kind = IN if d.kind == "input" else OUT
        tcode = _TYPES.index(d.element_type)
        if not d.shape:
            if (length[cand] != L).any():
                raise GiveUp  # an indexed scalar
            flat = np.zeros(cand.size, dtype=np.int64)
        else:
            if (length[cand] < L + 3).any() or (bp[te[cand] - 1] != ord("]")).any():
                raise GiveUp
            flat = _indices(bp, ts[cand] + L + 1, te[cand] - 1, d.shape)
        kind[cand] = base_kind
        pos[cand] = [layout.key(d, int(f))[1] for f in flat.tolist()] if layout.u_of is not None else \
            layout.offset[d.name] + flat
        etype[cand] = tcode
    if (pos < 0).any():
        raise GiveUp  # an undeclared name
    return kind, pos, etype


def _indices(bp: np.ndarray, start: np.ndarray, end: np.ndarray, shape) -> np.ndarray:
    """The flat C-order index of `i,j,...` between start and end (exclusive), column by column."""
    shp = np.array(shape, dtype=np.int64)
    rank = shp.size
    m = start.size
    if rank == 1:  # one index, digits only (the common flat shape), as vnnlib1 reads X_123
        nd = end - start
        if nd.min() < 1 or nd.max() > 9:
            raise GiveUp
        if ((bp[start] == ord("0")) & (nd > 1)).any():
            raise GiveUp  # a leading zero
        val = np.zeros(m, dtype=np.int64)
        for j in range(int(nd.max())):
            inside = nd > j
            d = bp[start + j] - np.uint8(ord("0"))  # wraps around below '0'
            if ((d > 9) & inside).any():
                raise GiveUp
            val = np.where(inside, val * 10 + d, val)
        if (val >= shp[0]).any():
            raise GiveUp  # out of range: the package words it
        return val
    flat = np.zeros(m, dtype=np.int64)
    val = np.zeros(m, dtype=np.int64)
    nd = np.zeros(m, dtype=np.int64)  # digits of the current group
    lead0 = np.zeros(m, dtype=bool)
    g = np.zeros(m, dtype=np.int64)  # groups closed
    width = int((end - start).max())
    for j in range(width + 1):
        p = start + j
        live = p <= end
        at_end = p == end
        c = bp[np.minimum(p, bp.size - 1)]
        digit = live & ~at_end & (c >= ord("0")) & (c <= ord("9"))
        comma = live & ~at_end & (c == ord(","))
        if (live & ~at_end & ~digit & ~comma).any():
            raise GiveUp
        lead0 |= digit & (nd == 1) & (val == 0)
        val = np.where(digit, val * 10 + (c.astype(np.int64) - ord("0")), val)
        nd = np.where(digit, nd + 1, nd)
        if (nd > 9).any():
            raise GiveUp
        close_ = comma | at_end
        if close_.any():
            if ((nd == 0) & close_).any() or (g[close_] >= rank).any():
                raise GiveUp
            dim = shp[np.minimum(g, rank - 1)]
            if ((val >= dim) & close_).any():
                raise GiveUp  # out of range: the package words it
            flat = np.where(close_, flat * dim + val, flat)
            g = np.where(close_, g + 1, g)
            val = np.where(close_, 0, val)
            nd = np.where(close_, 0, nd)
    if lead0.any() or (g != rank).any():
        raise GiveUp
    return flat


def _number_tokens_ok(body: str, b: np.ndarray, ts: np.ndarray, te: np.ndarray) -> bool:
    """Every token is a 2.0 decimal of a float or real variable, -?digits.digits. The 1.0 automaton in
    `_numbers` checks the general decimal syntax (digits, at most one point, a sign only in front or
    after an exponent); what 2.0 forbids beyond it is checked here: an exponent or '+' (a character
    the body does not hold at all, the usual case, or else per token), a token without a point (an
    integer literal is no float or real constant: the package's type error; with at most one point
    per token, as many points in the body as number tokens means one each), a point first or last."""
    if not ts.size:
        return True
    if int((te - ts).max()) > _MAX_NUMBER:
        return False
    if body.count(".") != ts.size:
        return False  # a point outside a number (the package decides), or an integer literal
    bad = np.flatnonzero((b == ord("e")) | (b == ord("E")) | (b == ord("+")))  # 'assert' has one: few
    if bad.size:
        order = np.argsort(ts)
        k = np.searchsorted(ts[order], bad, side="right") - 1  # the last number token starting before
        inside = (k >= 0) & (bad < te[order][np.maximum(k, 0)])
        if inside.any():
            return False
    lead = b[ts] == ord("-")
    ends = b[np.concatenate([np.where(lead, ts + 1, ts), te - 1])]
    return bool(((ends >= ord("0")) & (ends <= ord("9"))).all())


def bulk_parse(text: str, where: str, signature: Optional[Signature] = None,
               signatures: Optional[Mapping[str, Signature]] = None):
    """The normal form of a query of the common shapes (module docstring), or None."""
    from .query import Layout, _check_structure, _line_col, _signatures, _spec

    got = _header(text, where)
    if got is None:
        return None
    q, start = got
    # the header blanked (newlines kept), comments too: offsets and lines stay the text's
    body = re.sub(r"[^\n]", " ", text[:start]) + (_uncommented(text[start:]) if ";" in text else text[start:])
    layout = Layout(q)
    try:
        parsed = _asserts(body, q, layout)
    except (GiveUp, TooManyDisjuncts):
        return None
    if parsed is None:
        return None
    atoms, dnf = parsed
    _check_structure(q, _signatures(q, signature, signatures))

    def locate(offset: int) -> Tuple[int, int]:
        """The comparison's first variable or number: its line, and its first occurrence there."""
        line = text.count("\n", 0, offset) + 1
        m = re.compile(r"[^\s()]+").match(text, offset)
        return _line_col(text, line, m.group(0) if m else None)

    cases = assemble(atoms, dnf, layout.n_free, layout.n_outputs, Source(where, locate, layout.input_name))
    composition = layout.composition(()) if layout.needs_composition() else None
    return _spec(q, layout, cases, composition)


def _asserts(body: str, q, layout):
    sc = scan(body)
    b, bp, ts, te, first, level, open_at = sc.b, sc.bp, sc.ts, sc.te, sc.first, sc.level, sc.open_at
    ii, inner_ntok = sc.ii, sc.inner_ntok
    # every top-level list is `(assert` written as one token, every innermost list a comparison
    top = sc.bi[sc.b_level == 1]
    if (level[ii] == 1).any() or (sc.b_hs[sc.b_level == 1] != open_at[top] + 1).any():
        return None
    if (inner_ntok != 3).any():
        return None
    h = first[ii]
    hs, hl = ts[h], te[h] - ts[h]
    c0, c1 = b[hs], bp[hs + 1]
    op = np.full(h.size, -1, dtype=np.int8)
    eq2 = (hl == 2) & (c1 == ord("="))
    op[(hl == 2) & eq2 & (c0 == ord("<"))] = _LE
    op[(hl == 1) & (c0 == ord("<"))] = _LT
    op[(hl == 2) & eq2 & (c0 == ord(">"))] = _GE
    op[(hl == 1) & (c0 == ord(">"))] = _GT
    op[(hl == 2) & eq2 & (c0 == ord("="))] = _EQ
    if (op < 0).any():
        return None  # `!=`, `=`, anything else
    ta, tb = h + 1, h + 2
    args = np.concatenate([ta, tb])
    first_char = b[ts[args]]
    is_var = ((first_char >= ord("A")) & (first_char <= ord("Z"))) | ((first_char >= ord("a")) & (first_char <= ord("z")))
    var_tok, num_tok = args[is_var], args[~is_var]
    if not _number_tokens_ok(body, b, ts[num_tok], te[num_tok]):
        return None
    kinds = np.zeros(ts.size, dtype=np.int8)
    pos = np.zeros(ts.size, dtype=np.int64)
    types = np.full(ts.size, -1, dtype=np.int8)
    if var_tok.size:
        kinds[var_tok], pos[var_tok], types[var_tok] = _variables(bp, ts[var_tok], te[var_tok], q.declarations, layout)
    ka, kb = kinds[ta], kinds[tb]
    va, vb = ka != CONST, kb != CONST
    if (~va & ~vb).any():
        return None  # two numbers
    if ((va & vb) & ((ka != kb) | (types[ta] != types[tb]))).any():
        return None  # an input with an output (MNC), or two element types
    if ((va & vb) & (op == _EQ)).any():
        return None  # equated variables: the package path ties inputs
    src = ts[ta]  # the comparison's first argument (error positions)
    if va.all() and not vb.any() and not (op == _EQ).any():
        # the usual shape, (op VARIABLE NUMBER): the same atoms as _general_atoms, in fewer steps
        b_val, b_dir = _numbers(body, bp, ts[tb], te[tb])
        neg = (op == _GE) | (op == _GT)
        atoms = Atoms(ka, np.where(neg, -b_val, b_val), np.where(neg, -b_dir, b_dir), (op == _LT) | (op == _GT),
                      np.arange(op.size + 1), pos[ta], np.where(neg, -1.0, 1.0), src,
                      spans=(body, ts[tb], te[tb], np.where(neg, -1, 1).astype(np.int8)))
        atom_off = np.arange(op.size + 1)
    else:
        atoms, atom_off = _general_atoms(body, bp, ts, te, ta, tb, ka, pos[ta], kb, pos[tb], op, src)
    # constants of float-typed comparisons: the literal rounded to the type (exact, direction 0)
    ctype = np.where(va, types[ta], types[tb])
    rel_of = np.repeat(np.arange(op.size), np.diff(atom_off))
    for code, dtype in ((_TYPES.index("float32"), np.float32), (_TYPES.index("float64"), np.float64)):
        sel = np.flatnonzero(ctype[rel_of] == code)
        if sel.size:
            v = round_to_dtype(atoms.rhs[sel], atoms.rdir[sel], dtype)
            if not np.isfinite(v).all():
                return None
            atoms.rhs[sel] = v
            atoms.rdir[sel] = 0
    near = np.abs(atoms.rhs)
    if ((near != 0) & ((near < 2.3e-308) | (near > 1.7e308))).any():
        return None  # beyond what the package reads (a double): it words the error
    dnf, _, _ = assertion_dnf(sc, ii, atom_off)
    return atoms, dnf
