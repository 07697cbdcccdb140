"""The atom table: every relation of a property as rows `sum c_i v_i <= c` (`<` when strict), exact.

Both VNN-LIB front ends write here. The 1.0 bulk front end fills an `Atoms` table directly, in
bulk; the tree front ends (VNN-LIB 1.0's general one and 2.0's) compute each side of a relation as
an exact linear form (`LinearForm`: coefficients and constant in rational arithmetic) and hand
`coefs . v  op  rhs` to `AtomBuilder.relation`, which applies the one normalisation rule of the
project (spec/numbers.py, `normalise_row`):

- one variable: divided through by |coefficient|, so an input bound has coefficient +-1 and its
  right-hand side is the exact quotient (`(<= (* 3 X_0) 0.1)` is `X_0 <= 1/30`);
- several variables whose coefficients are not all float64 numbers: scaled by a positive integer
  until they are;
- `>=` / `>` are negated into `<=` / `<`, `=` (`==`) is two rows, `!=` the disjunction of `<`
  and `>` (there are no NaNs among the values a property ranges over).

A row keeps its exact right-hand side (a Fraction, or for the bulk front end the text span of the
number) beside its nearest float64 and rounding direction (`numbers.nearest`); the case assembly
(spec/cases.py) rounds outward from those for the engines and keeps what a witness check needs.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .numbers import nearest, normalise_row, parse_decimal

# which variables an atom is over
CONST, IN, OUT = 0, 1, 2
KIND_OF = {"": CONST, "X": IN, "Y": OUT}

ZERO = Fraction(0)
ONE = Fraction(1)

# a linear form: ({(kind, flat index): exact coefficient}, exact constant), kind "X" or "Y"
Key = Tuple[str, int]
LinearForm = Tuple[Dict[Key, Fraction], Fraction]


class Atoms:
    """Atom table: row a is `sum_{p in cptr[a]:cptr[a+1]} cval[p] * v[cidx[p]]  <=  c[a]` (`<` if strict).

    The coefficients `cval` are exact; the exact right-hand side c[a] is `rhs[a]`, its nearest
    float64, and `rdir[a]`, the sign of c[a] - rhs[a]; `exact[a]` is c[a] itself (a Fraction,
    kept by the tree front ends); the bulk front end keeps `spans` instead, (text, start, end,
    sign): c[a] is sign[a] times the number text[start[a]:end[a]], read only when asked for
    (`exact_value`). `kind` says which variables the row is over (IN, OUT, or CONST for none);
    `src` where the relation it came from is (a front end's own code: a character offset, a token
    index, ...; the front end's `locate` turns it into line and column).
    """

    __slots__ = ("kind", "rhs", "rdir", "strict", "cptr", "cidx", "cval", "src", "exact", "spans")

    def __init__(self, kind, rhs, rdir, strict, cptr, cidx, cval, src, exact=None, spans=None):
        self.kind = np.asarray(kind, dtype=np.int8)
        self.rhs = np.asarray(rhs, dtype=np.float64)
        self.rdir = np.asarray(rdir, dtype=np.int8)
        self.strict = np.asarray(strict, dtype=bool)
        self.cptr = np.asarray(cptr, dtype=np.int64)
        self.cidx = np.asarray(cidx, dtype=np.int64)
        self.cval = np.asarray(cval, dtype=np.float64)
        self.src = np.asarray(src, dtype=np.int64)
        self.exact = exact
        self.spans = spans

    def exact_value(self, a: int) -> Fraction:
        """The exact right-hand side of atom a."""
        if self.exact is not None:
            return self.exact[a]
        if self.rdir[a] == 0:
            return Fraction(float(self.rhs[a]))
        text, start, end, sign = self.spans
        return int(sign[a]) * parse_decimal(text[int(start[a]):int(end[a])])

    def same_values(self, a: np.ndarray, b: np.ndarray, sign: int) -> List[bool]:
        """Whether c[a[k]] == sign * c[b[k]], exactly, for non-exact float64 values (rdir != 0):
        the same literal text first (the bulk front end), the exact values otherwise."""
        if self.exact is not None:
            return [self.exact[i] == sign * self.exact[j] for i, j in zip(a.tolist(), b.tolist())]
        text, start, end, sg = self.spans
        out = []
        for i, j, sa, ea, sb, eb, ok in zip(a.tolist(), b.tolist(), start[a].tolist(), end[a].tolist(),
                                            start[b].tolist(), end[b].tolist(), (sg[a] == sign * sg[b]).tolist()):
            out.append((ok and text[sa:ea] == text[sb:eb]) or self.exact_value(i) == sign * self.exact_value(j))
        return out

    def __len__(self) -> int:
        return int(self.kind.size)


# ---- exact linear forms ----------------------------------------------------------------------------
class NonLinear(ValueError):
    """A product of two variables."""


def negated(form: LinearForm) -> LinearForm:
    coefs, const = form
    return {k: -v for k, v in coefs.items()}, -const


def combined(forms: Sequence[LinearForm], signs: Sequence[int]) -> LinearForm:
    """sum of sign * form."""
    coefs: Dict[Key, Fraction] = {}
    const = ZERO
    for (cf, c), s in zip(forms, signs):
        for k, v in cf.items():
            coefs[k] = coefs.get(k, ZERO) + s * v
        const += s * c
    return coefs, const


def product(forms: Sequence[LinearForm]) -> LinearForm:
    """The product of linear forms of which at most one has variables; NonLinear otherwise."""
    coefs: Dict[Key, Fraction] = {}
    const = ONE
    seen_var = False
    for cf, c in forms:
        if cf:
            if seen_var:
                raise NonLinear("product of two variables")
            seen_var = True
            coefs = {k: v * const for k, v in cf.items()}
            const = c * const
        else:
            coefs = {k: v * c for k, v in coefs.items()}
            const *= c
    return coefs, const


def difference(lhs: LinearForm, rhs: LinearForm) -> LinearForm:
    """`lhs op rhs` as `coefs . v  op  constant`: (coefs of lhs - rhs, constant of rhs - lhs)."""
    coefs = dict(lhs[0])
    for k, v in rhs[0].items():
        coefs[k] = coefs.get(k, ZERO) - v
    return coefs, rhs[1] - lhs[1]


_NUMBER_CACHE: Dict[str, Fraction] = {}


def number(token: str) -> Fraction:
    """The exact value of a VNN-LIB number token (numbers.parse_decimal, cached: properties repeat
    their constants); ValueError with the reason otherwise."""
    v = _NUMBER_CACHE.get(token)
    if v is None:
        v = parse_decimal(token)
        if len(_NUMBER_CACHE) < 1 << 16 and len(token) <= 40:
            _NUMBER_CACHE[token] = v
    return v


# ---- relations -> atoms -----------------------------------------------------------------------------
class MixedKinds(ValueError):
    """A relation over both input and output variables (the normal form keeps them apart)."""


RELATIONS = ("<=", "<", ">=", ">", "=", "==", "!=")


class AtomBuilder:
    """Collects atoms, one relation at a time, in exact arithmetic; `atoms()` gives the table."""

    def __init__(self):
        # (kind, ((index, float coefficient), ...), exact rhs, strict) per atom, and its source
        self.rows: List[Tuple[str, Tuple[Tuple[int, float], ...], Fraction, bool]] = []
        self.src: List[int] = []

    def __len__(self) -> int:
        return len(self.rows)

    def relation(self, op: str, coefs: Dict[Key, Fraction], rhs: Fraction, src: int) -> List[List[int]]:
        """`coefs . v  op  rhs` (exact; op one of RELATIONS) -> its disjunctive normal form over new
        atoms (a list of conjunctions of atom indices). MixedKinds for a relation over inputs and
        outputs; ValueError (numbers.normalise_row's reason) for coefficients no scaling makes
        float64 numbers."""
        coefs = {k: v for k, v in coefs.items() if v != 0}
        kinds = {k[0] for k in coefs}
        if len(kinds) > 1:
            raise MixedKinds("relation over inputs and outputs")
        kind = kinds.pop() if kinds else ""
        items, rhs = normalise_row(sorted((k[1], v) for k, v in coefs.items()), rhs)
        return self._add(op, kind, items, rhs, src)

    def bound(self, op: str, key: Key, sign: float, rhs: Fraction, src: int) -> List[List[int]]:
        """`sign * v  op  rhs` for one variable and sign +-1: what `relation` makes of it (the
        normalisation has nothing to do), without its general steps (the common atom)."""
        return self._add(op, key[0], ((key[1], sign),), rhs, src)

    def _add(self, op: str, kind: str, items, rhs: Fraction, src: int) -> List[List[int]]:
        neg = tuple((i, -v) for i, v in items)
        if op == "<=":
            new, dnf = [(kind, items, rhs, False)], [[0]]
        elif op == "<":
            new, dnf = [(kind, items, rhs, True)], [[0]]
        elif op == ">=":
            new, dnf = [(kind, neg, -rhs, False)], [[0]]
        elif op == ">":
            new, dnf = [(kind, neg, -rhs, True)], [[0]]
        elif op in ("=", "=="):
            new, dnf = [(kind, items, rhs, False), (kind, neg, -rhs, False)], [[0, 1]]
        elif op == "!=":
            new, dnf = [(kind, items, rhs, True), (kind, neg, -rhs, True)], [[0], [1]]
        else:
            raise ValueError(f"unknown relation {op!r}")
        first = len(self.rows)
        self.rows.extend(new)
        self.src.extend([src] * len(new))
        return [[first + a for a in conj] for conj in dnf]

    def atoms(self) -> Atoms:
        rows = self.rows
        kinds = [KIND_OF[a[0]] for a in rows]
        cptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.fromiter((len(a[1]) for a in rows), dtype=np.int64, count=len(rows)), out=cptr[1:])
        cidx = [i for a in rows for i, _ in a[1]]
        cval = [c for a in rows for _, c in a[1]]
        exact = [a[2] for a in rows]
        cache: Dict[Tuple[int, int], Tuple[float, int]] = {}  # keyed by integers: a Fraction's hash is slow
        pairs = []
        for c in exact:
            key = (c.numerator, c.denominator)
            nd = cache.get(key)
            if nd is None:
                nd = cache[key] = nearest(c)
            pairs.append(nd)
        near = np.array([p[0] for p in pairs], dtype=np.float64).reshape(-1)
        rdir = np.array([p[1] for p in pairs], dtype=np.int8).reshape(-1)
        return Atoms(kinds, near, rdir, [a[3] for a in rows], cptr, cidx, cval, self.src, exact)


def row_exactness(atoms: Atoms, rows: np.ndarray) -> Tuple[Optional[np.ndarray], Optional[tuple]]:
    """(dir array or None, exact tuple or None) of the right-hand sides of these atoms, as
    `InputRegion.h_dir` / `h_exact` want them."""
    d = atoms.rdir[rows].copy()
    if not d.any():
        return None, None
    return d, tuple(atoms.exact_value(int(a)) if d[k] else None for k, a in enumerate(rows.tolist()))
