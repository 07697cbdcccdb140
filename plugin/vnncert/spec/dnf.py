"""Disjunctive normal form over atoms, with the one limit on its size.

A property (1.0 or 2.0) is the conjunction of its asserts; each is put in disjunctive normal form
over the atoms of spec/atoms.py and the asserts are multiplied out. Two shapes, one rule:

- the tree front ends build lists of conjunctions of atom indices (`conjoin`, `disjoin`) and
  hand them over with `from_lists`;
- the 1.0 bulk front end builds `Dnf` values directly (conjunctions of atom index ranges, in
  bulk: `Dnf.each`, `Dnf.any_of`, `conjoin_all`).

Either way a property may expand to at most MAX_DISJUNCTS disjuncts (`TooManyDisjuncts`
otherwise): the normal form holds one output halfspace set per disjunct, so the limit bounds the
memory a property can ask for.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

# a property may expand to at most this many disjuncts (VNN-COMP's largest, nn4sys lindex_10000,
# has 20,000; each disjunct costs a Halfspaces object and its rows)
MAX_DISJUNCTS = 1_000_000


class TooManyDisjuncts(ValueError):
    def __init__(self):
        super().__init__(f"property expands to more than {MAX_DISJUNCTS} disjuncts (the limit)")


# ---- lists of conjunctions (tree front ends) ----------------------------------------------------------
Conjunctions = List[List[int]]


def conjoin(result: Conjunctions, sub: Conjunctions) -> Conjunctions:
    """result AND sub: a single conjunction is appended to every conjunction of `result` (in
    place), several multiply out (result_i and sub_j, i-major)."""
    if len(sub) == 1:
        for conj in result:
            conj.extend(sub[0])
        return result
    if len(result) * len(sub) > MAX_DISJUNCTS:
        raise TooManyDisjuncts()
    return [r + s for r in result for s in sub]


def disjoin(result: Conjunctions, sub: Conjunctions) -> Conjunctions:
    """result OR sub (in place)."""
    result.extend(sub)
    if len(result) > MAX_DISJUNCTS:
        raise TooManyDisjuncts()
    return result


def from_lists(conjs: Conjunctions) -> "Dnf":
    """Conjunctions given as atom index lists -> a Dnf of ranges of consecutive indices."""
    rptr, rs, re_ = [0], [], []
    for conj in conjs:
        start = prev = -2
        for a in conj:
            if a == prev + 1:
                prev = a
                continue
            if start >= 0:
                rs.append(start)
                re_.append(prev + 1)
            start = prev = a
        if start >= 0:
            rs.append(start)
            re_.append(prev + 1)
        rptr.append(len(rs))
    return Dnf(rptr, rs, re_)


# ---- conjunctions of atom ranges (bulk) --------------------------------------------------------------
class Dnf:
    """A disjunction of conjunctions; conjunction k is the atoms of ranges rptr[k]:rptr[k+1],
    range r being atoms rs[r]:re[r], in this order."""

    __slots__ = ("rptr", "rs", "re")

    def __init__(self, rptr, rs, re_):
        self.rptr = np.asarray(rptr, dtype=np.int64)
        self.rs = np.asarray(rs, dtype=np.int64)
        self.re = np.asarray(re_, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.rptr.size - 1)

    @staticmethod
    def single(start: int, stop: int) -> "Dnf":
        """One conjunction of one range."""
        return Dnf(np.array([0, 1]), np.array([start]), np.array([stop]))

    @staticmethod
    def each(starts: np.ndarray, stops: np.ndarray) -> "Dnf":
        """One conjunction per range."""
        return Dnf(np.arange(starts.size + 1), starts, stops)

    @staticmethod
    def join_single(parts: Sequence["Dnf"]) -> "Dnf":
        """One conjunction: all ranges of single-conjunction DNFs, in order, adjacent ones merged."""
        if len(parts) == 1 and parts[0].rs.size <= 1:
            return parts[0]
        rs = np.concatenate([p.rs for p in parts])
        re_ = np.concatenate([p.re for p in parts])
        if rs.size == 0:
            return Dnf(np.array([0, 0]), rs, re_)
        new = np.ones(rs.size, dtype=bool)
        new[1:] = rs[1:] != re_[:-1]
        last = np.ones(rs.size, dtype=bool)
        last[:-1] = new[1:]
        return Dnf(np.array([0, int(new.sum())]), rs[new], re_[last])

    @staticmethod
    def any_of(parts: Sequence["Dnf"]) -> "Dnf":
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return Dnf(np.array([0]), np.zeros(0), np.zeros(0))
        offsets = np.cumsum([0] + [p.rs.size for p in parts[:-1]])
        rptr = np.concatenate([[0]] + [p.rptr[1:] + o for p, o in zip(parts, offsets)])
        return Dnf(rptr, np.concatenate([p.rs for p in parts]), np.concatenate([p.re for p in parts]))

    def times(self, other: "Dnf") -> "Dnf":
        """Conjunction of two DNFs: (self_i and other_j) for i, then j -- the i-major order."""
        k1, k2 = len(self), len(other)
        l1, l2 = np.diff(self.rptr), np.diff(other.rptr)
        i = np.repeat(np.arange(k1), k2)
        j = np.tile(np.arange(k2), k1)
        n1, n2 = l1[i], l2[j]
        rptr = np.zeros(k1 * k2 + 1, dtype=np.int64)
        np.cumsum(n1 + n2, out=rptr[1:])
        rs = np.empty(int(rptr[-1]), dtype=np.int64)
        re_ = np.empty_like(rs)
        pos1, src1 = ragged(rptr[:-1], n1), ragged(self.rptr[i], n1)
        pos2, src2 = ragged(rptr[:-1] + n1, n2), ragged(other.rptr[j], n2)
        rs[pos1], re_[pos1] = self.rs[src1], self.re[src1]
        rs[pos2], re_[pos2] = other.rs[src2], other.re[src2]
        return Dnf(rptr, rs, re_)


def conjoin_all(parts: List[Dnf]) -> Dnf:
    """The conjunction of DNFs, in order (TooManyDisjuncts past the limit). Runs of
    single-conjunction parts (plain asserts) are joined first, so thousands of them stay linear."""
    result: Optional[Dnf] = None
    size = 1
    i = 0
    while i < len(parts):
        if len(parts[i]) == 1:
            j = i
            while j < len(parts) and len(parts[j]) == 1:
                j += 1
            sub = Dnf.join_single(parts[i:j])
            i = j
        else:
            sub = parts[i]
            if size * len(sub) > MAX_DISJUNCTS:
                raise TooManyDisjuncts()
            size *= len(sub)
            i += 1
        result = sub if result is None else result.times(sub)
    return result


def ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """concatenate([arange(s, s + n) for s, n in zip(starts, lengths)]) without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    nz = lengths > 0
    starts = np.asarray(starts, dtype=np.int64)[nz]
    lengths = lengths[nz]
    step = np.ones(total, dtype=np.int64)
    heads = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=heads[1:])
    step[0] = starts[0]
    if lengths.size > 1:
        step[heads[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(step)
