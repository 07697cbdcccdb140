"""Input-split branch and bound: the one search over input boxes, shared by the relaxed and the
exact engine (docs/relaxed.md §3, docs/exact.md §4).

For one case, the rows of all its disjuncts `A y <= b` are one matrix C (`CaseRows`). Boxes are
bounded in batches (`bounds.compute`: the torch CROWN with each child starting from its parent's
intermediate bounds, the numpy CROWN, or auto_LiRPA); a disjunct is dropped for a box and its
sub-boxes once a row refutes it there (`bounds.margin.refutes`), a box is closed when every
disjunct is. For the boxes left open:

* alpha (torch CROWN): the final pass's relaxations (ReLU lower slopes, act slopes, product
  planes: `Crown.optimise`) optimised on each box's rows still open (live disjuncts its CROWN
  bound does not refute); once it costs more than `costly_box_seconds` per box, only while that
  pays (the boxes it closed, each worth `alpha_payoff` CROWN bounds of a box, cover its time)
  and on every `alpha_probe_every`-th batch;
* candidates: every open box's centre and the corner minimising its best open row's linear
  bound, evaluated in ONNX Runtime in one batch; any point in the unsafe set goes through
  `results.sat_outcome`; every `pgd_every` seconds, while it has taken at most `pgd_share` of
  the search's time, the falsifier's PGD runs on the few boxes whose centres come closest to
  the unsafe set;
* a leaf (the exact engine passes one: bounds + MILP on the sub-box) takes a box with at most
  `leaf_unstable` unstable ReLUs, or one too thin to split, with a share of the time left;
* otherwise the box is halved along one free input dim (`heuristic`: slack | smear | width |
  abswidth) and both halves go on the stack (depth first, in batches that grow while a call
  stays short: bounded memory; past `max_open_boxes` boxes, or `max_state_bytes` of their
  intermediate bounds, the search gives up).

Inputs the property fixes (`InputRegion.fixed()`: one ulp wide after outward rounding) are never
split. `unsat` for the case only when every box is closed (by a bound or a leaf); `sat` only
with a replayed witness; otherwise `unknown` / `timeout`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from .. import bounds
from ..bounds.crown import BoxState
from ..deadline import expired, remaining
from ..options import Options
from ..bounds.margin import REFUTE_ABS, REFUTE_REL
from ..results import Outcome, Verdict, sat_outcome
from .falsify import FalsifyStats, padded_spec, pgd_search


@dataclass
class CaseRows:
    """All rows of a case's disjuncts: C (R, n_out), b (R,), owner (R,) = disjunct index."""

    C: np.ndarray
    b: np.ndarray
    owner: np.ndarray
    n_disjuncts: int
    empty_disjunct: bool  # a disjunct with no rows (every output unsafe): never refutable

    @staticmethod
    def of(case, n_outputs: int) -> "CaseRows":
        Cs, bs, own = [], [], []
        empty = False
        for k, hs in enumerate(case.output):
            if hs.rows == 0:
                empty = True
            Cs.append(np.asarray(hs.A, dtype=np.float64).reshape(-1, n_outputs))
            bs.append(np.asarray(hs.b, dtype=np.float64).reshape(-1))
            own.append(np.full(hs.rows, k))
        C = np.concatenate(Cs, axis=0) if Cs else np.zeros((0, n_outputs))
        b = np.concatenate(bs) if bs else np.zeros(0)
        owner = np.concatenate(own).astype(np.int64) if own else np.zeros(0, np.int64)
        rows = CaseRows(C, b, owner, len(case.output), empty)
        if not rows.C.shape[0]:  # bounding needs at least one row: a zero row with b = +inf never refutes
            rows = CaseRows(np.zeros((1, n_outputs)), np.array([np.inf]), np.array([-1]), rows.n_disjuncts, empty)
        return rows

    def refuted(self, lower: np.ndarray, alive: Optional[np.ndarray] = None) -> np.ndarray:
        """(K, n_disjuncts) bool: disjuncts some row of which `lower` (K, R) refutes (or already dead)."""
        row_ok = bounds.refutes(lower, self.b[None, :])
        out = np.zeros((row_ok.shape[0], self.n_disjuncts), dtype=bool)
        for k in range(self.n_disjuncts):
            sel = self.owner == k
            if sel.any():
                out[:, k] = row_ok[:, sel].any(axis=1)
        return out if alive is None else out | ~alive

    def closed(self, dead: np.ndarray) -> np.ndarray:
        """(K,) boxes on which every disjunct is refuted (never when a disjunct has no rows)."""
        return dead.all(axis=1) & (not self.empty_disjunct)


def pop_batch(stack: list, batch: int):
    """Up to `batch` entries off the top of a stack of batched containers (`_Boxes`, the smooth
    split's domains: `len`, `take(indices)`, `cat(parts)`), the rest of the last part pushed
    back (depth first: bounded memory)."""
    parts = [stack.pop()]
    have = len(parts[0])
    while have < batch and stack:
        parts.append(stack.pop())
        have += len(parts[-1])
    out = type(parts[0]).cat(parts)
    if len(out) > batch:
        stack.append(out.take(np.arange(batch, len(out))))
        out = out.take(np.arange(batch))
    return out


def clip_boxes(lo: np.ndarray, hi: np.ndarray, A: np.ndarray, lower: np.ndarray, rows: CaseRows,
               alive: np.ndarray, dims: np.ndarray, rounds: int = 2) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input-domain clipping (docs/relaxed.md §3): each box [lo, hi] (K, n) shrunk to the part
    where an open disjunct can still hold according to its rows' linear lower bounds.

    `A` (K, R, n) and `lower` (K, R) are a CROWN pass's coefficients and (widened) lower bounds
    over these boxes, `lower` being the bound's own value over the box: row r's linear bound is
    L(x) = A x + c with c = lower - sum_j min(A_j lo_j, A_j hi_j) (a little below the bound's real
    constant, by the widening), and L(x) <= (C f(x))_r on the box. Where L(x) > b_r + tol, the row
    (so its disjunct) is refuted at x; tol = REFUTE_ABS + REFUTE_REL (|b| + the magnitude of L's
    terms over the box) is at least the margin rule's and covers the float64 rounding of this
    computation (~1e-16 per operation of that magnitude) by orders of magnitude. Per row, per
    free dim j in `dims` (a half-space over a box): A_j x_j <= b + tol - c - sum_{i != j}
    min(A_i x_i) bounds x_j on one side; a disjunct's rows are applied one after another on the
    shrinking box (`rounds` passes), and a disjunct whose box empties is refuted on the whole box.
    The result is the bounding box of the live disjuncts' boxes.

    Returns (lo, hi, alive): the clipped boxes and the disjuncts still open (alive & not emptied);
    a box with no disjunct left is refuted. Never widens a box."""
    lo = lo.astype(np.float64, copy=True)
    hi = hi.astype(np.float64, copy=True)
    alive = alive.copy()
    K = lo.shape[0]
    if rows.empty_disjunct or not K:
        return lo, hi, alive
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        mins = np.minimum(A * lo[:, None, :], A * hi[:, None, :])
        c = lower - mins.sum(axis=2)  # (K, R)
        mag = np.abs(c) + (np.abs(A) * np.maximum(np.abs(lo), np.abs(hi))[:, None, :]).sum(axis=2)
        tol = REFUTE_ABS + REFUTE_REL * (np.abs(rows.b)[None, :] + mag)
        usable = np.isfinite(c) & np.isfinite(mag) & np.isfinite(A).all(axis=2) & np.isfinite(rows.b)[None, :]
        t = rows.b[None, :] + tol - c  # (K, R): keep A x <= t
    Ad = A[:, :, dims]
    new_lo = np.full_like(lo, np.inf)
    new_hi = np.full_like(hi, -np.inf)
    for d in range(rows.n_disjuncts):
        sel = np.flatnonzero(rows.owner == d)
        live = alive[:, d].copy()
        if not sel.size or not live.any():
            continue
        dlo, dhi = lo.copy(), hi.copy()
        for _ in range(rounds):
            for r in sel:
                ok = live & usable[:, r] & ~(dlo > dhi).any(axis=1)
                if not ok.any():
                    continue
                a = A[:, r, :]
                with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                    m = np.minimum(a * dlo, a * dhi)
                    total = m.sum(axis=1)
                    aj = Ad[:, r, :]
                    s = t[:, r:r + 1] - (total[:, None] - m[:, dims])  # A_j x_j <= s_j
                    x = s / aj
                    cur_lo, cur_hi = dlo[:, dims], dhi[:, dims]
                    up = ok[:, None] & (aj > 0) & np.isfinite(x)
                    down = ok[:, None] & (aj < 0) & np.isfinite(x)
                    dhi[:, dims] = np.where(up, np.minimum(cur_hi, x), cur_hi)
                    dlo[:, dims] = np.where(down, np.maximum(cur_lo, x), cur_lo)
                    # no point of the box meets the row (s_j < min A_j x_j for every j)
                    none = ok & (total > t[:, r])
                dlo[none] = np.inf
                dhi[none] = -np.inf
        empty = (dlo > dhi).any(axis=1)
        alive[:, d] &= ~empty
        keep = alive[:, d]
        new_lo[keep] = np.minimum(new_lo[keep], dlo[keep])
        new_hi[keep] = np.maximum(new_hi[keep], dhi[keep])
    any_alive = alive.any(axis=1)
    out_lo = np.where(any_alive[:, None], np.maximum(lo, new_lo), lo)
    out_hi = np.where(any_alive[:, None], np.minimum(hi, new_hi), hi)
    return out_lo, out_hi, alive


@dataclass
class InputSplitStats:
    """What one search did (summed over the cases of an engine run)."""

    boxes: int = 0  # boxes bounded
    bound_seconds: float = 0.0
    alpha_seconds: float = 0.0
    alpha_refuted: int = 0  # boxes alpha closed after CROWN left them open
    alpha_skipped: int = 0  # batches left to CROWN alone (alpha did not pay: `alpha_payoff`)
    pgd_seconds: float = 0.0
    candidates: int = 0  # points evaluated in ONNX Runtime
    pgd_calls: int = 0
    splits: int = 0
    max_depth: int = 0
    leaves: int = 0  # boxes handed to the leaf (exact: the MILP)
    leaf_unsat: int = 0
    unresolved: int = 0  # boxes too thin to split that nothing decided
    gave_up_open: int = 0  # open boxes when the memory bound stopped the search (0: it did not)
    clipped: int = 0  # open boxes that input-domain clipping shrank
    clip_refuted: int = 0  # boxes it closed (every disjunct's clipped box empty)
    rebounds: int = 0  # boxes it shrank enough to be bounded again whole instead of split (`clip_rebound`)


class Pace:
    """What decides when a search runs alpha and PGD: its batches, alpha's seconds, boxes and
    closed boxes, the stats' bound figures and PGD seconds at its start, its start and last PGD.
    One per search, or one shared by the searches `split_cases` runs side by side (then alpha's
    payoff and PGD's share of the time are judged over all of them, and alpha's probe comes once
    in `alpha_probe_every` rounds of them all)."""

    def __init__(self, st: "InputSplitStats"):
        self.batches, self.alpha_s, self.alpha_boxes, self.alpha_closed = 0, 0.0, 0, 0
        self.bound_s0, self.boxes0, self.pgd_s0 = st.bound_seconds, st.boxes, st.pgd_seconds
        self.last_pgd = self.t_start = time.monotonic()
        self.searches = 1  # searches sharing it (alpha's probe: one batch in alpha_probe_every x this)
        self.alpha_in_flight = 0  # alpha requests asked and not yet answered


class _Boxes:
    """Open boxes: lo/hi (K, n) float64, alive (K, n_disjuncts), depth (K,), optional bounds state."""

    def __init__(self, lo, hi, alive, depth, state: Optional[BoxState]):
        self.lo, self.hi, self.alive, self.depth, self.state = lo, hi, alive, depth, state

    def __len__(self) -> int:
        return self.lo.shape[0]

    def take(self, idx) -> "_Boxes":
        return _Boxes(self.lo[idx], self.hi[idx], self.alive[idx], self.depth[idx],
                      None if self.state is None else self.state.take(idx))

    @staticmethod
    def cat(parts: List["_Boxes"]) -> "_Boxes":
        if len(parts) == 1:
            return parts[0]
        state = None if parts[0].state is None else BoxState.cat([p.state for p in parts])
        return _Boxes(*[np.concatenate([getattr(p, f) for p in parts]) for f in ("lo", "hi", "alive", "depth")], state)


# a leaf: (lo, hi, open disjuncts, deadline) -> (verdict, sat outcome or None)
Leaf = Callable[[np.ndarray, np.ndarray, np.ndarray, float], Tuple[Verdict, Optional[Outcome]]]


class InputSplit:
    """Input-split branch and bound for case `ci` of `spec` (see the module docstring).

    `graph`: what `bounds.compute` bounds with (`bounds.prepare(...)` or `bounds.prepare_lirpa(...)`),
    `method` its method ("crown" for ours; "lirpa-*" for auto_LiRPA's)."""

    def __init__(self, network, spec, ci: int, graph, method: str, options: Options, deadline: float,
                 stats: InputSplitStats, engine: str, leaf: Optional[Leaf] = None, pace: Optional[Pace] = None,
                 forward_only: bool = False):
        self.network, self.spec, self.ci = network, spec, ci
        self.pace = pace
        self.forward_only = forward_only  # `bounds.compute(forward_only=)` for the boxes' CROWN bounds
        self.case = spec.cases[ci]
        self.rows = CaseRows.of(self.case, spec.n_outputs)
        self.graph, self.method = graph, method
        self.options, self.o = options, options.input_split
        self.deadline, self.stats, self.engine, self.leaf = deadline, stats, engine, leaf
        self.rng = np.random.default_rng(options.seed + ci)
        reg = self.case.region
        self.lo0, self.hi0 = reg.lower.astype(np.float64), reg.upper.astype(np.float64)
        self.free = ~reg.fixed()
        self.free_dims = np.flatnonzero(self.free)
        self.width0 = np.where(self.hi0 > self.lo0, self.hi0 - self.lo0, 1.0)
        self.ours = isinstance(graph, bounds.Crown)
        self.torch = self.ours and graph.backend == "torch"
        self.heuristic = self.o.heuristic
        # clipping reads the bound's linear function off (A, lower): only our CROWN's lower bound
        # is exactly that function's minimum over the box (auto_LiRPA's may be intersected with others)
        self.clip = self.o.clip and self.ours
        self.max_open = self.o.max_open_boxes

    # ---- candidates -> witness ---------------------------------------------------------------------
    def try_points(self, xs: np.ndarray) -> Optional[Outcome]:
        if not xs.shape[0]:
            return None
        xs = self.case.region.snap_input(xs, self.network.input_dtype)
        ys = self.network.evaluate(xs).astype(np.float64)
        self.stats.candidates += xs.shape[0]
        for i in np.flatnonzero(self.case.unsafe(ys))[:self.options.attack.replays_per_round]:
            out = sat_outcome(self.network, self.spec, xs[i], engine=self.engine,
                              detail="witness found during input splitting, replayed with ONNX Runtime on the original model")
            if out is not None:
                return out
        return None

    def _violation(self, xs: np.ndarray) -> np.ndarray:
        ys = self.network.evaluate(xs).astype(np.float64)
        return np.stack([hs.violation(ys) for hs in self.case.output], axis=1).min(axis=1)

    def _pgd(self, lo, hi, alive) -> Optional[Outcome]:
        """The falsifier's PGD on the few open boxes whose centres come closest to the unsafe set."""
        from ..errors import VnncertError
        from ..spec.model import Case, InputRegion, Spec

        try:
            self.network.torch_module()
        except VnncertError:  # no torch conversion of an op of the network: candidates only
            return None
        k = min(self.o.pgd_boxes, lo.shape[0])
        pick = np.argsort(self._violation((lo + hi) / 2))[:k]
        m = max(1, max(hs.rows for hs in self.case.output))
        cases = []
        for i in pick:
            outs = [hs for d, hs in enumerate(self.case.output) if alive[i, d]] or list(self.case.output)
            cases.append(Case(InputRegion(lo[i].copy(), hi[i].copy()), outs))
        sub = padded_spec(Spec(self.spec.n_inputs, self.spec.n_outputs, cases), m)
        o = self.options.attack
        from dataclasses import replace

        self.stats.pgd_calls += 1
        out = pgd_search(self.network, sub, self.deadline, replace(o, pgd_restarts=self.o.pgd_restarts, pgd_steps=self.o.pgd_steps),
                         self.rng, list(range(len(cases))), FalsifyStats(), seconds=self.o.pgd_seconds or None)
        if out is None:
            return None
        return sat_outcome(self.network, self.spec, out.counterexample[0], engine=self.engine,
                           detail="PGD witness in a sub-box during input splitting, replayed with ONNX Runtime")

    # ---- bounds ------------------------------------------------------------------------------------
    def _bound(self, boxes: _Boxes) -> "BoundRequest":
        K = len(boxes)
        C = np.broadcast_to(self.rows.C[None], (K,) + self.rows.C.shape).copy()
        want_scores = self.heuristic == "slack" and self.ours
        return BoundRequest(boxes.lo, boxes.hi, C, self.method, parent=boxes.state, want_A=True,
                            want_scores=want_scores, want_state=self.ours,
                            score_dims=self.free_dims if want_scores else None, forward_only=self.forward_only)

    def root_request(self) -> "BoundRequest":
        """The search's first request (its case's box), for a caller that bounds many cases' first
        boxes at once and hands the results over (`split_cases(first=)`)."""
        return self._bound(_Boxes(self.lo0[None].copy(), self.hi0[None].copy(), np.ones((1, self.rows.n_disjuncts), bool),
                                  np.zeros(1, np.int64), None))

    def _alpha(self, lo, hi, state: BoxState, lower: np.ndarray, alive: np.ndarray):
        """`lower` (K, R) raised by alpha on the rows still open: each box's rows of live disjuncts
        its bound does not refute yet (gathered per box, padded with a copy of one of them). A
        generator: it yields its one `BoundRequest` and returns the raised bounds and its seconds."""
        rows = self.rows
        live = np.where(rows.owner[None, :] >= 0, alive[:, np.maximum(rows.owner, 0)], False)
        need = live & ~bounds.refutes(lower, rows.b[None, :])
        counts = need.sum(axis=1)
        U = int(counts.max()) if counts.size else 0
        if U == 0:
            return lower, 0.0
        order = np.argsort(~need, axis=1, kind="stable")[:, :U]  # the open rows first
        order = np.where(np.arange(U)[None, :] < counts[:, None], order, order[:, :1])
        C = rows.C[order]  # (K, U, n_out)
        req = BoundRequest(lo, hi, C, "alpha", intermediate=state)
        la = (yield req).lower
        out = lower.copy()
        K = lower.shape[0]
        r = np.repeat(np.arange(K)[:, None], U, axis=1)
        np.maximum.at(out, (r, order), la)
        return out, req.seconds

    # ---- the search --------------------------------------------------------------------------------
    def run(self) -> Tuple[Optional[Outcome], str]:
        """(sat outcome or None, 'refuted' | 'unknown' | 'timeout')."""
        steps = self.steps()
        try:
            req = next(steps)
            while True:
                req = steps.send(req.compute(self.graph, self.options.bounds, self.deadline))
        except StopIteration as stop:
            return stop.value
        except bounds.Expired:  # a bound pass stopped at the deadline
            return None, "timeout"

    def steps(self):
        """The search as a generator: it yields each `BoundRequest` and is sent its `bounds.Result`
        (`run` computes them one by one; `split_cases` batches many searches' requests into one
        call); it returns (sat outcome or None, 'refuted' | 'unknown' | 'timeout')."""
        rows, st, o = self.rows, self.stats, self.o
        stack: List[_Boxes] = [_Boxes(self.lo0[None].copy(), self.hi0[None].copy(), np.ones((1, rows.n_disjuncts), bool),
                                      np.zeros(1, np.int64), None)]
        n_open = 1
        batch = o.batch
        pace = self.pace if self.pace is not None else Pace(st)
        while n_open:
            if expired(self.deadline):
                return None, "timeout"
            per_box = stack[-1].state.bytes_per_box if stack[-1].state is not None else 0
            if n_open > min(self.max_open, o.max_state_bytes // max(1, per_box)):
                st.gave_up_open = n_open
                return None, "unknown"
            boxes = pop_batch(stack, batch)
            K = len(boxes)
            n_open -= K
            req = self._bound(boxes)
            r = yield req
            dt = req.seconds
            st.boxes += K
            st.bound_seconds += dt
            st.max_depth = max(st.max_depth, int(boxes.depth.max()))
            # grow the batch while one call stays short (deadline checks happen between calls)
            if dt < o.batch_fast and batch < o.batch_max:
                batch *= 2
            elif dt > o.batch_slow and batch > o.batch_min:
                batch //= 2
            dead = rows.refuted(r.lower, boxes.alive)
            idx = np.flatnonzero(~rows.closed(dead))
            if not idx.size:
                continue
            op = boxes.take(idx)
            op.alive = ~dead[idx]
            olb, oA = r.lower[idx], (r.A[idx] if r.A is not None else None)
            oS = r.scores[idx] if r.scores is not None else None
            unstable = r.unstable[idx] if r.unstable is not None else None
            op.state = r.state.take(idx) if r.state is not None else None
            # input-domain clipping: each open box shrunk to where an open disjunct's rows' linear
            # lower bounds (CROWN's, before alpha changes the bound) still allow the unsafe set
            if self.clip and oA is not None:
                lo2, hi2, alive2 = clip_boxes(op.lo, op.hi, oA, olb, rows, op.alive, self.free_dims)
                st.clipped += int(((lo2 > op.lo) | (hi2 < op.hi)).any(axis=1).sum())
                again = self._rebound(op.lo, op.hi, lo2, hi2)
                op.lo, op.hi, op.alive = lo2, hi2, alive2
                gone = rows.closed(~alive2)
                again &= ~gone
                if again.any():  # shrunk at least as much as a split would: bounded again whole (from its state)
                    st.rebounds += int(again.sum())
                    stack.append(op.take(np.flatnonzero(again)))
                    n_open += int(again.sum())
                if gone.any() or again.any():
                    st.clip_refuted += int(gone.sum())
                    keep = np.flatnonzero(~gone & ~again)
                    op, olb = op.take(keep), olb[keep]
                    oA = oA[keep]
                    oS = oS[keep] if oS is not None else None
                    unstable = unstable[keep] if unstable is not None else None
                    if not len(op):
                        continue
            # alpha: the final pass's lower slopes, on the boxes CROWN left open; once it costs
            # more than `costly_box_seconds` per box, only while it pays (the boxes it closed, each
            # worth `alpha_payoff` CROWN bounds, cover its time) and on every
            # `alpha_probe_every`-th batch
            pace.batches += 1
            use_alpha = self.torch and self.options.bounds.alpha_iters > 0 and op.state is not None
            if use_alpha and pace.batches % max(1, o.alpha_probe_every * pace.searches) \
                    and pace.alpha_s > o.costly_box_seconds * pace.alpha_boxes:
                per_box = (st.bound_seconds - pace.bound_s0) / max(1, st.boxes - pace.boxes0)
                if pace.alpha_closed * o.alpha_payoff * per_box < pace.alpha_s:
                    use_alpha = False
                    st.alpha_skipped += 1
            if use_alpha and pace.alpha_boxes == 0 and pace.alpha_in_flight:
                use_alpha = False  # (searches side by side: one measures alpha's cost before the others run it)
                st.alpha_skipped += 1
            if use_alpha:
                pace.alpha_in_flight += 1
                olb, dt = yield from self._alpha(op.lo, op.hi, op.state, olb, op.alive)
                pace.alpha_in_flight -= 1
                pace.alpha_s += dt
                pace.alpha_boxes += len(op)
                st.alpha_seconds += dt
                dead2 = rows.refuted(olb, op.alive)
                still = ~rows.closed(dead2)
                pace.alpha_closed += int((~still).sum())
                st.alpha_refuted += int((~still).sum())
                if not still.all():
                    keep = np.flatnonzero(still)
                    op, olb = op.take(keep), olb[keep]
                    dead2 = dead2[keep]
                    oA = oA[keep] if oA is not None else None
                    oS = oS[keep] if oS is not None else None
                    unstable = unstable[keep] if unstable is not None else None
                    if not len(op):
                        continue
                op.alive = ~dead2
            # cheap candidates: centres and the corners minimising the open rows' linear lower bounds
            cands = [(op.lo + op.hi) / 2]
            if oA is not None:
                a = oA[np.arange(len(op)), self._best_open_rows(olb, op.alive)]
                cands.append(np.where(a > 0, op.lo, op.hi))
            out = self.try_points(np.concatenate(cands))
            if out is not None:
                return out, "sat"
            if (o.pgd_every > 0 and time.monotonic() - pace.last_pgd > o.pgd_every and remaining(self.deadline) > 1.0
                    and st.pgd_seconds - pace.pgd_s0 <= o.pgd_share * (time.monotonic() - pace.t_start)):
                t1 = time.monotonic()
                out = self._pgd(op.lo, op.hi, op.alive)
                pace.last_pgd = time.monotonic()
                st.pgd_seconds += pace.last_pgd - t1
                if out is not None:
                    return out, "sat"
            splittable = ((op.hi - op.lo) * self.free > o.min_width).any(axis=1)
            # leaves: few unstable ReLUs left, or too thin to split
            if self.leaf is not None:
                small = ~splittable if unstable is None else (~splittable | (unstable <= o.leaf_unstable))
                decided = np.zeros(len(op), bool)
                for j in np.flatnonzero(small):
                    if expired(self.deadline):
                        return None, "timeout"
                    st.leaves += 1
                    budget = max(o.min_leaf_seconds, remaining(self.deadline) / (n_open + len(op) + 1))
                    verdict, leaf_out = self.leaf(op.lo[j], op.hi[j], np.flatnonzero(op.alive[j]),
                                                  min(self.deadline, time.monotonic() + budget))
                    if verdict == Verdict.SAT and leaf_out is not None:
                        return leaf_out, "sat"
                    if verdict == Verdict.UNSAT:
                        st.leaf_unsat += 1
                        decided[j] = True
                if decided.any():
                    keep = np.flatnonzero(~decided)
                    op, olb, splittable = op.take(keep), olb[keep], splittable[keep]
                    oA = oA[keep] if oA is not None else None
                    oS = oS[keep] if oS is not None else None
            if not splittable.all():
                st.unresolved += int((~splittable).sum())
                keep = np.flatnonzero(splittable)
                op, olb = op.take(keep), olb[keep]
                oA = oA[keep] if oA is not None else None
                oS = oS[keep] if oS is not None else None
            if not len(op):
                continue
            score = self._split_scores(op.lo, op.hi, op.alive, olb, oA, oS)
            dim = score.argmax(axis=1)
            k = len(op)
            mid = (op.lo[np.arange(k), dim] + op.hi[np.arange(k), dim]) / 2
            left_hi = op.hi.copy()
            left_hi[np.arange(k), dim] = mid
            right_lo = op.lo.copy()
            right_lo[np.arange(k), dim] = mid
            stack.append(_Boxes(np.concatenate([op.lo, right_lo]), np.concatenate([left_hi, op.hi]),
                                np.concatenate([op.alive, op.alive]), np.concatenate([op.depth, op.depth]) + 1,
                                None if op.state is None else op.state.repeat2()))
            n_open += 2 * k
            st.splits += k
        if st.unresolved:
            return None, "unknown"
        return None, "refuted"

    def _rebound(self, lo, hi, lo2, hi2) -> np.ndarray:
        """(K,) the boxes that clipping shrank to at most `clip_rebound` of their volume over the
        free dims still splittable (wider than `min_width`): bounded again whole instead of split.
        A split halves the volume with two boxes; such a box is one box of at most that volume
        (its bounds then start from its own intermediate bounds). Each time at least halves that
        volume, so a box is bounded again at most ~log2(width / min_width) times per dim."""
        f = self.o.clip_rebound
        K = lo.shape[0]
        if not f > 0 or not K:
            return np.zeros(K, bool)
        w = (hi - lo)[:, self.free_dims]
        w2 = np.maximum(hi2 - lo2, 0.0)[:, self.free_dims]
        wide = w > self.o.min_width
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(wide, w2 / np.where(wide, w, 1.0), 1.0)
        return wide.any(axis=1) & (ratio.prod(axis=1) <= f) & (lo2 <= hi2).all(axis=1)

    def _best_open_rows(self, lb: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Per box, the row of an open disjunct whose bound is closest to refuting it."""
        rows = self.rows
        gap = lb - rows.b[None, :]
        row_alive = alive[:, np.clip(rows.owner, 0, None)] & (rows.owner[None, :] >= 0)
        gap = np.where(row_alive, gap, -np.inf)
        return gap.argmax(axis=1)

    def _split_scores(self, lo, hi, alive, lb, lA, slack=None) -> np.ndarray:
        """Per open box, a score per input dim (K, n): the best is halved, -inf for a dim that
        cannot be (docs/relaxed.md compares the heuristics).

        slack: where the relaxation's looseness comes from (our CROWN: the triangle gap of every
               unstable neuron, weighted by the row's back-substituted coefficients and shared out
               over the input dims the neuron depends on; `slack` is over the free dims; without
               it, as with auto_LiRPA, width);
        smear: |coefficient of the linear lower bound| x width;
        width: width relative to the case's box; abswidth: absolute width."""
        w = (hi - lo) * self.free
        min_width = self.o.min_width
        per_row = None
        if self.heuristic == "slack" and slack is not None:
            per_row = np.zeros(slack.shape[:2] + (w.shape[1],))
            per_row[..., self.free_dims] = slack
        elif self.heuristic == "smear" and lA is not None:
            per_row = np.abs(lA) * w[:, None, :]
        if per_row is not None:
            # sum over the open disjuncts of their best row's scores
            rows = self.rows
            gap = lb - rows.b[None, :]
            row_alive = alive[:, np.clip(rows.owner, 0, None)] & (rows.owner[None, :] >= 0)
            score = np.zeros_like(w)
            k = np.arange(lo.shape[0])
            for d in range(rows.n_disjuncts):
                sel = np.flatnonzero(rows.owner == d)
                if not sel.size:
                    continue
                g = np.where(row_alive[:, sel], gap[:, sel], -np.inf)
                best = sel[g.argmax(axis=1)]
                score += np.where(alive[:, d:d + 1], per_row[k, best], 0.0)
            score = np.where(w > min_width, score, 0.0)
            flat = ~(score.max(axis=1) > 0)
            if flat.any():  # nothing to go on (no unstable neuron, zero coefficients): widest dim
                score[flat] = (w / self.width0)[flat]
        elif self.heuristic == "abswidth":
            score = w.copy()
        else:
            score = w / self.width0
        return np.where(w > min_width, score, -np.inf)


def split_case(network, spec, ci: int, graph, method: str, options: Options, deadline: float,
               stats: InputSplitStats, engine: str, leaf: Optional[Leaf] = None) -> Tuple[Optional[Outcome], str]:
    """`InputSplit(...).run()`: (sat outcome or None, 'refuted' | 'unknown' | 'timeout')."""
    return InputSplit(network, spec, ci, graph, method, options, deadline, stats, engine, leaf).run()


def split_cases(network, spec, cases: List[int], graph, method: str, options: Options, deadline: float,
                stats: InputSplitStats, engine: str, leaf: Optional[Leaf] = None,
                forward_only: bool = False, first: Optional[dict] = None) -> Tuple[Optional[Outcome], str]:
    """The input-split searches of many cases at once: up to `InputSplitOptions.cases_at_once`
    searches (`InputSplit.steps`, in the order of `cases`) run side by side, and each round their
    bound requests of one kind are one `bounds.compute` call (`BoundRequest.joint`: boxes of
    several cases in one CROWN pass, at most `batch_max` boxes a call). A search that ends makes
    room for the next case. Returns (the first sat outcome, 'sat') as soon as one is found, (None,
    'timeout') at the deadline, else (None, 'refuted') when every case was refuted, (None,
    'unknown') otherwise. `forward_only`: the searches' CROWN bounds with forward-only intermediate
    bounds (`bounds.compute`). `first`: case -> (the result of its search's first request
    (`InputSplit.root_request`), its seconds), already computed (the relaxed engine's first bounds)."""
    o = options.input_split
    queue = list(cases)
    pace = Pace(stats)
    active: List[Tuple[object, "BoundRequest"]] = []
    verdicts: List[str] = []

    def advance(steps, result) -> Optional[Tuple[Optional[Outcome], str]]:
        """Send a result (None: start) and keep the search's next request; its end when it ended."""
        try:
            req = next(steps) if result is None else steps.send(result)
        except StopIteration as stop:
            return stop.value
        active.append((steps, req))
        return None

    def ended(end) -> Optional[Tuple[Optional[Outcome], str]]:
        out, status = end
        if out is not None or status in ("sat", "timeout"):
            return out, status
        verdicts.append(status)
        return None

    try:
        while queue or active:
            while queue and len(active) < max(1, o.cases_at_once):
                ci = queue.pop(0)
                steps = InputSplit(network, spec, ci, graph, method, options, deadline, stats, engine, leaf, pace,
                                   forward_only).steps()
                end = advance(steps, None)
                if end is None and first is not None and ci in first:  # its first request: answered already
                    steps, req = active.pop()
                    result, req.seconds = first[ci]
                    end = advance(steps, result)
                if end is not None:
                    stop = ended(end)
                    if stop is not None:
                        return stop
            if not active:
                continue
            pace.searches = len(active)
            if expired(deadline):
                return None, "timeout"
            pending, active[:] = list(active), []
            groups: dict = {}
            for steps, req in pending:
                groups.setdefault(req.kind, []).append((steps, req))
            for members in groups.values():
                # a call of at most batch_max boxes (each search's own batch is at most that)
                calls, cur, size = [], [], 0
                for m in members:
                    if cur and size + len(m[1]) > o.batch_max:
                        calls.append(cur)
                        cur, size = [], 0
                    cur.append(m)
                    size += len(m[1])
                calls.append(cur)
                for call in calls:
                    results = BoundRequest.joint([req for _, req in call], graph, options.bounds, deadline)
                    for (steps, _), r in zip(call, results):
                        end = advance(steps, r)
                        if end is not None:
                            stop = ended(end)
                            if stop is not None:
                                return stop
    except bounds.Expired:
        return None, "timeout"
    if all(v == "refuted" for v in verdicts):
        return None, "refuted"
    return None, "unknown"


class BoundRequest:
    """One `bounds.compute` call a search asks for (`InputSplit.steps` yields them): boxes (K, n),
    rows C (K, R, n_out), the method and the flags; `joint` computes several in one call."""

    def __init__(self, lo, hi, C, method: str, parent: Optional[BoxState] = None,
                 intermediate: Optional[BoxState] = None, want_A: bool = False, want_scores: bool = False,
                 want_state: bool = False, score_dims: Optional[np.ndarray] = None, forward_only: bool = False):
        self.lo, self.hi, self.C, self.method = lo, hi, C, method
        self.forward_only = forward_only
        self.parent, self.intermediate = parent, intermediate
        self.want_A, self.want_scores, self.want_state = want_A, want_scores, want_state
        self.score_dims = score_dims
        self.seconds = 0.0  # its share of the call that computed it (by boxes)

    def __len__(self) -> int:
        return self.lo.shape[0]

    @property
    def kind(self) -> tuple:
        """Requests of one kind can share a call."""
        return (self.method, self.parent is None, self.intermediate is None, self.want_A, self.want_scores,
                self.want_state, self.forward_only)

    def compute(self, graph, options, deadline: float):
        t0 = time.monotonic()
        try:
            return self._compute(graph, options, deadline)
        finally:
            self.seconds = time.monotonic() - t0

    def _compute(self, graph, options, deadline: float):
        return bounds.compute(graph, self.lo, self.hi, self.C, self.method, parent=self.parent,
                              intermediate=self.intermediate, want_A=self.want_A, want_scores=self.want_scores,
                              want_state=self.want_state, score_dims=self.score_dims, options=options,
                              deadline=deadline, forward_only=self.forward_only)

    @staticmethod
    def joint(reqs: List["BoundRequest"], graph, options, deadline: float) -> List[bounds.Result]:
        """The results of requests of one kind from one `bounds.compute` call: boxes concatenated,
        rows padded with zero rows to the most any request has, the split scores over the union of
        their dims; each result cut back to its request's boxes, rows and dims."""
        if len(reqs) == 1:
            return [reqs[0].compute(graph, options, deadline)]
        R = max(r.C.shape[1] for r in reqs)
        C = np.concatenate([np.pad(r.C, ((0, 0), (0, R - r.C.shape[1]), (0, 0))) for r in reqs])
        first = reqs[0]
        dims = None
        if first.want_scores and first.score_dims is not None:
            dims = np.unique(np.concatenate([np.asarray(r.score_dims, np.int64) for r in reqs]))
        state = lambda name: None if getattr(first, name) is None else BoxState.cat([getattr(r, name) for r in reqs])
        t0 = time.monotonic()
        res = bounds.compute(graph, np.concatenate([r.lo for r in reqs]), np.concatenate([r.hi for r in reqs]), C,
                             first.method, parent=state("parent"), intermediate=state("intermediate"),
                             want_A=first.want_A, want_scores=first.want_scores, want_state=first.want_state,
                             score_dims=dims, options=options, deadline=deadline, forward_only=first.forward_only)
        dt = time.monotonic() - t0
        total = sum(len(r) for r in reqs)
        out, at = [], 0
        for r in reqs:
            K, Rr = len(r), r.C.shape[1]
            r.seconds = dt * K / max(1, total)
            sl = slice(at, at + K)
            at += K
            scores = None
            if res.scores is not None:
                scores = res.scores[sl, :Rr]
                if dims is not None:
                    scores = scores[..., np.searchsorted(dims, np.asarray(r.score_dims, np.int64))]
            out.append(bounds.Result(res.lower[sl, :Rr], None if res.A is None else res.A[sl, :Rr], scores,
                                     None if res.state is None else res.state.rows(sl.start, sl.stop),
                                     None if res.unstable is None else res.unstable[sl]))
        return out
