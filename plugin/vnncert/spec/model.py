"""The normal form every engine reads: `Spec` -> `Case`s -> input region + output disjunction.

A VNN-LIB property describes the UNSAFE set. The query is `sat` iff some case has an input x
in its region with f(x) in one of its output halfspace sets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np


@dataclass(frozen=True)
class Halfspaces:
    """A conjunction of output constraints `A y <= b` (row i is `<` when strict[i])."""

    A: np.ndarray  # (m, n_outputs) float64
    b: np.ndarray  # (m,) float64
    strict: np.ndarray  # (m,) bool

    @property
    def rows(self) -> int:
        return int(self.A.shape[0])

    def holds(self, y: np.ndarray) -> np.ndarray:
        """Exact check (zero tolerance) of every row for a batch `y` (B, n_outputs) -> (B,) bool.

        Products are computed in float64; for the usual 0/±1 coefficients on float32 outputs
        they are exact.
        """
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        if self.rows == 0:
            return np.ones(y.shape[0], dtype=bool)
        lhs = y @ self.A.T  # (B, m)
        ok = np.where(self.strict, lhs < self.b, lhs <= self.b)
        return ok.all(axis=1)

    def violation(self, y: np.ndarray) -> np.ndarray:
        """max_i (A_i y - b_i) per row of y: <= 0 (< 0 for strict rows) means y is unsafe."""
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        if self.rows == 0:
            return np.full(y.shape[0], -np.inf)
        return (y @ self.A.T - self.b).max(axis=1)


@dataclass(frozen=True)
class InputRegion:
    """`lower <= x <= upper` over the flat C-order input, plus optional `G x <= h`."""

    lower: np.ndarray  # (n_inputs,) float64
    upper: np.ndarray  # (n_inputs,) float64
    G: Optional[np.ndarray] = None  # (k, n_inputs)
    h: Optional[np.ndarray] = None  # (k,)
    lower_strict: Optional[np.ndarray] = None  # (n_inputs,) bool, None = all non-strict
    upper_strict: Optional[np.ndarray] = None
    G_strict: Optional[np.ndarray] = None

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2.0

    @property
    def radius(self) -> np.ndarray:
        return (self.upper - self.lower) / 2.0

    def contains(self, x: np.ndarray) -> np.ndarray:
        """Exact membership of a batch x (B, n_inputs) -> (B,) bool, strictness respected."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        lo_ok = x >= self.lower
        if self.lower_strict is not None:
            lo_ok &= ~self.lower_strict | (x > self.lower)
        hi_ok = x <= self.upper
        if self.upper_strict is not None:
            hi_ok &= ~self.upper_strict | (x < self.upper)
        ok = lo_ok.all(axis=1) & hi_ok.all(axis=1)
        return ok & self._rows_ok(x)

    def _rows_ok(self, x: np.ndarray) -> np.ndarray:
        """(B,) bool: the linear input constraints G x <= h hold exactly (strictness respected)."""
        if self.G is None or not self.G.shape[0]:
            return np.ones(x.shape[0], bool)
        lhs = x @ self.G.T
        strict = self.G_strict if self.G_strict is not None else np.zeros(self.G.shape[0], bool)
        return np.where(strict, lhs < self.h, lhs <= self.h).all(axis=1)

    def contains_input(self, x: np.ndarray, dtype) -> np.ndarray:
        """Membership of inputs the model runs on, values of `dtype` (float32 for most ONNX files).

        The region is a set of real points; the model sees each as its nearest `dtype` value.
        x is in the region when some real point of the region rounds to it. For a non-strict
        bound pair that is fl(lower) <= x <= fl(upper) (rounding is monotone, and every value
        between is itself in [lower, upper] or is one of the two). It matters when lower == upper
        is not a float32 number (a fixed input such as 0.1): no float32 lies in the box, yet the
        model's input at that point is fl(0.1). Strict bounds and the G rows are checked on x
        exactly, and x must also lie within ROUNDED_INPUT_MAX_GAP of the box (so a witness stays
        inside the scorers' 1e-4 input slack even for bounds of large magnitude).
        """
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        dt = np.dtype(dtype)
        if dt == np.dtype(np.float64) or dt.kind != "f":
            return self.contains(x)
        flo = self.lower.astype(dt).astype(np.float64)
        fhi = self.upper.astype(dt).astype(np.float64)
        lo_ok = x >= np.minimum(flo, self.lower)
        if self.lower_strict is not None:
            lo_ok &= ~self.lower_strict | (x > self.lower)
        hi_ok = x <= np.maximum(fhi, self.upper)
        if self.upper_strict is not None:
            hi_ok &= ~self.upper_strict | (x < self.upper)
        gap = np.maximum(np.maximum(self.lower - x, x - self.upper), 0.0)
        ok = lo_ok.all(axis=1) & hi_ok.all(axis=1) & (gap <= ROUNDED_INPUT_MAX_GAP).all(axis=1)
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

    def find_violation(self, x: np.ndarray, y: np.ndarray, input_dtype=np.float64) -> Optional[int]:
        """Index of a case whose region contains x and whose output set contains y, or None.

        x is the input the model ran on, in `input_dtype` (see `InputRegion.contains_input`)."""
        for i, case in enumerate(self.cases):
            if case.region.contains_input(x, input_dtype)[0] and case.unsafe(y)[0]:
                return i
        return None
