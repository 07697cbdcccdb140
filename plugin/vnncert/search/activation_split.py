"""Branch and bound on ReLU splits (as in beta-CROWN): the activation-split search.

The exact engine's route for networks whose MILP is too large for HiGHS (docs/exact.md §4), on
any layer graph (`bounds.graph.GraphView`: convolutions, residual adds, concatenations, max
nodes). One disjunct `A y <= b` at a time, over an input box and given sound bounds of every
affine layer a ReLU or max node reads; each domain is bounded by `bounds.alpha_beta.AlphaBeta`
(alpha and beta optimised, one widened float64 pass kept):

* a domain is closed when some row's bound refutes it (`bounds.margin.refutes`, the one margin
  rule); otherwise it is split on a free neuron chosen by filtered smart branching
  (`smart_branch`): of the `options.fsb_candidates` neurons with the largest score by each of two
  scores (BaBSR's estimate |max(w.b.(s - 1), w.b.s) + min(w, 0).c|, w the weight the bound puts
  on the neuron, b its pre-activation bias, s and c the chord's slope and intercept; and the
  intercept score -min(w, 0).c alone; each summed over the rows), the one whose two children,
  bounded once with the parent's alpha and beta, come out best (docs/exact.md §4 has the
  measurements);
* the input that minimises a domain's linear bound is run through the layer graph in float64; when it
  lies in the unsafe set it goes to ONNX Runtime (the caller's `try_points`), and only a replayed
  witness is reported;
* `proven` when every domain is closed. A domain in which every unstable ReLU is split but whose
  bound stays below zero is given up (`unknown`): the network is affine there, so only an LP could
  decide it, and the engine never guesses.

`tighten_rows` runs the same search on intermediate rows (min z_r and min -z_r) to tighten the
bounds of a layer (α,β-CROWN's intermediate-bound refinement, with this bound instead of a MILP);
`tighten_graph` does it layer by layer.
The limits are `ActivationSplitOptions`; `options.trace`, when set, is called once per round.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..bounds.alpha_beta import AlphaBeta, Pre, optimised_rows
from ..bounds.margin import refutes
from ..deadline import expired
from ..options import ActivationSplitOptions, BoundsOptions


@dataclass
class BabResult:
    status: str  # proven | sat | timeout | unknown
    outcome: object = None
    stats: dict = field(default_factory=dict)


class _Domains:
    """A batch of domains: splits (N, U) int8 in {-1, 0, 1}, alpha and beta (N, R, U) float32,
    bounds (N, R), depth, and (from the branching scores (N, 2, U)) the neuron each would be split
    on next, whether one is left, and the `candidates` best free neurons by each score ((N, 2c), -1
    where fewer are free or a neuron repeats: what filtered smart branching tries)."""

    def __init__(self, split, alpha, beta, lb, depth, scores=None, branch=None, can_split=None, cand=None, candidates: int = 1):
        self.split, self.alpha, self.beta, self.lb, self.depth = split, alpha, beta, lb, depth
        if scores is not None:
            if scores.shape[-1]:
                # (N, 2, U): BaBSR's estimate and the intercept score. The branch is the best by their
                # sum; the candidates the best `candidates` by each (as α,β-CROWN's kfsb), so a neuron
                # one score ranks high is tried even when the other ranks it low (oval21 cifar_wide
                # img3478: the last layer's neurons, 8 by the sum never tried them: a timeout at 720 s)
                k = min(max(1, candidates), scores.shape[-1])
                total = scores.sum(1)
                top, best = torch.topk(total, 1, dim=1)
                branch, can_split = best[:, 0], top[:, 0] >= 0
                t0, i0 = torch.topk(scores[:, 0], k, dim=1)
                t1, i1 = torch.topk(scores[:, 1], k, dim=1)
                i0 = torch.where(t0 >= 0, i0, torch.full_like(i0, -1))
                i1 = torch.where((t1 >= 0) & ~(i1[:, :, None] == i0[:, None, :]).any(-1), i1, torch.full_like(i1, -1))
                cand = torch.cat([i0, i1], 1) if k > 1 else best.where(can_split[:, None], torch.full_like(best, -1))
            else:
                branch, can_split = torch.zeros(len(lb), dtype=torch.long), torch.zeros(len(lb), dtype=torch.bool)
                cand = torch.full((len(lb), 1), -1, dtype=torch.long)
        self.branch, self.can_split, self.cand = branch, can_split, cand

    def __len__(self) -> int:
        return int(self.split.shape[0])

    def _fields(self):
        return (self.split, self.alpha, self.beta, self.lb, self.depth, None, self.branch, self.can_split, self.cand)

    def take(self, sel) -> "_Domains":
        return _Domains(*[None if f is None else f[sel] for f in self._fields()])

    def cat(self, other: "_Domains") -> "_Domains":
        return _Domains(*[None if a is None else torch.cat([a, b]) for a, b in zip(self._fields(), other._fields())])


def tighten_rows(view, lo, hi, pre: Pre, k: int, rows: np.ndarray, deadline: float, stats: Optional[dict] = None,
                 options: ActivationSplitOptions = ActivationSplitOptions(), bounds_options: BoundsOptions = BoundsOptions()):
    """Bounds (l, u) of the given rows of affine layer k (which depends on some ReLU) over the box
    [lo, hi] by branch and bound on the ReLUs before it (α,β-CROWN's intermediate-bound refinement, with
    this module's bound instead of a MILP): one objective per row and side (min z_r, min -z_r)
    that matters (`options.tighten_side_weight`; a side not searched gets no bound, -inf / inf), all
    searched in one batch; each round splits every objective's least-proven domains. A
    domain whose bound refutes `-z <= 0` or `z <= 0` (the one margin rule) is closed: that side of
    the neuron is proven, and splitting it further would not change its sign. The search stops
    at the deadline or once it stalls (`_stalled`: the second half of its time gained at most
    `options.tighten_stall` of its total gain and stabilised at most that share of the rows it
    stabilised: bounds improve fast, then slowly); then each objective's bound is the
    least bound over its leaves (open, closed and given-up ones), every one of them a float64
    bound of `AlphaBeta.bound` (widened), so sound. Rows whose objectives all close become stable.
    -inf/inf where nothing was bounded before the deadline."""
    o = options

    rows = np.asarray(rows, np.int64)
    layer = k
    k = rows.size
    n = view.layers[layer].size
    l_out = np.full(k, -np.inf)
    u_out = np.full(k, np.inf)
    if k == 0 or time.monotonic() > deadline:
        return l_out, u_out
    A = np.zeros((2 * k, n))
    A[np.arange(k), rows] = 1.0
    A[k + np.arange(k), rows] = -1.0
    bab = AlphaBeta(view, lo, hi, pre, A, np.zeros(2 * k), options, target=layer, bounds_options=bounds_options)
    U = bab.U
    zero = np.zeros(1)
    leaf_min = np.full(2 * k, np.inf)  # per objective, the least bound of its closed and given-up leaves

    def settle(dom: _Domains, obj):
        """Record closed and unsplittable domains as leaves; return the open ones."""
        lb = dom.lb[:, 0]
        closed = torch.as_tensor(refutes(dom.lb.numpy(), zero[None, :]).any(axis=1))
        leaf = closed | ~dom.can_split
        if bool(leaf.any()):
            np.minimum.at(leaf_min, obj[leaf].numpy(), lb[leaf].numpy())
        keep = ~leaf
        return dom.take(keep), obj[keep]

    # the sides worth searching: the chord's largest gap u(-l)/(u - l) changes with l at the rate
    # u^2/(u - l)^2 and with u at l^2/(u - l)^2, so a side much farther from zero than the
    # other hardly matters (it keeps its given bound). The two weights sum to at least 1/2, so
    # every row keeps at least one side
    l0 = np.asarray(pre[layer][0], np.float64)[rows]
    u0 = np.asarray(pre[layer][1], np.float64)[rows]
    w = np.concatenate([u0, l0]) ** 2 / np.concatenate([u0 - l0, u0 - l0]) ** 2
    searched = ~(w < o.tighten_side_weight)
    obj = torch.as_tensor(np.flatnonzero(searched))
    split = torch.zeros((obj.numel(), U), dtype=torch.int8)
    alpha = bab.root_state()[1][:, :1, :].expand(obj.numel(), 1, U).clone()
    beta = torch.zeros((obj.numel(), 1, U), dtype=torch.float32)
    t_start = time.monotonic()
    lb, alpha, beta, sc, _ = bab.bound(split, alpha, beta, o.root_iters, deadline, obj=obj)
    root = np.full(2 * k, np.inf)
    root[obj.numpy()] = lb[:, 0].numpy()

    def stabilised(bounds):
        """Rows with a searched side proven (z >= 0 or -z >= 0): a ReLU made stable."""
        s = searched & (bounds >= 0)
        return int((s[:k] | s[k:]).sum())

    s_root = stabilised(root)
    # (time, summed gain over the objectives' root bounds, rows stabilised since the root)
    gains = [(time.monotonic(), 0.0, 0)]
    pool, pobj = settle(_Domains(split, alpha, beta, lb, torch.zeros(obj.numel(), dtype=torch.int32), sc,
                                 candidates=o.fsb_candidates), obj)
    rounds = domains = 0
    per_parent = 0.0
    while len(pool) and time.monotonic() < deadline:
        # each objective's least-proven domains: a share of the batch per objective with open domains
        key = pool.lb[:, 0]
        order = torch.argsort(key)
        o_sorted, perm = torch.sort(pobj[order], stable=True)
        order = order[perm]
        _, counts = torch.unique_consecutive(o_sorted, return_counts=True)
        per = max(1, min(o.batch_parents, _fits(per_parent, deadline)) // counts.numel())
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(order.numel()) - torch.repeat_interleave(starts, counts)
        pick = torch.zeros(order.numel(), dtype=torch.bool)
        pick[order[rank < per]] = True
        parents, p_obj = pool.take(pick), pobj[pick]
        pool, pobj = pool.take(~pick), pobj[~pick]
        m = len(parents)
        c_obj = p_obj.repeat(2)
        tr = time.monotonic()
        children, _ = branch(bab, parents, deadline, zero, obj=c_obj)
        per_parent = (time.monotonic() - tr) / m
        children, c_obj = settle(children, c_obj)
        pool, pobj = pool.cat(children), torch.cat([pobj, c_obj])
        rounds += 1
        domains += 2 * m
        cur = leaf_min.copy()
        if len(pool):
            np.minimum.at(cur, pobj.numpy(), pool.lb[:, 0].numpy())
        now = time.monotonic()
        gains.append((now, float(np.clip(cur[searched] - root[searched], 0.0, 1e6).sum()), stabilised(cur) - s_root))
        if o.trace is not None:
            o.trace({"tighten_round": rounds, "t": now, "open": len(pool), "bounds": cur})
        if now - t_start > o.tighten_min_seconds and rounds >= o.tighten_min_rounds and _stalled(gains, t_start, o.tighten_stall):
            break
    best = leaf_min.copy()
    if len(pool):
        np.minimum.at(best, pobj.numpy(), pool.lb[:, 0].numpy())
    best[~searched] = -np.inf  # no bound from this search
    l_out = best[:k]
    u_out = -best[k:]
    if stats is not None:
        stats["rounds"] = stats.get("rounds", 0) + rounds
        stats["domains"] = stats.get("domains", 0) + domains
    return l_out, u_out


def _stalled(gains: list, t_start: float, stall: float) -> bool:
    """Diminishing returns of a tightening search, from its history of (time, summed gain over the
    objectives' root bounds, rows stabilised since the root): the second half of the time so far
    gained at most `stall` of the total gain and stabilised at most that share of the rows it
    stabilised (a row pushed across zero adds little to the sum, but makes a ReLU stable)."""
    _, g_now, s_now = gains[-1]
    _, g_half, s_half = next(e for e in gains if e[0] >= t_start + (gains[-1][0] - t_start) / 2)
    return g_now - g_half <= stall * g_now and s_now - s_half <= stall * s_now


def _fits(per_parent: float, deadline: float) -> int:
    """How many parents a round can take and still end by the deadline (at the last round's rate;
    any number before one was timed): near the deadline rounds shrink instead of overrunning it."""
    if per_parent <= 0:
        return 1 << 30
    return max(1, int(0.8 * (deadline - time.monotonic()) / per_parent))


def branch(bab: AlphaBeta, parents: _Domains, deadline: float, freeze, obj=None, neuron=None):
    """Two children per parent (its branching neuron, or `neuron` (N,), active / inactive),
    starting from the parent's alpha and beta, bounded for `options.child_iters` steps:
    (children, minimising inputs)."""
    n = len(parents)
    neuron = parents.branch if neuron is None else neuron
    split = torch.cat([parents.split, parents.split])
    split[torch.arange(2 * n), neuron.repeat(2)] = torch.cat([torch.ones(n, dtype=torch.int8),
                                                              -torch.ones(n, dtype=torch.int8)])
    lb, alpha, beta, sc, x = bab.bound(split, torch.cat([parents.alpha, parents.alpha]),
                                        torch.cat([parents.beta, parents.beta]), bab.options.child_iters, deadline,
                                        freeze=freeze, obj=obj)
    return _Domains(split, alpha, beta, lb, torch.cat([parents.depth, parents.depth]) + 1, sc,
                    candidates=bab.options.fsb_candidates), x


def smart_branch(bab: AlphaBeta, parents: _Domains, b: np.ndarray) -> torch.Tensor:
    """Filtered smart branching (FSB, De Palma et al. 2021, as α,β-CROWN branches): per parent, of
    its `candidates` best-scored free neurons the one whose two children, bounded once with the
    parent's alpha and beta (no optimisation steps, the optimiser's dtype, no gradient), come out
    best: the larger of the two children's margins max_r(lb_r - b_r), the smaller one added with
    weight `options.fsb_min_weight` (a split that closes one side and helps the other). Only the
    choice of neuron depends on these bounds; the children are bounded afterwards as always.
    (N,) neuron positions in the split vectors."""
    n, c = parents.cand.shape
    if c <= 1 or n == 0:
        return parents.branch
    U = parents.split.shape[1]
    dt = bab.step_dtype
    cand = parents.cand
    ok = cand >= 0
    cpos = cand.clamp(min=0)
    R = parents.alpha.shape[1]
    # children in chunks of parents: each chunk's back-substitution holds (2 c R rows per parent) x layer width
    per = max(1, bab.options.fsb_chunk // (2 * c * max(R, 1)))
    thr = torch.as_tensor(np.asarray(b, np.float64)).to(dt)
    value = torch.empty((n, c), dtype=dt)
    with torch.no_grad():
        for s in range(0, n, per):
            e = min(n, s + per)
            m = e - s
            # the pass's own layout (neurons first): splits (U, m, c, 2), parameters (U, m, c, 2, R)
            splitT = parents.split[s:e].T.to(dt)[:, :, None, None].expand(U, m, c, 2).clone()
            ii = torch.arange(m)[:, None].expand(m, c)
            jj = torch.arange(c)[None, :].expand(m, c)
            splitT[cpos[s:e], ii, jj, 0] = 1
            splitT[cpos[s:e], ii, jj, 1] = -1
            per_child = lambda t: (  # noqa: E731  (m, R, P) parents -> (P, m c 2, R) children
                t[s:e].to(dt).permute(2, 0, 1)[:, :, None, None].expand(-1, m, c, 2, R).reshape(t.shape[2], m * c * 2, R))
            bp = per_child(parents.beta)  # the split multipliers, then the cuts' (P = U + K)
            lb, _, _ = bab._pass_cols(splitT.reshape(U, m * c * 2), bab._parts(per_child(parents.alpha)), bab._parts(bp),
                                      want_x=False, mu=bab._mu(bp))
            v = (lb - thr).max(dim=1).values.reshape(m, c, 2)
            hi_, lo_ = v.max(dim=2).values, v.min(dim=2).values
            value[s:e] = hi_ + bab.options.fsb_min_weight * lo_
    value = torch.where(ok, value, torch.full_like(value, -torch.inf))
    pick = value.argmax(dim=1)
    return cand[torch.arange(n), pick]


class SplitBaB(AlphaBeta):
    """Branch and bound over the ReLUs of a layer graph (`bounds.graph.GraphView`) for one disjunct."""

    def __init__(self, view, lo, hi, pre: Pre, A, b, options: ActivationSplitOptions = ActivationSplitOptions(),
                 bounds_options: BoundsOptions = BoundsOptions()):
        super().__init__(view, lo, hi, pre, A, b, options, bounds_options=bounds_options)
        self.pool: Optional[_Domains] = None  # open domains (None before the root is bounded)
        self._per_parent = 0.0  # seconds the last round took per parent (0: none yet)
        self.stats = {"unstable": self.U, "domains": 0, "rounds": 0, "max_depth": 0, "points_checked": 0,
                      "unresolved_leaves": 0}

    def branch(self, parents: "_Domains", deadline: float, freeze, obj=None):
        t = time.monotonic()
        neuron = smart_branch(self, parents, self.b) if self.options.fsb_candidates > 1 else None
        self.stats["fsb_s"] = self.stats.get("fsb_s", 0.0) + time.monotonic() - t
        return branch(self, parents, deadline, freeze, obj, neuron=neuron)

    # ---- the search ------------------------------------------------------------------------------
    def _closed(self, lb):
        """Domains some row of which is refuted (the one margin rule, strict rows included)."""
        return torch.as_tensor(refutes(lb.numpy(), self.b[None, :]).any(axis=1))

    def _unsafe_points(self, x, lb):
        """Candidate witnesses: each domain's minimiser for its worst row, kept when the layer graph
        (float64) puts it in the unsafe set; at most `options.check_points`, least bound first."""
        worst = lb.argmin(dim=1)
        pts = x[torch.arange(x.shape[0]), worst].numpy()
        y = self.view.forward(pts) @ self.A.numpy().T
        cand = np.flatnonzero((y <= self.b).all(axis=1))
        if cand.size == 0:
            return None
        order = np.argsort(lb.max(dim=1).values.numpy()[cand])[:self.options.check_points]
        return pts[cand[order]]

    def _check(self, x, lb, try_points):
        pts = self._unsafe_points(x, lb)
        if pts is None:
            return None
        self.stats["points_checked"] += len(pts)
        return try_points(pts)

    def set_cuts(self, d, layers=None, indicators=None) -> int:
        """`AlphaBeta.set_cuts`, also on a search under way: its open domains keep their bounds (valid
        without the cuts, which only restrict the points bounded) and their cuts' multipliers start
        at 0 (a multiplier per new cut; those of earlier cuts are dropped)."""
        K = super().set_cuts(d, layers, indicators)
        if self.pool is not None:
            beta = self.pool.beta[..., :self.U]
            self.pool.beta = torch.cat([beta, beta.new_zeros(beta.shape[0], beta.shape[1], K)], 2)
        return K

    def run(self, deadline: float, try_points: Callable[[np.ndarray], Optional[object]]) -> BabResult:
        """Search until `deadline`. After a `timeout`, calling run again continues the same tree."""
        t0 = time.monotonic()
        st = self.stats
        b = self.b

        def finish(status, outcome=None):
            st["seconds"] = round(st.get("seconds", 0.0) + time.monotonic() - t0, 3)
            return BabResult(status, outcome, st)

        if self.pool is None:  # the root
            split, alpha, beta = self.root_state()
            lb, alpha, beta, sc, x = self.bound(split, alpha, beta, self.options.root_iters, deadline)
            st["root_lb"] = st["worst"] = float((lb.numpy() - b).max())
            st["domains"] = 1
            out = self._check(x, lb, try_points)
            if out is not None:
                return finish("sat", out)
            self.pool = _Domains(split, alpha, beta, lb, torch.zeros(1, dtype=torch.int32), sc,
                                 candidates=self.options.fsb_candidates).take(~self._closed(lb))
        pool = self.pool
        while len(pool):
            if time.monotonic() > deadline:
                self.pool = pool
                st["open_domains"] = len(pool)
                return finish("timeout")
            # domains with nothing left to split: given up (see the module docstring)
            stuck = ~pool.can_split
            if bool(stuck.any()):
                st["unresolved_leaves"] += int(stuck.sum())
                pool = pool.take(~stuck)
                continue
            # the least-proven domains first
            key = (pool.lb - torch.as_tensor(b)).max(dim=1).values
            st["worst"] = float(key.min())  # the least-proven open domain's margin
            n = min(self.options.batch_parents, key.numel(), _fits(self._per_parent, deadline))
            rest = torch.ones(key.numel(), dtype=torch.bool)
            rest[torch.topk(-key, n).indices] = False
            parents, pool = pool.take(~rest), pool.take(rest)
            tr = time.monotonic()
            children, c_x = self.branch(parents, deadline, b)
            self._per_parent = (time.monotonic() - tr) / n
            c_lb = children.lb
            st["rounds"] += 1
            st["domains"] += 2 * n
            st["max_depth"] = max(st["max_depth"], int(children.depth.max()))
            out = self._check(c_x, c_lb, try_points)
            if out is not None:
                return finish("sat", out)
            keep = ~self._closed(c_lb)
            if self.options.trace is not None:
                self.options.trace({"round": st["rounds"], "t": time.monotonic() - t0, "open": len(pool) + int(keep.sum()),
                       "worst": float(key.min()), "closed_children": int((~keep).sum())})
            pool = pool.cat(children.take(keep))
            st["peak_open"] = max(st.get("peak_open", 0), len(pool))
        self.pool = pool
        st.pop("open_domains", None)
        if st["unresolved_leaves"]:
            return finish("unknown")
        return finish("proven")


class Race:
    """Two searches of one disjunct sharing its time: `new`, a search with SCIP's cuts, and `old`,
    the tree under way without them, in turns of `period` seconds of which `new` gets `share`;
    the first to decide (proven, or a replayed witness) decides, one that ends undecided (given-up
    leaves) leaves the time to the other. Either alone is a complete search of the disjunct, so
    either's proof is one. Where the cuts make the search (oval21: a new tree with them proves
    in seconds what the old one had not in minutes) the new one wins, taking at most 1/share of
    its own time; where the old tree is nearly done it does, at most 1/(1 - share) of its time
    (`ExactOptions.cut_race_share`, off by default: docs/exact.md §4). `run` and `stats` as
    `SplitBaB`'s: the new search's figures, the old's as old_*, domains both (the old's since the
    race began), won_by."""

    def __init__(self, new: "SplitBaB", old: "SplitBaB", share: float, period: float):
        self.new, self.old, self.share, self.period = new, old, share, period
        self.ended = set()  # names of searches that ended undecided
        self._old0 = int(old.stats.get("domains", 0))
        self.won_by = None

    @property
    def K(self) -> int:
        return self.new.K

    @property
    def stats(self) -> dict:
        n, o = self.new.stats, self.old.stats
        out = dict(n)
        out.update(domains=int(n.get("domains", 0)) + int(o.get("domains", 0)) - self._old0,
                   max_depth=max(n.get("max_depth", 0), o.get("max_depth", 0)), race=True, won_by=self.won_by,
                   old_worst=o.get("worst"), old_open=o.get("open_domains"), old_root_lb=o.get("root_lb"))
        return out

    def run(self, deadline: float, try_points: Callable[[np.ndarray], Optional[object]]) -> BabResult:
        while True:
            live = [(s, f, name) for s, f, name in ((self.new, self.share, "new"), (self.old, 1.0 - self.share, "old"))
                    if name not in self.ended]
            if not live:
                return BabResult("unknown", None, self.stats)
            now = time.monotonic()
            if now >= deadline:
                return BabResult("timeout", None, self.stats)
            turn = min(self.period, deadline - now)
            for s, f, name in live:
                until = min(deadline, time.monotonic() + (f if len(live) > 1 else 1.0) * turn)
                if time.monotonic() >= until:
                    continue
                r = s.run(until, try_points)
                if r.status in ("sat", "proven"):
                    self.won_by = name
                    return BabResult(r.status, r.outcome, self.stats)
                if r.status == "unknown":
                    self.ended.add(name)


def race_trees(view, lo, hi, pre: Pre, disjuncts: Sequence[Tuple[np.ndarray, np.ndarray]], trees: "Trees", cuts: Callable,
               share: float, period: float, options: ActivationSplitOptions, bounds_options: BoundsOptions = BoundsOptions()):
    """After SCIP's roots (`cuts`, the hook of `search_disjuncts`, with its `disjuncts`): each
    disjunct with cuts and a tree under way in `trees` gets a `Race` of a new search with its cuts
    against that tree; one with cuts and no tree (given up, or never started) a new search with
    them (`Trees.restart`); the others' trees go on. share >= 1: new searches only. In place;
    `search_disjuncts` with the same `trees` runs them."""
    for di in sorted(cuts.disjuncts):
        old = trees.searches.get(di)
        trees.restart([di])
        if share >= 1.0 or old is None:
            continue
        A, b = disjuncts[di]
        new = SplitBaB(view, lo, hi, pre, A, b, options, bounds_options)
        cuts(di, new)
        trees.searches[di] = Race(new, old, share, period) if new.K else old


@dataclass
class ActivationSplitStats:
    """What the ReLU-split searches and tightenings of an engine run did."""

    bab_s: float = 0.0
    runs: List[dict] = field(default_factory=list)  # one entry per disjunct search (its last run)
    tighten_s: float = 0.0
    tighten_domains: int = 0
    tighten_rows_skipped: int = 0  # last-layer rows no open disjunct reads
    unstable_tightened: List[int] = field(default_factory=list)  # per ReLU layer, after the last tightening
    continued: int = 0  # first searches continued instead of tightening (`ExactOptions.bab_continue_progress`)
    cut_s: float = 0.0  # SCIP's roots (`ExactOptions.bab_cuts`)
    cut_pools: int = 0  # ... disjuncts that got cuts
    cut_probes_proven: int = 0  # ... disjuncts a new search with the cuts proved in its probe (`cut_trees`)
    cut_restarts: int = 0  # ... unfinished trees such a search replaced (its open domains at most half their peak)
    cut_kept: int = 0  # ... unfinished trees that took the cuts and went on

    def summary(self) -> dict:
        out = {"bab_s": round(self.bab_s, 4), "tighten_s": round(self.tighten_s, 4), "tighten_domains": self.tighten_domains,
               "tighten_rows_skipped": self.tighten_rows_skipped, "unstable_tightened": self.unstable_tightened,
               "bab_continued": self.continued, "cut_s": round(self.cut_s, 4), "cut_pools": self.cut_pools,
               "cut_probes_proven": self.cut_probes_proven, "cut_restarts": self.cut_restarts, "cut_kept": self.cut_kept}
        if self.runs:
            races = [r for r in self.runs if r.get("race")]
            out.update(cut_races=len(races), cut_races_old_won=sum(r.get("won_by") == "old" for r in races),
                       cut_races_new_won=sum(r.get("won_by") == "new" for r in races))
            out.update(bab_runs=len(self.runs), bab_domains=int(sum(r["domains"] for r in self.runs)),
                       bab_proven=sum(r["status"] == "proven" for r in self.runs),
                       bab_max_depth=max(r["max_depth"] for r in self.runs))
        return out


@dataclass
class Trees:
    """The searches of `search_disjuncts` kept for a later call on the same bounds: the unfinished
    tree of each disjunct, its statistics entry, and the disjuncts given up."""

    searches: Dict[int, "SplitBaB"] = field(default_factory=dict)
    latest: Dict[int, dict] = field(default_factory=dict)
    given_up: List[int] = field(default_factory=list)

    def restart(self, disjuncts) -> None:
        """Drop the trees of `disjuncts` (given up or not): the next `search_disjuncts` starts a new
        search for each (with its cuts hook), with its own statistics entry; the other trees go on."""
        for di in disjuncts:
            self.searches.pop(di, None)
            self.latest.pop(di, None)
            if di in self.given_up:
                self.given_up.remove(di)

    def progress(self, open_d: Sequence[int]) -> float:
        """The least, over the open disjuncts, share of the gap between the root's bound and b that
        the search has closed: 1 - worst / root_worst of the margins max_r(lb_r - b_r) (0 for a
        disjunct without a tree)."""
        out = 1.0
        for di in open_d:
            e = self.latest.get(di, {})
            root, worst = e.get("root_lb"), e.get("worst")
            if di not in self.searches or root is None or worst is None or not root < 0:
                return 0.0
            out = min(out, 1.0 - min(worst, 0.0) / root)
        return out


def cut_trees(view, lo, hi, pre: Pre, disjuncts: Sequence[Tuple[np.ndarray, np.ndarray]], open_d: List[int], trees: Trees,
              cuts: Callable, probe_until: float, try_points: Callable, options: ActivationSplitOptions,
              stats: ActivationSplitStats, bounds_options: BoundsOptions = BoundsOptions(), search: int = 2):
    """Give the open disjuncts' searches in `trees` (unfinished trees over `pre`) the cuts of the
    hook `cuts` (as `search_disjuncts`'s). For each, first a new search with them, for an equal
    share of the time to `probe_until`: where the cuts close the gap at once (oval21: a new tree
    with them proves in seconds what the old one had not in minutes) that search decides the
    disjunct, and where it is closing domains faster than it splits them (its open domains at most
    half their peak) it replaces the tree; otherwise it is dropped and the tree takes the cuts and
    goes on (`SplitBaB.set_cuts`: its domains keep their bounds, the cuts enter their children;
    mnist_fc: a new tree would redo minutes of splits). A disjunct without cuts keeps its tree as
    it is; one given up gets a new search from `search_disjuncts`. In place: proven disjuncts
    leave `open_d`. The sat outcome of `try_points`, else None. (`ExactOptions.cut_probe_share`;
    off by default: docs/exact.md §4 has the figures.)"""
    todo = [di for di in open_d if di in trees.searches]
    for di in [di for di in open_d if di in trees.given_up]:
        trees.given_up.remove(di)  # search_disjuncts starts it again, with its cuts
    t0 = time.monotonic()
    try:
        for pos, di in enumerate(todo):
            if time.monotonic() < probe_until:  # (no probe time left: no new search is built)
                A, b = disjuncts[di]
                new = SplitBaB(view, lo, hi, pre, A, b, options, bounds_options)
                cuts(di, new)
                if not new.K:
                    continue
                share = (probe_until - time.monotonic()) / (len(todo) - pos)
                r = new.run(min(probe_until, time.monotonic() + share), try_points)
                stats.runs.append({**r.stats, "disjunct": di, "status": r.status, "passes": 0, "search": search})
                if r.status == "sat":
                    return r.outcome
                if r.status == "proven":
                    open_d.remove(di)
                    del trees.searches[di]
                    stats.cut_probes_proven += 1
                    continue
                if r.status == "timeout" and r.stats.get("open_domains", 0) <= 0.5 * r.stats.get("peak_open", 0):
                    trees.searches[di] = new  # closing faster than it splits: it goes on
                    stats.cut_restarts += 1
                    continue
            cuts(di, trees.searches[di])
            stats.cut_kept += int(trees.searches[di].K > 0)
        return None
    finally:
        stats.bab_s += time.monotonic() - t0


def search_disjuncts(view, lo, hi, pre: Pre, disjuncts: Sequence[Tuple[np.ndarray, np.ndarray]], open_d: List[int],
                     deadline: float, try_points: Callable, options: ActivationSplitOptions, stats: ActivationSplitStats,
                     search: int = 1, bounds_options: BoundsOptions = BoundsOptions(), trees: Optional[Trees] = None,
                     cuts=None):
    """`SplitBaB` on the open disjuncts (`disjuncts[d]` = (A, b); in place: proven ones leave
    `open_d`) with the bounds `pre` of the affine layers the ReLUs and max nodes read, in two passes: equal
    shares first, then the time left over, continuing each disjunct's tree where pass 1 left it.
    With `trees` (the same `pre`), the trees an earlier call left unfinished are continued and
    this call's are kept there. The sat outcome `try_points` returned, else None (what is left
    open is the caller's). `cuts(d, search)`, when given, is called with each new search before
    it starts (the exact engine gives it cuts that every point of disjunct d's unsafe set
    satisfies: `AlphaBeta.set_cuts`)."""
    trees = Trees() if trees is None else trees
    latest, given_up, searches = trees.latest, trees.given_up, trees.searches
    t0 = time.monotonic()
    try:
        for pass_no in (1, 2):
            todo = [di for di in open_d if di not in given_up]
            for pos, di in enumerate(todo):
                if expired(deadline):
                    break
                A, b = disjuncts[di]
                left = len(todo) - pos
                share = (deadline - time.monotonic()) / left if pass_no == 1 else deadline - time.monotonic()
                if di not in searches:
                    searches[di] = SplitBaB(view, lo, hi, pre, A, b, options, bounds_options)
                    if cuts is not None:
                        cuts(di, searches[di])
                r = searches[di].run(min(deadline, time.monotonic() + share), try_points)
                entry = latest.get(di)
                if entry is None:  # one entry per disjunct and search, kept up to date
                    entry = latest[di] = {}
                    stats.runs.append(entry)
                entry.clear()
                entry.update({**r.stats, "disjunct": di, "status": r.status, "passes": pass_no, "search": search})
                if r.status == "sat":
                    return r.outcome
                if r.status == "proven":
                    open_d.remove(di)
                elif r.status == "unknown":
                    given_up.append(di)
                if r.status != "timeout":
                    del searches[di]  # only an unfinished tree is kept (for pass 2)
            if len(open_d) == len(given_up):
                break
        return None
    finally:
        stats.bab_s += time.monotonic() - t0


def tighten_graph(view, lo, hi, pre: Pre, deadline: float, refine_iters: int, options: ActivationSplitOptions,
                  bounds_options: BoundsOptions, stats: ActivationSplitStats, out_A: Optional[np.ndarray] = None) -> Pre:
    """Tighter bounds of the affine layers the ReLUs read over the box [lo, hi], those that depend
    on an earlier ReLU (the others' interval bounds are exact): layer by layer in order,
    alpha-CROWN again (`refine_iters` steps) on the rows still unstable once a layer before it was
    tightened, then `tighten_rows` (branch and bound over the ReLUs before the layer) on those
    rows, each layer with an equal share of the time left to `deadline`. A new mapping of new
    arrays, each the intersection with the old bounds (every one of them widened by the margin rule).

    With `out_A` (the rows of the disjuncts still open, stacked), the rows of a ReLU layer read by
    the output layer alone that no disjunct's bound reads are left as they are: a lower bound of
    a.y reads neuron k's upper chord only where (a W)_k < 0, and elsewhere its lower slope alone,
    which needs no bounds (slope 1 or 0 is as good as knowing the neuron active or inactive)."""
    t0 = time.monotonic()
    pre = {k: (np.array(l, np.float64), np.array(u, np.float64)) for k, (l, u) in pre.items()}
    st: dict = {}  # tighten_rows' counts (rounds, domains)
    skipped = 0
    layers = view.layers
    todo = [k for k in view.relu_sources if not view.input_only(k)]
    changed = set()
    for n_done, k in enumerate(todo):
        if expired(deadline):
            break
        lk, uk = pre[k]
        rows = np.flatnonzero((lk < 0) & (uk > 0))
        if rows.size and changed & view.ancestors(k):  # a layer before it is tighter now
            rl, ru = optimised_rows(view, lo, hi, pre, k, rows, refine_iters, deadline, bounds_options, options)
            lk[rows] = np.maximum(lk[rows], rl)
            uk[rows] = np.minimum(uk[rows], ru)
            rows = np.flatnonzero((lk < 0) & (uk > 0))
        readers = view.readers.get(k, [])
        if out_A is not None and rows.size and len(readers) == 1 and view.readers.get(readers[0]) == [view.output]:
            j = readers[0]
            W = sum(M for s, M in layers[view.output].terms if s == j)
            lam = np.asarray((W.T @ np.asarray(out_A, np.float64).T).T)
            read = (lam[:, rows] < 0).any(axis=0)
            skipped += int((~read).sum())
            rows = rows[read]
        if not rows.size:
            continue
        share = (deadline - time.monotonic()) / (len(todo) - n_done)
        tl, tu = tighten_rows(view, lo, hi, pre, k, rows, min(deadline, time.monotonic() + share), st, options, bounds_options)
        lk[rows] = np.maximum(lk[rows], tl)
        uk[rows] = np.minimum(uk[rows], tu)
        changed.add(k)
    stats.tighten_s += time.monotonic() - t0
    stats.tighten_domains += int(st.get("domains", 0))
    stats.unstable_tightened = [int(((pre[layers[j].source][0] < 0) & (pre[layers[j].source][1] > 0)).sum()) for j in view.relus]
    stats.tighten_rows_skipped += skipped
    return pre
