"""CROWN for networks that are a chain of affine maps and ReLUs, batched over many input boxes.

Input splitting on ACAS Xu-sized networks spends nearly all its time recomputing intermediate
bounds. Two facts make that cheap here:
  * a child box lies inside its parent, so the parent's intermediate bounds stay valid for it
    (they are intersected with the child's own);
  * a neuron that is stable on the parent is stable on the child, and a stable ReLU is relaxed
    exactly whatever its bounds: only the neurons unstable on the parent need new bounds.
So each layer's backward passes run over the few still-unstable neurons of each box (gathered
per box, padded to the batch maximum) instead of every neuron. The relaxation is CROWN's
(upper: the chord; lower: slope 1 when u >= -l, else 0), computed in float64.

`AffineReluChain.from_module` extracts the chain from the converted torch module by probing
each ReLU-free segment with basis vectors in float64, and refuses (returns None) unless the
chain reproduces the module on random points. auto_LiRPA stays the bounder for everything
else; tests check this one against auto_LiRPA and against sampling.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

MAX_WIDTH = 4096  # neurons per layer
MAX_ENTRIES = 4_000_000  # entries per weight matrix
PROBE = 2.0 ** 30

_AFFINE_STEPS = ("Linear", "ConstOp", "Affine", "Reshape", "Conv", "AvgPool", "Slice", "Transpose", "Reduce", "GlobalAvgPool")


def _chain_steps(module) -> Optional[list]:
    """The module's steps if they form a single path from input to output, else None."""
    cur = module.input_name
    for s in module.steps:
        if len(s.in_names) != 1 or len(s.out_names) != 1 or s.in_names[0] != cur:
            return None
        cur = s.out_names[0]
    return list(module.steps) if cur == module.output_name else None


def _is_relu(step) -> bool:
    return type(step).__name__ == "Unary" and step.op == "Relu"


def _is_affine(step) -> bool:
    name = type(step).__name__
    if name not in _AFFINE_STEPS:
        return False
    if name == "ConstOp":
        return not (step.op == "Div" and step.const_first)  # c / x is not affine
    if name == "Reduce":
        return step.op in ("ReduceSum", "ReduceMean")
    return True


class AffineReluChain:
    """z_1 = W_1 x + b_1, h_k = relu(z_k), z_{k+1} = W_{k+1} h_k + b_{k+1}; y = z_L (flat float64)."""

    def __init__(self, Ws: List[np.ndarray], bs: List[np.ndarray]):
        import torch

        self.torch = torch
        self.W = [torch.as_tensor(w, dtype=torch.float64) for w in Ws]
        self.b = [torch.as_tensor(b, dtype=torch.float64) for b in bs]
        self.n_relu = len(Ws) - 1
        self.widths = [w.shape[0] for w in Ws[:-1]]

    # ---- extraction ------------------------------------------------------------------------------
    @staticmethod
    def from_module(module, n_inputs: int, check_points: int = 64) -> Optional["AffineReluChain"]:
        import torch

        steps = _chain_steps(module)
        if steps is None:
            return None
        segments, cur = [], []
        for s in steps:
            if _is_relu(s):
                segments.append(cur)
                cur = []
            elif _is_affine(s):
                cur.append(s)
            else:
                return None
        segments.append(cur)
        if len(segments) < 1:
            return None
        Ws, bs = [], []
        shape = (n_inputs,)
        with torch.no_grad():
            x_shape = tuple(module.input_rest)
            for seg in segments:
                n_in = int(np.prod(x_shape)) if x_shape else 1
                if n_in > MAX_WIDTH:
                    return None
                # probe with 0 and with PROBE * e_i (a power of two): the column is then read off with a
                # rounding error relative to the weight itself, not to the bias it was added to
                basis = torch.cat([torch.zeros(1, n_in, dtype=torch.float64),
                                   PROBE * torch.eye(n_in, dtype=torch.float64)])
                t = basis.reshape((n_in + 1,) + x_shape)
                for s in seg:
                    t = s.double()(t)
                out_shape = tuple(t.shape[1:])
                flat = t.reshape(n_in + 1, -1)
                b = flat[0].clone()
                W = ((flat[1:] - b) / PROBE).T.contiguous()  # (n_out, n_in)
                if W.numel() > MAX_ENTRIES or W.shape[0] > MAX_WIDTH:
                    return None
                Ws.append(W.numpy())
                bs.append(b.numpy())
                x_shape = out_shape
            chain = AffineReluChain(Ws, bs)
            # the chain must reproduce the module (float64) on random points
            rng = np.random.default_rng(0)
            xs = torch.as_tensor(rng.uniform(-1, 1, (check_points, n_inputs)))
            ref = module.double()(xs)
            got = chain.forward(xs)
            if not torch.allclose(ref, got, rtol=1e-9, atol=1e-9 * (1 + float(ref.abs().max()))):
                return None
        return chain

    def forward(self, x):
        h = x
        for k in range(self.n_relu):
            h = self.torch.relu(h @ self.W[k].T + self.b[k])
        return h @ self.W[-1].T + self.b[-1]

    # ---- bounds ----------------------------------------------------------------------------------
    def _backward(self, Lam, bias, upto: int, lows: list, ups: list, lo, hi, slack: Optional[list] = None):
        """Lower bound of Lam . h_{upto-1} + bias over the box (h_{-1} = x), back-substituting the
        CROWN relaxations of layers upto-1 .. 0. Lam: (B, R, n). Returns (lb (B, R), A (B, R, n_in)).
        With `slack` (a list), appends per layer (B, R, n_j): |Lam| times the triangle gap of each
        unstable neuron, the looseness that splitting can remove."""
        torch = self.torch
        for j in range(upto - 1, -1, -1):
            # Lam . h_j with h_j = relu(z_j): relax, then through z_j = W_j h_{j-1} + b_j
            l, u = lows[j], ups[j]  # (B, n_j)
            active = l >= 0
            inactive = u <= 0
            unstable = ~(active | inactive)
            denom = torch.where(unstable, u - l, torch.ones_like(u))
            s_up = torch.where(unstable, u / denom, active.to(u.dtype))  # chord slope (1 / 0 when stable)
            c_up = torch.where(unstable, -s_up * l, torch.zeros_like(u))  # chord intercept
            s_lo = torch.where(unstable, (u >= -l).to(u.dtype), active.to(u.dtype))
            if slack is not None:
                gap = torch.where(unstable, -l * u / denom, torch.zeros_like(u))
                slack.append(Lam.abs() * gap[:, None, :])
            pos = Lam.clamp(min=0)
            neg = Lam - pos
            bias = bias + torch.einsum("brn,bn->br", neg, c_up)
            Lam = pos * s_lo[:, None, :] + neg * s_up[:, None, :]
            bias = bias + Lam @ self.b[j]
            Lam = Lam @ self.W[j]
        # after j = 0, Lam multiplies the input x
        c = (lo + hi) / 2
        r = (hi - lo) / 2
        lb = torch.einsum("brn,bn->br", Lam, c) - torch.einsum("brn,bn->br", Lam.abs(), r) + bias
        return lb, Lam

    def intermediate_bounds(self, lo, hi, parent: Optional[Tuple[list, list]] = None, shares: Optional[list] = None):
        """Pre-activation bounds (lists of (B, n_k)) of every ReLU layer over the boxes: interval
        bounds (intersected with the parent's, when given), then back-substitution for the neurons
        those leave unstable.
        With `shares` (a list), appends per layer (B, n_k, n_in): each recomputed neuron's linear
        range split over the input dims (rows sum to 1; zero rows for neurons not recomputed)."""
        torch = self.torch
        B = lo.shape[0]
        c = (lo + hi) / 2
        r = (hi - lo) / 2
        lows, ups = [], []
        for k in range(self.n_relu):
            W, b = self.W[k], self.b[k]
            # interval bounds first (of the input box, or of relu of the layer below): neurons they
            # already show stable need no back-substitution (their relaxation is exact whatever the
            # bound values); on small boxes that is most of them (lindex_3000: 3000 boxes, 128 wide)
            if k == 0:
                ic, ir = c, r
            else:
                hl, hu = lows[k - 1].clamp(min=0), ups[k - 1].clamp(min=0)
                ic, ir = (hl + hu) / 2, (hu - hl) / 2
            mid = ic @ W.T + b
            rad = ir @ W.abs().T
            pl, pu = mid - rad, mid + rad
            if parent is not None:
                pl, pu = torch.maximum(pl, parent[0][k]), torch.minimum(pu, parent[1][k])
            if k == 0:
                l, u = pl, pu
                lows.append(l)
                ups.append(u)
                if shares is not None:
                    contrib = W.abs()[None] * r[:, None, :]
                    shares.append(contrib / contrib.sum(-1, keepdim=True).clamp(min=1e-300))
                continue
            need = (pl < 0) & (pu > 0)
            counts = need.sum(dim=1)
            U = int(counts.max()) if B else 0
            l, u = pl.clone(), pu.clone()
            if U > 0:
                # per box, the indices of the neurons to bound, padded with index 0 (masked out)
                order = torch.sort((~need).to(torch.int8), dim=1, stable=True).indices[:, :U]
                valid = torch.arange(U)[None, :] < counts[:, None]
                Wr = W[order]  # (B, U, n_{k-1})
                br = b[order]  # (B, U)
                Lam = torch.cat([Wr, -Wr], dim=1)
                bias = torch.cat([br, -br], dim=1)
                lb, A = self._backward(Lam, bias, k, lows, ups, lo, hi)
                new_l, new_u = lb[:, :U], -lb[:, U:]
                rows = torch.arange(B)[:, None].expand(B, U)
                sel_r, sel_c = rows[valid], order[valid]
                l[sel_r, sel_c] = torch.maximum(pl[sel_r, sel_c], new_l[valid])
                u[sel_r, sel_c] = torch.minimum(pu[sel_r, sel_c], new_u[valid])
                if shares is not None:
                    contrib = (A[:, :U].abs() + A[:, U:].abs()) * r[:, None, :]
                    contrib = contrib / contrib.sum(-1, keepdim=True).clamp(min=1e-300)
                    sh = torch.zeros((B, W.shape[0], lo.shape[1]), dtype=torch.float64)
                    sh[sel_r, sel_c] = contrib[valid]
                    shares.append(sh)
            elif shares is not None:
                shares.append(torch.zeros((B, W.shape[0], lo.shape[1]), dtype=torch.float64))
            lows.append(l)
            ups.append(u)
        return lows, ups

    def lower(self, lo, hi, C, parent=None, want_scores: bool = False):
        """(lb (B, R), A (B, R, n_in), (lows, ups), scores) for C y over lo <= x <= hi (torch float64).

        scores (B, R, n_in), with want_scores: how much of row r's relaxation looseness comes from
        each input dim (the triangle gaps of unstable neurons, weighted by the row's coefficients and
        shared out by each neuron's dependence on the dims): the input-split heuristic."""
        shares = [] if want_scores else None
        lows, ups = self.intermediate_bounds(lo, hi, parent, shares)
        Lam = C @ self.W[-1]
        bias = C @ self.b[-1]
        slack = [] if want_scores else None
        lb, A = self._backward(Lam, bias, self.n_relu, lows, ups, lo, hi, slack)
        scores = None
        if want_scores:
            scores = self.torch.zeros_like(A)
            for j, sl in zip(range(self.n_relu - 1, -1, -1), slack):
                scores = scores + sl @ shares[j]
        return lb, A, (lows, ups), scores

    # ---- alpha: optimised lower slopes for the final rows -------------------------------------
    def optimize_final(self, lo, hi, C, lows: list, ups: list, iters: int = 20, lr: float = 0.25):
        """Lower bounds (B, R) of C y with the lower ReLU slopes of the final back-substitution
        optimised per box, row and neuron (alpha-CROWN on the last pass only; the intermediate
        bounds stay CROWN's). Any slope in [0, 1] gives a valid bound, so the best bound seen over
        the iterations is returned, evaluated in float64."""
        torch = self.torch
        B, R = C.shape[0], C.shape[1]
        alphas = []
        for l, u in zip(lows, ups):
            a0 = (u >= -l).to(torch.float64)[:, None, :].expand(B, R, l.shape[1]).clone()
            alphas.append(a0.requires_grad_(True))
        Lam0 = C @ self.W[-1]
        bias0 = C @ self.b[-1]
        if not any(bool(((l < 0) & (u > 0)).any()) for l, u in zip(lows, ups)):
            # no unstable neuron (or no ReLU at all: an affine network): nothing is relaxed, the
            # bound is CROWN's and exact for each row; there is nothing to optimise
            with torch.no_grad():
                return self._backward_alpha(Lam0, bias0, lows, ups, lo, hi, alphas)
        opt = torch.optim.Adam(alphas, lr=lr)
        best = None
        for it in range(iters + 1):
            lb = self._backward_alpha(Lam0, bias0, lows, ups, lo, hi, alphas)
            cur = lb.detach()
            best = cur if best is None else torch.maximum(best, cur)
            if it == iters:
                break
            opt.zero_grad()
            (-lb.sum()).backward()
            opt.step()
            with torch.no_grad():
                for a in alphas:
                    a.clamp_(0.0, 1.0)
        return best

    def _backward_alpha(self, Lam, bias, lows, ups, lo, hi, alphas):
        torch = self.torch
        for j in range(self.n_relu - 1, -1, -1):
            l, u = lows[j], ups[j]
            active = l >= 0
            inactive = u <= 0
            unstable = ~(active | inactive)
            denom = torch.where(unstable, u - l, torch.ones_like(u))
            s_up = torch.where(unstable, u / denom, active.to(u.dtype))
            c_up = torch.where(unstable, -s_up * l, torch.zeros_like(u))
            s_lo = torch.where(unstable[:, None, :], alphas[j], active.to(u.dtype)[:, None, :])
            pos = Lam.clamp(min=0)
            neg = Lam - pos
            bias = bias + torch.einsum("brn,bn->br", neg, c_up)
            Lam = pos * s_lo + neg * s_up[:, None, :]
            bias = bias + Lam @ self.b[j]
            Lam = Lam @ self.W[j]
        c = (lo + hi) / 2
        r = (hi - lo) / 2
        return torch.einsum("brn,bn->br", Lam, c) - torch.einsum("brn,bn->br", Lam.abs(), r) + bias
