"""Float-sound linear relaxations of the smooth (not piecewise-linear) elementwise functions, and
of the product of two bounded variables.

THE INTERFACE (what the bounds layer calls; elementwise over arrays of any shape)

    relax(fn, l, u, xp=None) -> (lower_slope, lower_intercept, upper_slope, upper_intercept)
        lower_slope * z + lower_intercept  <=  fn(z)  <=  upper_slope * z + upper_intercept
        for every z in [l, u] where fn is defined (float64 arrays; `xp` numpy or torch, None: read
        off `l`; torch tensors are computed through numpy, so no gradient flows into l and u).
    sound_intercept(fn, l, u, slope, upper) -> the tightest sound intercept for a given slope
        (branch and bound or an optimiser may choose its own slopes; the intercept makes any
        slope sound); intercept_point(...) also gives the point where the line touches (the
        intercept's derivative in the slope is minus that point: what alpha-CROWN follows).
    bilinear_relaxation(lx, ux, ly, uy, xp=None) / bilinear_crown(...): the McCormick planes of
        x * y over a box (below).
    quadratic_form_lower(Q, r, g=None): a sound linear lower bound of d^T Q d over |d| <= r (a sum of
        products whose factors are affine in the same variables: the linearised product relaxation).

`fn` is one of `FUNCTIONS` (Sigmoid, Tanh, Exp, Log, Sqrt, Reciprocal, Softplus, Erf, Sin, Cos)
or `power(p)` (Pow by a constant exponent). Each op's handler exposes it as its `relaxation`.

HOW SOUNDNESS IS OBTAINED (not by a grid check): for a slope s, the gap g(z) = fn(z) - s z is
differentiable on [l, u], so its maximum and minimum are at an endpoint or at a critical point
fn'(z) = s. Every function here gives ALL its critical points in closed form (`critical`:
e.g. sigmoid'(z) = s at z = +-2 atanh(sqrt(1 - 4 s)); sin: +-arccos(s) + 2 pi k), so the
intercepts max g and min g are computed exactly, up to float rounding, which a relative margin of
2^-40 (about 1e-12; thousands of ulps) of the magnitudes involved covers: the error of fn at a
point (a few ulps), of s z, and of a critical point's position (the gap is flat there, so its
value errs only quadratically). The slopes themselves are heuristic: several candidates per side
(the chord, the tangents at l, m = (l + u) / 2 and u, slope 0, and for the S-shaped functions
the tangent through the far endpoint: the sigmoid/tanh construction of CROWN), each made sound by
its exact intercept, and the one with the smallest area wins (the upper line lowest at m, the
lower line highest at m; ties: the first in that order). So the convex/concave cases come out as
CROWN's chord and midpoint tangent, the mixed-curvature ones as its tangents through an endpoint.

Edge cases: l == u gives slope 0 (or the tangent), exact up to the margin; an interval outside
the function's domain part (`domain_lo`: Log, Sqrt and real powers below 0, where ONNX gives NaN,
which never satisfies an output constraint) is clipped to it; a pole (Reciprocal, negative
integer powers) inside [l, u] gives no bound (-inf, +inf); infinite bounds, overflow (exp of 800)
and wide intervals give infinite intercepts with slope 0, never NaN; Sin/Cos over more than a
period (or beyond 2^20 in magnitude) give the constant bounds -1 and 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

EPS = 2.0 ** -40  # relative float margin of every intercept (see the module docstring)
TWO_PI = 2.0 * math.pi
PERIODIC_LIMIT = 2.0 ** 20  # beyond this magnitude Sin/Cos get their constant bounds
BISECTION_STEPS = 40  # tangent-through-endpoint search (its accuracy only affects tightness)


@dataclass(frozen=True)
class Scalar:
    """A smooth scalar function with what its relaxation needs (numpy float64 in and out)."""

    name: str
    f: Callable[[np.ndarray], np.ndarray]
    df: Callable[[np.ndarray], np.ndarray]
    # every z in [lc, uc] with f'(z) = s (NaN entries: none); extra points are harmless
    critical: Callable[[np.ndarray, np.ndarray, np.ndarray], List[np.ndarray]]
    range: Tuple[float, float]  # f's global range (its constant bounds)
    domain_lo: float = -math.inf  # below it ONNX gives NaN: the interval is clipped to it
    pole: bool = False  # a two-sided pole at 0: no bound on an interval containing 0
    inflection: Optional[float] = None  # S-shaped: convex below, concave above this point
    periodic: bool = False

    def __call__(self, z):
        with np.errstate(all="ignore"):
            return self.f(np.asarray(z, dtype=np.float64))


def _nan(x):
    return np.full_like(x, np.nan)


def _expit(z):
    from scipy.special import expit

    return expit(z)


def _erf(z):
    from scipy.special import erf

    return erf(z)


def _sigmoid_critical(s, lc, uc):
    # sigmoid' = q (1 - q) = s at q = (1 -+ r) / 2, r = sqrt(1 - 4 s); the small root written
    # without cancellation, q = 2 s / (1 + r) (s = 1e-17 still gives z = log(q) - log(1 - q) = -39)
    ok = (s > 0) & (s <= 0.25)
    q = np.where(ok, 2.0 * s / (1.0 + np.sqrt(np.maximum(1.0 - 4.0 * s, 0.0))), np.nan)
    z = np.log(q) - np.log1p(-q)
    return [z, -z]


def _tanh_critical(s, lc, uc):
    # tanh' = 1 - t^2 = s at t = +-x, x = sqrt(1 - s); atanh(x) = log(1 + x) - log(s) / 2 (from
    # 1 - x = s / (1 + x)), which keeps its precision when s is tiny and x rounds to 1
    ok = (s > 0) & (s <= 1.0)
    x = np.sqrt(np.clip(1.0 - s, 0.0, 1.0))
    z = np.where(ok, np.log1p(x) - 0.5 * np.log(np.where(ok, s, 1.0)), np.nan)
    return [z, -z]


_ERF_PEAK = 2.0 / math.sqrt(math.pi)


def _erf_critical(s, lc, uc):
    ok = (s > 0) & (s <= _ERF_PEAK)
    z = np.where(ok, np.sqrt(np.maximum(np.log(_ERF_PEAK / np.where(ok, s, 1.0)), 0.0)), np.nan)
    return [z, -z]


def _periodic_points(a_list, lc):
    """a + 2 pi k for k in k0-1 .. k0+2 (k0 = floor(lc / 2 pi)): every such point in [lc, lc + 2 pi]."""
    k0 = np.floor(lc / TWO_PI)
    return [a + TWO_PI * (k0 + k) for a in a_list for k in (-1.0, 0.0, 1.0, 2.0)]


def _sin_critical(s, lc, uc):
    a = np.where(np.abs(s) <= 1.0, np.arccos(np.clip(s, -1.0, 1.0)), np.nan)  # cos z = s
    return _periodic_points([a, -a], lc)


def _cos_critical(s, lc, uc):
    a = np.where(np.abs(s) <= 1.0, np.arcsin(np.clip(-s, -1.0, 1.0)), np.nan)  # -sin z = s
    return _periodic_points([a, math.pi - a], lc)


FUNCTIONS = {
    "Sigmoid": Scalar("Sigmoid", _expit, lambda z: _expit(z) * _expit(-z), _sigmoid_critical, (0.0, 1.0), inflection=0.0),
    "Tanh": Scalar("Tanh", np.tanh, lambda z: 1.0 - np.tanh(z) ** 2, _tanh_critical, (-1.0, 1.0), inflection=0.0),
    "Erf": Scalar("Erf", _erf, lambda z: _ERF_PEAK * np.exp(-z * z), _erf_critical, (-1.0, 1.0), inflection=0.0),
    "Exp": Scalar("Exp", np.exp, np.exp, lambda s, lc, uc: [np.where(s > 0, np.log(np.where(s > 0, s, 1.0)), np.nan)],
                  (0.0, math.inf)),
    "Log": Scalar("Log", np.log, lambda z: 1.0 / z, lambda s, lc, uc: [np.where(s > 0, 1.0 / s, np.nan)],
                  (-math.inf, math.inf), domain_lo=0.0),
    "Sqrt": Scalar("Sqrt", np.sqrt, lambda z: 0.5 / np.sqrt(z), lambda s, lc, uc: [np.where(s > 0, 0.25 / (s * s), np.nan)],
                   (0.0, math.inf), domain_lo=0.0),
    "Reciprocal": Scalar("Reciprocal", lambda z: 1.0 / z, lambda z: -1.0 / (z * z),
                         lambda s, lc, uc: [np.where(s < 0, 1.0 / np.sqrt(-s), np.nan), np.where(s < 0, -1.0 / np.sqrt(-s), np.nan)],
                         (-math.inf, math.inf), pole=True),
    "Softplus": Scalar("Softplus", lambda z: np.logaddexp(0.0, z), _expit,
                       lambda s, lc, uc: [np.where((s > 0) & (s < 1), np.log(s) - np.log1p(-s), np.nan)], (0.0, math.inf)),
    "Sin": Scalar("Sin", np.sin, np.cos, _sin_critical, (-1.0, 1.0), periodic=True),
    "Cos": Scalar("Cos", np.cos, lambda z: -np.sin(z), _cos_critical, (-1.0, 1.0), periodic=True),
}


def _real_roots(c, m: int):
    """The real solutions z of z**m = c (m >= 1 an integer), as a list of arrays (NaN: none)."""
    if m % 2:
        return [np.sign(c) * np.abs(c) ** (1.0 / m)]
    r = np.where(c >= 0, np.abs(c) ** (1.0 / m), np.nan)
    return [r, -r]


def power(p: float) -> Scalar:
    """z ** p for a constant exponent: any real base for an integer p (a pole at 0 when p < 0),
    a base >= 0 otherwise (ONNX gives NaN below 0)."""
    p = float(p)
    integer = p == int(p) and abs(p) < 2 ** 53
    f = lambda z: np.power(z, p)  # noqa: E731
    df = lambda z: p * np.power(z, p - 1.0)  # noqa: E731

    def critical(s, lc, uc):
        if p == 0:  # z ** 0 = 1: the gap is linear
            return []
        c = s / p  # z ** (p - 1) = s / p
        if integer:
            k = int(p - 1.0)
            if k == 0:
                return []
            if k > 0:
                return _real_roots(c, k)
            # z ** k = c with k < 0: z ** -k = 1 / c
            return _real_roots(np.where(c != 0, 1.0 / np.where(c != 0, c, 1.0), np.nan), -k)
        ok = c > 0
        return [np.where(ok, np.power(np.where(ok, c, 1.0), 1.0 / (p - 1.0)), np.nan)]

    if integer:
        even = int(p) % 2 == 0
        if p == 0:
            return Scalar("Pow(0)", lambda z: np.ones_like(z), np.zeros_like, critical, (1.0, 1.0))
        lo = 0.0 if even else -math.inf  # an even power (of either sign) is positive
        return Scalar(f"Pow({p:g})", f, df, critical, (lo, math.inf), pole=p < 0)
    return Scalar(f"Pow({p:g})", f, df, critical, (0.0, math.inf), domain_lo=0.0)


# ---- the machinery --------------------------------------------------------------------------------
def _namespace(x):
    return "torch" if type(x).__module__.startswith("torch") else "numpy"


def _to_numpy(x):
    if _namespace(x) == "torch":
        return x.detach().cpu().numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)


def _like(result, template):
    """Results back in the caller's namespace (torch: float64 on the template's device)."""
    if _namespace(template) == "torch":
        import torch

        return tuple(torch.as_tensor(r, dtype=torch.float64, device=template.device) for r in result)
    return result


def _times(s, z):
    """s * z with 0 * inf = 0 (a flat line stays flat over an infinite interval)."""
    return np.where(s == 0, 0.0, s * z)


def _points(fn: Scalar, s, lc, uc):
    """The candidate points of the gap's extrema for slope s: lc, uc and every critical point in [lc, uc]."""
    pts = [lc, uc]
    for z in fn.critical(s, lc, uc):
        z = np.where(np.isnan(z), lc, z)
        pts.append(np.clip(z, lc, uc))
    return pts


def _intercept(fn: Scalar, s, lc, uc, upper: bool, want_point: bool = False):
    """The tightest sound intercept of slope s over [lc, uc] (float margin included), +-inf if none;
    with want_point also the point where the gap reaches it."""
    best = np.full_like(lc, -np.inf if upper else np.inf)
    scale = np.zeros_like(lc)
    at = np.zeros_like(lc) if want_point else None
    for z in _points(fn, s, lc, uc):
        fz = fn.f(z)
        g = fz - _times(s, z)
        g = np.where(np.isnan(g), np.inf if upper else -np.inf, g)
        if want_point:
            at = np.where((g > best) if upper else (g < best), z, at)
        best = np.maximum(best, g) if upper else np.minimum(best, g)
        scale = np.maximum(scale, np.abs(np.where(np.isfinite(fz), fz, 0.0)))
    reach = np.maximum(np.abs(np.where(np.isfinite(lc), lc, 0.0)), np.abs(np.where(np.isfinite(uc), uc, 0.0)))
    margin = EPS * (scale + _times(np.abs(s), reach) + np.abs(np.where(np.isfinite(best), best, 0.0)))
    b = best + margin if upper else best - margin
    return (b, at) if want_point else b


def _tangent_through(fn: Scalar, l, u, upper: bool):
    """S-shaped fn with l < c < u: the slope of the tangent at d that passes through the far endpoint
    ((l, f(l)) for the upper line, d in [c, u]; (u, f(u)) for the lower line, d in [l, c])."""
    c = fn.inflection
    ok = (l < c) & (c < u) & np.isfinite(l) & np.isfinite(u)
    lo = np.where(ok, c if upper else l, 0.0)
    hi = np.where(ok, u if upper else c, 0.0)
    end = np.where(ok, l if upper else u, 0.0)
    f_end = fn.f(end)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        h = fn.f(mid) + fn.df(mid) * (end - mid) - f_end
        if upper:  # h <= 0 at c, > 0 beyond the tangent point
            hi, lo = np.where(h > 0, mid, hi), np.where(h > 0, lo, mid)
        else:  # h >= 0 at c, < 0 before the tangent point
            lo, hi = np.where(h < 0, mid, lo), np.where(h < 0, hi, mid)
    d = hi if upper else lo
    return np.where(ok, fn.df(d), np.nan)


def _no_bound(l):
    z = np.zeros_like(l)
    return z, np.full_like(l, -np.inf), z.copy(), np.full_like(l, np.inf)


def _clip_interval(fn: Scalar, l, u):
    """(lc, uc, usable, ranged): the interval clipped to the domain; where the construction runs;
    where fn's constant range is the bound instead (Sin/Cos over more than a period, or far out)."""
    lc = np.maximum(l, fn.domain_lo) + 0.0  # + 0.0: no negative zero
    uc = u + 0.0
    usable = (lc <= uc) & ~np.isnan(lc) & ~np.isnan(uc)
    if fn.pole:
        usable &= ~((l <= 0) & (u >= 0))
    ranged = np.zeros_like(usable)
    if fn.periodic:
        ranged = usable & ~((uc - lc <= TWO_PI) & (np.maximum(np.abs(lc), np.abs(uc)) <= PERIODIC_LIMIT))
        usable &= ~ranged
    return np.where(usable, lc, 0.0), np.where(usable, uc, 0.0), usable, ranged


def intercept_point(fn: Scalar, l, u, slope, upper: bool):
    """(b, z): `sound_intercept`'s b (numpy float64, margin included) and the point z of [l, u]
    where the gap fn(z) - slope z reaches it (0 where b is infinite). db/dslope = -z (the envelope
    theorem): what an optimiser of the slopes follows (`bounds.crown`'s alpha); b alone is sound."""
    l, u, s = np.broadcast_arrays(_to_numpy(l), _to_numpy(u), _to_numpy(slope))
    with np.errstate(all="ignore"):
        lc, uc, usable, ranged = _clip_interval(fn, l, u)
        s0 = np.where(np.isfinite(s), s, 0.0)
        b, z_best = _intercept(fn, s0, lc, uc, upper, want_point=True)
        none = np.inf if upper else -np.inf
        ok = usable & np.isfinite(s)
        b = np.where(ok, b, np.where(ranged & (s == 0), fn.range[1] if upper else fn.range[0], none))
        z_best = np.where(ok & np.isfinite(b) & np.isfinite(z_best), z_best, 0.0)
    return b, z_best


def sound_intercept(fn: Scalar, l, u, slope, upper: bool):
    """The tightest intercept b with slope * z + b >= fn(z) (upper) or <= fn(z) (lower) on [l, u],
    margin included; +-inf where there is none (a pole, an infinite gap)."""
    xp_template = l
    l, u, s = _to_numpy(l), _to_numpy(u), _to_numpy(slope)
    with np.errstate(all="ignore"):
        lc, uc, usable, ranged = _clip_interval(fn, l, u)
        b = _intercept(fn, np.where(np.isfinite(s), s, 0.0), lc, uc, upper)
        none = np.inf if upper else -np.inf
        b = np.where(usable & np.isfinite(s), b, np.where(ranged & (s == 0), fn.range[1] if upper else fn.range[0], none))
    return _like((b,), xp_template)[0]


def relax(fn: Scalar, l, u, xp=None):
    """(lower_slope, lower_intercept, upper_slope, upper_intercept) of fn over [l, u], elementwise
    (see the module docstring for the construction and why it is sound)."""
    template = l
    l, u = _to_numpy(l), _to_numpy(u)
    l, u = np.broadcast_arrays(l, u)
    with np.errstate(all="ignore"):
        lc, uc, usable, ranged = _clip_interval(fn, l, u)
        fl, fu = fn.f(lc), fn.f(uc)
        width = uc - lc
        m = 0.5 * lc + 0.5 * uc
        chord = np.where(width > 0, (fu - fl) / np.where(width > 0, width, 1.0), fn.df(m))
        common = [np.zeros_like(lc), chord, fn.df(lc), fn.df(uc), fn.df(m)]
        out = []
        for upper in (False, True):
            cands = common + ([_tangent_through(fn, lc, uc, upper)] if fn.inflection is not None else [])
            slopes, inters, scores = [], [], []
            for s in cands:
                s = np.where(np.isfinite(s), s, 0.0)
                b = _intercept(fn, s, lc, uc, upper)
                # the constant candidate can always fall back on the function's global range
                if not slopes:
                    b = np.minimum(b, fn.range[1]) if upper else np.maximum(b, fn.range[0])
                score = np.where(np.isfinite(m), _times(s, m) + b, np.where(s == 0, b, np.inf if upper else -np.inf))
                score = np.where(np.isnan(score), np.inf if upper else -np.inf, score)
                slopes.append(s)
                inters.append(b)
                scores.append(score if upper else -score)
            k = np.argmin(np.stack(scores), axis=0)[None]
            s = np.take_along_axis(np.stack(slopes), k, axis=0)[0]
            b = np.take_along_axis(np.stack(inters), k, axis=0)[0]
            # an upper line at -inf (or a lower one at +inf) bounds only points where fn is infinite
            # itself: no bound instead; an infinite intercept keeps a flat line (no inf - inf later)
            usable_side = usable & (b != (-np.inf if upper else np.inf))
            s = np.where(~np.isfinite(b) | ~usable_side, 0.0, s)
            b = np.where(usable_side, b, np.where(ranged, fn.range[1] if upper else fn.range[0], np.inf if upper else -np.inf))
            out += [s, b]
    return _like(tuple(out), template)


# ---- the product of two variables ---------------------------------------------------------------
def bilinear_relaxation(lx, ux, ly, uy, xp=None):
    """McCormick's planes of z = x * y over lx <= x <= ux, ly <= y <= uy, elementwise.

    Returns `(lower, upper)`, each a pair of planes `(a, b, c)` meaning z >= a x + b y + c (lower)
    or z <= a x + b y + c (upper):
        lower: (ly, lx, -lx ly)  from (x - lx)(y - ly) >= 0;   (uy, ux, -ux uy)  from (x - ux)(y - uy) >= 0
        upper: (uy, lx, -lx uy)  from (x - lx)(y - uy) <= 0;   (ly, ux, -ux ly)  from (x - ux)(y - ly) <= 0
    Both lower planes together are the convex envelope, both upper ones the concave envelope.
    The coefficients are the bounds themselves (exact); the constant is widened outward by 2^-40
    of the magnitudes a plane meets on the box (|a| max|x| + |b| max|y| + |c|), which covers its
    rounded product and the rounding of a x + b y + c evaluated in float64 anywhere on the box.
    Where a bound is not finite (no margin covers float evaluation over an unbounded box) every
    plane is (0, 0, -inf) (lower) or (0, 0, +inf) (upper).
    """
    template = lx
    lx, ux, ly, uy = (_to_numpy(v) for v in (lx, ux, ly, uy))
    lx, ux, ly, uy = np.broadcast_arrays(lx, ux, ly, uy)
    planes = []
    with np.errstate(all="ignore"):
        reach_x, reach_y = np.maximum(np.abs(lx), np.abs(ux)), np.maximum(np.abs(ly), np.abs(uy))
        for (a, b, side) in ((ly, lx, -1), (uy, ux, -1), (uy, lx, 1), (ly, ux, 1)):
            c = -a * b
            c = c + side * EPS * (np.abs(a) * reach_x + np.abs(b) * reach_y + np.abs(c))
            ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(c) & np.isfinite(reach_x) & np.isfinite(reach_y)
            inf = np.inf * side
            planes.append((np.where(ok, a, 0.0), np.where(ok, b, 0.0), np.where(ok, c, inf)))
    res = [_like(p, template) for p in planes]
    return (res[0], res[1]), (res[2], res[3])


def bilinear_crown(lx, ux, ly, uy, xp=None):
    """One lower and one upper plane of x * y (CROWN's choice, as auto_LiRPA's BoundMul makes it):
    `((a_l, b_l, c_l), (a_u, b_u, c_u))` = the first lower plane (ly, lx, -lx ly) and the first upper
    plane (uy, lx, -lx uy) of `bilinear_relaxation` (both planes of a side leave the same mean gap
    over the box, (ux - lx)(uy - ly) / 4, so no choice is tighter on average)."""
    (lower, _), (upper, _) = bilinear_relaxation(lx, ux, ly, uy, xp)
    return lower, upper


def quadratic_form_lower(Q, r, g=None, steps: int = 6):
    """A sound linear lower bound `(h, c)` of d^T Q d over the boxes |d_i| <= r_i: d^T Q d >= h . d + c
    there, for Q (N, n, n), r (N, n) (numpy or torch, float64; Q is symmetrised first): the
    curvature part of the linearised product relaxation of a sum of products whose factors are
    affine in the same variables (`bounds/crown.py`), d the offset from the box's centre.

    With Q = U diag(mu) U^T + E (an eigendecomposition and its computed residual E), the identity
    d^T Q d = sum_k mu_k (U_k . d)^2 + d^T E d holds for any U and mu. Each convex direction
    (mu_k > 0) is bounded by its tangent at a point t, mu_k (U_k . d)^2 >= mu_k (2 (U_k . t)(U_k . d)
    - (U_k . t)^2); each concave one (mu_k < 0) by its value at the reach |U_k| . r of the box;
    d^T E d by -sum_ij (|E_ij| + e) r_i r_j, where e = 2^-40 max|Q| covers the rounding of E and
    of h. The tangent point t minimises g . t + t^T Q+ t over the box (Q+ the convex part;
    its unconstrained minimiser clipped to the box, then `steps` sweeps of coordinate descent, each
    coordinate minimised exactly; g: the linear part of the caller's function, 0 when not
    given): for a convex form the bound then touches its minimum over the box, not just its value
    at the centre. Any t is sound; not finite inputs give h = 0, c = -inf."""
    torch_in = _namespace(Q) == "torch"
    Qn, rn = _to_numpy(Q), _to_numpy(r)
    N, n = rn.shape
    h, out = np.zeros((N, n)), np.zeros(N)
    if N:
        gn = np.zeros((N, n)) if g is None else _to_numpy(g)
        Qn = 0.5 * (Qn + np.swapaxes(Qn, 1, 2))
        finite = np.isfinite(Qn).all(axis=(1, 2)) & np.isfinite(rn).all(axis=1) & np.isfinite(gn).all(axis=1)
        Qf = np.where(finite[:, None, None], Qn, 0.0)
        rf = np.where(finite[:, None], rn, 0.0)
        gf = np.where(finite[:, None], gn, 0.0)
        mu, U = np.linalg.eigh(Qf)
        Ut = np.swapaxes(U, 1, 2)
        E = Qf - (U * mu[:, None, :]) @ Ut
        mp = np.maximum(mu, 0.0)
        Qp = (U * mp[:, None, :]) @ Ut
        # start: the unconstrained minimiser on the convex directions, clipped to the box
        ug = (Ut @ gf[:, :, None])[:, :, 0]
        with np.errstate(all="ignore"):
            keep = mp > 1e-12 * np.maximum(mp.max(axis=1, keepdims=True), 1e-300)
            w = np.where(keep, -ug / (2.0 * np.where(keep, mp, 1.0)), 0.0)
        t = np.clip((U @ w[:, :, None])[:, :, 0], -rf, rf)
        diag = np.einsum("nii->ni", Qp)
        for _ in range(steps):  # the tangent point: coordinate descent on g . t + t^T Q+ t over the box
            for i in range(n):
                grad = gf[:, i] + 2.0 * (Qp[:, i, :] * t).sum(axis=1)
                with np.errstate(all="ignore"):
                    ti = np.where(diag[:, i] > 0, t[:, i] - grad / (2.0 * diag[:, i]), -np.sign(grad) * rf[:, i])
                t[:, i] = np.clip(ti, -rf[:, i], rf[:, i])
        ut = (Ut @ t[:, :, None])[:, :, 0]  # U_k . t
        h = 2.0 * (U @ (mp * ut)[:, :, None])[:, :, 0]
        reach = (np.abs(Ut) @ rf[:, :, None])[:, :, 0]  # |U_k| . r
        e = EPS * np.abs(Qf).max(axis=(1, 2))
        err = (((np.abs(E) + e[:, None, None]) @ rf[:, :, None])[:, :, 0] * rf).sum(axis=1)
        err = err + EPS * (np.abs(h) * rf).sum(axis=1) + EPS * (mp * ut * ut).sum(axis=1)
        out = -(mp * ut * ut).sum(axis=1) + (np.minimum(mu, 0.0) * reach * reach).sum(axis=1) - err
        h = np.where(finite[:, None], h, 0.0)
        out = np.where(finite, out, -np.inf)
    if torch_in:
        import torch

        return torch.as_tensor(h, dtype=torch.float64), torch.as_tensor(out, dtype=torch.float64)
    return h, out


def sign_relaxation(l, u, xp=None):
    """Constant bounds of sign(z) on [l, u] (Sign is not continuous: no sloped line is exact):
    lower 1 where l > 0, 0 where l == 0, else -1; upper -1 where u < 0, 0 where u == 0, else 1."""
    template = l
    l, u = np.broadcast_arrays(_to_numpy(l), _to_numpy(u))
    lo = np.where(l > 0, 1.0, np.where(l == 0, 0.0, -1.0))
    hi = np.where(u < 0, -1.0, np.where(u == 0, 0.0, 1.0))
    bad = np.isnan(l) | np.isnan(u)
    lo, hi = np.where(bad, -1.0, lo), np.where(bad, 1.0, hi)
    z = np.zeros_like(l)
    return _like((z, lo, z.copy(), hi), template)


# ---- value bounds (the layer graph's interval bounds of an act or product layer) ------------------
def value_bounds(fn: Scalar, l, u, xp=None):
    """(lo, hi) with lo <= fn(z) <= hi for every z in [l, u] where fn is defined: the slope-0
    intercepts (the exact extrema over the endpoints and critical points, with the margin),
    within fn's global range; (-inf, inf) where there is none (a pole inside [l, u])."""
    template = l
    l, u = np.broadcast_arrays(_to_numpy(l), _to_numpy(u))
    zero = np.zeros_like(l)
    lo = _to_numpy(sound_intercept(fn, l, u, zero, False))
    hi = _to_numpy(sound_intercept(fn, l, u, zero, True))
    lo = np.maximum(np.where(np.isnan(lo), -np.inf, lo), fn.range[0])
    hi = np.minimum(np.where(np.isnan(hi), np.inf, hi), fn.range[1])
    return _like((lo, hi), template)


def product_bounds(lx, ux, ly, uy, xp=None):
    """(lo, hi) of x * y over the box: the smallest and largest product of corners, widened by
    2^-40 of the largest corner's magnitude (their rounding); an infinite bound gives no bound on
    its side (0 * inf is not taken as 0)."""
    template = lx
    lx, ux, ly, uy = np.broadcast_arrays(*(_to_numpy(v) for v in (lx, ux, ly, uy)))
    with np.errstate(all="ignore"):
        c = np.stack([lx * ly, lx * uy, ux * ly, ux * uy])
        finite = np.isfinite(lx) & np.isfinite(ux) & np.isfinite(ly) & np.isfinite(uy)
        reach = np.max(np.abs(c), axis=0)
        lo = np.where(finite, c.min(axis=0) - EPS * reach, -np.inf)
        hi = np.where(finite, c.max(axis=0) + EPS * reach, np.inf)
    return _like((lo, hi), template)
