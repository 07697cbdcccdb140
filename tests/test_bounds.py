"""The bounds layer (plugin/vnncert/bounds/): one CROWN over the layer graph, numpy and torch alike,
sound on DAGs with max nodes and residual adds, its parent-bound reuse and the one margin rule."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from helpers import mlp_onnx, random_mlp

from vnncert import bounds
from vnncert.bounds import margin
from vnncert.network.loader import load_network

from test_exact import branchy_net, conv_net

torch = pytest.importorskip("torch")


def _boxes(n, k, w, seed):
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, (k, n))
    return c - w, c + w


@pytest.mark.parametrize("make", [conv_net, branchy_net], ids=["conv-maxpool", "residual"])
def test_crown_numpy_and_torch_agree_and_hold_on_samples(tmp_path, make):
    """A DAG of the layer graph's kinds (conv as a sparse matrix, max nodes from MaxPool, a residual
    add): numpy and torch give the same bounds, below every sampled output, never looser than
    interval bounds once intersected with them (`output_box`); a child (half its parent) started
    from its parent's intermediate bounds is sound too."""
    net = load_network(make(tmp_path), threads=1)
    lg = net.layer_graph
    assert any(L.kind == "max" for L in lg.layers) == (make is conv_net)
    lo, hi = _boxes(lg.n_inputs, 4, 0.3, 0)
    C = np.broadcast_to(np.random.default_rng(1).standard_normal((3, lg.n_outputs)), (4, 3, lg.n_outputs)).copy()
    rn = bounds.compute(bounds.prepare(lg, "numpy"), lo, hi, C, want_state=True, want_A=True)
    rt = bounds.compute(bounds.prepare(lg, "torch"), lo, hi, C, want_state=True, want_A=True)
    np.testing.assert_allclose(rn.lower, rt.lower, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rn.A, rt.A, rtol=1e-9, atol=1e-9)
    ibp = bounds.compute(lg, lo, hi, C, "interval").lower
    boxed = bounds.compute(lg, lo, hi, C, output_box=True).lower
    assert np.all(boxed >= ibp) and np.all(boxed >= rn.lower)
    half = (lo + hi) / 2
    child = bounds.compute(bounds.prepare(lg, "torch"), lo, half, C, parent=rt.state).lower
    rng = np.random.default_rng(2)
    for b in range(4):
        for top, lb in ((hi, boxed), (half, child)):
            xs = lo[b] + rng.random((20_000, lg.n_inputs)) * (top[b] - lo[b])
            ys = lg.evaluate(xs) @ C[b].T
            assert np.all(ys.min(axis=0) >= lb[b]), b


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("make", [conv_net, branchy_net, "mlp"], ids=["conv-maxpool", "residual", "mlp"])
@pytest.mark.parametrize("budget", [0.0, 300.0, 3e4])
def test_forward_bounds_hold_on_samples(tmp_path, make, backend, budget):
    """The forward pass (linear bounds of every layer carried forward in the free inputs, for few
    inputs and large graphs): with no budget for back-substitution every layer keeps its forward
    bounds, with a small one the cheap layers are back-substituted too; the bounds hold on
    sampled points (a box with some inputs fixed too), the intermediate ones (intersected with
    interval bounds) are never looser than those, and numpy and torch agree."""
    from vnncert.options import BoundsOptions

    if make == "mlp":
        net = load_network(mlp_onnx(tmp_path / "m.onnx", random_mlp(5, [3, 40, 40, 40, 3])), threads=1)
    else:
        net = load_network(make(tmp_path), threads=1)
    lg = net.layer_graph
    n = lg.n_inputs
    lo, hi = _boxes(n, 3, 0.3, 4)
    lo[1, :n // 2] = hi[1, :n // 2] = (lo[1, :n // 2] + hi[1, :n // 2]) / 2  # a box with half its inputs fixed
    C = np.broadcast_to(np.random.default_rng(5).standard_normal((3, lg.n_outputs)), (3, 3, lg.n_outputs)).copy()
    fwd = BoundsOptions(forward_max_inputs=64, backward_budget=budget)
    g = bounds.prepare(lg, backend, fwd)
    assert g.forward_worthwhile or budget > 0
    r = bounds.compute(g, lo, hi, C, want_state=True, want_scores=True, score_dims=np.arange(n))
    other = bounds.compute(bounds.prepare(lg, "numpy" if backend == "torch" else "torch", fwd), lo, hi, C).lower
    np.testing.assert_allclose(r.lower, other, rtol=1e-9, atol=1e-9)
    for k, (l, u) in r.state.bounds.items():  # intermediate bounds inside the interval bounds'
        il, iu = bounds.compute(lg, lo, hi, C, "interval", want_state=True).state.bounds[k]
        l, u = (np.asarray(v) for v in (l, u))
        assert np.all(l >= np.asarray(il) - 1e-9) and np.all(u <= np.asarray(iu) + 1e-9)
    rng = np.random.default_rng(6)
    for b in range(3):
        xs = lo[b] + rng.random((20_000, n)) * (hi[b] - lo[b])
        vals = lg.evaluate(xs, all_layers=True)
        assert np.all((vals[lg.output] @ C[b].T).min(axis=0) >= r.lower[b]), b
        for k, (l, u) in r.state.bounds.items():
            l, u = np.asarray(l)[b], np.asarray(u)[b]
            assert np.all(vals[k] >= l - 1e-9) and np.all(vals[k] <= u + 1e-9), (b, k)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("budget", [0.0, 3e4])
def test_forward_pass_keeps_narrow_inputs_as_intervals(tmp_path, backend, budget):
    """Inputs narrower than `forward_narrow` (a fixed input is one ulp wide after outward
    rounding) are not columns of the forward functions but intervals in their constants: the
    bounds hold on sampled points (the narrow inputs sampled too, at their two ends), they equal
    those with the narrow inputs as columns up to rounding, and the pass has fewer columns."""
    from vnncert.options import BoundsOptions

    net = load_network(mlp_onnx(tmp_path / "m.onnx", random_mlp(7, [5, 40, 40, 40, 2])), threads=1)
    lg = net.layer_graph
    lo, hi = _boxes(5, 3, 0.2, 8)
    narrow = np.array([False, True, True, False, False])
    lo[:, narrow] = np.nextafter(hi[:, narrow], -np.inf)  # one ulp wide, below hi
    C = np.broadcast_to(np.random.default_rng(9).standard_normal((2, 2)), (3, 2, 2)).copy()
    g = bounds.prepare(lg, backend, BoundsOptions(forward_max_inputs=64, backward_budget=budget))
    assert g.forward_worthwhile or budget > 0
    res = g.intermediate(lo, hi)
    assert res.free is not None and np.asarray(res.free).tolist() == [[0, 3, 4]] * 3  # (per box)
    r = bounds.compute(g, lo, hi, C, want_state=True, want_A=True)
    cols = bounds.compute(bounds.prepare(lg, backend, BoundsOptions(forward_max_inputs=64, backward_budget=budget,
                                                                    forward_narrow=0.0)), lo, hi, C).lower
    np.testing.assert_allclose(r.lower, cols, rtol=1e-9, atol=1e-9)
    rng = np.random.default_rng(10)
    for b in range(3):
        xs = lo[b] + rng.random((20_000, 5)) * (hi[b] - lo[b])
        xs[:, narrow] = np.where(rng.random((20_000, 2)) < 0.5, lo[b, narrow], hi[b, narrow])
        vals = lg.evaluate(xs, all_layers=True)
        assert np.all((vals[lg.output] @ C[b].T).min(axis=0) >= r.lower[b]), b
        for k, (l, u) in r.state.bounds.items():
            l, u = np.asarray(l)[b], np.asarray(u)[b]
            assert np.all(vals[k] >= l - 1e-9) and np.all(vals[k] <= u + 1e-9), (b, k)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("make", [conv_net, branchy_net, "mlp"], ids=["conv-maxpool", "residual", "mlp"])
def test_partial_back_substitution_holds_and_is_tighter_than_forward(tmp_path, make, backend):
    """Rows too costly to back-substitute to the input (the forward pass on) go back only as far
    as the budget pays, then through a ReLU layer's forward functions: the bounds hold on
    samples, numpy and torch agree, and they are no looser than the forward bounds alone
    (a budget too small for any step back)."""
    from vnncert.options import BoundsOptions

    if make == "mlp":
        net = load_network(mlp_onnx(tmp_path / "m.onnx", random_mlp(5, [3, 40, 40, 40, 40, 3])), threads=1)
    else:
        net = load_network(make(tmp_path), threads=1)
    lg = net.layer_graph
    n = lg.n_inputs
    lo, hi = _boxes(n, 3, 0.3, 4)
    C = np.broadcast_to(np.random.default_rng(5).standard_normal((3, lg.n_outputs)), (3, 3, lg.n_outputs)).copy()
    g0 = bounds.prepare(lg, "numpy")
    found = False
    # budgets from one step of the cheapest layer up to every row of the widest to the input
    for budget in np.geomspace(min(c for c in g0.step_cost.values() if c > 0), max(g0.prefix.values()) * g0.widest, 24):
        # (the dense partial back-substitution: the sparse rows, on by default, have their own test)
        opts = BoundsOptions(forward_max_inputs=64, backward_budget=budget, sparse_rows=0.0)
        g = bounds.prepare(lg, backend, opts)
        r = bounds.compute(g, lo, hi, C, want_state=True)
        if not g.stats.get("partial_rows"):
            continue
        found = True
        fwd = bounds.compute(bounds.prepare(lg, backend, BoundsOptions(forward_max_inputs=64, backward_budget=0.0,
                                                                       sparse_rows=0.0)),
                             lo, hi, C, want_state=True)
        other = bounds.compute(bounds.prepare(lg, "numpy" if backend == "torch" else "torch", opts), lo, hi, C).lower
        np.testing.assert_allclose(r.lower, other, rtol=1e-9, atol=1e-9)
        rng = np.random.default_rng(6)
        for b in range(3):
            xs = lo[b] + rng.random((20_000, n)) * (hi[b] - lo[b])
            vals = lg.evaluate(xs, all_layers=True)
            assert np.all((vals[lg.output] @ C[b].T).min(axis=0) >= r.lower[b]), b
            for k, (l, u) in r.state.bounds.items():
                l, u = np.asarray(l)[b], np.asarray(u)[b]
                fl, fu = np.asarray(fwd.state.bounds[k][0])[b], np.asarray(fwd.state.bounds[k][1])[b]
                assert np.all(vals[k] >= l - 1e-9) and np.all(vals[k] <= u + 1e-9), (b, k)
                assert np.all(l >= fl - 1e-9 * (1 + abs(fl))) and np.all(u <= fu + 1e-9 * (1 + abs(fu))), (b, k)
    assert found, "no budget made a partial back-substitution"


def test_output_box_intersects_the_rows_with_interval_bounds(tmp_path):
    net = load_network(mlp_onnx(tmp_path / "m.onnx", random_mlp(3, [4, 12, 12, 3])), threads=1)
    lg = net.layer_graph
    lo, hi = _boxes(4, 2, 0.5, 3)
    C = np.broadcast_to(np.eye(3), (2, 3, 3)).copy()
    plain = bounds.compute(lg, lo, hi, C).lower
    boxed = bounds.compute(lg, lo, hi, C, output_box=True).lower
    assert np.all(boxed >= plain)


def test_the_margin_rule():
    """Widening is outward and grows with the value; a row is refuted only by a clear margin, and
    never by a missing bound (nan, -inf)."""
    lo, hi = margin.widen(np.array([-1.0, 0.0, 1e6]), np.array([1.0, 0.0, 2e6]))
    assert np.all(lo < [-1.0, 0.0, 1e6]) and np.all(hi > [1.0, 0.0, 2e6])
    assert 1e6 - lo[2] > 0.0 - lo[1]
    b = np.zeros(4)
    assert margin.refutes(np.array([1e-8, 1e-6, np.nan, -np.inf]), b).tolist() == [False, True, False, False]
    assert np.all(margin.widen_lower(np.array([np.nan, 1.0])) == [-np.inf, 1.0 - margin.slack(1.0)])


def test_the_quick_pass_imports_no_torch(tmp_path):
    """The numpy CROWN (bounds.compute on the numpy backend) and the quick engine never import
    torch: easy instances are answered before its ~1.5 s import."""
    model = mlp_onnx(tmp_path / "m.onnx", random_mlp(3, [2, 8, 8, 1]))
    code = ("import sys, time, numpy as np\n"
            "from vnncert import load_network\n"
            "from vnncert.engines import quick_bounds\n"
            "from vnncert.options import Options\n"
            "from vnncert.spec.model import Case, Halfspaces, InputRegion, Spec\n"
            f"net = load_network({str(model)!r}, threads=1)\n"
            "spec = Spec(2, 1, [Case(InputRegion(-np.ones(2), np.ones(2)), [Halfspaces(-np.ones((1, 1)), -np.array([1e6]), np.zeros(1, bool))])])\n"
            "out = quick_bounds.check(net, spec, time.monotonic() + 60, Options(threads=1))\n"
            "print(out.verdict.value, 'torch' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["unsat", "False"], p.stdout + p.stderr


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sparse_mm_matches_the_dense_product_and_its_gradient(dtype):
    """bounds.sparse.sparse_mm: A @ X and X's gradient A^T @ G (by the transpose's CSR tensor)
    equal the dense product's, in float64 and in the alpha/beta steps' float32."""
    import scipy.sparse as sp
    import torch

    from vnncert.bounds.sparse import cast_csr, sparse_mm, torch_csr

    dt = getattr(torch, dtype)
    A = sp.random(40, 30, density=0.1, format="csr", random_state=3)
    At, AtT = cast_csr(torch_csr(A), dt), cast_csr(torch_csr(A.T.tocsr()), dt)
    X = torch.randn(30, 7, dtype=dt, requires_grad=True)
    G = torch.randn(40, 7, dtype=dt)
    Y = sparse_mm(At, AtT, X)
    (Y * G).sum().backward()
    Ad = torch.as_tensor(A.toarray()).to(dt)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(Y.detach().numpy(), (Ad @ X.detach()).numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(X.grad.numpy(), (Ad.T @ G).numpy(), rtol=tol, atol=tol)
    with torch.no_grad():  # no gradient wanted: torch's own product
        np.testing.assert_allclose(sparse_mm(At, AtT, X).numpy(), Y.detach().numpy(), rtol=tol, atol=tol)


def test_sparse_term_products_skip_zero_rows_exactly():
    """A CSR term's products with an X of many zero rows (`_TorchCsr.left_sparse`: the forward
    pass's functions of inactive ReLUs, the back-substitution's coefficients at them) use only
    W's columns (W^T's) at X's nonzero rows, kept and reused while they cover them: the same
    values as the full product, in both directions, when the selection is reused, made again for
    rows outside it, and skipped for a mostly nonzero X."""
    import scipy.sparse as sp

    from vnncert.bounds.crown import _TorchCsr

    rng = np.random.default_rng(11)
    W = sp.random(60, 50, density=0.1, format="csr", random_state=12)
    T = _TorchCsr(W)
    D = W.toarray()
    for transposed, n in ((False, 50), (True, 60)):
        M = D.T if transposed else D
        X = rng.standard_normal((n, 7))
        first = rng.random(n) < 0.4
        for rows in (first, first & (rng.random(n) < 0.7), ~first & (rng.random(n) < 0.4), np.ones(n, bool)):
            Xz = torch.as_tensor(np.where(rows[:, None], X, 0.0))
            np.testing.assert_allclose(T.left_sparse(Xz, transposed=transposed).numpy(), M @ Xz.numpy(), rtol=1e-12, atol=1e-12)
        assert transposed in T._cols


def test_a_forward_pass_stops_at_its_deadline(tmp_path):
    """With every layer on the forward pass (budget 0: no row chunks, no back-substitution), a
    deadline already past still raises Expired (checked between layers)."""
    import time

    from vnncert.options import BoundsOptions

    lg = load_network(conv_net(tmp_path), threads=1).layer_graph
    g = bounds.prepare(lg, "torch", BoundsOptions(forward_max_inputs=64, backward_budget=0.0))
    lo, hi = _boxes(lg.n_inputs, 2, 0.3, 4)
    C = np.ones((2, 1, lg.n_outputs))
    assert np.all(np.isfinite(bounds.compute(g, lo, hi, C).lower))
    with pytest.raises(bounds.Expired):
        bounds.compute(g, lo, hi, C, deadline=time.monotonic() - 1.0)


def generator_net(tmp_path, seed=0, n_in=4):
    """A small generator-discriminator of cgan's kinds, seeded: Gemm -> Reshape -> BatchNorm ->
    ConvTranspose (stride 2) -> BatchNorm -> Relu -> ConvTranspose (stride 2) -> Relu -> Conv
    (stride 2, padded) -> Relu -> BatchNorm -> Flatten -> Gemm."""
    from onnx import TensorProto, helper, numpy_helper

    from test_exact import _save

    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731

    def bn(c, name):
        return [numpy_helper.from_array(f32(rng.random(c) + 0.5), name + "g"),
                numpy_helper.from_array(f32(rng.standard_normal(c) * 0.1), name + "b"),
                numpy_helper.from_array(f32(rng.standard_normal(c) * 0.1), name + "m"),
                numpy_helper.from_array(f32(rng.random(c) + 0.5), name + "v")]

    inits = [numpy_helper.from_array(f32(rng.standard_normal((24, n_in))), "G1"),
             numpy_helper.from_array(f32(rng.standard_normal(24) * 0.1), "G1b"),
             numpy_helper.from_array(np.asarray([1, 6, 2, 2], np.int64), "shape"),
             numpy_helper.from_array(f32(rng.standard_normal((6, 5, 4, 4)) * 0.4), "T1"),
             numpy_helper.from_array(f32(rng.standard_normal(5) * 0.1), "T1b"),
             numpy_helper.from_array(f32(rng.standard_normal((5, 3, 4, 4)) * 0.4), "T2"),
             numpy_helper.from_array(f32(rng.standard_normal(3) * 0.1), "T2b"),
             numpy_helper.from_array(f32(rng.standard_normal((4, 3, 3, 3)) * 0.4), "K1"),
             numpy_helper.from_array(f32(rng.standard_normal(4) * 0.1), "K1b"),
             numpy_helper.from_array(f32(rng.standard_normal((2, 4 * 7 * 7)) * 0.2), "G2"),
             numpy_helper.from_array(f32(rng.standard_normal(2) * 0.1), "G2b"),
             *bn(6, "n0"), *bn(5, "n1"), *bn(4, "n2")]
    nodes = [helper.make_node("Gemm", ["x", "G1", "G1b"], ["g1"], transB=1),
             helper.make_node("Reshape", ["g1", "shape"], ["r0"]),
             helper.make_node("BatchNormalization", ["r0", "n0g", "n0b", "n0m", "n0v"], ["b0"], epsilon=1e-5),
             helper.make_node("ConvTranspose", ["b0", "T1", "T1b"], ["t1"], strides=[2, 2]),  # 5 x 6 x 6
             helper.make_node("BatchNormalization", ["t1", "n1g", "n1b", "n1m", "n1v"], ["b1"], epsilon=0.8),
             helper.make_node("Relu", ["b1"], ["a1"]),
             helper.make_node("ConvTranspose", ["a1", "T2", "T2b"], ["t2"], strides=[2, 2]),  # 3 x 14 x 14
             helper.make_node("Relu", ["t2"], ["a2"]),
             helper.make_node("Conv", ["a2", "K1", "K1b"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),  # 4 x 7 x 7
             helper.make_node("Relu", ["c1"], ["a3"]),
             helper.make_node("BatchNormalization", ["a3", "n2g", "n2b", "n2m", "n2v"], ["b3"], epsilon=0.8),
             helper.make_node("Flatten", ["b3"], ["fl"], axis=1),
             helper.make_node("Gemm", ["fl", "G2", "G2b"], ["y"], transB=1)]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    return _save(tmp_path, f"generator{seed}", nodes, [inp], [out], inits)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_row_back_substitution_holds_on_samples(tmp_path, seed):
    """The sparse-row back-substitution (forward pass on, `BoundsOptions.sparse_rows`) on random
    generator nets (ConvTranspose, BatchNorm, Conv, Gemm): with no budget it gives the bounds of the
    dense back-substitution of every row the forward pass leaves unstable, up to rounding; with small budgets (few
    rows; a first pass finishing rows through the forward functions, then the rows still unstable in
    full; the rows past the budget back as far as a backward budget pays) its bounds hold on sampled points of each
    box, every layer's inside the forward pass's alone; numpy and torch agree."""
    from vnncert.options import BoundsOptions

    lg = load_network(generator_net(tmp_path, seed), threads=1).layer_graph
    assert any(L.kind == "affine" and any(hasattr(W, "nnz") for _, W in L.terms) for L in lg.layers)
    n = lg.n_inputs
    lo, hi = _boxes(n, 3, 0.15, seed + 20)
    lo[2, 1] = hi[2, 1]  # a box with an input fixed
    C = np.broadcast_to(np.random.default_rng(seed + 21).standard_normal((3, lg.n_outputs)), (3, 3, lg.n_outputs)).copy()
    g0 = bounds.prepare(lg, "numpy")
    worst = max(L.size * g0.prefix[L.index] for L in lg.layers if L.index in g0.readers and not g0.input_only[L.index])
    # the forward pass on (worst > budget) and the dense back-substitution of every row it leaves unstable
    dense = BoundsOptions(forward_max_inputs=64, backward_budget=worst - 1.0, backward_forward_ratio=np.inf, sparse_rows=0.0)
    plain = bounds.compute(bounds.prepare(lg, "torch", dense), lo, hi, C, want_state=True)
    fwd_only = bounds.compute(bounds.prepare(lg, "torch", BoundsOptions(forward_max_inputs=64, backward_budget=0.0,
                                                                        sparse_rows=0.0)),
                              lo, hi, C, want_state=True)
    full = BoundsOptions(forward_max_inputs=64, backward_budget=worst - 1.0, backward_forward_ratio=np.inf, sparse_rows=0.3,
                         sparse_budget=np.inf, sparse_row_macs=np.inf)
    g = bounds.prepare(lg, "torch", full)
    assert g.forward_worthwhile
    r = bounds.compute(g, lo, hi, C, want_state=True, want_A=True, want_scores=True, score_dims=np.arange(n))
    assert g.stats.get("sparse_macs", 0) > 0
    np.testing.assert_allclose(r.lower, plain.lower, rtol=1e-8, atol=1e-8)
    for k, (l, u) in r.state.bounds.items():
        np.testing.assert_allclose(np.asarray(l), np.asarray(plain.state.bounds[k][0]), rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(np.asarray(u), np.asarray(plain.state.bounds[k][1]), rtol=1e-8, atol=1e-8)
    rng = np.random.default_rng(seed + 22)
    xs_all = [lo[b] + rng.random((20_000, n)) * (hi[b] - lo[b]) for b in range(3)]
    vals_all = [lg.evaluate(xs, all_layers=True) for xs in xs_all]
    seen = set()
    # (a positive backward budget: the rows past the sparse budget go back partly, then through the forward functions)
    for budget, row_macs, back in ((np.inf, np.inf, 0.0), (2e3, np.inf, 0.0), (np.inf, 300.0, 0.0), (5e3, 1e3, 0.0),
                                   (0.0, 0.0, 0.0), (2e3, np.inf, worst / 4), (5e3, 1e3, worst / 4)):
        opts = BoundsOptions(forward_max_inputs=64, backward_budget=back, sparse_rows=0.3, sparse_budget=budget,
                             sparse_row_macs=row_macs)
        gt = bounds.prepare(lg, "torch", opts)
        rt = bounds.compute(gt, lo, hi, C, want_state=True, want_A=True)
        seen |= {key for key in ("partial_rows", "sparse_rows_left", "sparse_handover", "sparse_left_partial") if gt.stats.get(key)}
        rn = bounds.compute(bounds.prepare(lg, "numpy", opts), lo, hi, C, want_state=True)
        np.testing.assert_allclose(rt.lower, rn.lower, rtol=1e-8, atol=1e-8)
        for b in range(3):
            vals = vals_all[b]
            assert np.all((vals[lg.output] @ C[b].T).min(axis=0) >= rt.lower[b]), (budget, row_macs, b)
            # the linear bound (A) holds at every point too
            for i in range(3):
                lin = xs_all[b] @ rt.A[b, i]
                const = rt.lower[b, i] - np.minimum(rt.A[b, i] * lo[b], rt.A[b, i] * hi[b]).sum()
                assert np.all(vals[lg.output] @ C[b, i] >= lin + const - 1e-7 * (1 + abs(const))), (budget, row_macs, b, i)
            for k, (l, u) in rt.state.bounds.items():
                l, u = np.asarray(l)[b], np.asarray(u)[b]
                fl, fu = (np.asarray(v)[b] for v in fwd_only.state.bounds[k])
                assert np.all(vals[k] >= l - 1e-9) and np.all(vals[k] <= u + 1e-9), (budget, row_macs, b, k)
                assert np.all(l >= fl - 1e-9 * (1 + abs(fl))) and np.all(u <= fu + 1e-9 * (1 + abs(fu))), (budget, row_macs, b, k)
    assert seen == {"partial_rows", "sparse_rows_left", "sparse_handover", "sparse_left_partial"}  # every way a row's pass ends was taken
