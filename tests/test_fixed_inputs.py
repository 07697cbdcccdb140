"""CROWN over boxes whose property fixes some inputs (bounds/crown.py: `Pass.dep`, `Pass.fixed`,
the forward pass's constant functions, `forward_only`) and the input split over many cases at once
(search/input_split.py: `split_cases`, `BoundRequest.joint`): the bounds hold on sampled points
and are as tight (up to rounding) as without the shortcuts; a joint call gives each request what
its own call gives; the joint search answers as the per-case one does."""
from __future__ import annotations

import time

import numpy as np
import pytest
from onnx import helper

from helpers import op_model
from vnncert import bounds
from vnncert.network import load_network
from vnncert.options import BoundsOptions, Options
from vnncert.search.input_split import BoundRequest, InputSplitStats, split_case, split_cases
from vnncert.spec.model import Case, Halfspaces, InputRegion, Spec

torch = pytest.importorskip("torch")
F32 = np.float32


def _gemm(name, x, W, b, inits):
    inits[f"W{name}"], inits[f"b{name}"] = np.asarray(W, F32), np.asarray(b, F32)
    return helper.make_node("Gemm", [x, f"W{name}", f"b{name}"], [name], transB=1)


def _branchy_net(tmp_path, seed):
    """x (1, 6): a branch reading x0..x2 only and one reading x3..x5 only (Gemm -> Relu -> Gemm ->
    Relu, then Tanh and a product with the other branch's Sigmoid), a copy of a ReLU into a product
    (the `all_rows` shape), merged by a Gemm -> y (1, 2). With x0..x2 fixed, the first branch is
    constant on the box."""
    rng = np.random.default_rng(seed)
    inits = {}

    def masked(n_out, n_in, cols):
        W = rng.standard_normal((n_out, n_in))
        W[:, [c for c in range(n_in) if c not in cols]] = 0.0
        return W

    nodes = []
    for tag, cols in (("a", (0, 1, 2)), ("b", (3, 4, 5))):
        nodes += [_gemm(f"{tag}1", "x", masked(8, 6, cols), rng.standard_normal(8) * 0.3, inits),
                  helper.make_node("Relu", [f"{tag}1"], [f"{tag}r1"]),
                  _gemm(f"{tag}2", f"{tag}r1", rng.standard_normal((8, 8)), rng.standard_normal(8) * 0.3, inits),
                  helper.make_node("Relu", [f"{tag}2"], [f"{tag}r2"])]
    nodes += [helper.make_node("Tanh", ["ar2"], ["ta"]), helper.make_node("Sigmoid", ["br2"], ["sb"]),
              helper.make_node("Mul", ["ta", "sb"], ["m"]), helper.make_node("Mul", ["ar2", "br2"], ["p"]),
              helper.make_node("Concat", ["m", "p", "br2"], ["cat"], axis=1),
              _gemm("y", "cat", rng.standard_normal((2, 24)), rng.standard_normal(2) * 0.3, inits)]
    return load_network(op_model(tmp_path / f"branchy{seed}.onnx", nodes, inits, (1, 6)), threads=1)


def _fixed_boxes(rng, B, fixed_cols):
    """B boxes in [-1, 1]^6: the fixed columns one ulp wide (as a property's equality after outward
    rounding), the others of random widths."""
    c = rng.uniform(-1, 1, (B, 6))
    r = rng.choice([1e-3, 0.05, 0.3, 1.0], (B, 6))
    lo, hi = c - r, c + r
    for j in fixed_cols:
        lo[:, j], hi[:, j] = c[:, j], np.nextafter(c[:, j], np.inf)
    return lo, hi


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("forward", [False, True])
def test_fixed_branches_are_concretised_soundly_and_as_tightly(tmp_path, seed, forward):
    """With the first branch's inputs fixed, its neurons depend on no wide input (`Pass.dep`):
    their rows are not back-substituted and back-substitutions stop there (`Pass.fixed`); with the
    forward pass on, their functions are constants (and `forward_only` keeps the forward bounds).
    Every bound holds on sampled points; against the same pass with the shortcuts off
    (`fixed_row_width` 0: nothing counts as fixed) the bounds differ only by rounding."""
    net = _branchy_net(tmp_path, seed)
    lg = net.layer_graph
    rng = np.random.default_rng(seed + 5)
    lo, hi = _fixed_boxes(rng, 5, (0, 1, 2))
    C = rng.standard_normal((5, 3, 2))
    kw = dict(forward_max_inputs=64, backward_budget=0.0) if forward else {}
    on = bounds.prepare(lg, "torch", BoundsOptions(**kw))
    off = bounds.prepare(lg, "torch", BoundsOptions(fixed_row_width=0.0, **kw))
    res = on.intermediate(lo, hi, method="crown")
    assert res.fixed and any(every for (_, _, _, every) in res.fixed.values())
    count = lambda r: sum(int(m.sum()) for (m, _, _, _) in r.fixed.values())
    assert count(off.intermediate(lo, hi, method="crown")) < count(res)  # (off: only zero-width neurons)
    r_on = bounds.compute(on, lo, hi, C, "crown", want_state=True, want_A=True)
    r_off = bounds.compute(off, lo, hi, C, "crown")
    tol = 1e-6 * (1 + np.abs(r_off.lower))
    assert np.all(r_on.lower >= r_off.lower - tol), r_on.lower - r_off.lower
    alpha = bounds.compute(on, lo, hi, C, "alpha", intermediate=r_on.state).lower
    fonly = bounds.compute(on, lo, hi, C, "crown", forward_only=True).lower
    half = hi.copy()
    half[:, 3:] = (lo[:, 3:] + hi[:, 3:]) / 2
    child = bounds.compute(on, lo, half, C, "crown", parent=r_on.state).lower
    for b in range(5):
        for top, lbs in ((hi, (r_on.lower, alpha, fonly)), (half, (child,))):
            xs = lo[b] + rng.random((4000, 6)) * (top[b] - lo[b])
            xs[:, :3] = lo[b, :3]
            vals = lg.evaluate(xs) @ C[b].T
            for lb in lbs:
                assert np.all(vals.min(axis=0) >= lb[b]), (b, vals.min(axis=0) - lb[b])


def test_forward_only_bounds_hold_and_the_default_is_never_looser(tmp_path):
    """`forward_only`: the forward pass's bounds stand for every intermediate layer; they hold on
    samples, and the default pass (back-substitution where the budget allows) is never looser."""
    net = _branchy_net(tmp_path, 3)
    lg = net.layer_graph
    rng = np.random.default_rng(8)
    lo, hi = _fixed_boxes(rng, 4, (0,))
    g = bounds.prepare(lg, "torch", BoundsOptions(forward_max_inputs=64, backward_budget=300.0, backward_forward_ratio=1e9))
    assert g.forward_worthwhile
    res_f = g.intermediate(lo, hi, method="crown", forward_only=True)
    res_d = g.intermediate(lo, hi, method="crown")
    vals = [lg.evaluate(lo[b] + rng.random((3000, 6)) * (hi[b] - lo[b]), all_layers=True) for b in range(4)]
    for k, (l, u) in res_f.affine.items():
        for b in range(4):
            assert np.all(vals[b][k] >= l[b].numpy()) and np.all(vals[b][k] <= u[b].numpy()), (k, b)
        dl, du = res_d.affine[k]
        assert np.all(dl.numpy() >= l.numpy() - 1e-9) and np.all(du.numpy() <= u.numpy() + 1e-9)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_forward_columns_are_each_boxs_own(tmp_path, backend):
    """Boxes fixing different inputs in one call: each box's forward functions take only its own
    wide inputs as columns (padded to the most any box has); the bounds are those of each box
    bounded alone, and hold on sampled points."""
    net = _branchy_net(tmp_path, 6)
    lg = net.layer_graph
    rng = np.random.default_rng(21)
    fixed_sets = [(0, 1, 2, 3), (0, 1, 2, 4, 5), (1, 3, 5), (0, 2, 3, 4, 5)]
    parts = [_fixed_boxes(rng, 1, f) for f in fixed_sets]
    lo, hi = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    C = rng.standard_normal((4, 2, 2))
    g = bounds.prepare(lg, backend, BoundsOptions(forward_max_inputs=64, backward_budget=0.0))
    res = g.intermediate(lo, hi, method="crown")
    assert np.asarray(res.free).shape == (4, 3)
    r = bounds.compute(g, lo, hi, C, "crown", want_A=True)
    for b in range(4):
        alone = bounds.compute(g, lo[b:b + 1], hi[b:b + 1], C[b:b + 1], "crown", want_A=True)
        # (up to the margin: a layer fixed in every box of a call has constant functions, its widened bounds)
        np.testing.assert_allclose(r.lower[b], alone.lower[0], rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(r.A[b], alone.A[0], rtol=1e-7, atol=1e-7)
        xs = lo[b] + rng.random((4000, 6)) * (hi[b] - lo[b])
        assert np.all((lg.evaluate(xs) @ C[b].T).min(axis=0) >= r.lower[b])


def test_dense_products_skip_zero_columns_exactly():
    """`_TorchOps.mm`: a product whose left factor is zero on most columns takes only W's rows at
    the nonzero ones; the same values as the full product."""
    from vnncert.bounds.crown import _TorchOps

    ops = _TorchOps()
    rng = np.random.default_rng(0)
    W = torch.as_tensor(rng.standard_normal((200, 50)))
    L = torch.as_tensor(rng.standard_normal((3, 7, 200)))
    L[..., 20:] = 0.0
    L[1, :, 150] = 2.0
    np.testing.assert_allclose(ops.mm(L, W).numpy(), (L @ W).numpy(), rtol=1e-12, atol=1e-12)


def _cases(rng, n_cases, lo_all, hi_all, thresholds):
    cases = []
    for i in range(n_cases):
        c = rng.uniform(lo_all, hi_all)
        w = rng.uniform(0.05, 0.3, 6)
        lo, hi = c - w, c + w
        fixed = rng.choice(6, 3, replace=False)
        hi[fixed] = np.nextafter(lo[fixed], np.inf)
        A = np.eye(2)[[i % 2]] * (1 if i % 3 else -1)
        cases.append(Case(InputRegion(lo, hi), [Halfspaces(A, np.array([thresholds[i]]), np.zeros(1, bool))]))
    return Spec(6, 2, cases)


@pytest.mark.parametrize("forward", [False, True])
def test_a_joint_call_gives_each_request_its_own_result(tmp_path, forward):
    """`BoundRequest.joint`: requests of different boxes, row counts and score dims in one call give
    what each gets from its own `bounds.compute` (lower, A, scores on its dims, state, unstable);
    with the forward pass on, the scores' shares of the forward bounds too."""
    net = _branchy_net(tmp_path, 4)
    lg = net.layer_graph
    g = bounds.prepare(lg, "torch", BoundsOptions(forward_max_inputs=64, backward_budget=0.0) if forward else BoundsOptions())
    rng = np.random.default_rng(3)
    reqs = []
    for K, R, dims in ((2, 1, [3, 4]), (3, 2, [0, 5]), (1, 3, [1, 2, 3])):
        lo, hi = _fixed_boxes(rng, K, [j for j in range(6) if j not in dims])
        reqs.append(BoundRequest(lo, hi, rng.standard_normal((K, R, 2)), "crown", want_A=True, want_scores=True,
                                 want_state=True, score_dims=np.array(dims)))
    joint = BoundRequest.joint(reqs, g, BoundsOptions(), np.inf)
    for req, got in zip(reqs, joint):
        own = req.compute(g, BoundsOptions(), np.inf)
        assert np.abs(own.scores).sum() > 0
        np.testing.assert_allclose(got.lower, own.lower, rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(got.A, own.A, rtol=1e-7, atol=1e-7)
        # (the scores' shares are normalised over the dims asked: the union's extra dims are one ulp wide)
        np.testing.assert_allclose(got.scores, own.scores, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(got.unstable, own.unstable)
        for k, (l, u) in own.state.bounds.items():
            np.testing.assert_allclose(got.state.bounds[k][0].numpy(), l.numpy(), rtol=1e-7, atol=1e-7)
            np.testing.assert_allclose(got.state.bounds[k][1].numpy(), u.numpy(), rtol=1e-7, atol=1e-7)
        assert req.seconds >= 0.0


def _thresholds_below_sampled_min(lg, spec, rng, below: float) -> np.ndarray:
    """Per case, a threshold `below` x the sampled range (and 1e-3) under its first row's minimum
    over 20,000 uniform points of its box: unsat, but not at the root."""
    thr = []
    for c in spec.cases:
        xs = c.region.lower + rng.random((20000, 6)) * (c.region.upper - c.region.lower)
        v = lg.evaluate(xs) @ c.output[0].A[0]
        thr.append(v.min() - below * (v.max() - v.min()) - 1e-3)
    return np.array(thr)


@pytest.mark.parametrize("forward_only", [False, True])
def test_the_joint_search_answers_as_the_per_case_one(tmp_path, forward_only):
    """`split_cases` over many cases (a few at once) refutes exactly when every per-case search
    does; with a case made sat, it returns that case's replayed witness."""
    net = _branchy_net(tmp_path, 5)
    lg = net.layer_graph
    rng = np.random.default_rng(11)
    n = 9
    spec0 = _cases(rng, n, -0.5, 0.5, np.zeros(n))
    # thresholds a little below each case's true minimum of its row (sampled): unsat, but not at the root
    thr = _thresholds_below_sampled_min(lg, spec0, rng, 0.05)
    rng = np.random.default_rng(11)
    spec = _cases(rng, n, -0.5, 0.5, thr)
    opts = Options(threads=1)
    from dataclasses import replace

    opts = replace(opts, input_split=replace(opts.input_split, cases_at_once=4))
    g = bounds.prepare(lg, "torch")
    single = []
    for i in range(n):
        out, status = split_case(net, spec, i, g, "crown", opts, time.monotonic() + 60, InputSplitStats(), "relaxed")
        single.append(status)
    st = InputSplitStats()
    out, status = split_cases(net, spec, list(range(n)), g, "crown", opts, time.monotonic() + 60, st, "relaxed",
                              forward_only=forward_only)
    assert out is None
    assert status == ("refuted" if all(s == "refuted" for s in single) else "unknown"), single
    assert st.boxes >= n
    # one case made sat: its threshold above the row's maximum somewhere in the box
    c = spec.cases[4]
    xs = c.region.lower + rng.random((2000, 6)) * (c.region.upper - c.region.lower)
    v = lg.evaluate(xs) @ c.output[0].A[0]
    cases = list(spec.cases)
    cases[4] = Case(c.region, [Halfspaces(c.output[0].A, np.array([float(np.median(v))]), np.zeros(1, bool))])
    sat_spec = Spec(6, 2, cases)
    out, status = split_cases(net, sat_spec, list(range(n)), g, "crown", opts, time.monotonic() + 60,
                              InputSplitStats(), "relaxed", forward_only=forward_only)
    assert status == "sat" and out is not None and out.verdict.value == "sat"


@pytest.mark.parametrize("slack", [-1.0, 1e9])
def test_the_relaxed_engine_with_forward_only_bounds_answers_alike(tmp_path, slack):
    """The relaxed engine over many cases: with forward-only bounds chosen (`forward_only_slack`
    huge; its first bounds then are the searches' first ones, `split_cases(first=)`) or never
    (negative), the same unsat on an unsat spec, and sat with a replayed witness on a sat one."""
    from dataclasses import replace

    from vnncert.engines import relaxed

    net = _branchy_net(tmp_path, 7)
    lg = net.layer_graph
    rng = np.random.default_rng(13)
    n = 6
    spec0 = _cases(rng, n, -0.5, 0.5, np.zeros(n))
    thr = _thresholds_below_sampled_min(lg, spec0, rng, 0.25)  # (a vertex may lie below the samples)
    spec = _cases(np.random.default_rng(13), n, -0.5, 0.5, thr)
    opts = Options(threads=1)
    opts = replace(opts, bounds=replace(opts.bounds, forward_max_inputs=64, backward_budget=0.0),
                   relaxed=replace(opts.relaxed, forward_only_slack=slack))
    out = relaxed.check(net, spec, time.monotonic() + 120, opts)
    assert out.stats["forward_only"] == (slack > 0), out.stats
    assert out.verdict.value == "unsat", out.detail
    c = spec.cases[2]
    xs = c.region.lower + rng.random((2000, 6)) * (c.region.upper - c.region.lower)
    v = lg.evaluate(xs) @ c.output[0].A[0]
    cases = list(spec.cases)
    cases[2] = Case(c.region, [Halfspaces(c.output[0].A, np.array([float(np.median(v))]), np.zeros(1, bool))])
    out = relaxed.check(net, Spec(6, 2, cases), time.monotonic() + 120, opts)
    assert out.verdict.value == "sat" and out.counterexample is not None
