"""The normal form every engine reads: `Spec` -> `Case`s -> input region + output disjunction.

A VNN-LIB property describes the UNSAFE set. The query is `sat` iff some case has an input x
in its region with f(x) in one of its output halfspace sets.

Constants are real numbers (spec/numbers.py). The float64 arrays the engines read are rounded
OUTWARD from the property's exact values: a right-hand side `b` up (the unsafe set `A y <= b`
only grows), an input box's `lower` down and `upper` up; an `unsat` proved over them is about a
superset of the property's sets. Beside each such array an optional int8 `*_dir` array holds,
per entry, the sign of (exact value - nearest float64) (None: every entry is exact), and for the
rare rows whose left-hand side is not a single variable, `b_exact` / `h_exact` hold the exact
right-hand side (fractions.Fraction) where it is not a float64. That is enough to check a
witness exactly (`holds`, `contains`, `contains_input`): the replayed values, float32 or
float64, are exact rationals, and every comparison below is decided as if in exact arithmetic.
Arrays built by the engines themselves (sub-boxes, padded rows) carry no `*_dir`: their floats
are taken as exact values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import List, Optional, Sequence

import numpy as np

from .numbers import near_of_down, near_of_up, round_to_dtype

_U = 2.0 ** -53  # unit roundoff of float64
_ETA = 2.0 ** -1074  # smallest positive subnormal


def _tight(dirs: Optional[np.ndarray], m: int) -> np.ndarray:
    return np.ones(m, dtype=bool) if dirs is None else (np.asarray(dirs) == 0)


def row_plan(A: np.ndarray, b: np.ndarray, strict: np.ndarray, b_dir: Optional[np.ndarray]):
    """What `rows_hold` needs of the rows alone: (non-strict and exact rows, whether every row's
    float64 decision is exact, the other rows, their |A|). A row's float64 decision is exact when
    its left-hand side is computed exactly (no variable, or one with coefficient ±1) or when it
    compares the sum or difference of two variables with an exact 0 (the sign of a float64 sum is
    exact, in any summation order, with or without fused multiply-add)."""
    m = A.shape[0]
    tight = _tight(b_dir, m)
    absA = np.abs(A)
    if A.size <= 64:  # the usual few small rows: plain Python is faster than a dozen numpy calls
        exact_rows = np.empty(m, dtype=bool)
        for r, (row, br, t) in enumerate(zip(absA.tolist(), b.tolist(), tight.tolist())):
            nzs = [x for x in row if x != 0.0]
            exact_rows[r] = all(x == 1.0 for x in nzs) and (len(nzs) <= 1 or (len(nzs) == 2 and br == 0 and t))
    else:
        nz = (absA != 0).sum(axis=1)
        units = ((absA == 0) | (absA == 1.0)).all(axis=1)  # every coefficient 0 or ±1
        exact_rows = units & ((nz <= 1) | ((nz == 2) & (b == 0) & tight))
    rows = np.flatnonzero(~exact_rows)
    le = tight & ~np.asarray(strict, dtype=bool)
    mode = 0 if le.all() else 1 if not le.any() else 2  # every row `<=`, every row `<`, mixed
    return le, bool(exact_rows.all()), rows, absA[rows], tight, mode


def rows_hold(A: np.ndarray, b: np.ndarray, strict: np.ndarray, b_dir: Optional[np.ndarray],
              b_exact: Optional[Sequence[Optional[Fraction]]], v: np.ndarray, plan=None) -> np.ndarray:
    """(B, m) bool: row r holds exactly at v[i] (`A_r v <= c_r`, `<` when strict), where c_r is
    the exact right-hand side whose upward rounding is b[r].

    A float64 pass decides every entry whose float decision is exact (`row_plan`) or whose
    rigorous error bound keeps it clear of c; the rest (close calls) are settled in rational
    arithmetic."""
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    m = A.shape[0]
    if m == 0:
        return np.ones((v.shape[0], 0), dtype=bool)
    le_ok, all_exact, rows, absA, tight, _ = plan if plan is not None else row_plan(A, b, strict, b_dir)
    lhs = v @ A.T
    # for a float64 L: L <= c iff L < b or (L == b and c == b); L < c iff L < b
    ok = (lhs < b) | ((lhs == b) & le_ok)
    if all_exact:
        return ok
    with np.errstate(invalid="ignore", over="ignore"):
        n = A.shape[1]
        # |fl(sum a_j v_j) - sum a_j v_j| <= gamma_n sum |a_j v_j| (+ underflow), in any order
        err = (np.abs(v) @ absA.T) * ((2 * n + 4) * _U) + (n + 1) * _ETA
        L, bb = lhs[:, rows], b[rows]
        unsure = (L - err <= bb) & (L + err > np.nextafter(bb, -np.inf)) & np.isfinite(L) & np.isfinite(err)
    for i, k in zip(*np.nonzero(unsure)):
        r = int(rows[k])
        exact = b_exact[r] if b_exact is not None else None
        ok[i, r] = _row_holds_exactly(A[r], v[i], float(b[r]), bool(strict[r]), bool(tight[r]), exact)
    return ok


def _row_holds_exactly(a: np.ndarray, x: np.ndarray, b: float, strict: bool, tight: bool,
                       exact: Optional[Fraction]) -> bool:
    nz = np.flatnonzero(a)
    L = sum((Fraction(float(a[j])) * Fraction(float(x[j])) for j in nz), Fraction(0))
    if exact is None and tight:
        exact = Fraction(b)
    if exact is not None:
        return L < exact if strict else L <= exact
    # c lies strictly between the float64 below b and b: decided unless L falls in between too
    if L <= Fraction(float(np.nextafter(b, -np.inf))):
        return True
    return False  # L >= b > c, or L in the gap: not shown to hold (never a wrong witness)


@dataclass(frozen=True, init=False)
class Halfspaces:
    """A conjunction of output constraints `A y <= b` (row i is `<` when strict[i]).

    `b` is rounded up from the exact right-hand side; `b_dir[i]` is the sign of (exact - nearest
    float64) (None: all exact) and `b_exact[i]` the exact value for a row over several outputs
    whose right-hand side is not a float64 (None where not needed). See the module docstring."""

    A: np.ndarray  # (m, n_outputs) float64, exact coefficients
    b: np.ndarray  # (m,) float64, rounded up
    strict: np.ndarray  # (m,) bool
    b_dir: Optional[np.ndarray] = field(default=None, compare=False)  # (m,) int8
    b_exact: Optional[tuple] = field(default=None, compare=False)  # (m,) Fraction or None

    def __init__(self, A, b, strict, b_dir=None, b_exact=None):
        # one dict update instead of a frozen __setattr__ per field: parsers build thousands of these
        self.__dict__.update(A=A, b=b, strict=strict, b_dir=b_dir, b_exact=b_exact)

    @property
    def rows(self) -> int:
        return int(self.A.shape[0])

    def holds(self, y: np.ndarray) -> np.ndarray:
        """Exact check (zero tolerance) of every row for a batch `y` (B, n_outputs) -> (B,) bool.

        y's values (float32 or float64 outputs, as float64) are taken as exact rationals and
        compared with the property's exact constants."""
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        if self.rows == 0:
            return np.ones(y.shape[0], dtype=bool)
        plan = self.__dict__.get("_plan")
        if plan is None:  # the rows' part of the work, once (the arrays of a Spec are not changed)
            plan = self.__dict__["_plan"] = row_plan(self.A, self.b, self.strict, self.b_dir)
        if plan[1]:  # every row decided exactly in float64 (the usual case), inline
            lhs = y @ self.A.T
            mode = plan[5]
            if mode == 0:
                return (lhs <= self.b).all(axis=1)
            if mode == 1:
                return (lhs < self.b).all(axis=1)
            return ((lhs < self.b) | ((lhs == self.b) & plan[0])).all(axis=1)
        return rows_hold(self.A, self.b, self.strict, self.b_dir, self.b_exact, y, plan).all(axis=1)

    def violation(self, y: np.ndarray) -> np.ndarray:
        """max_i (A_i y - b_i) per row of y: <= 0 (< 0 for strict rows) means y is unsafe
        (a float64 score for searching; `holds` decides)."""
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        if self.rows == 0:
            return np.full(y.shape[0], -np.inf)
        return (y @ self.A.T - self.b).max(axis=1)


@dataclass(frozen=True, init=False)
class InputRegion:
    """`lower <= x <= upper` over the flat C-order input, plus optional `G x <= h`.

    `lower` is rounded down and `upper` up from the exact bounds; `lower_dir` / `upper_dir`
    (int8, None: exact) say how each exact bound lies against its nearest float64, `h_dir` /
    `h_exact` are to `h` what `b_dir` / `b_exact` are to `Halfspaces.b`."""

    lower: np.ndarray  # (n_inputs,) float64
    upper: np.ndarray  # (n_inputs,) float64
    G: Optional[np.ndarray] = None  # (k, n_inputs)
    h: Optional[np.ndarray] = None  # (k,)
    lower_strict: Optional[np.ndarray] = None  # (n_inputs,) bool, None = all non-strict
    upper_strict: Optional[np.ndarray] = None
    G_strict: Optional[np.ndarray] = None
    lower_dir: Optional[np.ndarray] = field(default=None, compare=False)  # (n_inputs,) int8
    upper_dir: Optional[np.ndarray] = field(default=None, compare=False)
    h_dir: Optional[np.ndarray] = field(default=None, compare=False)
    h_exact: Optional[tuple] = field(default=None, compare=False)

    def __init__(self, lower, upper, G=None, h=None, lower_strict=None, upper_strict=None, G_strict=None,
                 lower_dir=None, upper_dir=None, h_dir=None, h_exact=None):
        self.__dict__.update(lower=lower, upper=upper, G=G, h=h, lower_strict=lower_strict, upper_strict=upper_strict,
                             G_strict=G_strict, lower_dir=lower_dir, upper_dir=upper_dir, h_dir=h_dir, h_exact=h_exact)

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2.0

    @property
    def radius(self) -> np.ndarray:
        return (self.upper - self.lower) / 2.0

    def _strict(self, s: Optional[np.ndarray]) -> np.ndarray:
        return np.zeros(self.lower.shape, dtype=bool) if s is None else np.asarray(s, dtype=bool)

    def contains(self, x: np.ndarray) -> np.ndarray:
        """Exact membership of a batch x (B, n_inputs) -> (B,) bool, strictness respected."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        n = self.lower.size
        # x >= c (c rounded down to lower): x > lower, or x == lower when c == lower
        lo_ok = (x > self.lower) | ((x == self.lower) & (_tight(self.lower_dir, n) & ~self._strict(self.lower_strict)))
        hi_ok = (x < self.upper) | ((x == self.upper) & (_tight(self.upper_dir, n) & ~self._strict(self.upper_strict)))
        ok = lo_ok.all(axis=1) & hi_ok.all(axis=1)
        return ok & self._rows_ok(x)

    def _rows_ok(self, x: np.ndarray) -> np.ndarray:
        """(B,) bool: the linear input constraints G x <= h hold exactly (strictness respected)."""
        if self.G is None or not self.G.shape[0]:
            return np.ones(x.shape[0], bool)
        strict = self.G_strict if self.G_strict is not None else np.zeros(self.G.shape[0], bool)
        return rows_hold(self.G, self.h, strict, self.h_dir, self.h_exact, x).all(axis=1)

    def rounded_bounds(self, dtype):
        """(lo, hi) float64 arrays of `dtype` values: the roundings fl(c_lo), fl(c_hi) of the exact
        bounds to `dtype` (correctly rounded from the exact values; float64 gives the nearest).
        Computed once per dtype (the arrays of a Spec are not changed)."""
        key = "_rounded_" + np.dtype(dtype).str
        got = self.__dict__.get(key)
        if got is None:
            lo = round_to_dtype(near_of_down(self.lower, self.lower_dir), self.lower_dir, dtype)
            hi = round_to_dtype(near_of_up(self.upper, self.upper_dir), self.upper_dir, dtype)
            got = self.__dict__[key] = (lo, hi)
        return got

    def fixed(self) -> np.ndarray:
        """(n_inputs,) bool: inputs whose lower and upper bound have the same nearest float64 (an
        input fixed at a value such as 0.1, whose outward box is one ulp wide, counts as fixed)."""
        lo, hi = self.rounded_bounds(np.float64)
        return hi <= lo

    def snap_input(self, x: np.ndarray, dtype) -> np.ndarray:
        """x (B, n_inputs) clipped into the box, cast to `dtype` and moved onto the nearest value that
        `contains_input` accepts on the box's account (float64 array of `dtype` values): for a
        non-strict bound the rounding fl(c) of the exact bound, for a strict one the first `dtype`
        value beyond it. Linear input constraints (G) are not looked at. Where no such value
        exists, the cast value is kept (and will not pass)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        dt = np.dtype(dtype)
        xc = np.clip(x, self.lower, self.upper)
        if dt.kind != "f":
            return xc
        with np.errstate(over="ignore", invalid="ignore"):
            lo, hi = self.rounded_bounds(dt)
            if self.lower_strict is not None and self.lower_strict.any():
                t = self.lower.astype(dt)
                t = np.where(t.astype(np.float64) <= self.lower, np.nextafter(t, np.array(np.inf, dtype=dt)), t)
                lo = np.where(self.lower_strict, t.astype(np.float64), lo)
            if self.upper_strict is not None and self.upper_strict.any():
                t = self.upper.astype(dt)
                t = np.where(t.astype(np.float64) >= self.upper, np.nextafter(t, np.array(-np.inf, dtype=dt)), t)
                hi = np.where(self.upper_strict, t.astype(np.float64), hi)
            xd = xc.astype(dt).astype(np.float64)
        return np.where(lo <= hi, np.minimum(np.maximum(xd, lo), hi), xd)

    def contains_input(self, x: np.ndarray, dtype) -> np.ndarray:
        """Membership of inputs the model runs on, values of `dtype` (float32 for most ONNX files).

        The region is a set of real points; the model sees each as its nearest `dtype` value
        (float16, float32 or float64). x is in the region when it is a `dtype` value that some
        real point of the region rounds to. For a non-strict bound pair that is
        fl(c_lo) <= x <= fl(c_hi), with fl the correct rounding of the EXACT bounds (rounding is
        monotone, and every value between is itself in [c_lo, c_hi] or is one of the two). It
        matters when c_lo == c_hi is not a float32 number (a fixed input such as 0.1): no
        float32 lies in the box, yet the model's input at that point is fl(0.1). Strict bounds
        and the G rows are checked on x exactly, and x must also lie within
        ROUNDED_INPUT_MAX_GAP of the box (so a witness stays inside the scorers' 1e-4 input
        slack even for bounds of large magnitude). A non-float dtype: exact membership.
        """
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        dt = np.dtype(dtype)
        if dt.kind != "f":
            return self.contains(x)
        flo, fhi = self.rounded_bounds(dt)
        with np.errstate(over="ignore", invalid="ignore"):
            representable = x.astype(dt).astype(np.float64) == x
        lo_s, hi_s = self._strict(self.lower_strict), self._strict(self.upper_strict)
        # strict: x > c_lo exactly, which for a float64 x is x > lower whatever c_lo's rounding
        lo_ok = np.where(lo_s, x > self.lower, x >= flo)
        hi_ok = np.where(hi_s, x < self.upper, x <= fhi)
        gap = np.maximum(np.maximum(self.lower - x, x - self.upper), 0.0)
        ok = (lo_ok & hi_ok & representable).all(axis=1) & (gap <= ROUNDED_INPUT_MAX_GAP).all(axis=1)
        ok &= ~np.any(self.lower > self.upper)
        return ok & self._rows_ok(x)


# an input value that only rounding brings into the box must lie this close to it (absolute)
ROUNDED_INPUT_MAX_GAP = 1e-5


@dataclass(frozen=True)
class Case:
    """One input region and the disjunction of output halfspace sets that is unsafe on it."""

    region: InputRegion
    output: List[Halfspaces]

    def unsafe(self, y: np.ndarray) -> np.ndarray:
        """(B,) bool: y lies in some disjunct (exact, zero tolerance)."""
        y = np.atleast_2d(y)
        hit = np.zeros(y.shape[0], dtype=bool)
        for hs in self.output:
            hit |= hs.holds(y)
        return hit


@dataclass(frozen=True)
class Spec:
    n_inputs: int
    n_outputs: int
    cases: List[Case]
    source: str = ""
    version: str = "1.0"
    # VNN-LIB 2.0 declarations (names, shapes, dtypes) when known; used by the 2.0 CLI output.
    declarations: Optional[dict] = field(default=None, compare=False)
    # what a 2.0 query asks of its models beyond one input box and output halfspaces
    # (vnncert.signature.Composition: the layout of the flat vectors and how to build the network)
    composition: Optional[object] = field(default=None, compare=False)

    def find_violation(self, x: np.ndarray, y: np.ndarray, input_dtype=np.float64) -> Optional[int]:
        """Index of a case whose region contains x and whose output set contains y, or None.

        x is the input the model ran on, in `input_dtype` (see `InputRegion.contains_input`)."""
        xr = np.asarray(x, dtype=np.float64).reshape(-1)
        for i, case in enumerate(self.cases):
            r = case.region
            if (xr < r.lower - ROUNDED_INPUT_MAX_GAP).any() or (xr > r.upper + ROUNDED_INPUT_MAX_GAP).any():
                continue  # far outside this box (a quick test: properties with thousands of boxes)
            if r.contains_input(x, input_dtype)[0] and case.unsafe(y)[0]:
                return i
        return None
