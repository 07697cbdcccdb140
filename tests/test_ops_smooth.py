"""The smooth elementwise ops (network/ops/activation.py, Pow in elementwise.py) and their linear
relaxations (network/ops/smooth.py): the torch lowering agrees with ONNX Runtime; every relaxation
holds at every sampled point of many random intervals (degenerate, around the inflection point,
wide, at the domain's edge, infinite), at the exact endpoints and against 50-digit arithmetic;
numpy and torch agree; the bilinear planes hold on boxes; verify answers on a Sin net."""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from onnx import helper

from helpers import box_spec, graph_onnx
from vnncert.network import load_network
from vnncert.network.ops import handler, lowerings, operators, supported_ops
from vnncert.network.ops import smooth

F32 = np.float32
SMOOTH = ["Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal", "Softplus", "Erf", "Sin", "Cos"]
POWERS = [2.0, 3.0, 4.0, -1.0, -2.0, -3.0, 0.5, 1.5, 2.5, -0.5, 0.0, 1.0]
# the input range each op is run on in ONNX Runtime (inside its domain)
DOMAIN = {"Log": (0.05, 3.0), "Sqrt": (0.0, 3.0), "Reciprocal": (0.2, 3.0), "Pow": (0.1, 2.0)}


def _op_net(tmp_path, op, extra=None, attrs=None):
    """y = op(x) @ W on 3 inputs, 2 outputs (Pow: x ** e with a constant e)."""
    W = np.random.default_rng(0).standard_normal((3, 2)).astype(F32)
    inits = {"W": W, **(extra or {})}
    ins = ["x"] + list((extra or {}).keys())
    nodes = [helper.make_node(op, ins, ["h"], **(attrs or {})), helper.make_node("MatMul", ["h", "W"], ["y"])]
    return graph_onnx(tmp_path / f"{op}.onnx", nodes, inits, in_shape=(1, 3), out_shape=(1, 2), check=True)


def _agree(net, lo, hi, seed=1):
    torch = pytest.importorskip("torch")
    xs = np.random.default_rng(seed).uniform(lo, hi, (300, net.n_inputs)).astype(F32).astype(np.float64)
    want = net.evaluate(xs).astype(np.float64)
    got = net.torch_module()(torch.as_tensor(xs, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("op", SMOOTH + ["Sign"])
def test_torch_lowering_agrees_with_onnxruntime(tmp_path, op):
    net = load_network(_op_net(tmp_path, op), threads=1)
    _agree(net, *DOMAIN.get(op, (-3.0, 3.0)))


@pytest.mark.parametrize("e", [2.0, 3.0, 0.5, 2.5, -1.0, -0.5])
def test_pow_torch_lowering_agrees_with_onnxruntime(tmp_path, e):
    net = load_network(_op_net(tmp_path, "Pow", {"e": np.asarray(e, F32)}), threads=1)
    _agree(net, *DOMAIN["Pow"])


def test_registry_lists_the_relaxations():
    have = set(supported_ops("relaxation"))
    assert set(SMOOTH) | {"Pow", "Sign", "Mul", "MatMul", "Relu", "MaxPool"} <= have
    for op in SMOOTH:
        assert op in operators() and lowerings(op) == ["to_torch", "to_affine", "relaxation"], op
        assert op not in supported_ops("to_milp")  # not piecewise linear: an act layer, no MILP encoding
    assert "Pow" in supported_ops("to_affine") and "Pow" not in supported_ops("to_milp")
    assert {"Mul", "Div", "MatMul", "Neg", "Relu"} <= set(supported_ops("to_milp"))  # (with a constant operand)
    assert "Neg" not in have  # affine


# ---- relaxation soundness ------------------------------------------------------------------------
def _intervals(rng, n, centre=0.0, lo_clip=None):
    """Random intervals of widths from 1e-9 to 1e2 around `centre`, degenerate ones, ones with an
    end at the centre (an inflection point, a domain edge) and, unless clipped, infinite ones."""
    a = centre + rng.standard_normal(n) * rng.choice([0.01, 0.3, 1.0, 4.0, 30.0], n)
    w = np.abs(rng.standard_normal(n)) * rng.choice([1e-9, 1e-4, 0.1, 1.0, 5.0, 100.0], n)
    l, u = a, a + w
    k = n // 10
    l[:k] = u[:k]  # l == u
    l[k:2 * k] = centre  # starting at the inflection point / domain edge
    u[2 * k:3 * k] = centre
    l[2 * k:3 * k] = np.minimum(l[2 * k:3 * k], centre)
    if lo_clip is not None:
        l, u = np.maximum(l, lo_clip), np.maximum(u, lo_clip)
    return l, u


def _check_sound(fn, l, u, ls, lb, us, ub, rng, n_points=256):
    for a in (ls, lb, us, ub):
        assert not np.isnan(np.asarray(a)).any(), fn.name
    t = np.concatenate([[0.0, 1.0], np.linspace(0, 1, n_points // 2), rng.uniform(0, 1, n_points // 2)])
    z = np.where(t[:, None] == 1.0, u[None], l[None] + t[:, None] * (u - l)[None])  # the exact endpoints
    with np.errstate(all="ignore"):
        f = fn(z)
        low = np.where(ls == 0, 0.0, ls * z) + lb
        high = np.where(us == 0, 0.0, us * z) + ub
    defined = ~np.isnan(f)
    bad_low = defined & (low > f)
    bad_high = defined & (f > high)
    assert not bad_low.any(), (fn.name, "lower", l[bad_low.any(0)][:3], u[bad_low.any(0)][:3])
    assert not bad_high.any(), (fn.name, "upper", l[bad_high.any(0)][:3], u[bad_high.any(0)][:3])


def _functions():
    out = [(name, smooth.FUNCTIONS[name]) for name in SMOOTH]
    return out + [(f"Pow({p:g})", smooth.power(p)) for p in POWERS]


@pytest.mark.parametrize("name,fn", _functions(), ids=[n for n, _ in _functions()])
def test_relaxation_is_sound_on_random_intervals(name, fn):
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # str hash() differs per process
    centres = {"Log": [0.0, 1.0], "Sqrt": [0.0, 1.0], "Sin": [0.0, math.pi / 2, 3.0], "Cos": [0.0, math.pi / 2, -2.0]}
    for c in centres.get(name, [0.0, 2.0, -2.0]):
        l, u = _intervals(rng, 3000, c)
        _check_sound(fn, l, u, *smooth.relax(fn, l, u), rng)


@pytest.mark.parametrize("name,fn", _functions(), ids=[n for n, _ in _functions()])
def test_relaxation_edge_cases(name, fn):
    """Infinite bounds, huge intervals (sigmoid saturating, exp overflowing), the domain's edge, a
    pole inside the interval, NaN bounds: no NaN, and sound where the function is defined."""
    big = [(-math.inf, math.inf), (-math.inf, 0.0), (0.0, math.inf), (-1e300, 1e300), (-800.0, 800.0),
           (700.0, 720.0), (-720.0, -700.0), (-1e-300, 1e-300), (0.0, 0.0), (-0.0, 0.0), (-5.0, 0.0), (0.0, 1e-12),
           (1e6, 1e6 + 1.0), (3.0, 3.0 + 1e-15), (-1.0, 1.0)]
    l = np.asarray([a for a, _ in big])
    u = np.asarray([b for _, b in big])
    ls, lb, us, ub = smooth.relax(fn, l, u)
    finite = np.isfinite(l) & np.isfinite(u)
    _check_sound(fn, l[finite], u[finite], ls[finite], lb[finite], us[finite], ub[finite], np.random.default_rng(0), 4000)
    for a in (ls, lb, us, ub):
        assert not np.isnan(a).any()
    # an infinite intercept comes with a flat line, so the bounds layer never meets inf - inf
    assert np.all(ls[~np.isfinite(lb)] == 0) and np.all(us[~np.isfinite(ub)] == 0)
    nan = smooth.relax(fn, np.asarray([np.nan, 0.0]), np.asarray([1.0, np.nan]))
    assert np.all(nan[1] == -np.inf) and np.all(nan[3] == np.inf)


def test_relaxation_of_functions_with_a_range_on_infinite_intervals():
    for name, lo, hi in (("Sigmoid", 0.0, 1.0), ("Tanh", -1.0, 1.0), ("Erf", -1.0, 1.0), ("Sin", -1.0, 1.0)):
        ls, lb, us, ub = smooth.relax(smooth.FUNCTIONS[name], np.asarray([-math.inf]), np.asarray([math.inf]))
        assert (ls[0], lb[0], us[0], ub[0]) == (0.0, lo, 0.0, hi), name
    # a pole inside the interval: no bound; at the domain's edge: one side unbounded
    assert smooth.relax(smooth.FUNCTIONS["Reciprocal"], np.asarray([-1.0]), np.asarray([2.0]))[1][0] == -math.inf
    ls, lb, us, ub = smooth.relax(smooth.FUNCTIONS["Log"], np.asarray([0.0]), np.asarray([2.0]))
    assert lb[0] == -math.inf and np.isfinite(ub[0]) and us[0] > 0


@pytest.mark.parametrize("name", SMOOTH)
def test_relaxation_against_50_digit_arithmetic(name):
    """The lines against the exact function (mpmath), at the endpoints and at the points where the
    lines touch the curve (where a float error would show first)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    exact = {"Sigmoid": lambda z: 1 / (1 + mp.exp(-z)), "Tanh": mp.tanh, "Exp": mp.exp, "Log": mp.log, "Sqrt": mp.sqrt,
             "Reciprocal": lambda z: 1 / z, "Softplus": lambda z: mp.log(1 + mp.exp(z)), "Erf": mp.erf, "Sin": mp.sin,
             "Cos": mp.cos}[name]
    fn = smooth.FUNCTIONS[name]
    rng = np.random.default_rng(5)
    l, u = _intervals(rng, 150, 1.0 if name in ("Log", "Sqrt", "Reciprocal") else 0.0,
                      lo_clip=0.01 if name in ("Log", "Sqrt", "Reciprocal") else None)
    ls, lb, us, ub = smooth.relax(fn, l, u)
    for i in range(l.size):
        pts = [l[i], u[i], 0.5 * (l[i] + u[i])]
        for s in (ls[i], us[i]):  # where each line is tangent (critical points of the gap)
            with np.errstate(all="ignore"):
                crit = fn.critical(np.asarray([s]), l[i:i + 1], u[i:i + 1])
            pts += [float(p) for p in np.concatenate([np.ravel(c) for c in crit] or [np.zeros(0)])
                    if np.isfinite(p) and l[i] <= p <= u[i]]
        for z in pts:
            fz = exact(mp.mpf(float(z)))
            assert mp.mpf(float(ls[i])) * mp.mpf(float(z)) + mp.mpf(float(lb[i])) <= fz, (name, l[i], u[i], z)
            assert fz <= mp.mpf(float(us[i])) * mp.mpf(float(z)) + mp.mpf(float(ub[i])), (name, l[i], u[i], z)


def test_relaxation_is_crowns_on_convex_and_s_shaped_intervals():
    """Convex: the chord above, the tangent at the midpoint below; sigmoid across 0: the upper line
    is tangent in the concave part and passes (up to the margin) through (l, f(l))."""
    exp = smooth.FUNCTIONS["Exp"]
    l, u = np.asarray([-1.0, 0.5]), np.asarray([2.0, 0.75])
    ls, lb, us, ub = smooth.relax(exp, l, u)
    np.testing.assert_allclose(us, (np.exp(u) - np.exp(l)) / (u - l), rtol=1e-12)
    np.testing.assert_allclose(ls, np.exp((l + u) / 2), rtol=1e-12)
    np.testing.assert_allclose(us * u + ub, np.exp(u), rtol=1e-10)
    sig = smooth.FUNCTIONS["Sigmoid"]
    l, u = np.asarray([-4.0]), np.asarray([6.0])
    ls, lb, us, ub = smooth.relax(sig, l, u)
    assert abs(us[0] * l[0] + ub[0] - sig(l)[0]) < 1e-6  # through the far endpoint
    z = np.linspace(0, 6, 20001)
    assert (us[0] * z + ub[0] - sig(z)).min() < 1e-6  # and tangent in [0, u]
    # degenerate: the value itself, within the margin
    ls, lb, us, ub = smooth.relax(sig, np.asarray([0.3]), np.asarray([0.3]))
    assert 0 <= (us * 0.3 + ub - sig(np.asarray([0.3])))[0] < 1e-11 and 0 <= (sig(np.asarray([0.3])) - ls * 0.3 - lb)[0] < 1e-11


@pytest.mark.parametrize("name,fn", _functions()[:10], ids=SMOOTH)
def test_sound_intercept_makes_any_slope_sound(name, fn):
    """Any slope (tiny, huge, zero, negative) gets the tightest sound intercept."""
    rng = np.random.default_rng(7)
    l, u = _intervals(rng, 2000, 0.0, lo_clip=0.0 if name in ("Log", "Sqrt") else None)
    if name == "Reciprocal":
        l, u = np.abs(l) + 0.01, np.abs(u) + 0.01
        l, u = np.minimum(l, u), np.maximum(l, u)
    s = rng.choice([-1.0, 1.0], l.size) * 10.0 ** rng.uniform(-300, 3, l.size)
    s[:200] = 0.0
    lo, hi = smooth.sound_intercept(fn, l, u, s, upper=False), smooth.sound_intercept(fn, l, u, s, upper=True)
    _check_sound(fn, l, u, s, lo, s, hi, rng, 2000)


@pytest.mark.parametrize("name,fn", _functions()[:10], ids=SMOOTH)
def test_intercept_point_is_sound_intercept_and_where_the_line_touches(name, fn):
    """intercept_point: the same intercept as sound_intercept, and a point z in [l, u] where the
    gap fn(z) - s z reaches it (up to the margin): what alpha-CROWN's gradient (-z) follows."""
    rng = np.random.default_rng(8)
    l, u = _intervals(rng, 2000, 0.0, lo_clip=0.0 if name in ("Log", "Sqrt") else None)
    if name == "Reciprocal":
        l, u = np.abs(l) + 0.01, np.abs(u) + 0.01
        l, u = np.minimum(l, u), np.maximum(l, u)
    s = rng.choice([-1.0, 1.0], l.size) * 10.0 ** rng.uniform(-3, 1, l.size)
    for upper in (False, True):
        b, z = smooth.intercept_point(fn, l, u, s, upper)
        assert np.array_equal(b, smooth.sound_intercept(fn, l, u, s, upper), equal_nan=True)
        ok = np.isfinite(b) & np.isfinite(l) & np.isfinite(u)
        assert ok.sum() > 500 and np.all(np.isfinite(z))
        lc = np.maximum(l, fn.domain_lo)
        assert np.all((z[ok] >= lc[ok]) & (z[ok] <= u[ok]))
        with np.errstate(all="ignore"):
            gap = fn(z) - np.where(s == 0, 0.0, s * z)
        with np.errstate(all="ignore"):  # the margin's terms (the largest |fn| it met: at an end or z)
            ends = np.maximum(np.abs(fn(lc)), np.abs(fn(u)))
            scale = 1.0 + np.abs(fn(z)) + np.where(np.isfinite(ends), ends, 0.0) + np.abs(s) * np.maximum(np.abs(lc), np.abs(u)) + np.abs(b)
        assert np.all(np.abs(gap[ok] - b[ok]) <= 1e-9 * scale[ok]), name  # (only the finite entries: no NaN arithmetic)


def test_torch_and_numpy_agree():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    l, u = _intervals(rng, 500)
    for name in SMOOTH:
        a = smooth.relax(smooth.FUNCTIONS[name], l, u)
        b = handler(name, "relaxation").relaxation(torch.as_tensor(l), torch.as_tensor(u), torch)
        for x, y in zip(a, b):
            assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
            assert np.array_equal(x, y.numpy(), equal_nan=True), name
    got = handler("Pow", "relaxation").relaxation(torch.as_tensor(l), torch.as_tensor(u), torch, exponent=3.0)
    for x, y in zip(smooth.relax(smooth.power(3.0), l, u), got):
        assert np.array_equal(x, y.numpy())


def test_sign_relaxation():
    l = np.asarray([-2.0, -1.0, 0.0, 0.5, -1.0, 0.0])
    u = np.asarray([-1.0, 0.0, 0.0, 2.0, 3.0, 1.0])
    ls, lb, us, ub = handler("Sign", "relaxation").relaxation(l, u)
    assert np.all(ls == 0) and np.all(us == 0)
    assert lb.tolist() == [-1, -1, 0, 1, -1, 0] and ub.tolist() == [-1, 0, 0, 1, 1, 1]


# ---- the product of two variables ----------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_bilinear_planes_hold_on_boxes(backend):
    rng = np.random.default_rng(11)
    n = 2000
    lx = rng.standard_normal(n) * rng.choice([0.1, 1, 100], n)
    ux = lx + np.abs(rng.standard_normal(n)) * rng.choice([0.0, 1e-6, 1, 50], n)
    ly = rng.standard_normal(n) * rng.choice([0.1, 1, 100], n)
    uy = ly + np.abs(rng.standard_normal(n)) * rng.choice([0.0, 1e-6, 1, 50], n)
    args = (lx, ux, ly, uy)
    if backend == "torch":
        torch = pytest.importorskip("torch")
        (lo1, lo2), (up1, up2) = (tuple(tuple(t.numpy() for t in p) for p in side)
                                  for side in smooth.bilinear_relaxation(*(torch.as_tensor(a) for a in args)))
        crown = tuple(tuple(t.numpy() for t in p) for p in smooth.bilinear_crown(*(torch.as_tensor(a) for a in args)))
    else:
        (lo1, lo2), (up1, up2) = smooth.bilinear_relaxation(*args)
        crown = smooth.bilinear_crown(*args)
    t = rng.uniform(0, 1, (64, 2, n))
    t[0], t[1, 0], t[1, 1] = 0.0, 1.0, 0.0  # corners
    t[2] = 1.0
    x, y = lx + t[:, 0] * (ux - lx), ly + t[:, 1] * (uy - ly)
    xy = x * y
    for (a, b, c) in (lo1, lo2, crown[0]):
        assert np.all(a * x + b * y + c <= xy)
    for (a, b, c) in (up1, up2, crown[1]):
        assert np.all(a * x + b * y + c >= xy)
    # exact at the box's corners: the envelope touches the surface there
    scale = np.abs(ly) * np.maximum(abs(lx), abs(ux)) + np.abs(lx) * np.maximum(abs(ly), abs(uy)) + np.abs(lx * ly)
    assert np.all(np.abs(lo1[0] * lx + lo1[1] * ly + lo1[2] - lx * ly) <= 1e-10 * scale)


def test_bilinear_with_infinite_bounds_is_never_nan():
    (lo1, lo2), (up1, up2) = smooth.bilinear_relaxation(np.asarray([-math.inf, 0.0]), np.asarray([1.0, 1.0]),
                                                         np.asarray([0.0, -math.inf]), np.asarray([2.0, math.inf]))
    for plane in (lo1, lo2, up1, up2):
        assert not any(np.isnan(p).any() for p in plane)
    # an infinite bound: no float margin covers a plane over an unbounded box, so none is given
    assert lo1[2][0] == lo2[2][0] == -math.inf and up1[2][0] == up2[2][0] == math.inf
    crown = smooth.bilinear_crown(np.asarray([-math.inf]), np.asarray([1.0]), np.asarray([0.0]), np.asarray([2.0]))
    assert crown[0][2][0] == -math.inf and crown[0][0][0] == crown[0][1][0] == 0.0
    assert handler("Mul", "relaxation").relaxation is not None and "MatMul" in supported_ops("relaxation")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_quadratic_form_lower_holds_on_boxes(backend):
    """d^T Q d >= h . d + c on |d| <= r: positive semi-definite, indefinite, rank-one, zero and
    badly scaled forms, zero-width dims, sampled points and every corner; a convex form's bound
    touches its minimum over the box (the tangent point is the box's minimiser)."""
    rng = np.random.default_rng(12)
    n_dims = (1, 2, 3, 6)
    for n in n_dims:
        N = 600
        A = rng.standard_normal((N, n, n))
        Q = A + np.swapaxes(A, 1, 2)
        Q[:150] = A[:150] @ np.swapaxes(A[:150], 1, 2)  # convex
        Q[150:200] = 0.0
        v = rng.standard_normal((50, n))
        Q[200:250] = v[:, :, None] * v[:, None, :] * rng.choice([-1.0, 1.0], (50, 1, 1))  # rank one
        Q[250:300] *= rng.choice([1e-6, 1e4], (50, 1, 1))
        Q[300:350] = A[300:350]  # not symmetric (the form is that of its symmetric part)
        r = rng.uniform(0, 1, (N, n)) * rng.choice([0.0, 1e-6, 1e-3, 1.0, 20.0], (N, 1))
        r[::7, 0] = 0.0
        g = rng.standard_normal((N, n)) * rng.choice([0.0, 1.0, 30.0], (N, 1))
        args = (Q, r, g)
        if backend == "torch":
            torch = pytest.importorskip("torch")
            h, c = (t.numpy() for t in smooth.quadratic_form_lower(*(torch.as_tensor(a) for a in args)))
        else:
            h, c = smooth.quadratic_form_lower(*args)
        corners = np.array(np.meshgrid(*[[-1.0, 1.0]] * n)).reshape(n, -1).T  # (2^n, n)
        d = np.concatenate([rng.uniform(-1, 1, (N, 500, n)), np.broadcast_to(corners, (N,) + corners.shape)], 1) * r[:, None, :]
        quad = np.einsum("nsi,nij,nsj->ns", d, Q, d)
        lin = np.einsum("ni,nsi->ns", h, d) + c[:, None]
        assert np.all(lin <= quad), (n, (lin - quad).max())
        # convex forms: the bound of g . d + d^T Q d at its minimiser over the box is (nearly) attained
        tot = (quad + np.einsum("ni,nsi->ns", g, d))[:150].min(axis=1)
        lb = c[:150] - (np.abs(h + g) * r)[:150].sum(axis=1)
        assert np.all(lb <= tot + 1e-12 * (1 + np.abs(tot)))
        if n == 1:  # one dim: coordinate descent is exact, the sampled corners hold the minimum or near it
            assert np.all(tot - lb <= 1e-6 * (1 + np.abs(tot)) + 0.01 * (Q[:150, 0, 0] * r[:150, 0] ** 2))
    bad = np.full((2, 2, 2), np.nan)
    bad[1] = np.eye(2)
    h, c = smooth.quadratic_form_lower(bad, np.ones((2, 2)))
    assert c[0] == -math.inf and np.all(h[0] == 0) and np.isfinite(c[1]) and not np.isnan(h).any()
    h, c = smooth.quadratic_form_lower(np.zeros((0, 3, 3)), np.zeros((0, 3)))
    assert h.shape == (0, 3) and c.shape == (0,)


# ---- verify --------------------------------------------------------------------------------------
def test_verify_a_sin_net_in_relaxed_mode(tmp_path):
    """y0 = sin(x0 + x1), y1 = sin(x0 - x1) on [0, 1]^2 (tests/helpers gemm_then): y0 >= 1.01 is
    unsat (sin <= 1), y0 >= 0.99 is sat (x0 + x1 near pi / 2)."""
    from helpers import gemm_then
    from vnncert.api import verify

    model = gemm_then(tmp_path / "sin.onnx", "Sin", in_shape=(1, 2), out_shape=(1, 2), check=True)
    unsat, sat = tmp_path / "unsat.vnnlib", tmp_path / "sat.vnnlib"
    unsat.write_text(box_spec([0.0, 0.0], [1.0, 1.0], [["(>= Y_0 1.01)"]], 2))
    sat.write_text(box_spec([0.0, 0.0], [1.0, 1.0], [["(>= Y_0 0.99)"]], 2))
    out = verify(model, str(unsat), mode="relaxed", timeout=60, threads=1)
    assert out.verdict.value == "unsat", (out.verdict, out.detail)
    out = verify(model, str(sat), mode="auto", timeout=60, threads=1)
    assert out.verdict.value == "sat", (out.verdict, out.detail)
    x, _ = out.counterexample
    assert math.sin(x[0] + x[1]) >= 0.99 - 1e-6


def test_gelu_pattern_converts(tmp_path):
    """GELU as exporters write it, x * 0.5 * (1 + erf(x / sqrt(2))): Div by a constant, Erf, Add,
    Mul of two variable tensors, Mul by a constant; the torch module agrees with ONNX Runtime
    (its relaxation is the composition of Erf's and the product's)."""
    from helpers import assert_lowerings_agree, op_model

    inits = {"W": np.random.default_rng(4).standard_normal((3, 4)).astype(F32), "r2": np.asarray(1.4142135, F32),
             "one": np.asarray(1.0, F32), "half": np.asarray(0.5, F32)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Div", ["h", "r2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"]),
             helper.make_node("Mul", ["h", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    net = load_network(op_model(tmp_path / "gelu.onnx", nodes, inits, (1, 3)), threads=1)
    assert_lowerings_agree(net, np.random.default_rng(5).uniform(-3, 3, (200, 3)), layers=False)
