"""Alpha/beta bounds with ReLU split constraints on an affine/ReLU chain (as in beta-CROWN).

A *domain* fixes some of the ReLUs unstable at the root to active (z >= 0, relu(z) = z) or
inactive (z <= 0, relu(z) = 0); its bound is a lower bound of each row a_i.y of A y over the
points of the box whose activations agree with the domain: CROWN's back-substitution with, for
each free unstable neuron, the chord as the upper relaxation and a lower slope alpha in [0, 1]
(the ops' `relu_relaxation`: its chord, and its lower slope as the start); each split constraint
s.z >= 0 enters with a Lagrange multiplier beta >= 0 (f - beta.s.z <= f on the domain). Any alpha
in [0, 1] and beta >= 0 give a valid bound, so both are optimised by projected gradient ascent
(Adam) and the best bound seen is kept (`AlphaBeta.bound`).

The optimiser's steps run in `ActivationSplitOptions.step_dtype` (float32: about twice the
speed of float64 on the CPU); each row's bound comes from one float64 pass with the parameters
of its best step, widened by the margin rule: only that pass matters for soundness. The bound
reads only the *live* neurons of each ReLU layer (u > 0). Specialised to chains (dense layers,
`bounds.chain.ChainView`) for now: the search on activation splits (`search.activation_split`)
runs on it. `optimised_rows` is the root bound alone: alpha-CROWN bounds of a layer's rows.
"""
from __future__ import annotations

import time
from typing import List, Optional

import numpy as np
import torch

from ..network.ops.relu import relu_relaxation
from ..options import ActivationSplitOptions, BoundsOptions
from .margin import slack


class AlphaBeta:
    """The bound of `A y` over domains of ReLU splits of a chain (see the module docstring)."""

    def __init__(self, chain, lo: np.ndarray, hi: np.ndarray, lows: List[np.ndarray], ups: List[np.ndarray],
                 A: np.ndarray, b: np.ndarray, options: ActivationSplitOptions = ActivationSplitOptions()):
        f64 = torch.float64
        self.options = options
        self.step_dtype = getattr(torch, options.step_dtype)
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
        self.start_slopes = []
        Ws, bs = [], []
        prev = None  # the previous layer's live neurons (None: the input, all of it)
        off = 0
        for j, (l, u) in enumerate(zip(lows, ups)):
            l = torch.as_tensor(np.asarray(l, np.float64))
            u = torch.as_tensor(np.asarray(u, np.float64))
            live = torch.nonzero(~(u <= 0)).flatten()
            l, u = l[live], u[live]
            idx = torch.nonzero(l < 0).flatten()  # l < 0 < u: unstable, in the order of the layer
            lo_s, up_s, up_b = relu_relaxation(l, u, torch)  # the chord (and CROWN's lower slope) of each
            su = up_s[idx]
            self.start_slopes.append(lo_s[idx])
            W = chain.W[j][live]
            Ws.append(W if prev is None else W[:, prev])
            bs.append(chain.b[j][live])
            self.layers.append((idx, (l >= 0).to(f64), su, up_b[idx], bs[-1][idx], off))
            prev = live
            off += idx.numel()
        self.U = off
        W_out = chain.W[len(lows)]
        self.Lam0 = self.A @ (W_out if prev is None else W_out[:, prev])  # (R, live neurons of the last ReLU layer)
        self.bias0 = self.A @ chain.b[len(lows)]  # (R,)
        # what _pass reads, per dtype (float64 for every bound kept; others made on first use)
        self._terms = {f64: (self.Lam0, self.bias0, self.layers, Ws, bs, self.lo, self.hi)}

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

        The steps run in `options.step_dtype` (float32: about twice the speed of float64 on the CPU, and the
        optimiser only needs a direction). The branching scores and the parameters handed to the
        children are those of the last step; each row's bound is one float64 pass with the
        parameters of its best step. Any alpha in [0, 1] and beta >= 0 give a valid bound, so only
        that float64 pass matters for soundness.

        With `freeze` (the disjunct's b), a domain leaves the optimisation at the first step where
        some row's bound is above b by `options.freeze_margin` (about half the children of a proof close within
        three steps); it keeps that step's parameters, and its scores come from the float64 pass.
        Only speed depends on this: a frozen domain the float64 pass does not close stays open.

        With `obj` (N,), domain i bounds row obj[i] of A alone (alpha, beta (N, 1, U))."""
        dt = self.step_dtype
        o = self.options
        N = split.shape[0]
        a = alpha.to(dt).clone()
        be = beta.to(dt).clone()
        sf = split.to(dt)
        best = torch.full(tuple(alpha.shape[:2]), -torch.inf, dtype=dt)
        best_a, best_be = a.clone(), be.clone()
        act = torch.arange(N)  # the domains still optimised
        # Adam's state per parameter tensor: (tensor, learning rate, first and second moments)
        adam = [(a, o.lr_alpha, torch.zeros_like(a), torch.zeros_like(a)), (be, o.lr_beta, torch.zeros_like(be), torch.zeros_like(be))]
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
                done = ((cur - b_thr) > o.freeze_margin * (1.0 + cur.abs())).any(dim=1)
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
            lb = lb - slack(lb)  # the margin rule: every bound kept is widened
        scores = sc64.clone()
        if sc_act is not None and act.numel():
            scores[act] = sc_act.to(f64)
        return lb, a.detach().float(), be.detach().float(), scores, x

    def root_state(self):
        """(split, alpha, beta) of the root domain: nothing split, CROWN's lower slopes, beta 0."""
        R, U = self.R, self.U
        split = torch.zeros((1, U), dtype=torch.int8)
        alpha = torch.zeros((1, R, U), dtype=torch.float32)
        for (idx, stable, su, cu, _, off), start in zip(self.layers, self.start_slopes):
            alpha[..., off:off + idx.numel()] = start.float()  # CROWN's choice as the start
        beta = torch.zeros((1, R, U), dtype=torch.float32)
        return split, alpha, beta



def optimised_rows(chain, lo, hi, lows: List[np.ndarray], ups: List[np.ndarray], j: int, rows: np.ndarray,
                   iters: int, deadline: float, options: BoundsOptions = BoundsOptions(),
                   split_options: ActivationSplitOptions = ActivationSplitOptions()):
    """alpha-CROWN bounds (l, u) of the given rows of the chain's affine layer j (0-based) over the
    box [lo, hi], given sound bounds (lows, ups) of the pre-activations of the ReLU layers before
    it: the root bound of `AlphaBeta` (no splits) with one lower slope per row and unstable neuron,
    optimised for `iters` steps; float64, valid for any slopes, so sound whatever the optimiser
    reached; widened by the margin rule like every other bound)."""
    rows = np.asarray(rows, np.int64)
    n = chain.W[j].shape[0]
    l_out = np.full(rows.size, -np.inf)
    u_out = np.full(rows.size, np.inf)
    # rows in chunks: the slopes are (2 rows, earlier unstable ReLUs) per chunk, kept to
    # options.refine_elements; rows left when the deadline passes keep infinite (no) bounds
    U = sum(int(((np.asarray(l) < 0) & (np.asarray(u) > 0)).sum()) for l, u in zip(lows[:j], ups[:j]))
    step = max(1, options.refine_elements // (2 * max(U, 1)))
    for s in range(0, rows.size, step):
        if s and time.monotonic() > deadline:
            break
        r = rows[s:s + step]
        A = np.zeros((2 * r.size, n))
        A[np.arange(r.size), r] = 1.0
        A[r.size + np.arange(r.size), r] = -1.0
        bab = AlphaBeta(chain.prefix(j), lo, hi, lows[:j], ups[:j], A, np.zeros(2 * r.size), split_options)
        lb, *_ = bab.bound(*bab.root_state(), iters, deadline)
        lb = lb[0].numpy()
        l_out[s:s + r.size] = lb[:r.size]
        u_out[s:s + r.size] = -lb[r.size:]
    return l_out, u_out


def row_refiner(chain, lg, region, deadline: float, lp_deadline: float, iters: int, min_rows: int,
                options: BoundsOptions = BoundsOptions(), split_options: ActivationSplitOptions = ActivationSplitOptions()):
    """A `refine` hook for `bounds.region.compute_bounds`: alpha-CROWN bounds (`optimised_rows`,
    `iters` steps) of a layer's unstable rows when `chain` (the graph's chain view) is given and
    either the layer has at least `min_rows` of them or `lp_deadline` has passed (the LP is
    tighter, and on a few rows cheap enough); else None. Over the input box (extra constraints
    G x <= h left out: valid, only weaker)."""
    affine = [L.index for L in lg.layers if L.kind == "affine"]
    relu_src = [L.source for L in lg.layers if L.kind == "relu"]
    position = {k: j for j, k in enumerate(affine)}

    def refine(k, rows, layers):
        if chain is None or (rows.size < min_rows and time.monotonic() < lp_deadline):
            return None
        j = position[k]
        lows = [layers[s][0] for s in relu_src[:j]]
        ups = [layers[s][1] for s in relu_src[:j]]
        return optimised_rows(chain, region.lower, region.upper, lows, ups, j, rows, iters, deadline, options, split_options)

    return refine
