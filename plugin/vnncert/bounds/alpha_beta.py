"""Alpha/beta bounds with ReLU split constraints over the layer graph (as in beta-CROWN).

A *domain* fixes some of the ReLUs unstable at the root to active (z >= 0, relu(z) = z) or
inactive (z <= 0, relu(z) = 0); its bound is a lower bound of each row a_i.v of A v (v: the values
of a target affine layer, by default the network's output) over the points of the box whose
activations agree with the domain: CROWN's back-substitution through the layer graph (any DAG of
affine layers, ReLUs and max nodes: convolutions, residual adds, concatenations and splits are
affine terms) with, for each free unstable neuron, the chord as the upper relaxation and a lower
slope alpha in [0, 1] (the ops' `relu_relaxation`: its chord, and its lower slope as the start);
each split constraint s.z >= 0 enters with a Lagrange multiplier beta >= 0 (f - beta.s.z <= f on
the domain); a max node is relaxed by the op's `max_relaxation` (not split). Any alpha in [0, 1]
and beta >= 0 give a valid bound, so both are optimised by projected gradient ascent (Adam) and
the best bound seen is kept (`AlphaBeta.bound`). The intermediate bounds are the root's (`pre`),
fixed for every domain (a split neuron is relaxed exactly).

The optimiser's steps run in `ActivationSplitOptions.step_dtype` (float32: about twice the
speed of float64 on the CPU); each row's bound comes from one float64 pass with the parameters
of its best step, widened by the margin rule: only that pass matters for soundness.

Only what matters is multiplied: a ReLU's *live* neurons (u > 0; an inactive neuron outputs 0, so
its row of the layer before and its column of the layer after drop out exactly), and of an affine
layer only the rows its readers need. Each restricted term is a dense torch matrix, or a CSR one
when it is sparse (`BoundsOptions.sparse_fill`: convolutions, pools, padding). A pass keeps the
weights on a layer's values neuron-major, (n, N domains, R rows), so a term is applied as
`W^T @ Lam` (torch's sparse-dense product; Lam's gradient `W @ G` by the same kernel,
`sparse.sparse_mm`: torch 1.12's own backward of it took 45 times the forward product), a
ReLU's unstable neurons (kept first) are a leading slice, and its step back has its gradient
written out (`_ReluStep`). On oval21's cifar_wide (1,609 unstable ReLUs), 512 domains, 12 steps,
one thread: 0.86 s, against 1.7 s domain-major with autograd's gradient (docs/benchmarks.md).
`optimised_rows` is the root bound alone: alpha-CROWN bounds of an intermediate layer's rows.

Cuts (`AlphaBeta.set_cuts`): linear constraints over the layers' values and the unstable neurons'
indicators that the points asked about satisfy (a MIP solver's cuts on the network's MILP) enter
as GCP-CROWN's do (Zhang et al. 2022): each with a multiplier mu >= 0 optimised beside beta, their
weights on a layer's values added to the back-substitution there, and the indicators' weights
through each free neuron's exact hull (`_relu_step_cut`).
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..network.ops.pool import max_relaxation
from ..network.ops.relu import relu_relaxation
from ..options import ActivationSplitOptions, BoundsOptions
from .margin import slack
from .sparse import cast_csr, sparse_mm, torch_csr

Pre = Dict[int, Tuple[np.ndarray, np.ndarray]]  # affine layer -> (l, u) of its values over the box


class _Relu:
    """One ReLU layer's part of the bound: its live neurons (in its source's coordinates; the n_u
    unstable ones first, in the layer's order, then the active ones), the unstable ones' chord,
    CROWN's lower slope (the start) and pre-activation bias (BaBSR's score), and their offset in
    the split vectors."""

    def __init__(self, j, k, live, n_u, su, cu, start, pre_bias, off, to_source, l=None, u=None):
        self.j, self.k, self.live, self.n_u, self.off = j, k, live, n_u, off
        self.su, self.cu, self.start, self.pre_bias = su, cu, start, pre_bias
        self.l, self.u = l, u  # the unstable neurons' pre-activation bounds (the cut-aware step reads them)
        self.to_source = to_source  # positions of the live neurons among the source's needed rows (None: the same)


class _Max:
    """One max layer's relaxation over the root's bounds: per window its best entry's position in
    the source's needed rows, whether it is exact, and the constant upper bound where it is not."""

    def __init__(self, j, k, pos, exact, upper):
        self.j, self.k, self.pos, self.exact, self.upper = j, k, pos, exact, upper


def _restrict(W, rows, cols):
    """W[rows][:, cols] (None: all), as the layer graph keeps it (dense ndarray or CSR)."""
    import scipy.sparse as sp

    if rows is not None:
        W = W[rows]
    if cols is not None:
        W = W[:, cols]
    return W.tocsr() if sp.issparse(W) else np.asarray(W, np.float64)


def _torch_term(W, sparse_fill: float):
    """("dense", W^T (m, n)) or ("csr", (W^T, W) as torch CSR tensors) in float64, for a term
    W (n, m) (the products go through `sparse.sparse_mm`: torch's own gradient of a CSR product
    is far slower)."""
    import scipy.sparse as sp

    n, m = W.shape
    nnz = W.nnz if sp.issparse(W) else int(np.count_nonzero(W))
    if n * m and nnz < sparse_fill * n * m:
        Ws = (W if sp.issparse(W) else sp.csr_matrix(W)).tocsr()
        return "csr", (torch_csr(Ws.T.tocsr()), torch_csr(Ws))
    d = W.toarray() if sp.issparse(W) else W
    return "dense", torch.as_tensor(np.ascontiguousarray(np.asarray(d, np.float64).T))


def _mm(Lam, term):
    """W^T Lam: the weights (n, N, R) on a layer's values carried back through a `_torch_term`
    W (n, m) to the values of its source: (m, N, R)."""
    kind, W = term
    n, N, R = Lam.shape
    X = Lam.reshape(n, N * R)
    out = W @ X if kind == "dense" else sparse_mm(W[0], W[1], X)
    return out.reshape(-1, N, R)


def _cast_term(term, dtype):
    kind, W = term
    if kind == "dense":
        return kind, W.to(dtype)
    return kind, (cast_csr(W[0], dtype), cast_csr(W[1], dtype))


class _ReluStep(torch.autograd.Function):
    """A ReLU layer's step back in `AlphaBeta._pass` with its gradient written out (autograd's own,
    through slices and a concatenation, fills and copies layer-sized tensors several times per
    step). Lam (n_live, N, R): the weights on the live neurons, the n_u unstable ones first;
    alpha, beta (n_u, N, R); s, f, act, nc, cuf (n_u, N, 1) from `AlphaBeta._prep`. Returns
    (Lz, bias (N, R)): Lz = Lam with the unstable neurons' weights w replaced by
    max(w, 0) (act + f alpha) + min(w, 0) nc - beta s, and bias = sum over them of min(w, 0) cuf."""

    @staticmethod
    def forward(ctx, Lam, alpha, beta, s, f, act, nc, cuf):
        n_u = s.shape[0]
        Lu = Lam[:n_u]
        pos = Lu.clamp(min=0)
        neg = Lu - pos
        ap = torch.addcmul(act, alpha, f)
        coef = pos * ap
        coef += neg * nc
        coef -= beta * s
        bias = (neg * cuf).sum(0)
        if n_u < Lam.shape[0]:
            Lz = torch.empty(Lam.shape, dtype=Lam.dtype)
            Lz[:n_u] = coef
            Lz[n_u:] = Lam[n_u:]
        else:
            Lz = coef
        ctx.save_for_backward(pos, ap, s, f, nc, cuf)
        return Lz, bias

    @staticmethod
    def backward(ctx, G, gb):
        pos, ap, s, f, nc, cuf = ctx.saved_tensors
        n_u = s.shape[0]
        Gc = G[:n_u]
        g_lam = g_alpha = g_beta = None
        if ctx.needs_input_grad[0]:
            on = (pos > 0).to(G.dtype)  # the side of max(w, 0) / min(w, 0) each weight is on
            g_lam = torch.empty(G.shape, dtype=G.dtype)
            gu = Gc * (nc + on * (ap - nc))
            gu += gb * (cuf - on * cuf)
            g_lam[:n_u] = gu
            g_lam[n_u:] = G[n_u:]
        if ctx.needs_input_grad[1]:
            g_alpha = Gc * pos * f
        if ctx.needs_input_grad[2]:
            g_beta = -(Gc * s)
        return g_lam, g_alpha, g_beta, None, None, None, None, None


def _relu_step_cut(Lam, alpha, beta, q, s, f, act, l, u):
    """`_ReluStep` with cuts: the unstable neurons' indicators z carry the weights q (n_u, N, R)
    of the cuts' multipliers (`AlphaBeta.set_cuts`). A free neuron's part w relu(x) + q z over
    its exact hull {(l, 0, 0), (0, 0, 0), (0, 0, 1), (u, u, 1)} of (x, relu(x), z) is bounded
    below, as a function of x, by the lower convex envelope of the points (l, 0), (0, min(q, 0))
    and (u, w u + q): where the middle point lies below the chord of the other two, a line
    through it with slope s1 + alpha (s2 - s1) (s1, s2 the two segments' slopes), else the chord.
    With q = 0 this is `_ReluStep`'s relaxation (slope alpha w for w >= 0, the chord for w < 0).
    An active split neuron contributes w x + q (z = 1), an inactive one 0 (z = 0). Any alpha in
    [0, 1] gives a valid bound. Plain autograd: only searches with cuts take this step."""
    n_u = s.shape[0]
    w = Lam[:n_u]
    v = w * u + q  # the value at (u, u, 1)
    m = q.clamp(max=0)  # the least value at x = 0 (z = 0 or 1)
    inv = 1.0 / (u - l)
    chord = v * inv  # the chord's slope through (l, 0) and (u, v)
    c0 = -l * chord  # ... its value at 0
    s1 = m / (-l)
    s2 = (v - m) / u
    above = m > c0  # the middle point above the chord: the chord is the envelope
    slope = torch.where(above, chord, s1 + alpha * (s2 - s1))
    icpt = torch.where(above, c0, m)
    coef = f * slope + act * w - beta * s
    bias = (f * icpt + act * q).sum(0)
    if n_u < Lam.shape[0]:
        return torch.cat([coef, Lam[n_u:]]), bias
    return coef, bias


class AlphaBeta:
    """The bound of `A v` (v: layer `target`, default the output) over domains of ReLU splits of a
    layer graph (see the module docstring). `pre`: sound bounds (l, u) over the box [lo, hi] of
    every affine layer that a ReLU or max node before `target` reads."""

    def __init__(self, view, lo: np.ndarray, hi: np.ndarray, pre: Pre, A: np.ndarray, b: np.ndarray,
                 options: ActivationSplitOptions = ActivationSplitOptions(), target: Optional[int] = None,
                 bounds_options: BoundsOptions = BoundsOptions()):
        self.options = options
        self.step_dtype = getattr(torch, options.step_dtype)
        self.view = view
        lg = view.lg
        self.target = lg.output if target is None else int(target)
        self.lo = torch.as_tensor(np.asarray(lo, np.float64))
        self.hi = torch.as_tensor(np.asarray(hi, np.float64))
        anc = view.ancestors(self.target)
        layers = lg.layers
        # ---- the ReLUs and max nodes before the target, and the coordinates each layer is kept in ----
        cols: Dict[int, Optional[np.ndarray]] = {0: None}  # variable layer -> its entries read (None: all)
        relus = [j for j in view.relus if j in anc]
        maxes = [j for j in view.maxes if j in anc]
        lives, n_unstable = {}, {}
        for j in relus:
            l, u = (np.asarray(v, np.float64) for v in pre[layers[j].source])
            live = np.flatnonzero(~(u <= 0))
            # the unstable neurons first (in the layer's order), then the active ones: `_pass` takes
            # the unstable ones as a slice and passes the rest through unchanged
            unstable = ~(l[live] >= 0)
            lives[j] = np.concatenate([live[unstable], live[~unstable]])
            n_unstable[j] = int(unstable.sum())
            cols[j] = lives[j]
        for j in maxes:
            cols[j] = None
        need: Dict[int, Optional[np.ndarray]] = {}  # affine layer -> the rows its readers need (None: all)
        for k in sorted(anc):
            if layers[k].kind != "affine":
                continue
            rd = [r for r in view.readers.get(k, []) if r in anc]
            if rd and all(layers[r].kind == "relu" for r in rd):
                need[k] = lives[rd[0]] if len(rd) == 1 else np.unique(np.concatenate([lives[r] for r in rd]))
            else:
                need[k] = None
        self.relus: List[_Relu] = []
        off = 0
        for j in relus:
            k = layers[j].source
            l, u = (np.asarray(v, np.float64) for v in pre[k])
            live = lives[j]
            ll, uu = l[live], u[live]
            n_u = n_unstable[j]  # l < 0 < u: unstable, the first n_u of `live`
            lo_s, up_s, up_b = relu_relaxation(ll[:n_u], uu[:n_u], np)
            nk = need[k]
            if nk is not None and np.array_equal(nk, live):
                to_source = None
            else:  # the source keeps rows other readers need: positions of the live neurons among them
                to_source = torch.as_tensor(live if nk is None else np.searchsorted(nk, live), dtype=torch.long)
            bias_k = np.asarray(layers[k].bias, np.float64)[live[:n_u]]
            t = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
            self.relus.append(_Relu(j, k, torch.as_tensor(live, dtype=torch.long), n_u, t(up_s), t(up_b), t(lo_s), t(bias_k),
                                    off, to_source, t(ll[:n_u]), t(uu[:n_u])))
            off += n_u
        self.U = off
        self.maxes: List[_Max] = []
        for j in maxes:
            L = layers[j]
            l, u = (np.asarray(v, np.float64) for v in pre[L.source])
            g = np.asarray(L.groups, np.int64)
            valid = g >= 0
            gi = np.where(valid, g, 0)
            index, exact, upper = max_relaxation(np.where(valid, l[gi], -np.inf), np.where(valid, u[gi], -np.inf), np)
            best = gi[np.arange(g.shape[0]), index]
            nk = need[L.source]
            pos = best if nk is None else np.searchsorted(nk, best)
            self.maxes.append(_Max(j, L.source, torch.as_tensor(pos, dtype=torch.long), torch.as_tensor(exact.astype(np.float64)),
                                   torch.as_tensor(np.where(exact, 0.0, upper))))
        # ---- the affine terms, restricted; the target's terms start the back-substitution ----
        fill = self._sparse_fill = bounds_options.sparse_fill
        terms: Dict[int, list] = {}
        biases: Dict[int, torch.Tensor] = {}
        for k, rows in need.items():
            L = layers[k]
            terms[k] = [(s, _torch_term(_restrict(W, rows, cols[s]), fill)) for s, W in L.terms]
            biases[k] = torch.as_tensor(np.asarray(L.bias, np.float64)[rows] if rows is not None else np.asarray(L.bias, np.float64))
        self._start_terms = [(s, _restrict(W, None, cols[s])) for s, W in layers[self.target].terms]
        self._target_bias = np.asarray(layers[self.target].bias, np.float64)
        self.order = sorted((k for k in anc if k != self.target), reverse=True)
        self.kind = {k: layers[k].kind for k in self.order}
        self._relu_of = {r.j: r for r in self.relus}
        self._max_of = {m.j: m for m in self.maxes}
        self._need = need
        self._pre = pre
        self._terms64 = terms
        self._bias64 = biases
        self._terms: Dict[torch.dtype, tuple] = {}
        self.set_rows(A, b)

    # ---- the rows bounded ------------------------------------------------------------------------
    def set_rows(self, A: np.ndarray, b: np.ndarray) -> None:
        """Bound the rows A (R, n_target) (b: the right-hand sides the search compares with)."""
        import scipy.sparse as sp

        A = np.atleast_2d(np.asarray(A, np.float64))
        self.A = torch.as_tensor(A)
        self.b = np.atleast_1d(np.asarray(b, np.float64))
        self.R = A.shape[0]
        As = sp.csr_matrix(A)
        # the first step back from the target: A W_s (R, entries of s read), A b
        self._start64 = [(s, torch.as_tensor(np.asarray((W.T @ As.T).T.todense() if sp.issparse(W) else As @ W, np.float64)))
                         for s, W in self._start_terms]
        self._bias0_64 = torch.as_tensor(A @ self._target_bias)
        self._terms = {}
        # cuts (`set_cuts`) are facts about the unsafe set of these rows: new rows start without
        self.K = 0
        self._cuts64 = None
        self._cuts: Dict[torch.dtype, tuple] = {}

    # ---- cuts ----------------------------------------------------------------------------------------
    def set_cuts(self, d: np.ndarray, layers: Optional[Dict[int, object]] = None, indicators=None) -> int:
        """Linear constraints sum over layers L of C_L v_L + C_z z <= d (K of them) that every point
        the caller asks about satisfies: v_L the values of layer L of the graph (0: the input; an
        affine layer, a ReLU or max layer, or the target; `layers` maps L to C_L (K, size of L),
        dense or scipy sparse), z in {0, 1} the indicators of the unstable neurons (1: active;
        `indicators` (K, U) in the split vectors' order). The bound is then a lower bound of A v over
        the domain's points that satisfy them (a MIP solver's cuts hold at every point of the MILP's
        feasible set; a cut from a verified domain at every point of the disjunct's unsafe set).
        Each cut enters with a multiplier mu >= 0 (the term mu (C w - d) <= 0), kept after the
        split multipliers beta: the parameters' beta part is (N, R, U + K) from here on (as
        GCP-CROWN, Zhang et al. 2022; the indicators through `_relu_step_cut`).

        A coefficient on an entry the pass does not carry (an inactive neuron's ReLU value: exactly
        0; a row of an affine layer no reader needs) is replaced by the worst value of its term over
        `pre`'s bounds (the cut only gets weaker); a cut with such an entry and no finite bound is
        dropped. Returns how many cuts were kept."""
        import scipy.sparse as sp

        d = np.atleast_1d(np.asarray(d, np.float64)).copy()
        K = d.size
        keep = np.ones(K, bool)
        lg = self.view.lg
        parts: Dict[int, object] = {}
        start: Dict[int, object] = {}
        for L, C in (layers or {}).items():
            C = sp.csr_matrix(C, dtype=np.float64)
            if C.nnz == 0:
                continue
            if L == self.target:  # through the target's terms to its sources, its bias into d
                d -= C @ self._target_bias
                for s_, W in self._start_terms:
                    M = sp.csr_matrix(C @ W)
                    start[s_] = M if s_ not in start else start[s_] + M
                continue
            kind = lg.layers[L].kind if L else "input"
            if L and L not in self.kind:
                keep &= np.asarray(abs(C).sum(axis=1)).ravel() == 0  # a layer the bound never reaches
                continue
            if kind == "relu":
                rows = self._relu_of[L].live.numpy()
            elif kind == "affine":
                rows = self._need[L]
            else:
                rows = None
            if rows is not None:
                out = np.setdiff1d(np.arange(C.shape[1]), rows)
                if out.size and kind == "affine":
                    Co = C[:, out].tocoo()
                    l, u = (np.asarray(v, np.float64)[out] for v in self._pre[L]) if L in self._pre else \
                        (np.full(out.size, -np.inf), np.full(out.size, np.inf))
                    worst = np.minimum(Co.data * l[Co.col], Co.data * u[Co.col])
                    bad = ~np.isfinite(worst)
                    keep[np.unique(Co.row[bad])] = False
                    np.add.at(d, Co.row[~bad], -worst[~bad])
                C = C[:, rows]
            parts[L] = C
        fill = self._sparse_fill  # as the layers' terms (cut matrices are far sparser than that)
        ind = None
        if indicators is not None:
            ind = sp.csr_matrix(indicators, dtype=np.float64)
        if not keep.all():
            sel = np.flatnonzero(keep)
            parts = {L: C[sel] for L, C in parts.items()}
            start = {s_: M[sel] for s_, M in start.items()}
            ind = None if ind is None else ind[sel]
            d = d[sel]
        self.K = int(d.size)
        if self.K == 0:
            self._cuts64 = None
            self._cuts = {}
            return 0
        for s_, M in start.items():
            parts[s_] = M if s_ not in parts else parts[s_] + M
        self._cuts64 = ({L: _torch_term(C, fill) for L, C in parts.items() if C.nnz},
                        None if ind is None or ind.nnz == 0 else _torch_term(ind, fill), torch.as_tensor(d))
        self._cuts = {}
        return self.K

    def _cuts_in(self, dtype):
        """(layer -> C_L term, indicator term or None, d (K,), ReLU layer j -> (l, u) (n_u, 1, 1)) in
        dtype: the cuts of `set_cuts`."""
        if dtype not in self._cuts:
            col = lambda t: t.to(dtype)[:, None, None]  # noqa: E731
            terms, ind, d = self._cuts64
            self._cuts[dtype] = ({L: _cast_term(t, dtype) for L, t in terms.items()},
                                 None if ind is None else _cast_term(ind, dtype), d.to(dtype),
                                 {r.j: (col(r.l), col(r.u)) for r in self.relus if r.n_u})
        return self._cuts[dtype]

    def _terms_in(self, dtype):
        """(start terms, start bias, affine terms, affine biases, relu records, max records, lo, hi) in
        dtype; per-neuron constants shaped (n, 1, 1) to broadcast over (n, N, R)."""
        if dtype not in self._terms:
            c = lambda t: t.to(dtype)  # noqa: E731
            col = lambda t: t.to(dtype)[:, None, None]  # noqa: E731
            start = [(s, c(M)) for s, M in self._start64]
            terms = {k: [(s, _cast_term(t, dtype)) for s, t in ts] for k, ts in self._terms64.items()}
            biases = {k: c(v) for k, v in self._bias64.items()}
            relus = {r.j: (r, col(r.su), col(r.cu), col(r.pre_bias)) for r in self.relus}
            maxes = {m.j: (m, col(m.exact), col(m.upper)) for m in self.maxes}
            self._terms[dtype] = (start, c(self._bias0_64), terms, biases, relus, maxes, c(self.lo), c(self.hi))
        return self._terms[dtype]

    # ---- one bound evaluation --------------------------------------------------------------------
    # Inside a pass the weights on a layer's values are kept neuron-major, (n, N, R): a ReLU's
    # unstable neurons are then a leading slice, the CSR products need no transposes, and every
    # elementwise operation reads its operands in one order. alpha and beta are (U, N, R) inside
    # `bound` (each ReLU layer's part a slice), (N, R, U) outside.
    def _prep(self, splitT):
        """The split vectors' part of a pass per ReLU layer with unstable neurons: j -> (s, f, act,
        nc, cuf), each (n_u, N, 1) in splitT's (float) dtype, from the splits splitT (U, N): the
        splits s, free f = [s = 0], act = [s > 0], the negative part's slope nc = f su + act and
        intercept f cu."""
        dt = splitT.dtype
        relus = self._terms_in(dt)[4]
        out = {}
        for r in self.relus:
            if r.n_u:
                _, su, cu, _ = relus[r.j]
                s = splitT[r.off:r.off + r.n_u].contiguous()[:, :, None]
                f = (s == 0).to(dt)
                act = (s > 0).to(dt)
                out[r.j] = (s, f, act, f * su + act, f * cu)
        return out

    def _parts(self, t):
        """A (U, N, R) tensor's part per ReLU layer with unstable neurons (views)."""
        return {r.j: t[r.off:r.off + r.n_u] for r in self.relus if r.n_u}

    def _mu(self, t):
        """The cuts' multipliers (K, N, R) of a (U + K, N, R) multiplier tensor (None without cuts)."""
        return t[self.U:] if self.K else None

    def _pass(self, split, alpha, beta, want_scores: bool = False, obj=None):
        """Lower bounds (N, R) of A v over each domain, the minimising inputs (N, R, n_in) and, with
        want_scores, the branching scores (N, 2, U): BaBSR's estimate and the intercept score, -1
        where split (`search.activation_split._Domains` ranks by both). split (N, U), alpha and
        beta (N, R, U) in the pass's dtype. With `obj` (N,) each domain bounds its own row obj[i]
        of A instead (R = 1: `tighten_rows`)."""
        dt = split.dtype if split.is_floating_point() else alpha.dtype
        cols = lambda t: t.to(dt).permute(2, 0, 1).contiguous()  # noqa: E731
        be = cols(beta)
        return self._pass_cols(split.to(dt).T, self._parts(cols(alpha)), self._parts(be), want_scores, obj, mu=self._mu(be))

    def _pass_cols(self, splitT, alpha, beta, want_scores: bool = False, obj=None, prep=None, want_x: bool = True, mu=None):
        """`_pass` in the pass's own layout: splitT (U, N) in the pass's dtype, alpha and beta per
        ReLU layer j with unstable neurons its part (n_u, N, R), the cuts' multipliers mu (K, N, R)
        (`set_cuts`; None: no cuts); the minimising inputs only with want_x (else None). `prep`:
        `_prep(splitT)`, when the caller keeps it across passes."""
        N = splitT.shape[1]
        dt = splitT.dtype
        start, bias0, terms, biases, relus, maxes, lo, hi = self._terms_in(dt)
        if prep is None:
            prep = self._prep(splitT)
        q_all = cut_lu = None
        cut_terms, cut_d = {}, None
        if mu is not None and self.K:
            cut_terms, ind, cut_d, cut_lu = self._cuts_in(dt)
            q_all = _mm(mu, ind) if ind is not None else None  # each unstable neuron's indicator weight
        pending = {}
        for s, M in start:  # M (R, n_s) -> (n_s, N, R)
            P = M.T[:, None, :].expand(-1, N, -1) if obj is None else M[obj].T[:, :, None]
            pending[s] = pending[s] + P if s in pending else P
        bias = bias0.expand(N, -1) if obj is None else bias0[obj][:, None]
        if cut_d is not None:
            bias = bias - torch.tensordot(cut_d, mu, dims=1)  # the cuts' constants: - mu . d
            for L, t in cut_terms.items():  # their weights on the layers' values: C_L^T mu
                M = _mm(mu, t)
                pending[L] = pending[L] + M if L in pending else M
        scores = torch.full((N, 2, self.U), -1.0, dtype=dt) if want_scores else None

        def add(k, M):
            pending[k] = pending[k] + M if k in pending else M

        for k in self.order:
            if k == 0 or k not in pending:
                continue
            Lam = pending.pop(k)
            kind = self.kind[k]
            if kind == "affine":
                bias = bias + torch.tensordot(biases[k], Lam, dims=1)
                for s, t in terms[k]:
                    add(s, _mm(Lam, t))
            elif kind == "relu":
                r, su, cu, pre_bias = relus[k]
                n_u, off = r.n_u, r.off
                Lz = Lam  # the active neurons pass their weight through
                if n_u:
                    # unstable neurons: free ones relaxed (lower slope alpha, chord above), split
                    # ones exact (active: z, inactive: 0), each split s z >= 0 with multiplier beta
                    sp, f, act, nc, cuf = prep[k]
                    if q_all is None:
                        Lz, bz = _ReluStep.apply(Lam, alpha[k], beta[k], sp, f, act, nc, cuf)
                    else:
                        Lz, bz = _relu_step_cut(Lam, alpha[k], beta[k], q_all[off:off + n_u], sp, f, act, *cut_lu[k])
                    bias = bias + bz
                    if want_scores:
                        # BaBSR's estimate (its bias and intercept terms) and the intercept score alone
                        Lu = Lam[:n_u].detach()
                        pos = Lu.clamp(min=0)
                        neg = Lu - pos
                        bt = Lu * pre_bias
                        babsr = (torch.maximum(bt * (su - 1.0), bt * su) + neg * cu).abs().sum(2)
                        icpt = (cu * (-neg + 1e-3 * pos)).sum(2)
                        free_ = f[..., 0] > 0
                        scores[:, 0, off:off + n_u] = torch.where(free_, babsr, torch.full_like(babsr, -1.0)).T
                        scores[:, 1, off:off + n_u] = torch.where(free_, icpt, torch.full_like(icpt, -1.0)).T
                if r.to_source is None:
                    add(r.k, Lz)
                else:
                    n_k = self._need[r.k].size if self._need[r.k] is not None else self.view.layers[r.k].size
                    add(r.k, torch.zeros((n_k,) + Lz.shape[1:], dtype=Lz.dtype).index_add(0, r.to_source, Lz))
            elif kind == "max":
                m, exact, upper = maxes[k]
                pos = Lam.clamp(min=0)
                neg = Lam - pos
                bias = bias + (neg * (1.0 - exact) * upper).sum(0)
                coef = pos + neg * exact
                nk = self._need[m.k]
                n_k = nk.size if nk is not None else self.view.layers[m.k].size
                add(m.k, torch.zeros((n_k,) + Lam.shape[1:], dtype=Lam.dtype).index_add(0, m.pos, coef))
        Lam = pending.pop(0, None)
        if Lam is None:  # nothing reaches the input: the bias alone
            return bias, (lo.expand(N, self.R, -1) if want_x else None), scores
        if not want_x:  # min over the box of Lam x = Lam lo + min(Lam, 0) (hi - lo)
            return bias + torch.tensordot(lo, Lam, dims=1) + torch.tensordot(hi - lo, Lam.clamp(max=0), dims=1), None, scores
        x = torch.where(Lam > 0, lo[:, None, None], hi[:, None, None])
        lb = (Lam * x).sum(0) + bias
        return lb, x.permute(1, 2, 0).contiguous(), scores

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
        The domains still optimised are kept compact (their parameters, Adam's moments, split
        constants), so a step costs what its active domains cost.

        With `obj` (N,), domain i bounds row obj[i] of A alone (alpha, beta (N, 1, U))."""
        dt = self.step_dtype
        o = self.options
        N = split.shape[0]
        # (U, N, R): each domain's parameters at the end (its last step's, or its freezing step's)
        a_out = alpha.to(dt).permute(2, 0, 1).contiguous()
        b_out = beta.to(dt).permute(2, 0, 1).contiguous()
        best = torch.full(tuple(alpha.shape[:2]), -torch.inf, dtype=dt)  # each row's best bound and its parameters
        best_a, best_b = a_out.clone(), b_out.clone()
        # the active domains' state: their indices, split constants, parameters (a_out / b_out
        # themselves until a domain freezes), Adam's moments, best bounds and parameters
        gidx = torch.arange(N)
        split_t = split.T.contiguous()  # (U, N): the pass's layout
        sf = split_t.to(dt)
        prep = self._prep(sf)
        ob = obj
        a, be = a_out, b_out
        bst, ba, bb = best.clone(), best_a.clone(), best_b.clone()
        ma, va, mb, vb = (torch.zeros_like(a), torch.zeros_like(a), torch.zeros_like(be), torch.zeros_like(be))
        sc_act = None
        b_thr = None if freeze is None else torch.as_tensor(np.asarray(freeze, np.float64)).to(dt)
        if self.U == 0:  # nothing relaxed: the bound has no parameters to optimise
            iters = 0
        for it in range(iters + 1):
            if it < iters and time.monotonic() > deadline:
                break  # out of time: the float64 pass below with the best parameters so far (and its scores)
            last = it == iters
            # each ReLU layer's part of alpha and beta: leaves sharing a's and be's storage
            pa = {j: t.detach().requires_grad_(not last) for j, t in self._parts(a).items()}
            pb = {j: t.detach().requires_grad_(not last) for j, t in self._parts(be).items()}
            pm = self._mu(be)
            if pm is not None:
                pb[None] = pm = pm.detach().requires_grad_(not last)  # last in pb: the cuts' part of be
            with torch.set_grad_enabled(not last):  # the last step only reads bounds and scores
                lb, _, sc = self._pass_cols(sf, pa, pb, want_scores=last, obj=ob, prep=prep, want_x=False, mu=pm)
            cur = lb.detach()
            up = cur > bst  # (n, R): rows whose bound improved keep this step's parameters
            bst = torch.where(up, cur, bst)
            ba = torch.where(up[None], a, ba)
            bb = torch.where(up[None], be, bb)
            if last:
                sc_act = sc
                break
            (-lb.sum()).backward()
            ga = torch.cat([p.grad if p.grad is not None else torch.zeros_like(p) for p in pa.values()])
            gb = torch.cat([p.grad if p.grad is not None else torch.zeros_like(p) for p in pb.values()])
            with torch.no_grad():
                if b_thr is not None:
                    done = ((cur - b_thr) > o.freeze_margin * (1.0 + cur.abs())).any(dim=1)
                    if bool(done.any()):
                        # frozen domains keep this step's (pre-update) parameters and leave the state
                        fz = gidx[done]
                        a_out[:, fz] = a[:, done]
                        b_out[:, fz] = be[:, done]
                        best[fz], best_a[:, fz], best_b[:, fz] = bst[done], ba[:, done], bb[:, done]
                        k = torch.nonzero(~done)[:, 0]
                        gidx = gidx[k]
                        if gidx.numel() == 0:
                            break
                        # (index_select: a boolean mask over the domain axis gathers 4 times slower)
                        a, be, ga, gb, ma, va, mb, vb, ba, bb = (t.index_select(1, k) for t in (a, be, ga, gb, ma, va, mb, vb, ba, bb))
                        bst, sf = bst[k], sf.index_select(1, k)
                        prep = {j: tuple(t.index_select(1, k) for t in v) for j, v in prep.items()}
                        ob = None if ob is None else ob[k]
                # Adam (as torch.optim.Adam: betas 0.9, 0.999, eps 1e-8), in place, projected
                t = it + 1
                U = self.U  # be: the split multipliers, then the cuts' (their own step size)
                groups = [(a, o.lr_alpha, ma, va, ga), (be[:U], o.lr_beta, mb[:U], vb[:U], gb[:U])]
                if self.K:
                    groups.append((be[U:], o.lr_cut, mb[U:], vb[U:], gb[U:]))
                for p, lr, m, v, g in groups:
                    m.mul_(0.9).add_(g, alpha=0.1)
                    v.mul_(0.999).addcmul_(g, g, value=0.001)
                    denom = v.sqrt().div_((1.0 - 0.999 ** t) ** 0.5).add_(1e-8)
                    p.addcdiv_(m, denom, value=-(lr / (1.0 - 0.9 ** t)))
                a.clamp_(0.0, 1.0)
                be.clamp_(min=0.0)
        if gidx.numel():  # the domains active to the end
            if gidx.numel() < N:  # compacted: a and be are no longer a_out and b_out themselves
                a_out[:, gidx] = a
                b_out[:, gidx] = be
            best[gidx], best_a[:, gidx], best_b[:, gidx] = bst, ba, bb
        with torch.no_grad():
            f64 = torch.float64
            bb64 = best_b.to(f64)
            lb, x, sc64 = self._pass_cols(split_t.to(f64), self._parts(best_a.to(f64)), self._parts(bb64),
                                          want_scores=True, obj=obj, mu=self._mu(bb64))
            lb = lb - slack(lb)  # the margin rule: every bound kept is widened
        scores = sc64.clone()
        if sc_act is not None and gidx.numel():
            scores[gidx] = sc_act.to(f64)
        out = lambda t: t.float().permute(1, 2, 0).contiguous()  # noqa: E731  (U, N, R) -> (N, R, U)
        return lb, out(a_out), out(b_out), scores, x

    def root_state(self):
        """(split, alpha, beta) of the root domain: nothing split, CROWN's lower slopes, beta 0
        (beta (1, R, U + K): the cuts' multipliers after the splits')."""
        R, U = self.R, self.U
        split = torch.zeros((1, U), dtype=torch.int8)
        alpha = torch.zeros((1, R, U), dtype=torch.float32)
        for r in self.relus:
            alpha[..., r.off:r.off + r.n_u] = r.start.float()  # CROWN's choice as the start
        beta = torch.zeros((1, R, U + self.K), dtype=torch.float32)  # the split multipliers, then the cuts'
        return split, alpha, beta

    @property
    def pre(self) -> Pre:
        """The bounds (l, u) of the affine layers the ReLUs and max nodes read, as given."""
        return self._pre

    def split_neurons(self) -> List[Tuple[int, np.ndarray]]:
        """Per ReLU layer (its index), the neurons of its source the split vectors' entries stand
        for, in the order of the vectors (what a test reads the splits with)."""
        return [(r.j, r.live[:r.n_u].numpy().astype(np.int64)) for r in self.relus]


def optimised_rows(view, lo, hi, pre: Pre, k: int, rows: np.ndarray, iters: int, deadline: float,
                   options: BoundsOptions = BoundsOptions(),
                   split_options: ActivationSplitOptions = ActivationSplitOptions()):
    """alpha-CROWN bounds (l, u) of the given rows of affine layer k over the box [lo, hi], given
    sound bounds `pre` of the affine layers the ReLUs and max nodes before it read: the root bound
    of `AlphaBeta` (no splits) with one lower slope per row and unstable neuron, optimised for
    `iters` steps; float64, valid for any slopes, so sound whatever the optimiser reached; widened
    by the margin rule like every other bound."""
    rows = np.asarray(rows, np.int64)
    n = view.layers[k].size
    l_out = np.full(rows.size, -np.inf)
    u_out = np.full(rows.size, np.inf)
    if not rows.size:
        return l_out, u_out
    # rows in chunks: the slopes are (2 rows, earlier unstable ReLUs) per chunk, kept to
    # options.refine_elements; rows left when the deadline passes keep infinite (no) bounds
    bab = AlphaBeta(view, lo, hi, pre, np.zeros((1, n)), np.zeros(1), split_options, target=k, bounds_options=options)
    step = max(1, options.refine_elements // (2 * max(bab.U, 1)))
    for s in range(0, rows.size, step):
        if s and time.monotonic() > deadline:
            break
        r = rows[s:s + step]
        A = np.zeros((2 * r.size, n))
        A[np.arange(r.size), r] = 1.0
        A[r.size + np.arange(r.size), r] = -1.0
        bab.set_rows(A, np.zeros(2 * r.size))
        lb, *_ = bab.bound(*bab.root_state(), iters, deadline)
        lb = lb[0].numpy()
        l_out[s:s + r.size] = lb[:r.size]
        u_out[s:s + r.size] = -lb[r.size:]
    return l_out, u_out


def row_refiner(view, lg, region, deadline: float, lp_deadline: float, iters: int, min_rows: int,
                options: BoundsOptions = BoundsOptions(), split_options: ActivationSplitOptions = ActivationSplitOptions()):
    """A `refine` hook for `bounds.region.compute_bounds`: alpha-CROWN bounds (`optimised_rows`,
    `iters` steps) of a layer's unstable rows when `view` (the graph's `GraphView`) is given and
    either the layer has at least `min_rows` of them or `lp_deadline` has passed (the LP is
    tighter, and on a few rows cheap enough); else None. Over the input box (extra constraints
    G x <= h left out: valid, only weaker)."""

    def refine(k, rows, layers):
        if view is None or (rows.size < min_rows and time.monotonic() < lp_deadline):
            return None
        pre = {s: layers[s] for s in view.ancestors(k) if layers[s] is not None and view.layers[s].kind == "affine"}
        return optimised_rows(view, region.lower, region.upper, pre, k, rows, iters, deadline, options, split_options)

    return refine
