"""Branch and bound over smooth activations: split the input interval of an act neuron (Sigmoid,
Tanh, Sin, Cos, Exp, ...) or of a product's factor, and, where the case has at most
`InputSplitOptions.max_dims` free input dims, an input dim (issue 20 item 3; docs/relaxed.md §3).

A domain is an input box with the intermediate bounds of its affine layers (`BoxState`), some of
them narrowed by splits: splitting neuron i of affine layer k (read by an act or product layer)
at a point m gives two domains, one with z_ki in [l, m], one with z_ki in [m, u]; together they
cover the parent. Each domain is bounded by our CROWN with the narrowed bounds as its parent
bounds (`Crown.intermediate(parent=...)`: every later layer is bounded again, intersected with
them), so the act's relaxation is the tighter one of its piece and every layer after it gains:
sound for the set {x in the box : z_ki(x) in the piece}, and the two sets cover the parent's.
A domain whose bounds cross (some lower bound above its upper bound) is empty and closed.

Choice (per domain, over the best row of each open disjunct): every act neuron's score is the
back-substituted coefficient's magnitude times its relaxation's gap at the midpoint of its
interval (`Pass.gaps`; a product: the McCormick gap (ux - lx)(uy - ly) / 4, the wider factor
split); an input dim's is the input-split score (the looseness shared out over the input dims).
The largest wins. An S-shaped function (Sigmoid, Tanh, Erf) whose interval holds its inflection
point well inside is split there (each piece then convex or concave: its relaxation is the
chord and a tangent), anything else at the midpoint.

`unsat` for the case when every domain is closed; `sat` only with a replayed witness (each
domain's centre and its worst row's minimising corner are evaluated in ONNX Runtime); else
`unknown` / `timeout`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .. import bounds
from ..bounds.crown import BoxState, Crown
from ..bounds.margin import widen_lower
from ..deadline import expired
from ..options import Options
from ..results import Outcome, sat_outcome
from .input_split import CaseRows, pop_batch


@dataclass
class SmoothSplitStats:
    """What the search did (summed over the cases of an engine run)."""

    domains: int = 0  # domains bounded
    act_splits: int = 0  # splits of an act neuron's (or a product factor's) interval
    input_splits: int = 0
    empty: int = 0  # domains whose bounds crossed (closed)
    candidates: int = 0  # points evaluated in ONNX Runtime
    max_depth: int = 0
    bound_seconds: float = 0.0
    alpha_seconds: float = 0.0  # of which alpha-CROWN (the root's rows; open domains' final rows)
    gave_up_open: int = 0  # open domains when the memory bound stopped the search (0: it did not)


class _Domains:
    """Open domains: boxes, live disjuncts, depth, intermediate bounds (`state`), and `same`: per
    domain, the layers below which box and bounds are its parent's (a split of an act neuron's
    input in affine layer k: k + 1; an input split or the root: 0)."""

    def __init__(self, lo, hi, alive, depth, state: Optional[BoxState], same=None):
        self.lo, self.hi, self.alive, self.depth, self.state = lo, hi, alive, depth, state
        self.same = np.zeros(lo.shape[0], np.int64) if same is None else same

    def __len__(self) -> int:
        return self.lo.shape[0]

    def take(self, idx) -> "_Domains":
        return _Domains(self.lo[idx], self.hi[idx], self.alive[idx], self.depth[idx],
                        None if self.state is None else self.state.take(idx), self.same[idx])

    @staticmethod
    def cat(parts: List["_Domains"]) -> "_Domains":
        if len(parts) == 1:
            return parts[0]
        state = None if parts[0].state is None else BoxState.cat([p.state for p in parts])
        return _Domains(*[np.concatenate([getattr(p, f) for p in parts]) for f in ("lo", "hi", "alive", "depth")], state,
                        np.concatenate([p.same for p in parts]))


S_SHAPED = ("Sigmoid", "Tanh", "Erf")


def _take_pass(res, idx, ops):
    """The pass of the boxes idx (what `Crown.optimise_final` reads: bounds and relaxations)."""
    from ..bounds.crown import Pass

    t = ops.torch.as_tensor(idx) if ops.name == "torch" else idx

    def take(v):
        if isinstance(v, tuple):
            return tuple(take(x) for x in v)
        return v[t]

    return Pass({k: take(v) for k, v in res.affine.items()}, {k: take(v) for k, v in res.var.items()},
                lines={k: take(v) for k, v in res.lines.items()})


def smooth_split_case(network, spec, ci: int, crown: Crown, options: Options, deadline: float,
                      stats: SmoothSplitStats, engine: str) -> Tuple[Optional[Outcome], str]:
    """(sat outcome or None, 'refuted' | 'unknown' | 'timeout') for case `ci` (module docstring)."""
    try:
        return _SmoothSplit(network, spec, ci, crown, options, deadline, stats, engine).run()
    except bounds.Expired:
        return None, "timeout"


class _SmoothSplit:
    def __init__(self, network, spec, ci, crown: Crown, options: Options, deadline, stats, engine):
        self.network, self.spec, self.ci, self.crown = network, spec, ci, crown
        self.case = spec.cases[ci]
        self.rows = CaseRows.of(self.case, spec.n_outputs)
        self.options, self.o, self.deadline, self.stats, self.engine = options, options.activation_split, deadline, stats, engine
        reg = self.case.region
        self.lo0, self.hi0 = reg.lower.astype(np.float64), reg.upper.astype(np.float64)
        free = np.flatnonzero(~reg.fixed())
        self.free_dims = free if 0 < free.size <= options.input_split.max_dims else None
        self.lg = crown.lg
        # the affine layers a split may narrow: (reader layer, kind) per act / product layer
        self.smooth = [L for L in self.lg.layers if L.kind in ("act", "product")]

    # ---- witnesses ---------------------------------------------------------------------------------
    def try_points(self, xs: np.ndarray) -> Optional[Outcome]:
        if not xs.shape[0]:
            return None
        xs = self.case.region.snap_input(xs, self.network.input_dtype)
        ys = self.network.evaluate(xs).astype(np.float64)
        self.stats.candidates += xs.shape[0]
        for i in np.flatnonzero(self.case.unsafe(ys))[:self.options.attack.replays_per_round]:
            out = sat_outcome(self.network, self.spec, xs[i], engine=self.engine,
                              detail="witness found during the smooth-activation split, replayed with ONNX Runtime on the original model")
            if out is not None:
                return out
        return None

    # ---- one batch -----------------------------------------------------------------------------------
    def _bound(self, d: _Domains, root: bool = False):
        crown, ops = self.crown, self.crown.ops
        K = len(d)
        C = np.broadcast_to(self.rows.C[None], (K,) + self.rows.C.shape).copy()
        want_scores = self.free_dims is not None
        torch_ = crown.backend == "torch"
        alpha = (self.o.smooth_root_alpha_iters if root else self.o.smooth_alpha_iters) if torch_ else 0
        lr = self.o.smooth_root_alpha_lr if root else self.options.bounds.alpha_lr
        grad = None
        if torch_:
            import torch

            grad = torch.no_grad()
            grad.__enter__()
        try:
            t0 = time.monotonic()
            res = crown.intermediate(d.lo, d.hi, parent=d.state, want_shares=want_scores, share_dims=self.free_dims,
                                     deadline=self.deadline, alpha_iters=alpha if root else 0, alpha_lr=lr,
                                     reuse_upto=int(d.same.min()) if d.state is not None else 0,
                                     alpha_max_elements=self.options.bounds.refine_elements)
            sl: dict = {}
            lb, A, scores = crown.final(C, res, want_A=True, want_scores=want_scores, slack_out=sl)
            if alpha > 0:  # alpha-CROWN on the final rows (the root's, or the domains CROWN left open)
                lower0 = widen_lower(ops.numpy(lb))
                open_ = np.flatnonzero(~self.rows.closed(self.rows.refuted(lower0, d.alive))) if not root else np.arange(K)
                if open_.size:
                    sub = res if open_.size == K else _take_pass(res, open_, ops)
                    la = crown.optimise_final(C[open_], sub, alpha, lr)
                    la = torch.where(torch.isnan(la), torch.full((), -np.inf, dtype=la.dtype), la)
                    lb = lb.clone()
                    lb[torch.as_tensor(open_)] = torch.maximum(lb[torch.as_tensor(open_)], la)
                self.stats.alpha_seconds += time.monotonic() - t0
        finally:
            if grad is not None:
                grad.__exit__(None, None, None)
        empty = np.zeros(K, bool)
        for k, (l, u) in res.affine.items():
            empty |= ops.numpy((l > u).any(1)) if K else empty
        lower = widen_lower(ops.numpy(lb))
        return lower, ops.numpy(A), (None if scores is None else ops.numpy(scores)), sl, res, empty

    def run(self) -> Tuple[Optional[Outcome], str]:
        rows, st = self.rows, self.stats
        stack = [_Domains(self.lo0[None].copy(), self.hi0[None].copy(), np.ones((1, rows.n_disjuncts), bool),
                          np.zeros(1, np.int64), None)]
        n_open = 1
        batch = self.o.smooth_batch
        ops = self.crown.ops
        while n_open:
            if expired(self.deadline):
                return None, "timeout"
            if n_open > self.o.smooth_max_domains:
                st.gave_up_open = n_open
                return None, "unknown"
            d = pop_batch(stack, batch)
            K = len(d)
            n_open -= K
            t0 = time.monotonic()
            lower, A, scores, sl, res, empty = self._bound(d, root=K == 1 and int(d.depth.max()) == 0)
            dt = time.monotonic() - t0
            st.domains += K
            st.bound_seconds += dt
            st.max_depth = max(st.max_depth, int(d.depth.max()))
            if dt < 0.3 and batch < 1024:
                batch *= 2
            elif dt > 1.5 and batch > 4:
                batch //= 2
            dead = rows.refuted(lower, d.alive)
            closed = rows.closed(dead) | empty
            st.empty += int((empty & ~rows.closed(dead)).sum())
            open_idx = np.flatnonzero(~closed)
            if not open_idx.size:
                continue
            # per open domain, the best row of each open disjunct: their scores decide the split
            margin = lower - rows.b[None, :]
            w = np.zeros_like(margin)
            for k in range(rows.n_disjuncts):
                sel = np.flatnonzero(rows.owner == k)
                if sel.size:
                    best = sel[np.argmax(margin[:, sel], axis=1)]
                    w[np.arange(K), best] = np.where(dead[:, k], 0.0, 1.0)
            # witnesses: the centre, and the corner minimising the worst open row's linear bound
            worst = np.argmin(np.where(w > 0, margin, np.inf), axis=1)
            a = A[np.arange(K), worst]
            corner = np.where(a > 0, d.lo, d.hi)
            out = self.try_points(np.concatenate([(d.lo[open_idx] + d.hi[open_idx]) / 2, corner[open_idx]]))
            if out is not None:
                return out, "sat"
            children = self._split(d.take(open_idx), dead[open_idx], w[open_idx], sl, res, scores, open_idx, ops)
            if children is None:
                return None, "unknown"
            stack.append(children)
            n_open += len(children)
        return None, "refuted"

    def _split(self, d: _Domains, dead, w, sl, res, scores, idx, ops) -> Optional[_Domains]:
        """Two children per open domain: an act neuron's (or product factor's) interval or an input dim halved."""
        K = len(d)
        best_score = np.zeros(K)
        best = [None] * K  # (affine layer, neuron, point)
        state = res.state(self.crown.readers).take(idx)
        for L in self.smooth:
            g = sl.get(L.index)
            if g is None:
                continue
            s = np.einsum("kr,krn->kn", w, ops.numpy(g)[idx])  # (K, n)
            if L.kind == "act":
                l, u = (ops.numpy(v) for v in state.bounds[L.source])
                tgt_l, tgt_u, tgt_i, tgt_k = l, u, np.arange(L.size)[None].repeat(K, 0), np.full((K, L.size), L.source)
            else:
                _, _, ia, ib = self.crown.products[L.index]
                ia, ib = np.asarray(ia), np.asarray(ib)
                al, au = (ops.numpy(v)[:, ia] for v in state.bounds[L.source])
                bl, bu = (ops.numpy(v)[:, ib] for v in state.bounds[L.source_b])
                first = (au - al) >= (bu - bl)
                tgt_l, tgt_u = np.where(first, al, bl), np.where(first, au, bu)
                tgt_i = np.where(first, ia[None], ib[None])
                tgt_k = np.where(first, L.source, L.source_b)
            ok = np.isfinite(tgt_l) & np.isfinite(tgt_u) & (tgt_u - tgt_l > 1e-9 * (1 + np.abs(tgt_l) + np.abs(tgt_u)))
            s = np.where(ok, s, 0.0)
            j = np.argmax(s, axis=1)
            for b in np.flatnonzero(s[np.arange(K), j] > best_score):
                best_score[b] = s[b, j[b]]
                lo_, hi_ = tgt_l[b, j[b]], tgt_u[b, j[b]]
                m = 0.5 * lo_ + 0.5 * hi_
                if L.kind == "act" and L.fn in S_SHAPED and lo_ + 0.2 * (hi_ - lo_) < 0 < hi_ - 0.2 * (hi_ - lo_):
                    m = 0.0
                best[b] = (int(tgt_k[b, j[b]]), int(tgt_i[b, j[b]]), float(m))
        in_dim = np.full(K, -1)
        if scores is not None and self.free_dims is not None:
            sc = np.einsum("kr,krn->kn", w, scores[idx])
            wide = (d.hi - d.lo)[:, self.free_dims] > 1e-9
            sc = np.where(wide, sc, -1.0)
            jd = np.argmax(sc, axis=1)
            use = sc[np.arange(K), jd] >= best_score
            use &= sc[np.arange(K), jd] > 0
            in_dim = np.where(use, self.free_dims[jd], -1)
        if self.free_dims is not None:  # no score anywhere (e.g. only ReLUs loose): the widest input dim
            rel = ((d.hi - d.lo) / np.where(self.hi0 > self.lo0, self.hi0 - self.lo0, 1.0))[:, self.free_dims]
            fall = np.array([best[b] is None and in_dim[b] < 0 for b in range(K)]) & (rel.max(axis=1) > 1e-9)
            in_dim = np.where(fall, self.free_dims[np.argmax(rel, axis=1)], in_dim)
        if any(best[b] is None and in_dim[b] < 0 for b in range(K)):
            return None  # a domain with nothing left to split: unknown
        lo2, hi2 = np.concatenate([d.lo, d.lo]), np.concatenate([d.hi, d.hi])
        st2 = state.repeat2()
        same = np.zeros(2 * K, np.int64)
        for b in range(K):
            if in_dim[b] >= 0:
                i = in_dim[b]
                m = 0.5 * d.lo[b, i] + 0.5 * d.hi[b, i]
                hi2[b, i], lo2[K + b, i] = m, m
                self.stats.input_splits += 1
            elif best[b] is not None:
                k, i, m = best[b]
                l1, u1 = st2.bounds[k]
                u1[b, i] = m
                l1[K + b, i] = m
                same[b] = same[K + b] = k + 1
                self.stats.act_splits += 1
        return _Domains(lo2, hi2, np.concatenate([~dead, ~dead]), np.concatenate([d.depth, d.depth]) + 1, st2, same)
