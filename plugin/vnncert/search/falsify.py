"""The falsifier's search: sampling (centre, corners, uniform) and PGD on each disjunct's violation.

Used by the falsifier (engines/attack.py) and, on sub-boxes, by the input-split search. Every
candidate goes through `results.sat_outcome`, which replays it with ONNX Runtime on the original
model and accepts it only if the exact float32 input lies in the region and the replayed output
satisfies the property's own relations with zero tolerance. Candidates are snapped into the
region's exact image in the model's input type first (`InputRegion.snap_input`): the box the
engines read is rounded outward from the property's constants, and a point on its edge may lie
just outside the property's own region.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..deadline import expired
from ..options import AttackOptions
from ..results import Outcome, sat_outcome
from ..spec.model import Case, InputRegion

@dataclass
class FalsifyStats:
    samples: int = 0  # sampled inputs evaluated in ONNX Runtime
    pgd_steps: int = 0  # PGD steps (each over all restarts at once)
    replays: int = 0  # candidates replayed on the original model


def snap_into_box(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, dtype, region: Optional[InputRegion] = None) -> np.ndarray:
    """Cast x to `dtype` and nudge values that rounding pushed outside [lower, upper] back inside.

    With `region` (whose box [lower, upper] is), onto the values the exact witness check accepts
    (`InputRegion.snap_input`). Without it, where no `dtype` value lies in [lower, upper] (a fixed
    input such as 0.1 in float32), the rounding of the clipped value is kept: the input the model
    sees at that point of the box."""
    if region is not None:
        return region.snap_input(x, dtype).astype(dtype)
    xd = np.clip(np.asarray(x, dtype=np.float64), lower, upper).astype(dtype)
    lo = lower.astype(dtype)
    lo = np.where(lo.astype(np.float64) < lower, np.nextafter(lo, np.array(np.inf, dtype=dtype)), lo)
    hi = upper.astype(dtype)
    hi = np.where(hi.astype(np.float64) > upper, np.nextafter(hi, np.array(-np.inf, dtype=dtype)), hi)
    return np.where(lo <= hi, np.minimum(np.maximum(xd, lo), hi), xd)


def _corners(region: InputRegion, rng: np.random.Generator, budget: int) -> np.ndarray:
    # the corners of the property's box (its bounds' nearest float64s): an input fixed at 0.1, whose
    # outward box is one ulp wide, is not a dimension to enumerate
    lower, upper = region.rounded_bounds(np.float64)
    free = np.flatnonzero(upper > lower)
    k = free.size
    if k == 0:
        return lower[None, :].copy()
    if k <= 10 and 2 ** k <= budget:
        bits = ((np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)
    else:
        bits = rng.random((budget, k)) < 0.5
    pts = np.repeat(lower[None, :], bits.shape[0], axis=0)
    pts[:, free] = np.where(bits, upper[free], lower[free])
    return pts


def sample_region(region: InputRegion, n: int, rng: np.random.Generator, max_corners: int = 1024) -> np.ndarray:
    """Centre, corners (at most max_corners) and uniform points of the box (G x <= h filtered), float64 (k, d)."""
    parts = [region.center[None, :]]
    if n > 1:
        parts.append(_corners(region, rng, max(1, min(max_corners, n // 4))))
        m = max(0, n - sum(p.shape[0] for p in parts))
        parts.append(region.lower + rng.random((m, region.lower.size)) * (region.upper - region.lower))
    pts = np.concatenate(parts, axis=0)
    if region.G is not None and region.G.shape[0]:
        pts = pts[region.contains(pts)]
    return pts


def _violation(case: Case, y: np.ndarray) -> np.ndarray:
    """(B, n_disjuncts) max-row violation per disjunct (<= 0 means inside, ignoring strictness)."""
    return np.stack([hs.violation(y) for hs in case.output], axis=1)


def _try_candidates(network, spec, xs: np.ndarray, scores: np.ndarray, limit: int, stats: FalsifyStats) -> Optional[Outcome]:
    """Replay the `limit` best-scoring candidates; the first confirmed one becomes the sat outcome."""
    order = np.argsort(scores)[:limit]
    for i in order:
        stats.replays += 1
        out = sat_outcome(network, spec, xs[i], engine="attack")
        if out is not None:
            return out
    return None


def random_search(network, spec, deadline: float, options: AttackOptions, rng: np.random.Generator, stats: FalsifyStats):
    """Sample every case; returns (sat Outcome or None, per-case best score)."""
    n_cases = len(spec.cases)
    per_case = max(8, min(options.samples, (options.samples * 4) // max(1, n_cases)))
    best = np.full(n_cases, np.inf)
    chunk_cases = max(1, 65536 // per_case)
    for start in range(0, n_cases, chunk_cases):
        if expired(deadline):
            break
        cases = spec.cases[start:start + chunk_cases]
        pts = [snap_into_box(sample_region(c.region, per_case, rng, options.max_corners), c.region.lower, c.region.upper,
                             network.input_dtype, c.region) for c in cases]
        sizes = [p.shape[0] for p in pts]
        if not sum(sizes):
            continue
        ys = network.evaluate(np.concatenate(pts, axis=0)).astype(np.float64)
        stats.samples += int(sum(sizes))
        off = 0
        for j, (case, p) in enumerate(zip(cases, pts)):
            y = ys[off:off + p.shape[0]]
            off += p.shape[0]
            if not p.shape[0]:
                continue
            v = _violation(case, y).min(axis=1)
            best[start + j] = v.min()
            hits = np.flatnonzero(case.unsafe(y))
            if hits.size:
                out = _try_candidates(network, spec, p[hits], v[hits], options.replays_per_round, stats)
                if out is not None:
                    return out, best
    return None, best


def pgd_search(network, spec, deadline: float, options: AttackOptions, rng: np.random.Generator,
               case_order: List[int], stats: FalsifyStats) -> Optional[Outcome]:
    """Projected sign-gradient descent on each disjunct's violation, restarts spread over disjuncts.

    `spec` must have every disjunct padded to one row count (`padded_spec`)."""
    import torch

    module = network.torch_module()
    module.eval()
    for ci in case_order:
        case = spec.cases[ci]
        if expired(deadline):
            return None
        reg = case.region
        lo = torch.tensor(reg.lower, dtype=torch.float32)
        hi = torch.tensor(reg.upper, dtype=torch.float32)
        width = hi - lo
        if float(width.max()) <= 0:
            continue
        n_dis = len(case.output)
        R = max(n_dis, options.pgd_restarts)
        which = np.arange(R) % n_dis
        # every disjunct has the same row count here (see padded_spec)
        A = torch.tensor(np.stack([hs.A for hs in case.output]), dtype=torch.float32)
        b = torch.tensor(np.stack([hs.b for hs in case.output]), dtype=torch.float32)
        Aw, bw = A[which], b[which]  # (R, m, n_out), (R, m)
        x = lo + torch.tensor(rng.random((R, reg.lower.size)), dtype=torch.float32) * width
        x[0] = (lo + hi) / 2
        step0 = 0.25 * width
        for it in range(options.pgd_steps):
            if expired(deadline):
                return None
            x.requires_grad_(True)
            y = module(x)
            margins = torch.einsum("rmo,ro->rm", Aw, y) - bw
            loss_each = margins.max(dim=1).values
            grad, = torch.autograd.grad(loss_each.sum(), x)
            stats.pgd_steps += 1
            with torch.no_grad():
                good = np.flatnonzero(loss_each.detach().numpy() <= 0)
                if good.size:
                    cand = snap_into_box(x.detach().numpy()[good].astype(np.float64), reg.lower, reg.upper,
                                         network.input_dtype, reg)
                    out = _try_candidates(network, spec, cand, loss_each.detach().numpy()[good], options.replays_per_round, stats)
                    if out is not None:
                        out.detail = f"PGD witness after {it + 1} steps, replayed with ONNX Runtime on the original model"
                        return out
                step = step0 * (1.0 - it / options.pgd_steps) + 1e-3 * step0
                x = torch.max(torch.min(x - step * torch.sign(grad), hi), lo)
        # final point of every restart
        with torch.no_grad():
            y = module(x)
            margins = torch.einsum("rmo,ro->rm", Aw, y) - bw
            scores = margins.max(dim=1).values.numpy()
        cand = snap_into_box(x.numpy().astype(np.float64), reg.lower, reg.upper, network.input_dtype, reg)
        ys = network.evaluate(cand).astype(np.float64)
        hits = np.flatnonzero(case.unsafe(ys))
        if hits.size:
            out = _try_candidates(network, spec, cand[hits], scores[hits], options.replays_per_round, stats)
            if out is not None:
                return out
    return None


def max_rows(spec) -> int:
    return max((hs.rows for c in spec.cases for hs in c.output), default=0)


def padded_spec(spec, m: int):
    """Same spec with every disjunct padded to m rows by repeating its last row (same set, batchable)."""
    from ..spec.model import Halfspaces, Spec

    cases = []
    for c in spec.cases:
        outs = []
        for hs in c.output:
            if hs.rows == 0:
                outs.append(Halfspaces(np.zeros((m, spec.n_outputs)), np.zeros(m), np.zeros(m, dtype=bool)))
                continue
            idx = np.minimum(np.arange(m), hs.rows - 1)
            outs.append(Halfspaces(hs.A[idx], hs.b[idx], hs.strict[idx],
                                   hs.b_dir[idx] if hs.b_dir is not None else None,
                                   tuple(hs.b_exact[i] for i in idx.tolist()) if hs.b_exact is not None else None))
        cases.append(Case(c.region, outs))
    return Spec(spec.n_inputs, spec.n_outputs, cases, spec.source, spec.version, spec.declarations)
