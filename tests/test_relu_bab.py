"""The ReLU-split branch and bound (search/activation_split.py over bounds/alpha_beta.py) on the
layer graph: sound bounds on every domain of chains and of random conv / residual / max-pool /
branching graphs, verdicts that agree with the MILP. (Verdicts against grid enumeration and
mnist_fc 256x4 through it: test_exact.py.)"""
from __future__ import annotations

import time

import numpy as np
import pytest

from helpers import mlp_onnx, random_mlp

from vnncert.network.layers import layer_graph
from vnncert.network.loader import load_network
from vnncert.results import Verdict
from vnncert.spec.model import InputRegion

from test_exact import branchy_net, conv_net, spec_of

torch = pytest.importorskip("torch")


def _view_of(lg):
    from vnncert.bounds.graph import GraphView

    return GraphView.of(lg, 10**9)


def _pre_of(lg, bounds):
    return {L.source: bounds.layers[L.source] for L in lg.layers if L.kind in ("relu", "max")}


def _bab_of(net, lo, hi, A, b, **options):
    from vnncert.bounds.region import compute_bounds
    from vnncert.options import ActivationSplitOptions
    from vnncert.search.activation_split import SplitBaB

    lg = layer_graph(net)
    bounds = compute_bounds(lg, InputRegion(np.asarray(lo, float), np.asarray(hi, float)), time.monotonic() + 60, method="crown")
    return lg, SplitBaB(_view_of(lg), lo, hi, _pre_of(lg, bounds), A, b, ActivationSplitOptions(**options))


def random_graph_net(tmp_path, seed):
    """A random small graph of the kinds the bounds layer covers, in code: Conv (pads) -> Relu ->
    Conv -> residual Add -> Relu -> MaxPool -> Flatten -> Gemm -> Relu, beside a second branch
    (Gemm of the flattened input -> Relu), Concat of the two -> BatchNormalization-free Gemm ->
    output; channel counts, kernel and pool sizes drawn from the seed."""
    from onnx import TensorProto, helper, numpy_helper

    from test_exact import _save

    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    c = int(rng.integers(2, 4))
    k = int(rng.choice([2, 3]))
    pad = k // 2 if k == 3 else 0
    side = 5 if k == 3 else 6
    conv_side = side + 2 * pad - k + 1
    pk = int(rng.choice([2, 3]))
    pooled = (conv_side - pk) // 1 + 1
    flat = c * pooled * pooled
    h1, h2, n_out = int(rng.integers(6, 12)), int(rng.integers(4, 8)), 3
    inits = [
        numpy_helper.from_array(f32(rng.standard_normal((c, 1, k, k)) * 0.6), "W1"),
        numpy_helper.from_array(f32(rng.standard_normal(c) * 0.2), "B1"),
        numpy_helper.from_array(f32(rng.standard_normal((c, c, 3, 3)) * 0.4), "W2"),
        numpy_helper.from_array(f32(rng.standard_normal(c) * 0.2), "B2"),
        numpy_helper.from_array(f32(rng.standard_normal((h1, flat)) / np.sqrt(flat)), "G1"),
        numpy_helper.from_array(f32(rng.standard_normal(h1) * 0.2), "g1"),
        numpy_helper.from_array(f32(rng.standard_normal((h2, side * side)) / side), "G2"),
        numpy_helper.from_array(f32(rng.standard_normal(h2) * 0.2), "g2"),
        numpy_helper.from_array(f32(rng.standard_normal((n_out, h1 + h2)) / np.sqrt(h1 + h2)), "G3"),
        numpy_helper.from_array(f32(rng.standard_normal(n_out) * 0.2), "g3"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[pad] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["res"]),
        helper.make_node("Relu", ["res"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["mp"], kernel_shape=[pk, pk], strides=[1, 1]),
        helper.make_node("Flatten", ["mp"], ["fl"], axis=1),
        helper.make_node("Gemm", ["fl", "G1", "g1"], ["z1"], transB=1),
        helper.make_node("Relu", ["z1"], ["a1"]),
        helper.make_node("Flatten", ["x"], ["fx"], axis=1),
        helper.make_node("Gemm", ["fx", "G2", "g2"], ["z2"], transB=1),
        helper.make_node("Relu", ["z2"], ["a2"]),
        helper.make_node("Concat", ["a1", "a2"], ["cat"], axis=1),
        helper.make_node("Gemm", ["cat", "G3", "g3"], ["y"], transB=1),
    ]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, side, side])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])
    return _save(tmp_path, f"graph{seed}", nodes, [inp], [out], inits)


def shared_preactivation_net(tmp_path, seed):
    """Pre-activations with several readers, in code: z = Gemm(x) read by two Relu nodes and by a
    residual Add, w = Gemm(x) read by two Relu nodes alone; the ReLUs' outputs concatenated into
    a Gemm. Biases of +-3 make some neurons stable on the test's boxes: the bound keeps each
    ReLU's unstable neurons first and drops the inactive ones, so the readers' rows must line up."""
    from onnx import TensorProto, helper, numpy_helper

    from test_exact import _save

    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    n, h, out = 4, 12, 3
    inits = [numpy_helper.from_array(f32(v), k) for k, v in {
        "Wz": rng.standard_normal((h, n)) * 0.5, "bz": np.tile([3.0, 0.0, 0.0, -3.0], h // 4) + rng.standard_normal(h) * 0.1,
        "Ww": rng.standard_normal((h, n)) * 0.5, "bw": np.tile([0.0, 3.0, 0.0, -3.0], h // 4) + rng.standard_normal(h) * 0.1,
        "Wh": rng.standard_normal((h, h)) / np.sqrt(h), "bh": rng.standard_normal(h) * 0.3,
        "Wy": rng.standard_normal((out, 4 * h)) / np.sqrt(4 * h), "by": rng.standard_normal(out) * 0.3}.items()]
    nodes = [
        helper.make_node("Gemm", ["x", "Wz", "bz"], ["z"], transB=1),
        helper.make_node("Relu", ["z"], ["a"]),
        helper.make_node("Relu", ["z"], ["b"]),
        helper.make_node("Gemm", ["a", "Wh", "bh"], ["hh"], transB=1),
        helper.make_node("Add", ["hh", "z"], ["s"]),
        helper.make_node("Relu", ["s"], ["r"]),
        helper.make_node("Gemm", ["x", "Ww", "bw"], ["w"], transB=1),
        helper.make_node("Relu", ["w"], ["p"]),
        helper.make_node("Relu", ["w"], ["q"]),
        helper.make_node("Concat", ["r", "b", "p", "q"], ["c"], axis=1),
        helper.make_node("Gemm", ["c", "Wy", "by"], ["y"], transB=1),
    ]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])
    outp = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out])
    return _save(tmp_path, f"shared{seed}", nodes, [inp], [outp], inits)


def _deep_mlp_and_its_sampled_min(tmp_path):
    """A seeded 6-16-16-16-2 ReLU net on [-0.5, 0.5]^6, the row y0 - y1 and its minimum over
    200,000 uniform samples: (net, layer graph, lo, hi, a, sampled minimum)."""
    net = load_network(mlp_onnx(tmp_path / "d.onnx", random_mlp(11, [6, 16, 16, 16, 2])), threads=1)
    lg = layer_graph(net)
    lo, hi = -0.5 * np.ones(6), 0.5 * np.ones(6)
    a = np.array([[1.0, -1.0]])
    xs = np.random.default_rng(0).uniform(lo, hi, size=(200_000, 6))
    return net, lg, lo, hi, a, float((lg.evaluate(xs) @ a.T).min())


def _signs(lg, bab, xs):
    """Each sampled input's activation signs on the split vectors' neurons (P, U) int8."""
    vals = lg.evaluate(xs, all_layers=True)
    parts = [np.sign(vals[lg.layers[j].source][:, idx]) for j, idx in bab.split_neurons()]
    return (np.concatenate(parts, axis=1) if parts else np.zeros((len(xs), 0))).astype(np.int8)


NETS = {
    "mlp": lambda p, s: mlp_onnx(p / "n.onnx", random_mlp(s, [4, 12, 12, 12, 3])),
    "conv-maxpool": lambda p, s: conv_net(p, seed=s),
    "residual": lambda p, s: branchy_net(p, seed=s),
    "random-graph": random_graph_net,
    "shared-preactivation": shared_preactivation_net,
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", list(NETS))
def test_domain_bounds_hold_on_the_points_of_each_domain(tmp_path, kind, seed):
    """Random splits, random alpha in [0, 1] and beta >= 0, on chains and on conv / residual /
    max-pool / branching graphs: each domain's bound is below A y at every sampled input whose
    activations agree with the domain's splits, before and after the optimiser's steps."""
    net = load_network(NETS[kind](tmp_path, seed), threads=1)
    lg = layer_graph(net)
    n = lg.n_inputs
    rng = np.random.default_rng(seed)
    c = rng.uniform(-0.5, 0.5, n)
    lo, hi = c - 0.5, c + 0.5
    A = rng.standard_normal((2, lg.n_outputs))
    lg, bab = _bab_of(net, lo, hi, A, np.zeros(2))
    assert bab.U > 2, bab.U
    xs = np.concatenate([rng.uniform(lo, hi, size=(100_000, n)), np.where(rng.random((2000, n)) < 0.5, lo, hi)])
    ys = lg.evaluate(xs) @ A.T
    S = _signs(lg, bab, xs)
    # non-empty domains: the sign pattern of a sampled input, on a random subset of the neurons
    N = 48
    keep = rng.uniform(size=(N, bab.U)) < rng.uniform(0.1, 0.9, size=(N, 1))
    split = torch.as_tensor((S[rng.integers(0, len(xs), N)] * keep).astype(np.int8))
    alpha = torch.as_tensor(rng.uniform(0, 1, size=(N, 2, bab.U))).float().double()
    beta = torch.as_tensor(rng.exponential(0.5, size=(N, 2, bab.U))).float().double()
    with torch.no_grad():
        lb, _, _ = bab._pass(split.double(), alpha, beta)
    opt, _, _, _, _ = bab.bound(split, alpha.float(), beta.float(), 10, time.monotonic() + 60)
    assert opt.dtype == torch.float64
    lb, opt = lb.numpy(), opt.numpy()
    # never worse than where it started, beyond float32's choice among near-equal steps
    assert np.all(opt >= lb - 1e-5 * (1 + np.abs(lb)))
    assert (opt > lb + 1e-3).any()  # and the steps do improve some rows
    thr = np.full(2, np.median(lb.max(axis=1)))
    fz, fa, fb, fsc, _ = bab.bound(split, alpha.float(), beta.float(), 10, time.monotonic() + 60, freeze=thr)
    assert fz.dtype == torch.float64 and fsc.shape == (N, 2, bab.U) and fa.shape == fb.shape == (N, 2, bab.U)
    assert float(fa.min()) >= 0 and float(fa.max()) <= 1 and float(fb.min()) >= 0
    fz = fz.numpy()
    checked = 0
    for d in range(N):
        s = split[d].numpy()
        agree = np.all((s == 0) | (S * s >= 0), axis=1)
        if agree.any():
            checked += 1
            for bound in (lb, opt, fz):
                assert np.all(bound[d] <= ys[agree].min(axis=0) + 1e-9), (d, bound[d], ys[agree].min(axis=0))
    assert checked == N


def _sampled(tmp_path, kind, seed, base):
    """A `NETS` graph on a random unit box, two random rows (b = 0), its `SplitBaB`, and 102,000
    sampled inputs (uniform and vertices) with their row values and activation signs:
    (rng, lg, bab, xs, ys, S)."""
    net = load_network(NETS[kind](tmp_path, seed), threads=1)
    lg = layer_graph(net)
    n = lg.n_inputs
    rng = np.random.default_rng(base + seed)
    c = rng.uniform(-0.5, 0.5, n)
    lo, hi = c - 0.5, c + 0.5
    A = rng.standard_normal((2, lg.n_outputs))
    lg, bab = _bab_of(net, lo, hi, A, np.zeros(2))
    xs = np.concatenate([rng.uniform(lo, hi, size=(100_000, n)), np.where(rng.random((2000, n)) < 0.5, lo, hi)])
    return rng, lg, bab, xs, lg.evaluate(xs) @ A.T, _signs(lg, bab, xs)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", list(NETS))
def test_domain_bounds_with_cuts_hold_on_the_points_that_satisfy_them(tmp_path, kind, seed):
    """Random cuts C z <= d over the indicators of the unstable neurons (each: a random set of
    decisions, sum of the active ones' z minus the inactive ones' <= active count - 1), random
    multipliers: each domain's bound is below A y at every sampled input whose activations agree
    with the domain's splits and satisfy every cut, before and after the optimiser's steps; with
    all multipliers 0 it is the bound without cuts."""
    rng, lg, bab, xs, ys, S = _sampled(tmp_path, kind, seed, 100)
    U = bab.U
    Z = (S > 0).astype(np.float64)  # the indicators of the sampled inputs
    # cuts from the sign patterns of sampled inputs (2-4 decisions each): each excludes some of them
    K = 6
    C = np.zeros((K, U))
    for k in range(K):
        idx = rng.choice(U, size=int(rng.integers(2, 5)), replace=False)
        C[k, idx] = np.where(S[rng.integers(0, len(xs)), idx] > 0, 1.0, -1.0)
    d = (C > 0).sum(axis=1) - 1.0
    sat = np.all(Z @ C.T <= d + 1e-9, axis=1)
    assert 0 < sat.sum() < len(xs)
    N = 32
    keep = rng.uniform(size=(N, U)) < rng.uniform(0.0, 0.6, size=(N, 1))
    split = torch.as_tensor((S[rng.choice(np.flatnonzero(sat), N)] * keep).astype(np.int8))  # non-empty domains
    alpha = torch.as_tensor(rng.uniform(0, 1, size=(N, 2, U))).float().double()
    beta = torch.as_tensor(rng.exponential(0.5, size=(N, 2, U))).float().double()
    with torch.no_grad():
        plain, _, _ = bab._pass(split.double(), alpha, beta)
    assert bab.set_cuts(d, indicators=C) == K
    mu0 = torch.zeros((N, 2, K), dtype=torch.float64)
    mu = torch.as_tensor(rng.exponential(0.5, size=(N, 2, K))).float().double()
    with torch.no_grad():
        zero, _, _ = bab._pass(split.double(), alpha, torch.cat([beta, mu0], 2))
        lb, _, _ = bab._pass(split.double(), alpha, torch.cat([beta, mu], 2))
    assert np.allclose(zero.numpy(), plain.numpy(), atol=1e-9)
    opt, _, ob, _, _ = bab.bound(split, alpha.float(), torch.cat([beta, mu], 2).float(), 15, time.monotonic() + 60)
    assert ob.shape == (N, 2, U + K) and float(ob.min()) >= 0
    lb, opt = lb.numpy(), opt.numpy()
    checked = 0
    for i in range(N):
        s = split[i].numpy()
        agree = np.all((s == 0) | (S * s >= 0), axis=1) & sat
        if agree.any():
            checked += 1
            for bound in (lb, opt):
                assert np.all(bound[i] <= ys[agree].min(axis=0) + 1e-9), (i, bound[i], ys[agree].min(axis=0))
    assert checked == N


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", list(NETS))
def test_domain_bounds_with_general_cuts_hold_on_the_points_that_satisfy_them(tmp_path, kind, seed):
    """Random linear cuts over the input, a pre-activation layer, a ReLU layer, the output and the
    indicators (each one's right-hand side a quantile of its value over the samples, so some
    samples break it): each domain's bound, at random multipliers and after the optimiser's
    steps, is below A y at every sampled input in the domain that satisfies every cut."""
    import scipy.sparse as sp

    rng, lg, bab, xs, ys, S = _sampled(tmp_path, kind, seed, 200)
    U = bab.U
    vals = lg.evaluate(xs, all_layers=True)
    Z = (S > 0).astype(np.float64)
    relus = [j for j, _ in bab.split_neurons()]
    j = relus[int(rng.integers(len(relus)))]
    k = lg.layers[j].source
    picks = {0: vals[0], k: vals[k], j: vals[j], lg.output: vals[lg.output]}
    K = 5
    layers = {L: np.where(rng.random((K, v.shape[1])) < 0.4, rng.standard_normal((K, v.shape[1])), 0.0) for L, v in picks.items()}
    ind = np.where(rng.random((K, U)) < 0.3, rng.standard_normal((K, U)), 0.0)
    value = sum(v @ layers[L].T for L, v in picks.items()) + Z @ ind.T  # (P, K)
    d = np.quantile(value, 0.8, axis=0)
    sat = np.all(value <= d, axis=1)
    assert 0 < sat.sum() < len(xs)
    assert bab.set_cuts(d, {L: sp.csr_matrix(C) for L, C in layers.items()}, ind) == K
    N = 32
    keep = rng.uniform(size=(N, U)) < rng.uniform(0.0, 0.6, size=(N, 1))
    split = torch.as_tensor((S[rng.choice(np.flatnonzero(sat), N)] * keep).astype(np.int8))
    alpha = torch.as_tensor(rng.uniform(0, 1, size=(N, 2, U))).float().double()
    beta = torch.as_tensor(rng.exponential(0.5, size=(N, 2, U + K))).float().double()
    with torch.no_grad():
        lb, _, _ = bab._pass(split.double(), alpha, beta)
    opt, *_ = bab.bound(split, alpha.float(), beta.float(), 15, time.monotonic() + 60)
    lb, opt = lb.numpy(), opt.numpy()
    for i in range(N):
        s = split[i].numpy()
        agree = np.all((s == 0) | (S * s >= 0), axis=1) & sat
        assert agree.any()
        for bound in (lb, opt):
            assert np.all(bound[i] <= ys[agree].min(axis=0) + 1e-9), (i, bound[i], ys[agree].min(axis=0))


@pytest.mark.parametrize("fsb", [1, 8])
@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("kind", ["conv-maxpool", "random-graph"])
def test_search_domains_hold_on_their_points(tmp_path, kind, seed, fsb):
    """The domains a search actually makes (splits chosen by its scores, or by filtered smart
    branching among the `fsb` best, alpha and beta by its optimiser, children from parents): every
    open domain's bound is below the sampled minimum of its points, and a threshold just above the
    sampled minimum is never proven."""
    net = load_network(NETS[kind](tmp_path, seed), threads=1)
    lg = layer_graph(net)
    n = lg.n_inputs
    rng = np.random.default_rng(10 + seed)
    lo, hi = -0.5 * np.ones(n), 0.5 * np.ones(n)
    a = rng.standard_normal((1, lg.n_outputs))
    xs = np.concatenate([rng.uniform(lo, hi, size=(100_000, n)), np.where(rng.random((2000, n)) < 0.5, lo, hi)])
    ys = lg.evaluate(xs) @ a.T
    thr = float(ys.min()) + 1e-3
    _, bab = _bab_of(net, lo, hi, a, np.array([thr]), fsb_candidates=fsb)
    no_witness = lambda p: None  # noqa: E731
    r = bab.run(time.monotonic() + 3.0, no_witness)
    assert r.stats["domains"] > 1 and (fsb == 1) == ("fsb_s" not in r.stats or r.stats["fsb_s"] < 1e-3)
    assert r.status in ("timeout", "unknown"), r.status  # a true violation exists: never proven
    S = _signs(lg, bab, xs)
    pool = bab.pool
    if pool is not None and len(pool):
        for d in range(min(len(pool), 200)):
            s = pool.split[d].numpy()
            agree = np.all((s == 0) | (S * s >= 0), axis=1)
            if agree.any():
                assert float(pool.lb[d, 0]) <= float(ys[agree].min()) + 1e-9


def test_bab_proves_what_the_milp_proves_on_a_deeper_net(tmp_path):
    """A 6-input, 3 x 16 net with a threshold the LP relaxation cannot prove: the branch and bound
    proves it (unsat), agreeing with the MILP alone; just above the sampled minimum it is sat."""
    from vnncert.bounds.region import compute_bounds, output_lower_bounds
    from vnncert.engines import exact
    from vnncert.options import ExactOptions, InputSplitOptions, Options

    def opts(bab_min_unstable):  # one MILP (or BaB) over the whole box: no input splitting
        return Options(mode="exact", threads=1).with_(input_split=InputSplitOptions(max_dims=0),
                                                      exact=ExactOptions(bab_min_unstable=bab_min_unstable, bab_shallow=True))

    net, lg, lo, hi, a, sampled_min = _deep_mlp_and_its_sampled_min(tmp_path)
    bnd = compute_bounds(lg, InputRegion(lo, hi), time.monotonic() + 60, method="lp")
    thr = sampled_min - 0.03
    assert float(output_lower_bounds(lg, a, bnd)[0]) < thr - 0.5  # far beyond the relaxation alone
    out = exact.check(net, spec_of(lo, hi, [(a, [thr])], 2), time.monotonic() + 60, opts(0))
    assert out.verdict == Verdict.UNSAT and out.stats["bab_proven"] == 1, out.detail
    # where the bounds' time went: CROWN, alpha-CROWN and the LPs, disjoint parts of bounds_s;
    # a net the branch and bound takes gets no LPs (alpha-CROWN bounds as tightly)
    parts = [out.stats[k] for k in ("crown_s", "refine_s", "lp_s")]
    assert min(parts) >= 0 and sum(parts) <= out.stats["bounds_s"] + 1e-6
    assert out.stats["bounds_method"] == "alpha-crown" and out.stats["lp_s"] == 0 and out.stats["refine_s"] > 0
    out = exact.check(net, spec_of(lo, hi, [(a, [thr])], 2), time.monotonic() + 60, opts(10**9))
    assert out.verdict == Verdict.UNSAT and "bab_runs" not in out.stats
    assert out.stats["bounds_method"] == "lp" and out.stats["lp_s"] > 0
    out = exact.check(net, spec_of(lo, hi, [(a, [sampled_min + 0.01])], 2), time.monotonic() + 60, opts(0))
    assert out.verdict == Verdict.SAT and out.witness_checked


@pytest.mark.parametrize("kind", ["conv-maxpool", "residual", "random-graph"])
def test_graph_bab_agrees_with_the_milp(tmp_path, kind):
    """On conv / max-pool / residual / branching graphs, the exact engine through the ReLU-split
    search (every case to the BaB: `bab_min_unstable` 0, the MILP after it for what it gives up)
    and through the MILP alone agree: unsat a little below the MILP's optimum of a row, sat above
    it (a replayed witness: the minimiser of some domain's bound)."""
    from vnncert.engines import exact
    from vnncert.milp.solver import minimize
    from vnncert.options import ExactOptions, InputSplitOptions, Options

    def opts(bab_min_unstable):
        return Options(mode="exact", threads=1).with_(input_split=InputSplitOptions(max_dims=0),
                                                      exact=ExactOptions(bab_min_unstable=bab_min_unstable, bab_shallow=True))

    net = load_network(NETS[kind](tmp_path, 1), threads=1)
    lg = layer_graph(net)
    n = lg.n_inputs
    w = {"random-graph": 0.02}.get(kind, 0.4)  # a MILP HiGHS solves in seconds
    lo, hi = -w * np.ones(n), w * np.ones(n)
    a = np.zeros((1, lg.n_outputs))
    a[0, 0], a[0, 1] = 1.0, -1.0
    r = minimize(lg, InputRegion(lo, hi), a, np.zeros(1), time.monotonic() + 60)
    assert r.status == "optimal"
    optimum = float(r.incumbent)
    # below the optimum by what the alpha/beta bound closes in seconds, beyond what bounds alone prove
    thr = optimum - {"random-graph": 0.01}.get(kind, 0.05) * (1 + abs(optimum))
    milp = exact.check(net, spec_of(lo, hi, [(a, [thr])], lg.n_outputs), time.monotonic() + 60, opts(10**9))
    bab = exact.check(net, spec_of(lo, hi, [(a, [thr])], lg.n_outputs), time.monotonic() + 60, opts(0))
    assert milp.verdict == Verdict.UNSAT, milp.detail
    assert bab.verdict == Verdict.UNSAT and bab.stats.get("bab_runs"), bab.detail
    out = exact.check(net, spec_of(lo, hi, [(a, [optimum + 0.1 * (1 + abs(optimum))])], lg.n_outputs),
                      time.monotonic() + 60, opts(0))
    assert out.verdict == Verdict.SAT and out.witness_checked


def test_a_search_stopped_at_its_deadline_continues_where_it_stopped(tmp_path):
    """run() after a timeout goes on with the same tree (the exact engine's second pass does
    this): it ends proven, and its domain count includes the first run's."""
    net, lg, lo, hi, a, sampled_min = _deep_mlp_and_its_sampled_min(tmp_path)
    thr = sampled_min - 0.03
    _, bab = _bab_of(net, lo, hi, a, np.array([thr]))
    no_witness = lambda xs: None  # noqa: E731
    first = bab.run(time.monotonic(), no_witness)  # already due: the root only
    assert first.status == "timeout" and len(bab.pool) > 0
    n1 = first.stats["domains"]
    second = bab.run(time.monotonic() + 120, no_witness)
    assert second.status == "proven" and len(bab.pool) == 0
    assert second.stats["domains"] > n1


def _sampled_graph(tmp_path, seed, alpha: bool, kind: str = "mlp5"):
    """A 5-16-16-16-3 chain over [-1, 1]^5 (or a random conv / residual graph): (lo, hi, view,
    pre, lg, zs) with the ReLU inputs' bounds from CROWN (or alpha-CROWN, as the exact engine's
    LP-free route has them), copies, and each ReLU input's values at 100,000 sampled inputs."""
    from vnncert.bounds.region import compute_bounds
    from vnncert.engines import exact
    from vnncert.options import Options

    if kind == "mlp5":
        path = mlp_onnx(tmp_path / "n.onnx", random_mlp(seed, [5, 16, 16, 16, 3]))
    else:
        path = NETS[kind](tmp_path, seed)
    net = load_network(path, threads=1)
    lg = layer_graph(net)
    n = lg.n_inputs
    lo, hi = -np.ones(n), np.ones(n)
    region = InputRegion(lo, hi)
    t = time.monotonic()
    g = exact._Graph(lg, Options(threads=1))
    bounds = compute_bounds(lg, region, t + 60, method="crown", refine=exact._refiner(g, region, t + 60, t, Options()) if alpha else None)
    pre = {k: (l.copy(), u.copy()) for k, (l, u) in _pre_of(lg, bounds).items()}
    xs = np.random.default_rng(seed).uniform(lo, hi, size=(100_000, n))
    vals = lg.evaluate(xs, all_layers=True)
    zs = {k: vals[k] for k in pre}
    return lo, hi, g.view, pre, lg, zs


@pytest.mark.parametrize("seed,elements,kind", [(0, 2_000_000, "mlp5"), (1, 2_000_000, "mlp5"), (2, 64, "mlp5"),
                                                (0, 2_000_000, "random-graph"), (1, 64, "residual")])
def test_optimised_rows_are_sound_and_at_least_as_tight_as_crown(tmp_path, seed, elements, kind):
    """alpha-CROWN bounds of each intermediate layer's unstable rows (`bounds.alpha_beta.optimised_rows`,
    what the exact engine feeds its LP) contain every sampled value and are inside CROWN's."""
    from vnncert.bounds.alpha_beta import optimised_rows
    from vnncert.options import BoundsOptions

    options = BoundsOptions(refine_elements=elements)  # 64: rows in chunks of one or two
    lo, hi, view, pre, lg, zs = _sampled_graph(tmp_path, seed, alpha=False, kind=kind)
    tighter = 0
    for k in view.relu_sources:
        rows = np.flatnonzero((pre[k][0] < 0) & (pre[k][1] > 0))
        if view.input_only(k) or rows.size == 0:
            continue
        l, u = optimised_rows(view, lo, hi, pre, k, rows, 30, time.monotonic() + 60, options)
        assert np.all(zs[k][:, rows] >= l - 1e-9) and np.all(zs[k][:, rows] <= u + 1e-9)
        if kind == "mlp5":  # (on graphs with max nodes a row's interval bound may beat both: the engine intersects)
            assert np.all(l >= pre[k][0][rows] - 1e-9) and np.all(u <= pre[k][1][rows] + 1e-9)
        tighter += int((l > pre[k][0][rows] + 1e-6).sum() + (u < pre[k][1][rows] - 1e-6).sum())
    assert tighter > 0


@pytest.mark.parametrize("seed,kind", [(0, "mlp5"), (1, "mlp5"), (2, "mlp5"), (0, "random-graph")])
def test_tightened_rows_are_sound_and_tighter_than_alpha_crown(tmp_path, seed, kind):
    """Branch-and-bound tightening of each intermediate layer's unstable rows
    (`search.activation_split.tighten_rows`, what the exact engine runs before its ReLU-split
    search on deep nets) contains every sampled value and tightens some of alpha-CROWN's
    bounds (the engine keeps the intersection: a row's search may end a little below the
    alpha-CROWN bound of the same row)."""
    from vnncert.options import ActivationSplitOptions
    from vnncert.search.activation_split import tighten_rows

    side_weight = ActivationSplitOptions().tighten_side_weight

    lo, hi, view, pre, lg, zs = _sampled_graph(tmp_path, seed, alpha=True, kind=kind)
    tighter = skipped = 0
    for k in view.relu_sources:
        lk, uk = pre[k]
        rows = np.flatnonzero((lk < 0) & (uk > 0))
        if view.input_only(k) or rows.size == 0:
            continue
        st = {}
        l, u = tighten_rows(view, lo, hi, pre, k, rows, time.monotonic() + 2.0, st)
        assert st["domains"] > 0
        assert np.all(zs[k][:, rows] >= l - 1e-9) and np.all(zs[k][:, rows] <= u + 1e-9)
        # a side far from zero next to the other is not searched: no bound for it (the caller
        # keeps alpha-CROWN's); every other side gets a finite one
        lj, uj = lk[rows], uk[rows]
        skip_l = uj ** 2 / (uj - lj) ** 2 < side_weight
        skip_u = lj ** 2 / (uj - lj) ** 2 < side_weight
        assert np.all(np.isneginf(l[skip_l])) and np.all(np.isfinite(l[~skip_l]))
        assert np.all(np.isposinf(u[skip_u])) and np.all(np.isfinite(u[~skip_u]))
        skipped += int(skip_l.sum() + skip_u.sum())
        tighter += int((l > lk[rows] + 1e-6).sum() + (u < uk[rows] - 1e-6).sum())
        # later layers start from the tightened rows (as the engine does)
        lk[rows] = np.maximum(lk[rows], l)
        uk[rows] = np.minimum(uk[rows], u)
    assert tighter > 0
    if kind == "mlp5":
        assert skipped > 0


@pytest.mark.parametrize("seed", range(2))
def test_tightened_graph_skips_last_layer_rows_no_disjunct_reads(tmp_path, seed):
    """`search.activation_split.tighten_graph` with the open disjuncts' rows: the rows of the ReLU
    layer the output reads whose weight in every row's bound is >= 0 are left to alpha-CROWN
    (their upper chord is never read); every layer's bounds still contain the sampled values."""
    from vnncert.options import ActivationSplitOptions, BoundsOptions
    from vnncert.search.activation_split import ActivationSplitStats, tighten_graph

    lo, hi, view, pre, lg, zs = _sampled_graph(tmp_path, seed, alpha=True)
    out_A = np.array([[1.0, -1.0, 0.0]])
    last = view.relu_sources[-1]
    lam = out_A @ lg.layers[lg.output].terms[0][1]
    for A in (None, out_A):
        cs = ActivationSplitStats()
        t = tighten_graph(view, lo, hi, pre, time.monotonic() + 6.0, 30, ActivationSplitOptions(), BoundsOptions(), cs, out_A=A)
        for k, (tl, tu) in t.items():
            assert np.all(zs[k] >= tl - 1e-9) and np.all(zs[k] <= tu + 1e-9)
        if A is None:
            assert cs.tighten_rows_skipped == 0
        else:
            # the rows skipped are unstable after the layer's alpha-CROWN pass and not read
            unread = (lam[0] >= 0) & (t[last][0] < 0) & (t[last][1] > 0)
            assert 0 < cs.tighten_rows_skipped <= int(((lam[0] >= 0) & (pre[last][0] < 0) & (pre[last][1] > 0)).sum())
            assert cs.tighten_rows_skipped == int(unread.sum())


def test_tightening_with_no_time_bounds_nothing(tmp_path):
    """A deadline already passed: no bound is claimed (infinite), nothing is searched."""
    from vnncert.bounds.region import compute_bounds
    from vnncert.search.activation_split import tighten_rows

    net = load_network(mlp_onnx(tmp_path / "n.onnx", random_mlp(0, [5, 16, 16, 3])), threads=1)
    lo, hi = -np.ones(5), np.ones(5)
    lg = layer_graph(net)
    b = compute_bounds(lg, InputRegion(lo, hi), time.monotonic() + 60, method="crown")
    pre = _pre_of(lg, b)
    k = _view_of(lg).relu_sources[1]
    rows = np.flatnonzero((pre[k][0] < 0) & (pre[k][1] > 0))
    l, u = tighten_rows(_view_of(lg), lo, hi, pre, k, rows, time.monotonic() - 1.0)
    assert rows.size and np.all(l == -np.inf) and np.all(u == np.inf)


def test_tightening_stalls_only_when_neither_bounds_nor_stable_rows_move():
    """The tightening search's stop rule over its (time, summed gain, rows stabilised) history:
    a second half that gains little in the sum but still stabilises rows goes on (a row pushed
    across zero adds little to the sum); one that moves neither stops; one whose gain still
    grows goes on; a search that never stabilised a row stops on the gain alone."""
    from vnncert.search.activation_split import _stalled

    rising_rows = [(0.0, 0.0, 0), (1.0, 10.0, 20), (2.0, 10.1, 30), (4.0, 10.2, 45)]
    assert not _stalled(rising_rows, 0.0, 0.03)
    flat = [(0.0, 0.0, 0), (1.0, 10.0, 20), (2.0, 10.1, 30), (4.0, 10.2, 30)]
    assert _stalled(flat, 0.0, 0.03)
    rising_gain = [(0.0, 0.0, 0), (1.0, 10.0, 20), (2.0, 11.0, 30), (4.0, 14.0, 30)]
    assert not _stalled(rising_gain, 0.0, 0.03)
    no_rows = [(0.0, 0.0, 0), (2.0, 10.0, 0), (4.0, 10.1, 0)]
    assert _stalled(no_rows, 0.0, 0.03)


@pytest.mark.parametrize("kind", ["conv-maxpool", "random-graph"])
def test_smart_branching_picks_a_free_candidate_whose_children_bound_best(tmp_path, kind):
    """Filtered smart branching (`smart_branch`) on domains with random splits, alphas and betas:
    each parent's choice is one of its candidates, a neuron it has not split, also where fewer
    than `fsb_candidates` are free; the candidates hold the best free neuron of each score (BaBSR's
    and the intercept's), none twice; and the chosen split's two children, bounded once with the
    parent's parameters, score at least as well as the best-scored neuron's (the first candidate)."""
    from vnncert.search.activation_split import _Domains, smart_branch

    net = load_network(NETS[kind](tmp_path, 0), threads=1)
    lg = layer_graph(net)
    n = lg.n_inputs
    lo, hi = -0.5 * np.ones(n), 0.5 * np.ones(n)
    a = np.zeros((1, lg.n_outputs))
    a[0, 0], a[0, 1] = 1.0, -1.0
    _, bab = _bab_of(net, lo, hi, a, np.array([0.0]), fsb_candidates=4)
    U = bab.U
    assert U >= 4
    rng = np.random.default_rng(3)
    N = 12
    split = torch.as_tensor(rng.choice([-1, 0, 0, 1], size=(N, U)).astype(np.int8))
    split[0, :] = torch.as_tensor(rng.choice([-1, 1], size=U).astype(np.int8))
    split[0, :2] = 0  # fewer free neurons than candidates
    alpha = torch.as_tensor(rng.random((N, 1, U)), dtype=torch.float32)
    beta = torch.as_tensor(rng.random((N, 1, U)) * (split.numpy()[:, None, :] != 0), dtype=torch.float32)
    lb, alpha, beta, sc, _ = bab.bound(split, alpha, beta, 0, time.monotonic() + 60)
    dom = _Domains(split, alpha, beta, lb, torch.zeros(N, dtype=torch.int32), sc, candidates=4)
    pick = smart_branch(bab, dom, bab.b)
    for i in range(N):
        cand = dom.cand[i].numpy()
        assert int(pick[i]) in cand[cand >= 0] and int(split[i, pick[i]]) == 0
    assert (dom.cand[0] >= 0).sum() == 2
    # the candidates are the best of each score (BaBSR's, the intercept's), each neuron once
    assert sc.shape == (N, 2, U)
    for i in range(N):
        cand = dom.cand[i].numpy()
        cand = cand[cand >= 0]
        assert len(set(cand.tolist())) == cand.size
        for j in range(2):
            free = np.flatnonzero(split[i].numpy() == 0)
            assert int(free[np.argmax(sc[i, j].numpy()[free])]) in cand
            assert set(cand.tolist()) <= set(free.tolist())

    def value(neuron):  # the children's margins, bounded once in float64 with the parents' parameters
        ch = torch.cat([split, split])
        ch[torch.arange(2 * N), neuron.repeat(2)] = torch.cat([torch.ones(N, dtype=torch.int8), -torch.ones(N, dtype=torch.int8)])
        f64 = torch.float64
        low, _, _ = bab._pass(ch.to(f64), torch.cat([alpha, alpha]).to(f64), torch.cat([beta, beta]).to(f64))
        v = (low[:, 0] - float(bab.b[0])).reshape(2, N)
        return v.max(dim=0).values + bab.options.fsb_min_weight * v.min(dim=0).values

    assert torch.all(value(pick) >= value(dom.cand[:, 0]) - 1e-4)


def test_searches_kept_in_trees_continue_and_report_their_progress(tmp_path):
    """`search_disjuncts` with `Trees`: a call stopped at its deadline keeps each unfinished tree
    (its progress between 0 and 1), and a second call goes on with it to a proof, with one
    statistics entry per disjunct whose domain count includes the first call's."""
    from vnncert.options import ActivationSplitOptions
    from vnncert.search.activation_split import ActivationSplitStats, Trees, search_disjuncts

    net, lg, lo, hi, a, sampled_min = _deep_mlp_and_its_sampled_min(tmp_path)
    thr = sampled_min - 0.03
    lg, bab = _bab_of(net, lo, hi, a, np.array([thr]))
    pre = {k: (np.array(v[0]), np.array(v[1])) for k, v in _pre_items(lg, lo, hi)}
    disjuncts = [(a, np.array([thr])), (-a, np.array([-1e6]))]  # the second: refuted at once (its root)
    open_d, stats, trees = [0, 1], ActivationSplitStats(), Trees()
    out = search_disjuncts(_view_of(lg), lo, hi, pre, disjuncts, open_d, time.monotonic() + 0.05, lambda x: None,
                           ActivationSplitOptions(batch_parents=4), stats, trees=trees)
    assert out is None
    assert 0 not in trees.given_up and 1 not in open_d
    if 0 in open_d:  # not proven in 0.05 s: its tree is kept
        assert 0 in trees.searches and 0.0 <= trees.progress(open_d) <= 1.0
        n1 = trees.latest[0]["domains"]
        search_disjuncts(_view_of(lg), lo, hi, pre, disjuncts, open_d, time.monotonic() + 120, lambda x: None,
                         ActivationSplitOptions(batch_parents=4), stats, trees=trees)
        assert trees.latest[0]["domains"] > n1
    assert open_d == [] and len(stats.runs) == 2
    assert [r["status"] for r in stats.runs] == ["proven", "proven"]
    assert trees.progress([]) == 1.0


def _pre_items(lg, lo, hi):
    from vnncert.bounds.region import compute_bounds

    bounds = compute_bounds(lg, InputRegion(lo, hi), time.monotonic() + 60, method="crown")
    return _pre_of(lg, bounds).items()


@pytest.mark.parametrize("progress", [0.0, 1.01])
def test_exact_engine_continues_or_tightens_after_its_first_search(tmp_path, progress):
    """The exact engine on a deep net whose first ReLU-split search (a tiny share of the time) does
    not finish: with `bab_continue_progress` 0 it goes on with the same trees (no tightening),
    above 1 it tightens the intermediate bounds and searches again; unsat both ways (the MILP
    agrees: test_bab_proves_what_the_milp_proves_on_a_deeper_net)."""
    from vnncert.engines import exact
    from vnncert.options import ActivationSplitOptions, ExactOptions, InputSplitOptions, Options

    net, lg, lo, hi, a, sampled_min = _deep_mlp_and_its_sampled_min(tmp_path)
    thr = sampled_min - 0.03
    opts = Options(mode="exact", threads=1).with_(
        input_split=InputSplitOptions(max_dims=0), activation_split=ActivationSplitOptions(batch_parents=2),
        exact=ExactOptions(bab_min_unstable=0, bab_shallow=True, bab_quick_share=1e-5, bab_continue_progress=progress))
    out = exact.check(net, spec_of(lo, hi, [(a, [thr])], 2), time.monotonic() + 60, opts)
    assert out.verdict == Verdict.UNSAT, out.detail
    if progress > 1:
        assert out.stats["bab_continued"] == 0 and out.stats["tighten_s"] > 0
    else:
        assert out.stats["bab_continued"] == 1 and out.stats["tighten_s"] == 0
