"""Branch and bound on ReLU splits with optimised linear bounds (alpha and beta, as in beta-CROWN).

The exact engine's route for affine/ReLU chains whose MILP is too large for HiGHS (docs/exact.md
§4). One disjunct `A y <= b` at a time, over an input box and given sound pre-activation bounds
of every ReLU layer (from `bounds.region.compute_bounds`: CROWN and alpha-CROWN):

* a *domain* fixes some of the ReLUs unstable at the root to active (z >= 0, relu(z) = z) or
  inactive (z <= 0, relu(z) = 0); its bound is a lower bound of each row a_i.y - b_i over the
  points of the box whose activations agree with the domain;
* the bound is CROWN's back-substitution with, for each free unstable neuron, the chord as the
  upper relaxation and a lower slope alpha in [0, 1]; each split constraint s.z >= 0 enters with
  a Lagrange multiplier beta >= 0 (f - beta.s.z <= f on the domain). Any alpha in [0, 1] and
  beta >= 0 give a valid bound, so both are optimised by projected gradient ascent (Adam) and the
  best bound seen is kept; children start from their parent's alpha and beta;
* a domain is closed when some row's bound is above zero by `relaxed.margin` (the same float64
  margin as the relaxed engine); otherwise it is split on the free neuron with the largest
  score: BaBSR's estimate |max(w.b.(s - 1), w.b.s) + min(w, 0).c| (w the weight the bound puts
  on the neuron, b its pre-activation bias, s and c the chord's slope and intercept) plus the
  intercept score -min(w, 0).c alone, summed over the rows (docs/exact.md §4 has the measurements);
* the input that minimises a domain's linear bound is run through the chain in float64; when it
  lies in the unsafe set it goes to ONNX Runtime (the caller's `try_points`), and only a replayed
  witness is reported;
* `proven` when every domain is closed. A domain in which every unstable ReLU is split but whose
  bound stays below zero is given up (`unknown`): the network is affine there, so only an LP could
  decide it, and the engine never guesses.

Everything runs batched in torch on the CPU: the optimiser's steps in float32 (STEP_DTYPE), each
row's bound from one float64 pass with the parameters of its best step. The state kept per domain
is indexed by the neurons unstable at the root only (alpha and beta stored in float32: they are
parameters of the bound, not part of its soundness, which comes from the float64 evaluation).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np
import torch  # this module is imported only by the exact engine when it runs the branch and bound

# children bounded per round (two per parent); a round of 2 x 256 domains of a 784-256x6-10 net
# takes about 1 s on one core (benchmarks/mnistfc.py)
BATCH_PARENTS = 256
ROOT_ITERS = 40
CHILD_ITERS = 12
LR_ALPHA = 0.3
LR_BETA = 0.05
# optimised_rows: at most this many slopes (rows x earlier unstable ReLUs) per batch (memory)
REFINE_ELEMENTS = 2_000_000
# the optimiser's steps run in this dtype; every bound kept comes from one float64 pass (bound())
STEP_DTYPE = torch.float32
# a child whose bound (in STEP_DTYPE) is above b by this much, relative, leaves the optimisation
FREEZE_MARGIN = 1e-3
# tighten_rows stops, after at least TIGHTEN_MIN_SECONDS and TIGHTEN_MIN_ROUNDS rounds, when the
# second half of its time gained at most this share of its total gain in the objectives' bounds
# (or nothing at all)
TIGHTEN_STALL = 0.03
TIGHTEN_MIN_SECONDS = 2.0
TIGHTEN_MIN_ROUNDS = 6
# tighten_rows searches a side of a row (its l or its u) only when the chord's gap depends on it
# with at least this weight (u^2/(u - l)^2 for l, l^2/(u - l)^2 for u; docs/exact.md §4)
TIGHTEN_SIDE_WEIGHT = 0.1
# at most this many unsafe-looking candidate points per round go to ONNX Runtime
CHECK_POINTS = 8
# set to a callable(dict) to follow the search round by round (benchmarks, debugging)
TRACE: Optional[Callable[[dict], None]] = None


@dataclass
class BabResult:
    status: str  # proven | sat | timeout | unknown
    outcome: object = None
    stats: dict = field(default_factory=dict)


class _Domains:
    """A batch of domains: splits (N, U) int8 in {-1, 0, 1}, alpha and beta (N, R, U) float32,
    bounds (N, R), depth, and (from the branching scores) the neuron each would be split on next
    and whether one is left."""

    def __init__(self, split, alpha, beta, lb, depth, scores=None, branch=None, can_split=None):
        self.split, self.alpha, self.beta, self.lb, self.depth = split, alpha, beta, lb, depth
        if scores is not None:
            if scores.shape[1]:
                branch, can_split = scores.argmax(dim=1), scores.max(dim=1).values >= 0
            else:
                branch, can_split = torch.zeros(len(lb), dtype=torch.long), torch.zeros(len(lb), dtype=torch.bool)
        self.branch, self.can_split = branch, can_split

    def __len__(self) -> int:
        return int(self.split.shape[0])

    def _fields(self):
        return (self.split, self.alpha, self.beta, self.lb, self.depth, None, self.branch, self.can_split)

    def take(self, sel) -> "_Domains":
        return _Domains(*[None if f is None else f[sel] for f in self._fields()])

    def cat(self, other: "_Domains") -> "_Domains":
        return _Domains(*[None if a is None else torch.cat([a, b]) for a, b in zip(self._fields(), other._fields())])


class _Prefix:
    """The first j + 1 affine layers of a chain (what `SplitBaB` reads of it: W and b)."""

    def __init__(self, chain, j: int):
        self.W, self.b = chain.W[:j + 1], chain.b[:j + 1]


def optimised_rows(chain, lo, hi, lows: List[np.ndarray], ups: List[np.ndarray], j: int, rows: np.ndarray,
                   iters: int, deadline: float):
    """alpha-CROWN bounds (l, u) of the given rows of the chain's affine layer j (0-based) over the
    box [lo, hi], given sound bounds (lows, ups) of the pre-activations of the ReLU layers before
    it: the root bound of `SplitBaB` (no splits) with one lower slope per row and unstable neuron,
    optimised for `iters` steps; float64, valid for any slopes, so sound whatever the optimiser
    reached (the caller widens them like every other bound)."""
    rows = np.asarray(rows, np.int64)
    n = chain.W[j].shape[0]
    l_out = np.full(rows.size, -np.inf)
    u_out = np.full(rows.size, np.inf)
    # rows in chunks: the slopes are (2 rows, earlier unstable ReLUs) per chunk, kept to
    # REFINE_ELEMENTS; rows left when the deadline passes keep infinite (no) bounds
    U = sum(int(((np.asarray(l) < 0) & (np.asarray(u) > 0)).sum()) for l, u in zip(lows[:j], ups[:j]))
    step = max(1, REFINE_ELEMENTS // (2 * max(U, 1)))
    for s in range(0, rows.size, step):
        if s and time.monotonic() > deadline:
            break
        r = rows[s:s + step]
        A = np.zeros((2 * r.size, n))
        A[np.arange(r.size), r] = 1.0
        A[r.size + np.arange(r.size), r] = -1.0
        bab = SplitBaB(_Prefix(chain, j), lo, hi, lows[:j], ups[:j], A, np.zeros(2 * r.size))
        lb, *_ = bab.bound(*bab.root_state(), iters, deadline)
        lb = lb[0].numpy()
        l_out[s:s + r.size] = lb[:r.size]
        u_out[s:s + r.size] = -lb[r.size:]
    return l_out, u_out


def tighten_rows(chain, lo, hi, lows: List[np.ndarray], ups: List[np.ndarray], j: int, rows: np.ndarray,
                 deadline: float, stats: Optional[dict] = None):
    """Bounds (l, u) of the given rows of the chain's affine layer j (j >= 1) over the box [lo, hi]
    by branch and bound on the ReLUs before it (α,β-CROWN's intermediate-bound refinement, with
    this module's bound instead of a MILP): one objective per row and side (min z_r, min -z_r)
    that matters (TIGHTEN_SIDE_WEIGHT; a side not searched gets no bound, -inf / inf), all
    searched in one batch; each round splits every objective's least-proven domains. A
    domain whose bound is above zero (by the relaxed engine's margin) is closed: that side of
    the neuron is proven, and splitting it further would not change its sign. The search stops
    at the deadline or once it stalls (the second half of its time gained at most TIGHTEN_STALL
    of its total gain: bounds improve fast, then slowly); then each objective's bound is the
    least bound over its leaves (open, closed and given-up ones), every one of them a float64
    bound of `SplitBaB.bound`, so sound. Rows whose objectives all close become stable.
    -inf/inf where nothing was bounded before the deadline."""
    from .relaxed import refuted_rows

    rows = np.asarray(rows, np.int64)
    k = rows.size
    n = chain.W[j].shape[0]
    l_out = np.full(k, -np.inf)
    u_out = np.full(k, np.inf)
    if k == 0 or time.monotonic() > deadline:
        return l_out, u_out
    A = np.zeros((2 * k, n))
    A[np.arange(k), rows] = 1.0
    A[k + np.arange(k), rows] = -1.0
    bab = SplitBaB(_Prefix(chain, j), lo, hi, lows[:j], ups[:j], A, np.zeros(2 * k))
    U = bab.U
    zero = np.zeros(1)
    leaf_min = np.full(2 * k, np.inf)  # per objective, the least bound of its closed and given-up leaves

    def settle(dom: _Domains, obj):
        """Record closed and unsplittable domains as leaves; return the open ones."""
        lb = dom.lb[:, 0]
        closed = torch.as_tensor(refuted_rows(dom.lb.numpy(), zero[None, :]).any(axis=1))
        leaf = closed | ~dom.can_split
        if bool(leaf.any()):
            np.minimum.at(leaf_min, obj[leaf].numpy(), lb[leaf].numpy())
        keep = ~leaf
        return dom.take(keep), obj[keep]

    # the sides worth searching: the chord's largest gap u(-l)/(u - l) changes with l at the rate
    # u^2/(u - l)^2 and with u at l^2/(u - l)^2, so a side much farther from zero than the
    # other hardly matters (it keeps its given bound). The two weights sum to at least 1/2, so
    # every row keeps at least one side
    l0 = np.asarray(lows[j], np.float64)[rows]
    u0 = np.asarray(ups[j], np.float64)[rows]
    w = np.concatenate([u0, l0]) ** 2 / np.concatenate([u0 - l0, u0 - l0]) ** 2
    searched = ~(w < TIGHTEN_SIDE_WEIGHT)
    obj = torch.as_tensor(np.flatnonzero(searched))
    split = torch.zeros((obj.numel(), U), dtype=torch.int8)
    alpha = bab.root_state()[1][:, :1, :].expand(obj.numel(), 1, U).clone()
    beta = torch.zeros((obj.numel(), 1, U), dtype=torch.float32)
    t_start = time.monotonic()
    lb, alpha, beta, sc, _ = bab.bound(split, alpha, beta, ROOT_ITERS, deadline, obj=obj)
    root = np.full(2 * k, np.inf)
    root[obj.numpy()] = lb[:, 0].numpy()
    gains = [(time.monotonic(), 0.0)]  # (time, summed gain over the objectives' root bounds)
    pool, pobj = settle(_Domains(split, alpha, beta, lb, torch.zeros(obj.numel(), dtype=torch.int32), sc), obj)
    rounds = domains = 0
    while len(pool) and time.monotonic() < deadline:
        # each objective's least-proven domains: a share of the batch per objective with open domains
        key = pool.lb[:, 0]
        order = torch.argsort(key)
        o_sorted, perm = torch.sort(pobj[order], stable=True)
        order = order[perm]
        _, counts = torch.unique_consecutive(o_sorted, return_counts=True)
        per = max(1, BATCH_PARENTS // counts.numel())
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(order.numel()) - torch.repeat_interleave(starts, counts)
        pick = torch.zeros(order.numel(), dtype=torch.bool)
        pick[order[rank < per]] = True
        parents, p_obj = pool.take(pick), pobj[pick]
        pool, pobj = pool.take(~pick), pobj[~pick]
        m = len(parents)
        c_obj = p_obj.repeat(2)
        children, _ = bab.branch(parents, deadline, zero, obj=c_obj)
        children, c_obj = settle(children, c_obj)
        pool, pobj = pool.cat(children), torch.cat([pobj, c_obj])
        rounds += 1
        domains += 2 * m
        cur = leaf_min.copy()
        if len(pool):
            np.minimum.at(cur, pobj.numpy(), pool.lb[:, 0].numpy())
        now = time.monotonic()
        gains.append((now, float(np.clip(cur[searched] - root[searched], 0.0, 1e6).sum())))
        if TRACE is not None:
            TRACE({"tighten_round": rounds, "t": now, "open": len(pool), "bounds": cur})
        # diminishing returns: stop when the second half of the time so far gained less than
        # TIGHTEN_STALL of the total gain
        if now - t_start > TIGHTEN_MIN_SECONDS and rounds >= TIGHTEN_MIN_ROUNDS:
            half = next(g for t, g in gains if t >= t_start + (now - t_start) / 2)
            if gains[-1][1] - half <= TIGHTEN_STALL * gains[-1][1]:
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


class SplitBaB:
    """Branch and bound over the ReLUs of `chain` (relu_chain.AffineReluChain) for one disjunct."""

    def __init__(self, chain, lo: np.ndarray, hi: np.ndarray, lows: List[np.ndarray], ups: List[np.ndarray],
                 A: np.ndarray, b: np.ndarray):
        f64 = torch.float64
        self.chain = chain
        self.lo = torch.as_tensor(np.asarray(lo, np.float64))
        self.hi = torch.as_tensor(np.asarray(hi, np.float64))
        self.A = torch.as_tensor(np.atleast_2d(np.asarray(A, np.float64)))
        self.b = np.atleast_1d(np.asarray(b, np.float64))
        self.R = self.A.shape[0]
        # The bound only reads the *live* neurons of each ReLU layer (u > 0): a neuron inactive
        # over the box outputs 0, so its row of W and b and its column of the next layer's W
        # drop out exactly. After the intermediate bounds are tightened most neurons of a deep
        # mnist_fc net are inactive (256x6 prop_0_0.05: 9-59 unstable and 1-25 active per layer
        # of 256), and the products shrink with them (docs/exact.md §4).
        # Per ReLU layer: (idx of the unstable among the live, stable slope (live,), chord slope
        # (U,), intercept (U,), pre-activation bias (U,) for the branching score, offset); and
        # the live rows (and the previous layer's live columns) of W and b.
        self.layers = []
        Ws, bs = [], []
        prev = None  # the previous layer's live neurons (None: the input, all of it)
        off = 0
        for j, (l, u) in enumerate(zip(lows, ups)):
            l = torch.as_tensor(np.asarray(l, np.float64))
            u = torch.as_tensor(np.asarray(u, np.float64))
            live = torch.nonzero(~(u <= 0)).flatten()
            l, u = l[live], u[live]
            idx = torch.nonzero(l < 0).flatten()  # l < 0 < u: unstable, in the order of the layer
            lu, uu = l[idx], u[idx]
            su = uu / (uu - lu)
            W = chain.W[j][live]
            Ws.append(W if prev is None else W[:, prev])
            bs.append(chain.b[j][live])
            self.layers.append((idx, (l >= 0).to(f64), su, -su * lu, bs[-1][idx], off))
            prev = live
            off += idx.numel()
        self.U = off
        W_out = chain.W[len(lows)]
        self.Lam0 = self.A @ (W_out if prev is None else W_out[:, prev])  # (R, live neurons of the last ReLU layer)
        self.bias0 = self.A @ chain.b[len(lows)]  # (R,)
        # what _pass reads, per dtype (float64 for every bound kept; others made on first use)
        self._terms = {f64: (self.Lam0, self.bias0, self.layers, Ws, bs, self.lo, self.hi)}
        self.pool: Optional[_Domains] = None  # open domains (None before the root is bounded)
        self.stats = {"unstable": self.U, "domains": 0, "rounds": 0, "max_depth": 0, "points_checked": 0,
                      "unresolved_leaves": 0}

    # ---- one bound evaluation --------------------------------------------------------------------
    def _terms_in(self, dtype):
        if dtype not in self._terms:
            c = lambda t: t.to(dtype)  # noqa: E731
            Lam0, bias0, layers, W, b, lo, hi = self._terms[torch.float64]
            self._terms[dtype] = (c(Lam0), c(bias0), [(i, c(st), c(su), c(cu), c(pb), o) for i, st, su, cu, pb, o in layers],
                                  [c(w) for w in W], [c(v) for v in b], c(lo), c(hi))
        return self._terms[dtype]

    def _pass(self, split, alpha, beta, want_scores: bool = False, obj=None):
        """Lower bounds (N, R) of A y over each domain, the minimising inputs (N, R, n_in) and, with
        want_scores, the branching scores (N, U). With `obj` (N,) each domain bounds its own row
        obj[i] of A instead (R = 1: `tighten_rows`)."""
        N = split.shape[0]
        Lam0, bias0, layers, W, b, lo, hi = self._terms_in(alpha.dtype)
        if obj is None:
            Lam = Lam0.expand(N, -1, -1)
            bias = bias0.expand(N, -1)
        else:
            Lam = Lam0[obj][:, None, :]
            bias = bias0[obj][:, None]
        scores = [] if want_scores else None
        for j in range(len(layers) - 1, -1, -1):
            idx, stable, su, cu, pre_bias, off = layers[j]
            Lz = Lam * stable
            n_u = idx.numel()
            if n_u:
                s = split[:, None, off:off + n_u]
                Lu = Lam[..., idx]
                pos = Lu.clamp(min=0)
                neg = Lu - pos
                free = s == 0
                coef = torch.where(free, pos * alpha[..., off:off + n_u] + neg * su,
                                   torch.where(s > 0, Lu, torch.zeros_like(Lu)))
                coef = coef - beta[..., off:off + n_u] * s
                bias = bias + (neg * cu * free).sum(-1)
                Lz = Lz.index_copy(2, idx, coef)
                if want_scores:
                    # BaBSR's estimate (its bias and intercept terms) plus the intercept score
                    # alone (see the module docstring)
                    bt = Lu * pre_bias
                    babsr = (torch.maximum(bt * (su - 1.0), bt * su) + neg * cu).abs()
                    sc = (babsr + cu * (-neg + 1e-3 * pos)).detach().sum(1)
                    scores.append(torch.where(split[:, off:off + n_u] == 0, sc, torch.full_like(sc, -1.0)))
            bias = bias + Lz @ b[j]
            Lam = Lz @ W[j]
        x = torch.where(Lam > 0, lo, hi)
        lb = (Lam * x).sum(-1) + bias
        sc = None
        if want_scores:
            sc = torch.cat(scores[::-1], dim=1) if scores else torch.zeros((N, 0), dtype=Lam.dtype)
        return lb, x, sc

    def bound(self, split, alpha, beta, iters: int, deadline: float, freeze: Optional[np.ndarray] = None, obj=None):
        """Optimise alpha, beta for `iters` steps: (lb (N, R), alpha, beta (float32), scores, x).

        The steps run in STEP_DTYPE (float32: about twice the speed of float64 on the CPU, and the
        optimiser only needs a direction). The branching scores and the parameters handed to the
        children are those of the last step; each row's bound is one float64 pass with the
        parameters of its best step. Any alpha in [0, 1] and beta >= 0 give a valid bound, so only
        that float64 pass matters for soundness.

        With `freeze` (the disjunct's b), a domain leaves the optimisation at the first step where
        some row's bound is above b by FREEZE_MARGIN (about half the children of a proof close within
        three steps); it keeps that step's parameters, and its scores come from the float64 pass.
        Only speed depends on this: a frozen domain the float64 pass does not close stays open.

        With `obj` (N,), domain i bounds row obj[i] of A alone (alpha, beta (N, 1, U))."""
        dt = STEP_DTYPE
        N = split.shape[0]
        a = alpha.to(dt).clone()
        be = beta.to(dt).clone()
        sf = split.to(dt)
        best = torch.full(tuple(alpha.shape[:2]), -torch.inf, dtype=dt)
        best_a, best_be = a.clone(), be.clone()
        act = torch.arange(N)  # the domains still optimised
        # Adam's state per parameter tensor: (tensor, learning rate, first and second moments)
        adam = [(a, LR_ALPHA, torch.zeros_like(a), torch.zeros_like(a)), (be, LR_BETA, torch.zeros_like(be), torch.zeros_like(be))]
        sc_act = None
        b_thr = None if freeze is None else torch.as_tensor(np.asarray(freeze, np.float64)).to(dt)
        if self.U == 0:  # nothing relaxed: the bound has no parameters to optimise
            iters = 0
        for it in range(iters + 1):
            last = it == iters or time.monotonic() > deadline
            pa = a[act].requires_grad_(not last)  # copies: the active domains' parameters
            pb = be[act].requires_grad_(not last)
            with torch.set_grad_enabled(not last):  # the last step only reads bounds and scores
                lb, _, sc = self._pass(sf[act], pa, pb, want_scores=last, obj=None if obj is None else obj[act])
            cur = lb.detach()
            up = cur > best[act]  # (n, R): rows whose bound improved keep this step's parameters
            best[act] = torch.where(up, cur, best[act])
            best_a[act] = torch.where(up[..., None], pa.detach(), best_a[act])
            best_be[act] = torch.where(up[..., None], pb.detach(), best_be[act])
            if last:
                sc_act = sc
                break
            (-lb.sum()).backward()
            done = None
            if b_thr is not None:
                done = ((cur - b_thr) > FREEZE_MARGIN * (1.0 + cur.abs())).any(dim=1)
            with torch.no_grad():  # Adam (as torch.optim.Adam: betas 0.9, 0.999, eps 1e-8), projected
                t = it + 1
                for (p, lr, m, v), g in zip(adam, (pa.grad, pb.grad)):
                    m[act] = m[act] * 0.9 + 0.1 * g
                    v[act] = v[act] * 0.999 + 0.001 * g * g
                    denom = (v[act].sqrt() / (1.0 - 0.999 ** t) ** 0.5) + 1e-8
                    p[act] = p[act] - (lr / (1.0 - 0.9 ** t)) * m[act] / denom
                a[act] = a[act].clamp(0.0, 1.0)
                be[act] = be[act].clamp(min=0.0)
            if done is not None and bool(done.any()):
                # a frozen domain keeps this step's (pre-update) parameters
                idx = act[done]
                a[idx] = pa.detach()[done]
                be[idx] = pb.detach()[done]
                act = act[~done]
                if act.numel() == 0:
                    break
        with torch.no_grad():
            f64 = torch.float64
            lb, x, sc64 = self._pass(split.to(f64), best_a.to(f64), best_be.to(f64), want_scores=True, obj=obj)
        scores = sc64.clone()
        if sc_act is not None and act.numel():
            scores[act] = sc_act.to(f64)
        return lb, a.detach().float(), be.detach().float(), scores, x

    def branch(self, parents: _Domains, deadline: float, freeze, obj=None):
        """Two children per parent (its branching neuron active / inactive), starting from the
        parent's alpha and beta, bounded for CHILD_ITERS steps: (children, minimising inputs)."""
        n = len(parents)
        split = torch.cat([parents.split, parents.split])
        split[torch.arange(2 * n), parents.branch.repeat(2)] = torch.cat([torch.ones(n, dtype=torch.int8),
                                                                          -torch.ones(n, dtype=torch.int8)])
        lb, alpha, beta, sc, x = self.bound(split, torch.cat([parents.alpha, parents.alpha]),
                                            torch.cat([parents.beta, parents.beta]), CHILD_ITERS, deadline,
                                            freeze=freeze, obj=obj)
        return _Domains(split, alpha, beta, lb, torch.cat([parents.depth, parents.depth]) + 1, sc), x

    def root_state(self):
        """(split, alpha, beta) of the root domain: nothing split, CROWN's lower slopes, beta 0."""
        R, U = self.R, self.U
        split = torch.zeros((1, U), dtype=torch.int8)
        alpha = torch.zeros((1, R, U), dtype=torch.float32)
        for idx, stable, su, cu, _, off in self.layers:
            alpha[..., off:off + idx.numel()] = (su >= 0.5).float()  # CROWN's choice as the start
        beta = torch.zeros((1, R, U), dtype=torch.float32)
        return split, alpha, beta

    # ---- the search ------------------------------------------------------------------------------
    def _closed(self, lb):
        """Domains some row of which is proven: with the relaxed engine's float64 margin, strict
        rows included (lb >= b alone could rest on the rounding of the bound's own arithmetic)."""
        from .relaxed import refuted_rows

        return torch.as_tensor(refuted_rows(lb.numpy(), self.b[None, :]).any(axis=1))

    def _unsafe_points(self, x, lb):
        """Candidate witnesses: each domain's minimiser for its worst row, kept when the chain
        (float64) puts it in the unsafe set; at most CHECK_POINTS, least bound first."""
        worst = lb.argmin(dim=1)
        pts = x[torch.arange(x.shape[0]), worst]
        with torch.no_grad():
            y = self.chain.forward(pts) @ self.A.T
        cand = torch.nonzero((y <= torch.as_tensor(self.b)).all(dim=1)).flatten()
        if cand.numel() == 0:
            return None
        order = torch.argsort(lb.max(dim=1).values[cand])[:CHECK_POINTS]
        return pts[cand[order]].numpy()

    def _check(self, x, lb, try_points):
        pts = self._unsafe_points(x, lb)
        if pts is None:
            return None
        self.stats["points_checked"] += len(pts)
        return try_points(pts)

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
            lb, alpha, beta, sc, x = self.bound(split, alpha, beta, ROOT_ITERS, deadline)
            st["root_lb"] = float((lb.numpy() - b).max())
            st["domains"] = 1
            out = self._check(x, lb, try_points)
            if out is not None:
                return finish("sat", out)
            self.pool = _Domains(split, alpha, beta, lb, torch.zeros(1, dtype=torch.int32), sc).take(~self._closed(lb))
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
            n = min(BATCH_PARENTS, key.numel())
            rest = torch.ones(key.numel(), dtype=torch.bool)
            rest[torch.topk(-key, n).indices] = False
            parents, pool = pool.take(~rest), pool.take(rest)
            children, c_x = self.branch(parents, deadline, b)
            c_lb = children.lb
            st["rounds"] += 1
            st["domains"] += 2 * n
            st["max_depth"] = max(st["max_depth"], int(children.depth.max()))
            out = self._check(c_x, c_lb, try_points)
            if out is not None:
                return finish("sat", out)
            keep = ~self._closed(c_lb)
            if TRACE is not None:
                TRACE({"round": st["rounds"], "t": time.monotonic() - t0, "open": len(pool) + int(keep.sum()),
                       "worst": float(key.min()), "closed_children": int((~keep).sum())})
            pool = pool.cat(children.take(keep))
        self.pool = pool
        st.pop("open_domains", None)
        if st["unresolved_leaves"]:
            return finish("unknown")
        return finish("proven")
