"""The falsifier's search: sampling (centre, corners, faces, uniform) and PGD on each disjunct's rows.

docs/architecture.md, "The falsifier", describes both (starts, objective, Adam, successive
halving, restarts scaled to the time).

Used by the falsifier (engines/attack.py) and, on sub-boxes, by the input-split search. Every
candidate goes through `results.sat_outcome`, which replays it with ONNX Runtime on the original
model and accepts it only if the exact float32 input lies in the region and the replayed output
satisfies the property's own relations with zero tolerance. Candidates are snapped into the
region's exact image in the model's input type first (`InputRegion.snap_input`): the box the
engines read is rounded outward from the property's constants, and a point on its edge may lie
just outside the property's own region.
"""
from __future__ import annotations

import time
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
    pgd_rounds: int = 0  # PGD rounds
    pgd_restarts: int = 0  # restarts the rounds started with, summed
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
    """Centre, corners (at most max_corners), then half uniform points and half points of random faces
    (each coordinate pinned to a random end with probability 1/2: a ReLU net is affine on pieces
    whose extremes lie on the box's faces) of the box (G x <= h filtered), float64 (k, d)."""
    parts = [region.center[None, :]]
    if n > 1:
        parts.append(_corners(region, rng, max(1, min(max_corners, n // 4))))
        m = max(0, n - sum(p.shape[0] for p in parts))
        d = region.lower.size
        u = rng.random((m, d))
        face = np.arange(m)[:, None] >= m // 2
        u = np.where(face & (rng.random((m, d)) < 0.5), (rng.random((m, d)) < 0.5).astype(np.float64), u)
        parts.append(region.lower + u * (region.upper - region.lower))
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


def _seed_points(case: Case, pts: np.ndarray, y: np.ndarray, k: int) -> List[np.ndarray]:
    """Per disjunct, the k sampled points closest to it (its max-row violation, smallest first)."""
    v = _violation(case, y)
    return [pts[np.argsort(v[:, d])[:k]] for d in range(v.shape[1])]


def random_search(network, spec, deadline: float, options: AttackOptions, rng: np.random.Generator, stats: FalsifyStats):
    """Sample every case; returns (sat Outcome or None, per-case best score, per-case seeds).

    The seeds of a case: per disjunct, the `pgd_seeds` samples closest to it (PGD starts), kept
    only for the `pgd_cases` cases closest so far (None for the others: memory stays bounded on
    properties with many cases)."""
    n_cases = len(spec.cases)
    per_case = max(8, min(options.samples, (options.samples * 4) // max(1, n_cases),
                          options.sample_values // max(1, spec.n_inputs)))
    best = np.full(n_cases, np.inf)
    seeds: List[Optional[List[np.ndarray]]] = [None] * n_cases
    kept: List[int] = []  # the cases holding seeds, closest first
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
            if options.pgd_seeds > 0 and (len(kept) < options.pgd_cases or best[start + j] < best[kept[-1]]):
                seeds[start + j] = _seed_points(case, p, y, options.pgd_seeds)
                kept = sorted(kept + [start + j], key=lambda k: best[k])
                if len(kept) > max(1, options.pgd_cases):
                    seeds[kept.pop()] = None
            hits = np.flatnonzero(case.unsafe(y))
            if hits.size:
                out = _try_candidates(network, spec, p[hits], v[hits], options.replays_per_round, stats)
                if out is not None:
                    return out, best, seeds
    return None, best, seeds

def _restarts(module, lo, width, objective_of, n_dis: int, r_min: int, options: AttackOptions, seconds: float,
              rng) -> int:
    """Restarts to start a round with, so that it takes about seconds / pgd_rounds.

    A round halves its restarts every `pgd_halve_every` steps, so it costs about 2 x pgd_halve_every
    steps at full width plus its remaining steps at `r_min`. Timed on the box: after a warm-up
    call, batches of doubling size while one forward and backward pass fits that share of the round
    (0.7 of it: the rest is the optimiser's own work), so tiny nets get thousands of restarts and
    costly ones `r_min`; never more than `pgd_max_restarts` nor `pgd_max_values` input values."""
    import torch

    r_max = max(r_min, min(options.pgd_max_restarts, options.pgd_max_values // max(1, lo.numel())))
    h = options.pgd_halve_every
    wide = options.pgd_osi_steps + (2 * h if 0 < h < options.pgd_steps else options.pgd_steps)
    per_step = 0.7 * seconds / max(1, options.pgd_rounds) / (wide + 1)

    def timed(k: int) -> float:
        which = np.arange(k) % n_dis
        x = lo + torch.tensor(rng.random((k, lo.numel())), dtype=torch.float32) * width
        t = time.perf_counter()
        x.requires_grad_(True)
        torch.autograd.grad(objective_of(which)(module(x)).sum(), x)
        return time.perf_counter() - t

    timed(n_dis)  # warm-up
    k = r_min
    while k < r_max and timed(k) < per_step / 2:
        k = min(r_max, 2 * k)
    return -(-k // n_dis) * n_dis  # every disjunct the same number


def _starts(lo, width, which, n_dis: int, rng, centre_corners, seeds, pool=None):
    """Round starts (R, n) float32: round 1 (pool None) the centre, the corners minimising each disjunct's
    linearisation at the centre, the sampling's closest points (`seeds`), then half uniform points and
    half points of random faces (each coordinate pinned to a random end with probability 1/2);
    later rounds the best points so far (`pool`, per disjunct), each once as it is and then moved by
    up to a tenth of the width, on half the restarts; the other half fresh uniform / face points.
    Returns (x, fresh): fresh marks the uniform / face rows."""
    import torch

    R, n = which.size, lo.numel()
    u = torch.tensor(rng.random((R, n)), dtype=torch.float32)
    face = torch.tensor(rng.random((R, n)) < 0.5, dtype=torch.bool) & torch.tensor(rng.random((R, 1)) < 0.5)
    ends = torch.tensor((rng.random((R, n)) < 0.5).astype(np.float32))
    x = lo + torch.where(face, ends, u) * width
    filled = np.zeros(R, dtype=bool)

    def place(d: int, pts) -> None:
        rows = np.flatnonzero((which == d) & ~filled)[: pts.shape[0]]
        if rows.size:
            x[torch.as_tensor(rows)] = torch.as_tensor(np.asarray(pts[: rows.size]), dtype=torch.float32)
            filled[rows] = True

    for d in range(n_dis):
        if pool is None:
            place(d, (lo + width / 2)[None, :])
            if centre_corners is not None:
                place(d, centre_corners[d:d + 1])
            if seeds is not None and d < len(seeds) and seeds[d] is not None:
                place(d, seeds[d])
            continue
        p = pool[d]
        if p is None or not p.shape[0]:
            continue
        k = max(1, int(np.sum(which == d)) // 2)
        base = p[torch.as_tensor(np.arange(k) % p.shape[0])]
        noise = (torch.tensor(rng.random((k, n)), dtype=torch.float32) * 2 - 1) * 0.1 * width
        moved = (torch.arange(k) >= p.shape[0]).to(torch.float32)[:, None]
        place(d, torch.max(torch.min(base + noise * moved, lo + width), lo))
    return x, ~filled


def _pgd_case(network, module, spec, case: Case, deadline: float, options: AttackOptions, rng, stats: FalsifyStats,
              seconds: Optional[float], seeds) -> Optional[Outcome]:
    import torch

    reg = case.region
    lo = torch.tensor(reg.lower, dtype=torch.float32)
    hi = torch.tensor(reg.upper, dtype=torch.float32)
    width = hi - lo
    if float(width.max()) <= 0:
        return None
    t0 = time.monotonic()
    n_dis = len(case.output)
    # every disjunct has the same row count here (see padded_spec)
    A = torch.tensor(np.stack([hs.A for hs in case.output]), dtype=torch.float32)  # (D, m, n_out)
    b = torch.tensor(np.stack([hs.b for hs in case.output]), dtype=torch.float32)  # (D, m)

    def objective_of(which):
        Aw, bw = A[torch.as_tensor(which)], b[torch.as_tensor(which)]

        def f(y):  # each restart's rows of its disjunct, each counted until it holds (hinge): every row pulls
            return (torch.einsum("rmo,ro->rm", Aw, y) - bw).clamp(min=-options.pgd_hinge).sum(dim=1)
        return f

    def inside(y):  # (R,) the smallest worst-row margin over all disjuncts: <= 0 in the unsafe set
        return (torch.einsum("dmo,ro->rdm", A, y) - b).max(dim=2).values.min(dim=1).values

    # the corner minimising each disjunct's linearisation at the centre
    xc = (lo + width / 2).repeat(n_dis, 1).requires_grad_(True)
    g, = torch.autograd.grad(objective_of(np.arange(n_dis))(module(xc)).sum(), xc)
    corners = torch.where(g > 0, lo, hi).detach()
    r_min = -(-max(n_dis, options.pgd_restarts) // n_dis) * n_dis
    R = r_min if seconds is None else _restarts(module, lo, width, objective_of, n_dis, r_min, options, seconds, rng)
    which = np.arange(R) % n_dis
    stop = None if seconds is None else t0 + seconds
    pool = None
    rnd = 0
    while True:
        if expired(deadline) or (stop is not None and time.monotonic() >= stop):
            return None
        stats.pgd_rounds += 1
        stats.pgd_restarts += R
        x0, fresh = _starts(lo, width, which, n_dis, rng, corners, seeds, pool)
        # output-diversified starts (Tashiro et al. 2020) on every other fresh row
        osi = fresh & (np.cumsum(fresh) % 2 == 0)
        out, best_x, best_l, w = _descend(network, module, spec, reg, x0, which, osi, r_min, lo, hi, width, objective_of,
                                          inside, options, rng, stats, deadline, stop, rnd)
        if out is not None:
            return out
        # the best point of every restart left, in ONNX Runtime (torch's float32 may differ at the margin)
        cand = snap_into_box(best_x.numpy().astype(np.float64), reg.lower, reg.upper, network.input_dtype, reg)
        ys = network.evaluate(cand).astype(np.float64)
        hits = np.flatnonzero(case.unsafe(ys))
        if hits.size:
            out = _try_candidates(network, spec, cand[hits], best_l[hits], options.replays_per_round, stats)
            if out is not None:
                return out
        pool = []
        for d in range(n_dis):
            rows = np.flatnonzero(w == d)
            pool.append(best_x[torch.as_tensor(rows[np.argsort(best_l[rows])[: max(1, R // n_dis // 8)]])])
        rnd += 1
        if seconds is None and rnd >= max(1, options.pgd_rounds):
            return None


def _descend(network, module, spec, reg, x, which, osi, r_min: int, lo, hi, width, objective_of, inside,
             options: AttackOptions, rng, stats: FalsifyStats, deadline: float, stop: Optional[float], rnd: int):
    """Adam on every restart's objective (the worst row of the disjunct it aims at), steps `pgd_lr` x
    the box width decayed by `pgd_decay` per step, projected onto the box; a restart that stops
    moving starts afresh from a uniform point. The `osi` rows first take `pgd_osi_steps` sign steps of
    a quarter of the width up a random direction w of the outputs (w . y: output-diversified
    initialisation, Tashiro et al. 2020: without them every start of mnist_fc 256x6 prop_1_0.05
    ends in one local minimum). After those, every `pgd_halve_every` steps each disjunct's restarts
    are halved (down to `r_min` in all), keeping those that came closest to the unsafe set: many
    short runs first, the promising ones run long. Each step, restarts that torch puts in the unsafe
    set are replayed in ONNX Runtime. Returns (sat Outcome or None, best point of every restart left,
    its score, the disjunct each aims at)."""
    import torch

    b1, b2, eps = 0.9, 0.999, 1e-12
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    t = torch.zeros(x.shape[0], 1)
    best_x = x.clone()
    best_l = np.full(x.shape[0], np.inf)
    lr = options.pgd_lr * width
    f = objective_of(which)
    h = options.pgd_halve_every
    n_osi = options.pgd_osi_steps if osi.any() else 0
    osi_t = torch.as_tensor(osi)
    wdir = None
    for it in range(n_osi + options.pgd_steps):
        if expired(deadline) or (stop is not None and time.monotonic() >= stop):
            break
        x.requires_grad_(True)
        y = module(x)
        loss = f(y)
        if it < n_osi:
            if wdir is None:
                wdir = torch.tensor(rng.random(tuple(y.shape)) * 2 - 1, dtype=torch.float32)
            loss = torch.where(osi_t, -(wdir * y).sum(dim=1), loss)
        grad, = torch.autograd.grad(loss.sum(), x)
        stats.pgd_steps += 1
        with torch.no_grad():
            x = x.detach()
            # a restart is scored by the disjunct it came closest to, not only the one it aims at
            l = inside(y.detach()).numpy().astype(np.float64)
            better = np.flatnonzero(l < best_l)
            if better.size:
                best_l[better] = l[better]
                best_x[torch.as_tensor(better)] = x[torch.as_tensor(better)]
            good = np.flatnonzero(l <= 0)
            if good.size:
                cand = snap_into_box(x.numpy()[good].astype(np.float64), reg.lower, reg.upper, network.input_dtype, reg)
                out = _try_candidates(network, spec, cand, l[good], options.replays_per_round, stats)
                if out is not None:
                    out.detail = (f"PGD witness (round {rnd + 1}, step {it + 1}, {x.shape[0]} restarts), replayed with "
                                  "ONNX Runtime on the original model")
                    return out, best_x, best_l, which
            t += 1
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            step = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
            if it < n_osi:
                step[osi_t] = torch.sign(grad[osi_t]) / options.pgd_lr * 0.25
                m[osi_t] = 0
                v[osi_t] = 0
                t[osi_t] = 0
            else:
                lr = lr * options.pgd_decay
            nx = torch.max(torch.min(x - lr * step, hi), lo)
            stuck = (nx == x).all(dim=1)
            if bool(stuck.any()):
                k = int(stuck.sum())
                nx[stuck] = lo + torch.tensor(rng.random((k, x.shape[1])), dtype=torch.float32) * width
                m[stuck] = 0
                v[stuck] = 0
                t[stuck] = 0
            x = nx
            if h > 0 and it >= n_osi and (it + 1 - n_osi) % h == 0 and x.shape[0] // 2 >= r_min:
                keep = []
                group = which * 2 + osi  # the diversified starts compete among themselves
                for d in np.unique(group):
                    rows = np.flatnonzero(group == d)
                    keep.append(rows[np.argsort(best_l[rows], kind="stable")[: max(1, rows.size // 2)]])
                keep = np.sort(np.concatenate(keep))
                kt = torch.as_tensor(keep)
                x, m, v, t, best_x = x[kt], m[kt], v[kt], t[kt], best_x[kt]
                best_l, which, osi = best_l[keep], which[keep], osi[keep]
                f = objective_of(which)
    return None, best_x, best_l, which


def pgd_search(network, spec, deadline: float, options: AttackOptions, rng: np.random.Generator,
               case_order: List[int], stats: FalsifyStats, seconds: Optional[float] = None,
               seeds=None) -> Optional[Outcome]:
    """Projected Adam on each disjunct's worst row, restarts spread evenly over the disjuncts.

    `seconds` (None: `pgd_restarts` restarts, `pgd_rounds` rounds) is the time for all of
    `case_order`, shared evenly among the cases not yet done; the restarts then scale with the
    network's cost and rounds repeat until it is spent. `seeds[ci]`: per disjunct, points to start
    from (the sampling's closest). `spec` must have every disjunct padded to one row count
    (`padded_spec`)."""
    module = network.torch_module()
    module.eval()
    t0 = time.monotonic()
    for k, ci in enumerate(case_order):
        if expired(deadline):
            return None
        share = None
        if seconds is not None:
            share = (t0 + seconds - time.monotonic()) / (len(case_order) - k)
            if share <= 0:
                return None
        out = _pgd_case(network, module, spec, spec.cases[ci], deadline, options, rng, stats, share,
                        None if seeds is None else seeds[ci])
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
