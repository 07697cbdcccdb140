"""Case assembly: atoms + DNF -> the normal form (`Case`s of spec/model.py), in bulk, for 1.0 and 2.0.

`assemble` turns the atom table (spec/atoms.py) and the disjunctive normal form (spec/dnf.py) of a
property into input boxes per distinct input part, output halfspace rows per disjunct, and groups
the disjuncts that share an input region into one `Case`, in order of first appearance.

The one rounding rule: every float written is rounded OUTWARD from the exact value (an input
box's lower bound down, upper bound up, a right-hand side up), with the `*_dir` arrays beside it
and the exact right-hand side of a row over several variables where it is not a float64
(spec/model.py): the engines read the floats, a witness is judged against the exact values. Two
constants are compared exactly: by their nearest float64 and rounding direction, and, in the rare
case those agree without being exact, by their exact values (`Atoms.exact_value`).

The rules on disjuncts, the same for both versions:
- a disjunct holding a false constant comparison (`(< 1 0)`) can never hold and is dropped;
- every input needs a finite lower and upper bound in every other disjunct (an error naming the
  input, and the disjunct when there are several);
- a disjunct whose input box is empty (a lower bound above an upper bound, or equal bounds one of
  them strict) can never hold and is dropped when the property has several disjuncts (a disjunction
  of boxes meets the other asserts' constraints naturally); a property that is a single
  conjunction with an empty box is an error (its unsafe set would be empty by a mistake in its
  bounds, answered `unsat` without a word).
A property whose disjuncts are all dropped has no case (it is unsat by its own text).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import repeat
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import SpecError
from .atoms import CONST, IN, OUT, Atoms, row_exactness
from .dnf import Dnf, ragged
from .model import Case, Halfspaces, InputRegion
from .numbers import clip, round_up


@dataclass(frozen=True)
class Source:
    """What messages need of the text: its name, where an atom's relation is (`locate(atom.src)` ->
    (line, column), or None when the front end does not know), and how an input is written."""

    where: str
    locate: Callable[[int], Optional[Tuple[int, int]]]
    input_name: Callable[[int], str] = lambda i: f"X_{i}"

    def at(self, src: int) -> str:
        """`where:line:col` of an atom's relation (`where` alone when unknown)."""
        pos = self.locate(int(src))
        return f"{self.where}:{pos[0]}:{pos[1]}" if pos else self.where


def _segment_sum(values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    c = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(values, out=c[1:])
    return c[ptr[1:]] - c[ptr[:-1]]


def _rows_as_bytes(rows: np.ndarray) -> np.ndarray:
    """A 2-D array as a 1-D array of opaque byte strings, one per row (np.unique then compares rows
    with memcmp instead of field by field)."""
    rows = np.ascontiguousarray(rows)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)


def _expand(dnf: Dnf, ranges: np.ndarray, owner: np.ndarray):
    """Atoms of the given ranges, in order, and the owner label of each."""
    n = dnf.re[ranges] - dnf.rs[ranges]
    return ragged(dnf.rs[ranges], n), np.repeat(owner, n)


def _exact_str(v: Fraction) -> str:
    """An exact value as a decimal, for messages (every VNN-LIB constant is a terminating decimal)."""
    import decimal

    with decimal.localcontext() as ctx:
        ctx.prec = 60
        d = decimal.Decimal(v.numerator) / decimal.Decimal(v.denominator)
    return clip(format(d.normalize(), "f") if abs(d.adjusted()) < 30 else str(d))


def assemble(atoms: Atoms, dnf: Dnf, n_in: int, n_out: int, source: Source) -> List[Case]:
    """The normal form of a property (the module docstring says the rules); `source` words the
    errors."""
    with np.errstate(over="ignore", invalid="ignore"):  # +-inf bounds are reported, not warned about
        return _assemble(atoms, dnf, n_in, n_out, source)


def _assemble(atoms: Atoms, dnf: Dnf, n_in: int, n_out: int, source: Source) -> List[Case]:
    where, name = source.where, source.input_name
    K = len(dnf)
    if K == 0:
        return []
    nnz = np.diff(atoms.cptr)
    is_x = atoms.kind == IN
    is_y = atoms.kind == OUT
    up = round_up(atoms.rhs, atoms.rdir)  # the least float64 >= each exact right-hand side
    tight = atoms.rdir == 0
    # a constant atom `0 <= c` (`0 < c` when strict), decided exactly from (up, tight)
    c_false = (atoms.kind == CONST) & ~np.where(atoms.strict, up > 0.0, (up > 0.0) | ((up == 0.0) & tight))
    is_box = is_x & (nnz == 1)  # coefficient +-1: both front ends divide single-variable relations through
    is_g = is_x & (nnz > 1)

    def per_range(mask):
        c = np.zeros(mask.size + 1, dtype=np.int64)
        np.cumsum(mask, out=c[1:])
        return c[dnf.re] - c[dnf.rs]

    nx_r, ny_r = per_range(is_x), per_range(is_y)
    n_ranges = np.diff(dnf.rptr)
    range_conj = np.repeat(np.arange(K), n_ranges)
    conj_false = _segment_sum(per_range(c_false), dnf.rptr) > 0

    # ---- input parts: one per distinct list of X-carrying ranges ---------------------------------
    slot = np.arange(dnf.rs.size) - dnf.rptr[range_conj]
    width = int(n_ranges.max())
    sig = np.full((K, 2 * max(width, 1)), -1, dtype=np.int64)
    xr = np.flatnonzero(nx_r > 0)
    sig[range_conj[xr], 2 * slot[xr]] = dnf.rs[xr]
    sig[range_conj[xr], 2 * slot[xr] + 1] = dnf.re[xr]
    if K == 1:  # one disjunct (most properties): one part, no sorting
        rep = sig_of = np.zeros(1, dtype=np.int64)
    else:
        _, rep, sig_of = np.unique(_rows_as_bytes(sig), return_index=True, return_inverse=True)
        sig_of = sig_of.reshape(-1)
    U = rep.size
    sel_r = xr if K == 1 else xr[np.isin(range_conj[xr], rep)]
    u_of_conj = np.full(K, -1, dtype=np.int64)
    u_of_conj[rep] = np.arange(U)
    a_idx, a_u = _expand(dnf, sel_r, u_of_conj[range_conj[sel_r]])
    # box atoms: +-x_i <= c, an upper bound c (coefficient +1) or a lower bound -c (coefficient -1)
    bx = is_box[a_idx]
    b_atom, b_u = a_idx[bx], a_u[bx]
    var = atoms.cidx[atoms.cptr[b_atom]]
    side = atoms.cval[atoms.cptr[b_atom]] < 0  # 0 upper, 1 lower
    rv, rd = atoms.rhs[b_atom], atoms.rdir[b_atom]
    strict = atoms.strict[b_atom]

    # the tightest bound per (part, variable, side) is the atom with the least exact c: ordered by
    # c's (nearest float64, direction), a strict relation first on a tie
    key = (b_u * n_in + var) * 2 + side
    take = np.arange(key.size)
    if key.size and np.bincount(key).max() > 1:  # some variable bounded twice on one side
        order = np.lexsort((~strict, rd, rv, key))
        ko, rvo, rdo, so = key[order], rv[order], rd[order], strict[order]
        group = np.ones(order.size, dtype=bool)
        group[1:] = ko[1:] != ko[:-1]
        run = group.copy()  # runs of bounds whose (near, dir) agree
        run[1:] |= (rvo[1:] != rvo[:-1]) | (rdo[1:] != rdo[:-1])
        run_id = np.cumsum(run) - 1
        # a run of non-exact constants (dir != 0) mixing strict and non-strict relations: which one is
        # the least depends on the exact values
        mixed = (np.bincount(run_id, so) > 0) & (np.bincount(run_id, ~so) > 0) & (rdo[run] != 0)
        first = np.flatnonzero(group)
        take = order[first]
        for g in np.flatnonzero(mixed[run_id[first]]).tolist():
            p0 = int(first[g])
            members = order[run_id == run_id[p0]]
            best = min(members.tolist(), key=lambda j: (atoms.exact_value(int(b_atom[j])), not strict[j]))
            take[g] = best
    bval = round_up(rv[take], rd[take])
    bval = np.where(side[take], -bval, bval)  # lower bounds: round_down(-c) = -round_up(c)
    bdir = np.where(side[take], -rd[take], rd[take]).astype(np.int8)
    slot_of = key[take]
    bounds = np.empty((U, n_in, 2))
    bounds[:, :, 0] = np.inf
    bounds[:, :, 1] = -np.inf
    bounds.reshape(-1)[slot_of] = bval
    dirs = np.zeros((U, n_in, 2), dtype=np.int8)
    dirs.reshape(-1)[slot_of] = bdir
    stricts = np.zeros((U, n_in, 2), dtype=bool)
    stricts.reshape(-1)[slot_of] = strict[take]
    chosen = np.full((U, n_in, 2), -1, dtype=np.int64)  # the atom behind each bound
    chosen.reshape(-1)[slot_of] = b_atom[take]
    upper, lower = bounds[:, :, 0], bounds[:, :, 1]
    lower = lower + 0.0  # contiguous copies; -0.0 -> 0.0, so equal boxes compare equal byte for byte
    upper = upper + 0.0
    lo_d = np.ascontiguousarray(dirs[:, :, 1])
    hi_d = np.ascontiguousarray(dirs[:, :, 0])
    lo_s = np.ascontiguousarray(stricts[:, :, 1])
    hi_s = np.ascontiguousarray(stricts[:, :, 0])

    # errors, in disjunct order, exactly one message
    no_lo = ~np.isfinite(lower)
    no_hi = ~np.isfinite(upper)
    # c_lo against c_hi, exactly: by (nearest, direction), and by value where those agree inexactly
    n_lo = np.where(lo_d < 0, np.nextafter(lower, np.inf), lower)
    n_hi = np.where(hi_d > 0, np.nextafter(upper, -np.inf), upper)
    same = (n_lo == n_hi) & (lo_d == hi_d)
    above = (n_lo > n_hi) | ((n_lo == n_hi) & (lo_d > hi_d))
    equal = same & (lo_d == 0)
    undecided = same & (lo_d != 0) & ~no_lo & ~no_hi
    if undecided.any():  # e.g. an input fixed at 0.1 by two relations
        uu, ii = np.nonzero(undecided)
        a_lo, a_hi = chosen[uu, ii, 1], chosen[uu, ii, 0]
        for u, i, eq in zip(uu.tolist(), ii.tolist(), atoms.same_values(a_hi, a_lo, -1)):
            if eq:
                above[u, i], equal[u, i] = False, True
            else:
                c_lo, c_hi = -atoms.exact_value(int(chosen[u, i, 1])), atoms.exact_value(int(chosen[u, i, 0]))
                above[u, i], equal[u, i] = c_lo > c_hi, c_lo == c_hi
    empty = above | (equal & (lo_s | hi_s))
    empty_u = empty.any(axis=1)
    # dropped: a false constant, or an empty box among several disjuncts; errors: the first other
    # disjunct with a missing bound, or the single disjunct's empty box
    dead = conj_false | (empty_u[sig_of] if K > 1 else False)
    bad_u = no_lo.any(axis=1) | no_hi.any(axis=1) | empty_u
    bad_conj = np.flatnonzero(bad_u[sig_of] & ~dead)
    if bad_conj.size:
        k = int(bad_conj[0])
        u = int(sig_of[k])
        for which, missing, rel, s in (("lower", no_lo, ">=", 1), ("upper", no_hi, "<=", 0)):
            if missing[u].any():
                i = int(np.argmax(missing[u]))
                a = int(chosen[u, i, s])
                if a >= 0:  # there is a bound, beyond the float64 range
                    raise SpecError(f"{source.at(atoms.src[a])}: input {name(i)} has no finite {which} bound: this one "
                                    f"is beyond the float64 range (about 1.8e308); vnncert needs a finite box on every "
                                    f"input")
                what = f"input {name(i)} has no {which} bound"
                at = where
                if K > 1:  # point at the disjunct: its first relation
                    what += f" in disjunct {k + 1}"
                    r = dnf.rptr[k]
                    if dnf.rptr[k + 1] > r and source.locate(int(atoms.src[dnf.rs[r]])):
                        at, what = source.at(atoms.src[dnf.rs[r]]), what + " (the one starting here)"
                raise SpecError(f"{at}: {what}; expected a constraint such as ({rel} {name(i)} <number>)")
        i = int(np.argmax(empty[u]))
        a_lo, a_hi = int(chosen[u, i, 1]), int(chosen[u, i, 0])
        if undecided[u, i]:
            lo, hi = _exact_str(-atoms.exact_value(a_lo)), _exact_str(atoms.exact_value(a_hi))
        else:
            lo, hi = repr(float(n_lo[u, i])), repr(float(n_hi[u, i]))
        # the relations that set the two bounds; the error points at the later one
        src_lo, src_hi = atoms.src[a_lo], atoms.src[a_hi]
        at, other = (src_lo, src_hi) if src_lo > src_hi else (src_hi, src_lo)
        if above[u, i]:
            what = f"lower bound {lo} above upper bound {hi}"
        else:
            what = f"lower and upper bound {lo} and one of them strict"
        pos = source.locate(int(other))
        tail = f" (the other bound is at line {pos[0]}, column {pos[1]})" if pos else ""
        raise SpecError(f"{source.at(at)}: empty input box: {name(i)} has {what}{tail}; expected lower <= upper")

    # general linear input constraints G x <= h (rare in VNN-LIB 1.0): per part, in atom order
    g_parts: Dict[int, tuple] = {}
    gm = is_g[a_idx]
    if gm.any():
        for u in np.unique(a_u[gm]).tolist():
            rows = a_idx[gm & (a_u == u)]
            G = np.zeros((rows.size, n_in))
            for r, a in enumerate(rows.tolist()):
                p0, p1 = atoms.cptr[a], atoms.cptr[a + 1]
                G[r, atoms.cidx[p0:p1]] = atoms.cval[p0:p1]
            g_parts[u] = (G, up[rows] + 0.0, atoms.strict[rows].copy()) + row_exactness(atoms, rows)

    # ---- group parts with equal regions ------------------------------------------------------------
    rows_bytes = np.concatenate([lower.view(np.uint8).reshape(U, 8 * n_in), upper.view(np.uint8).reshape(U, 8 * n_in),
                                 lo_s.view(np.uint8), hi_s.view(np.uint8), lo_d.view(np.uint8), hi_d.view(np.uint8)],
                                axis=1)
    if U == 1 or (not g_parts and n_in == 0):
        region_of = np.zeros(U, dtype=np.int64)
    elif not g_parts:
        _, region_of = np.unique(_rows_as_bytes(rows_bytes), return_inverse=True)
        region_of = region_of.reshape(-1)
    else:
        seen: Dict[bytes, int] = {}
        region_of = np.empty(U, dtype=np.int64)
        for u in range(U):
            key = rows_bytes[u].tobytes()
            if u in g_parts:
                G, h, G_s, h_d, h_x = g_parts[u]
                key += b"".join(x.tobytes() for x in (G, h, G_s)) + repr((G.shape, h_d, h_x)).encode()
            region_of[u] = seen.setdefault(key, len(seen))

    # ---- output rows per disjunct ---------------------------------------------------------------------
    live = ~dead
    yr = np.flatnonzero((ny_r > 0) & live[range_conj])
    y_idx, y_conj = _expand(dnf, yr, range_conj[yr])
    keep = is_y[y_idx]
    y_idx, y_conj = y_idx[keep], y_conj[keep]
    n_rows = y_idx.size
    A = np.zeros((n_rows, n_out))
    cnt = nnz[y_idx]
    entries = ragged(atoms.cptr[y_idx], cnt)
    A[np.repeat(np.arange(n_rows), cnt), atoms.cidx[entries]] = atoms.cval[entries]
    bvec = up[y_idx] + 0.0
    svec = atoms.strict[y_idx].copy()
    dvec = atoms.rdir[y_idx].copy()
    any_dir = bool(dvec.any())
    # rows over several outputs with a right-hand side that is not a float64 keep its exact value
    need = (cnt > 1) & (dvec != 0)
    xvec = None
    if need.any():
        xvec = np.full(n_rows, None, dtype=object)
        for r in np.flatnonzero(need).tolist():
            xvec[r] = atoms.exact_value(int(y_idx[r]))
    row_ptr = np.zeros(K + 1, dtype=np.int64)
    np.cumsum(np.bincount(y_conj, minlength=K), out=row_ptr[1:])

    # ---- cases, in order of first appearance ------------------------------------------------------------
    live_k = np.flatnonzero(live)
    if live_k.size == 0:
        return []
    counts = row_ptr[live_k + 1] - row_ptr[live_k]  # rows of live disjuncts are contiguous, in order
    if (counts == counts[0]).all():
        r = int(counts[0])
        shape = (live_k.size, r)
        hss = list(map(Halfspaces, A.reshape(live_k.size, r, n_out), bvec.reshape(shape), svec.reshape(shape),
                       dvec.reshape(shape) if any_dir else repeat(None),
                       map(tuple, xvec.reshape(shape)) if xvec is not None else repeat(None)))
    else:
        hss = [Halfspaces(A[i:j], bvec[i:j], svec[i:j], dvec[i:j] if any_dir else None,
                          tuple(xvec[i:j]) if xvec is not None else None)
               for i, j in zip(row_ptr[live_k].tolist(), row_ptr[live_k + 1].tolist())]
    u_live = sig_of[live_k]
    reg_live = region_of[u_live]
    if reg_live.size == 1:
        regs, first = reg_live, np.zeros(1, dtype=np.int64)
    else:
        regs, first = np.unique(reg_live, return_index=True)
    appearance = np.argsort(first, kind="stable")
    rank = np.empty(int(regs.max()) + 1, dtype=np.int64)
    rank[regs[appearance]] = np.arange(regs.size)
    group = rank[reg_live]
    if (np.diff(group) >= 0).all():
        in_order = hss
        cuts = np.searchsorted(group, np.arange(regs.size + 1)).tolist()
    else:
        perm = np.argsort(group, kind="stable")
        in_order = [hss[i] for i in perm.tolist()]
        cuts = np.searchsorted(group[perm], np.arange(regs.size + 1)).tolist()
    reps = u_live[first[appearance]]
    outs = [in_order[i:j] for i, j in zip(cuts, cuts[1:])]
    lo_any, hi_any = lo_s.any(axis=1)[reps].tolist(), hi_s.any(axis=1)[reps].tolist()
    dl_any, dh_any = lo_d.any(axis=1)[reps].tolist(), hi_d.any(axis=1)[reps].tolist()
    if not (g_parts or any(lo_any) or any(hi_any)):  # the usual: closed boxes only
        if not (any(dl_any) or any(dh_any)):
            return list(map(Case, map(InputRegion, lower[reps], upper[reps]), outs))
        none = repeat(None)
        regions = map(InputRegion, lower[reps], upper[reps], none, none, none, none, none,
                      [d if a else None for d, a in zip(lo_d[reps], dl_any)],
                      [d if a else None for d, a in zip(hi_d[reps], dh_any)])
        return list(map(Case, regions, outs))
    cases = []
    for u, low, high, los, his, lo_a, hi_a, ld, hd, ld_a, hd_a, out in zip(
            reps.tolist(), lower[reps], upper[reps], lo_s[reps], hi_s[reps], lo_any, hi_any,
            lo_d[reps], hi_d[reps], dl_any, dh_any, outs):
        G, h, G_s, h_d, h_x = g_parts.get(u, (None,) * 5)
        cases.append(Case(InputRegion(low, high, G, h, los if lo_a else None, his if hi_a else None, G_s,
                                      ld if ld_a else None, hd if hd_a else None, h_d, h_x), out))
    return cases
