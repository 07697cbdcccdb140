"""Networks without a (unstable) ReLU: every engine and mode answers them, exactly where it can.

A network that is affine on the input region is a linear program: every row's CROWN bound is
exact, the MILP has no binaries. The models here are built in code (helpers.mlp_onnx with one
layer: y = W x + b; and a ReLU layer that is active on the whole box), with properties whose
answer is known in closed form. The conjunctions need the LP of the whole disjunct: no row's
bound refutes them alone (checked: the numpy CROWN pass leaves them open).
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from helpers import box_spec, mlp_onnx

pytest.importorskip("torch")

from vnncert import load_network, load_spec  # noqa: E402
from vnncert.api import verify  # noqa: E402
from vnncert.options import Options  # noqa: E402
from vnncert.results import Verdict  # noqa: E402

W2 = np.array([[1.0, 1.0], [1.0, -1.0]])  # y0 = x0 + x1, y1 = x0 - x1
N20 = 20
W20 = np.zeros((2, N20))
W20[0] = 1.0  # y0 = sum x
W20[1, 0], W20[1, 1] = 1.0, -1.0  # y1 = x0 - x1


def _models(d):
    return {
        # y = W x: affine, no ReLU at all
        "lin2": mlp_onnx(d / "lin2.onnx", [(W2, np.zeros(2))]),
        # relu(x + 1) is x + 1 on [0, 1]^2 (every ReLU active, none unstable), then W (x + 1) - W 1 = W x
        "relu_stable": mlp_onnx(d / "relu_stable.onnx", [(np.eye(2), np.ones(2)), (W2, -W2.sum(axis=1))]),
        "lin20": mlp_onnx(d / "lin20.onnx", [(W20, np.zeros(2))]),
    }


# (model, property name, [lower], [upper], disjunct rows, answer)
UNIT2 = ([0.0, 0.0], [1.0, 1.0])
UNIT20 = ([0.0] * N20, [1.0] * N20)
PROPS = [
    # y0 >= 1.9 forces x0, x1 >= 0.9, so y1 = x0 - x1 <= 0.1: unsat, though y0 <= 2 and y1 <= 1 alone allow it
    ("conj_unsat", *UNIT2, [["(>= Y_0 1.9)", "(>= Y_1 0.2)"]], "unsat"),
    # ... and y1 >= 0.05 is reachable (x0 = 1, x1 = 0.92): sat, in no corner of the box
    ("conj_sat", *UNIT2, [["(>= Y_0 1.9)", "(>= Y_1 0.05)"]], "sat"),
    ("row_unsat", *UNIT2, [["(>= Y_0 2.5)"]], "unsat"),
    ("row_sat", *UNIT2, [["(>= Y_0 1.5)"]], "sat"),
    # two disjuncts, both impossible
    ("or_unsat", *UNIT2, [["(>= Y_0 2.1)"], ["(<= Y_1 -1.1)"]], "unsat"),
]
# 20 inputs (too many for input splitting): sum x >= 19.5 leaves x1 >= 0.5, so x0 - x1 <= 0.5
PROPS20 = [
    ("conj20_unsat", *UNIT20, [["(>= Y_0 19.5)", "(>= Y_1 0.6)"]], "unsat"),
    ("conj20_sat", *UNIT20, [["(>= Y_0 19.5)", "(>= Y_1 0.4)"]], "sat"),
]

MODES = [("auto", {}), ("exact", {}), ("relaxed", {"relaxed_method": "crown"}),
         ("relaxed", {"relaxed_method": "alpha-crown"}), ("relaxed", {"relaxed_method": "ibp"}),
         ("relaxed", {"relaxed_method": "lp"}), ("falsify", {})]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("linear")
    models = _models(d)
    props = {}
    for name, lo, hi, rows, _ in PROPS + PROPS20:
        p = d / f"{name}.vnnlib"
        p.write_text(box_spec(lo, hi, rows, 2))
        props[name] = str(p)
    return models, props


def _closed_form_check(out, W):
    """The witness was replayed, and its y is W x (float32 model: within 1e-5)."""
    x, y = out.counterexample
    assert out.witness_checked
    np.testing.assert_allclose(np.asarray(y, np.float64), W @ np.asarray(x, np.float64), atol=1e-5)


def _want(mode, answer):
    return "unknown" if (mode == "falsify" and answer == "unsat") else answer


CASES = [(m, p) for m in ("lin2", "relu_stable") for p in PROPS] + [("lin20", p) for p in PROPS20]


@pytest.mark.parametrize("mode,kw", MODES, ids=[m + ("-" + k["relaxed_method"] if k else "") for m, k in MODES])
@pytest.mark.parametrize("model,prop", CASES, ids=[f"{m}-{p[0]}" for m, p in CASES])
def test_every_mode_answers_affine_networks(world, model, prop, mode, kw):
    models, props = world
    name, _, _, _, answer = prop
    t0 = time.monotonic()
    out = verify(models[model], props[name], mode=mode, timeout=60, threads=1, **kw)
    assert out.verdict.value == _want(mode, answer), f"{model} {name} {mode} {kw}: {out.engine}: {out.detail}"
    assert time.monotonic() - t0 < 30
    if out.verdict == Verdict.SAT:
        _closed_form_check(out, W20 if model == "lin20" else W2)


def test_conjunctions_need_the_lp(world):
    """The numpy CROWN pass (row by row, exact for each row here) leaves the conjunctions open."""
    from vnncert.engines import quick_bounds

    models, props = world
    for model, name in (("lin2", "conj_unsat"), ("relu_stable", "conj_unsat"), ("lin20", "conj20_unsat")):
        net = load_network(models[model], threads=1)
        spec = load_spec(props[name], network=net)
        out = quick_bounds.check(net, spec, math.inf, Options(threads=1))
        assert out.verdict == Verdict.UNKNOWN, out.detail
    net = load_network(models["lin2"], threads=1)
    out = quick_bounds.check(net, load_spec(props["row_unsat"], network=net), math.inf, Options(threads=1))
    assert out.verdict == Verdict.UNSAT


@pytest.mark.parametrize("model,sat,unsat", [("lin2", "conj_sat", "conj_unsat"), ("relu_stable", "conj_sat", "conj_unsat"),
                                             ("lin20", "conj20_sat", "conj20_unsat")])
def test_exact_engine_alone_decides_the_lp(world, model, sat, unsat):
    """The exact engine without its falsifier pass (mode auto): the MILP without binaries (or the
    input splitting in front of it) finds the witness and proves the unsat conjunction."""
    from vnncert.engines import exact

    models, props = world
    net = load_network(models[model], threads=1)
    opts = Options(mode="auto", threads=1)
    out = exact.check(net, load_spec(props[sat], network=net), time.monotonic() + 60, opts)
    assert out.verdict == Verdict.SAT and out.witness_checked, out.detail
    assert "falsifier" not in out.detail
    out = exact.check(net, load_spec(props[unsat], network=net), time.monotonic() + 60, opts)
    assert out.verdict == Verdict.UNSAT, out.detail


@pytest.mark.parametrize("method", ["crown", "alpha-crown", "ibp", "lp"])
def test_relaxed_engine_uses_the_lp_on_affine_regions(world, method):
    """20 free inputs (no input splitting): the relaxed engine still answers, through the LP (under
    `--relaxed-method lp` the router runs the LP engine in its place)."""
    from vnncert import router

    models, props = world
    net = load_network(models["lin20"], threads=1)
    opts = Options.make(mode="relaxed", threads=1, relaxed_method=method)
    engine, = router.plan(opts)
    assert engine == ("lp" if method == "lp" else "relaxed")
    check = router.engine_check(engine)
    out = check(net, load_spec(props["conj20_unsat"], network=net), time.monotonic() + 60, opts)
    assert out.verdict == Verdict.UNSAT, out.detail
    out = check(net, load_spec(props["conj20_sat"], network=net), time.monotonic() + 60, opts)
    assert out.verdict == Verdict.SAT and out.witness_checked, out.detail


def test_probabilistic_mode_on_an_affine_network(world, tmp_path):
    """Local robustness of label 0 (y0 > y1 iff x1 > 0): robust box -> unknown with a certificate
    for g; a box reaching x1 < 0 -> sat with a replayed witness of f."""
    models, _ = world
    robust = tmp_path / "robust.vnnlib"
    robust.write_text(box_spec([0.4, 0.1], [0.6, 0.3], [["(>= Y_1 Y_0)"]], 2))
    broken = tmp_path / "broken.vnnlib"
    broken.write_text(box_spec([0.4, -0.3], [0.6, 0.2], [["(>= Y_1 Y_0)"]], 2))
    out = verify(models["lin2"], str(robust), mode="probabilistic", timeout=60, threads=1, sigma=0.1)
    assert out.verdict == Verdict.UNKNOWN and out.certificate is not None, out.detail
    out = verify(models["lin2"], str(broken), mode="probabilistic", timeout=60, threads=1, sigma=0.1)
    assert out.verdict == Verdict.SAT and out.witness_checked, out.detail
    x, y = out.counterexample
    assert y[1] >= y[0]


# ---- the bounding pieces themselves, with zero ReLUs or zero unstable ones ------------------------------
def _graph(n_relu):
    """The layer graph of y = W2 x (no ReLU) or y = W2 relu(x + 1) - W2 1, as a `GraphView`, and
    the index of the affine layer its ReLUs read (None without ReLUs)."""
    from vnncert.bounds.graph import GraphView
    from vnncert.network.layers import AffineLayer, InputLayer, LayerGraph, ReluLayer

    if n_relu == 0:
        layers = [InputLayer(0, 2, (2,)), AffineLayer(1, 2, [(0, W2)], np.zeros(2))]
        return GraphView(LayerGraph(layers, 1, (2,), (2,))), None
    layers = [InputLayer(0, 2, (2,)), AffineLayer(1, 2, [(0, np.eye(2))], np.ones(2)), ReluLayer(2, 2, 1),
              AffineLayer(3, 2, [(2, W2)], -W2.sum(axis=1))]
    return GraphView(LayerGraph(layers, 3, (2,), (2,))), 1


@pytest.mark.parametrize("model", ["lin2", "relu_stable"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_crown_and_alpha_without_unstable_neurons(world, model, backend):
    """CROWN on a network without ReLUs (or with every ReLU stable on the boxes) is exact per row;
    alpha, with nothing to optimise, returns CROWN's bound; children of a box reuse its state."""
    from vnncert import bounds
    from vnncert.options import BoundsOptions

    models, _ = world
    net = load_network(models[model], threads=1)
    g = bounds.prepare(net.layer_graph, backend)
    lo, hi = np.array([[0.0, 0.0], [0.0, 0.5]]), np.array([[1.0, 1.0], [0.5, 1.0]])
    C = np.broadcast_to(np.array([[1.0, 0.0], [0.0, -1.0]]), (2, 2, 2)).copy()
    r = bounds.compute(g, lo, hi, C, want_A=True, want_state=True, want_scores=True)
    assert r.unstable.tolist() == [0, 0] and r.A.shape == (2, 2, 2) and r.scores.shape == (2, 2, 2)
    # exact per row: the minimum over the box's corners (the network is affine on it)
    corners = np.array([[a, b] for a in (0, 1) for b in (0, 1)], float)
    for i in range(2):
        pts = lo[i] + corners * (hi[i] - lo[i])
        ys = net.evaluate(pts).astype(np.float64) @ C[i].T
        np.testing.assert_allclose(r.lower[i], ys.min(axis=0), atol=1e-6)
    if backend == "torch":
        a = bounds.compute(g, lo, hi, C, "alpha", intermediate=r.state, options=BoundsOptions(alpha_iters=5)).lower
        np.testing.assert_allclose(a, r.lower)
    child = bounds.compute(g, lo, (lo + hi) / 2, C, parent=r.state)
    assert np.all(child.lower >= r.lower - 1e-9)


@pytest.mark.parametrize("n_relu", [0, 1])
def test_relu_split_bab_without_unstable_neurons(n_relu):
    """SplitBaB with U = 0: the root bound decides (proven), or the domain cannot be split
    (unknown: only an LP decides it); it never crashes and never guesses."""
    from vnncert.bounds.alpha_beta import optimised_rows
    from vnncert.search.activation_split import SplitBaB

    view, src = _graph(n_relu)
    lo, hi = np.zeros(2), np.ones(2)
    pre = {} if src is None else {src: (np.ones(2), 2.0 * np.ones(2))}  # pre-activations x + 1 in [1, 2]
    # -y0 <= -2.5 (y0 >= 2.5): impossible, proven by the root bound
    r = SplitBaB(view, lo, hi, pre, np.array([[-1.0, 0.0]]), np.array([-2.5])).run(time.monotonic() + 30, lambda xs: None)
    assert r.status == "proven"
    # y0 >= 1.9 and y1 >= 0.2: no row alone refutes it, nothing to split: unknown
    r = SplitBaB(view, lo, hi, pre, np.array([[-1.0, 0.0], [0.0, -1.0]]), np.array([-1.9, -0.2])).run(
        time.monotonic() + 30, lambda xs: None)
    assert r.status == "unknown"
    if n_relu:
        l, u = optimised_rows(view, lo, hi, pre, view.output, np.arange(2), 5, time.monotonic() + 30)
        np.testing.assert_allclose(l, [0.0, -1.0], atol=1e-9)
        np.testing.assert_allclose(u, [2.0, 1.0], atol=1e-9)
