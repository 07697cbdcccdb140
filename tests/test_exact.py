"""The exact engine: layer graph lowering, sound bounds, MILP answers against enumeration and ground truth."""
from __future__ import annotations

import csv
import time

import numpy as np
import pytest

from conftest import SPECS, shared_benchmark
from helpers import mlp_onnx, random_mlp

from vnncert.errors import UnsupportedOperator
from vnncert.network.layers import layer_graph
from vnncert.network.loader import load_network
from vnncert.options import Options
from vnncert.results import Verdict
from vnncert import load_spec
from vnncert.spec.model import Case, Halfspaces, InputRegion, Spec

OPTS = Options(mode="exact", threads=1)


def deadline(s=60.0):
    return time.monotonic() + s


def spec_of(lo, hi, disjuncts, n_out, G=None, h=None):
    """Spec with one case: box (and G x <= h) and disjuncts [(A, b, strict?)]."""
    hs = []
    for d in disjuncts:
        A, b = np.atleast_2d(np.asarray(d[0], float)), np.atleast_1d(np.asarray(d[1], float))
        strict = np.asarray(d[2] if len(d) > 2 else np.zeros(len(b), bool), bool)
        hs.append(Halfspaces(A, b, strict))
    region = InputRegion(np.asarray(lo, float), np.asarray(hi, float),
                         None if G is None else np.atleast_2d(np.asarray(G, float)),
                         None if h is None else np.atleast_1d(np.asarray(h, float)))
    return Spec(len(lo), n_out, [Case(region, hs)])


def exact_check(net, spec, seconds=60.0, options=OPTS):
    from vnncert.engines import exact

    return exact.check(net, spec, deadline(seconds), options)


def no_split(options=OPTS):
    """One MILP (or ReLU-split BaB) over the whole box: no input splitting in front."""
    from vnncert.options import InputSplitOptions

    return options.with_(input_split=InputSplitOptions(max_dims=0))


# ---- ONNX graphs made in code --------------------------------------------------------------------
def _save(tmp_path, name, nodes, inputs, outputs, inits, opset=13):
    import onnx
    from onnx import helper

    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    p = tmp_path / f"{name}.onnx"
    onnx.save(m, str(p))
    return str(p)


def conv_net(tmp_path, seed=0):
    """Conv (pads, stride, 2 groups) -> BatchNorm -> Relu -> MaxPool (padded) -> AveragePool (ceil) ->
    Transpose -> Flatten -> Gemm -> LeakyRelu -> Sub (constant first) -> Div."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    inits = [
        numpy_helper.from_array(f32(rng.standard_normal((4, 1, 3, 3)) * 0.5), "W"),
        numpy_helper.from_array(f32(rng.standard_normal(4) * 0.1), "B"),
        numpy_helper.from_array(f32(rng.random(4) + 0.5), "g"), numpy_helper.from_array(f32(rng.standard_normal(4) * 0.1), "be"),
        numpy_helper.from_array(f32(rng.standard_normal(4) * 0.1), "mu"), numpy_helper.from_array(f32(rng.random(4) + 0.5), "var"),
        numpy_helper.from_array(f32(rng.standard_normal((3, 16)) * 0.3), "G"), numpy_helper.from_array(f32(rng.standard_normal(3) * 0.1), "Gb"),
        numpy_helper.from_array(f32([1.0, -2.0, 0.5]), "c"), numpy_helper.from_array(f32([2.0]), "d"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c1"], pads=[1, 1, 1, 1], strides=[1, 1], group=2),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"], epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0]),
        helper.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[2, 2], strides=[1, 1], ceil_mode=1, count_include_pad=0),
        helper.make_node("Transpose", ["ap"], ["tp"], perm=[0, 1, 3, 2]),
        helper.make_node("Flatten", ["tp"], ["fl"], axis=1),
        helper.make_node("Gemm", ["fl", "G", "Gb"], ["g1"], transB=1),
        helper.make_node("LeakyRelu", ["g1"], ["lr"], alpha=0.1),
        helper.make_node("Sub", ["c", "lr"], ["sb"]),
        helper.make_node("Div", ["sb", "d"], ["y"]),
    ]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    return _save(tmp_path, "convnet", nodes, [inp], [out], inits)


def branchy_net(tmp_path, seed=1):
    """MatMul (weight first and last), residual Add, Concat with a constant, Slice (negative step),
    Gather, Split, ReduceMean, Unsqueeze/Squeeze, Reshape, Neg, Mul by a constant."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    i64 = lambda a: np.asarray(a, np.int64)  # noqa: E731
    inits = [
        numpy_helper.from_array(f32(rng.standard_normal((6, 6)) * 0.5), "M1"),
        numpy_helper.from_array(f32(rng.standard_normal((6, 6)) * 0.5), "M2"),
        numpy_helper.from_array(f32(rng.standard_normal((1, 2))), "k"),
        numpy_helper.from_array(i64([7]), "st"), numpy_helper.from_array(i64([0]), "en"),
        numpy_helper.from_array(i64([1]), "ax"), numpy_helper.from_array(i64([-2]), "sp"),
        numpy_helper.from_array(i64([0, 2, 5]), "gi"), numpy_helper.from_array(i64([2, 2]), "spl"),
        numpy_helper.from_array(f32([[1.5, -1.0]]), "mc"), numpy_helper.from_array(i64([0]), "u0"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "M1"], ["a"]),                 # (1,6)
        helper.make_node("Relu", ["a"], ["ra1"]),
        helper.make_node("MatMul", ["ra1", "M2"], ["b"]),
        helper.make_node("Add", ["b", "x"], ["res"]),                    # residual
        helper.make_node("Relu", ["res"], ["rr"]),
        helper.make_node("Concat", ["rr", "k"], ["cat"], axis=1),        # (1,8)
        helper.make_node("Slice", ["cat", "st", "en", "ax", "sp"], ["sl"]),  # indices 7,5,3,1 -> (1,4)
        helper.make_node("Gather", ["cat", "gi"], ["ga"], axis=1),        # (1,3)
        helper.make_node("Split", ["sl", "spl"], ["s1", "s2"], axis=1),   # (1,2),(1,2)
        helper.make_node("Mul", ["s1", "mc"], ["m1"]),
        helper.make_node("Neg", ["s2"], ["n2"]),
        helper.make_node("Add", ["m1", "n2"], ["sum"]),                  # (1,2)
        helper.make_node("ReduceMean", ["ga"], ["rm"], axes=[1], keepdims=1),  # (1,1)
        helper.make_node("Squeeze", ["rm", "u0"], ["sq"]),                # (1,)
        helper.make_node("Unsqueeze", ["sq", "u0"], ["us"]),              # (1,1)
        helper.make_node("Concat", ["sum", "us"], ["y3"], axis=1),        # (1,3)
        helper.make_node("Relu", ["y3"], ["y"]),
    ]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    return _save(tmp_path, "branchy", nodes, [inp], [out], inits)


def sigmoid_net(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.eye(2, dtype=np.float32), "W")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]), helper.make_node("Sigmoid", ["a"], ["y"])]
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    return _save(tmp_path, "sigm", nodes, [inp], [out], inits)


# ---- the layer graph -------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [conv_net, branchy_net])
def test_layer_graph_matches_onnxruntime(tmp_path, make):
    net = load_network(make(tmp_path), threads=1)
    lg = layer_graph(net)
    xs = np.random.default_rng(0).uniform(-2, 2, (64, net.n_inputs))
    y_ort = net.evaluate(xs).astype(np.float64)
    y_lg = lg.evaluate(xs)
    assert np.allclose(y_lg, y_ort, atol=1e-5 * (1 + np.abs(y_ort).max()))
    assert any(L.kind == "max" for L in lg.layers) == (make is conv_net)


def test_layer_graph_on_shipped_models():
    for onnx_path in sorted((SPECS / "onnx").glob("*.onnx")):
        net = load_network(str(onnx_path), threads=1)
        lg = layer_graph(net)
        xs = np.random.default_rng(1).random((32, net.n_inputs))
        assert np.allclose(lg.evaluate(xs), net.evaluate(xs), atol=1e-5), onnx_path.name


def test_unsupported_op_is_named(tmp_path):
    from vnncert.engines import exact

    net = load_network(sigmoid_net(tmp_path), threads=1)
    assert not layer_graph(net).piecewise_linear  # an act layer: the layer graph has it, the MILP not
    spec = spec_of([0, 0], [1, 1], [([[1.0, 0.0]], [0.2])], 2)
    # in every mode: the router decides what it means (tests/test_router.py: unknown in --mode exact,
    # the other engines run in --mode auto)
    for opts in (OPTS, Options(mode="auto", threads=1)):
        with pytest.raises(UnsupportedOperator, match="Sigmoid.*MILP encoder: not piecewise linear"):
            exact.check(net, spec, deadline(), opts)


# ---- exhaustive enumeration on 2-input nets -------------------------------------------------------
def _grid_min(lg, lo, hi, a, n=401):
    """Min of a . f over an n x n grid and the Lipschitz slack sum_i c_i h_i / 2 to the true min."""
    g = np.stack(np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n), indexing="ij"), -1).reshape(-1, 2)
    vals = lg.evaluate(g) @ a
    c = np.abs(a)
    for L in reversed([L for L in lg.layers if L.kind == "affine"]):
        for _, W in L.terms:
            c = c @ np.abs(np.asarray(W.todense() if hasattr(W, "todense") else W))
    slack = float(c @ ((np.asarray(hi) - np.asarray(lo)) / (n - 1) / 2))
    i = int(vals.argmin())
    return float(vals[i]), slack, g[i]


@pytest.mark.parametrize("seed", range(5))
def test_milp_optimum_matches_grid_enumeration(tmp_path, seed):
    from vnncert.milp.solver import minimize

    sizes = [2, 8, 8, 3]
    net = load_network(mlp_onnx(tmp_path / f"m{seed}.onnx", random_mlp(seed, sizes)), threads=1)
    lg = layer_graph(net)
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    a = np.array([1.0, -1.0, 0.0])
    m, slack, _ = _grid_min(lg, lo, hi, a)
    region = InputRegion(lo, hi)
    r = minimize(lg, region, a[None, :], np.zeros(1), deadline())
    assert r.status == "optimal"
    assert m - slack - 1e-6 <= r.incumbent <= m + 1e-6
    assert r.bound <= r.incumbent + 1e-6
    # the LP relaxation is a lower bound, never above the MILP optimum
    lp = minimize(lg, region, a[None, :], np.zeros(1), deadline(), binaries=False)
    assert lp.bound <= r.incumbent + 1e-6


@pytest.mark.parametrize("split", ["batched", "per-box", "one-milp", "relu-bab", "relu-bab-cuts", "relu-bab-cuts-going-on"])
@pytest.mark.parametrize("seed", range(6))
def test_verdicts_agree_with_enumeration(tmp_path, seed, split):
    from vnncert.engines import exact
    from vnncert.options import BoundsOptions, ExactOptions

    opts = OPTS
    if split in ("one-milp", "relu-bab"):  # one MILP over the whole box instead of input splitting with MILP leaves
        opts = no_split()
    if split == "relu-bab":  # every case through alpha-CROWN bounds and the ReLU-split branch and bound
        opts = opts.with_(exact=ExactOptions(bab_min_unstable=0, refine_min_rows=0, bab_shallow=True))
    if split == "relu-bab-cuts":  # ... no first search, tightening, no search before SCIP's root cuts, the search with them
        opts = opts.with_(exact=ExactOptions(bab_min_unstable=0, refine_min_rows=0, bab_shallow=True, bab_quick_share=0.0,
                                             bab_continue_progress=2.0, bab_cuts=True, cut_after_share=0.0))
    if split == "relu-bab-cuts-going-on":  # ... the first search goes on (no tightening), SCIP's cuts over its bounds
        opts = opts.with_(exact=ExactOptions(bab_min_unstable=0, refine_min_rows=0, bab_shallow=True, bab_quick_share=0.0,
                                             bab_continue_progress=-1.0, bab_cuts=True, cut_after_share=0.0))
    if split == "per-box":  # the numpy CROWN in the input splitting (graphs too large for a dense copy:
        # no graph view either, so no alpha-CROWN and no ReLU-split BaB)
        opts = opts.with_(bounds=BoundsOptions(dense_max_elements=0))
        lg0 = layer_graph(load_network(mlp_onnx(tmp_path / "c.onnx", random_mlp(0, [2, 3, 2])), threads=1))
        g = exact._Graph(lg0, opts)
        assert g.view is None and g.split is g.crown
    sizes = [2, 10, 10, 2]
    net = load_network(mlp_onnx(tmp_path / f"v{seed}.onnx", random_mlp(100 + seed, sizes)), threads=1)
    lg = layer_graph(net)
    lo, hi = [-1.0, -0.5], [0.5, 1.0]
    a = np.array([1.0, -1.0])
    m, slack, _ = _grid_min(lg, np.array(lo), np.array(hi), a)
    gap = 0.05
    # a grid point violates a . y <= m + gap: sat, with a replayed witness
    out = exact_check(net, spec_of(lo, hi, [(a[None, :], [m + gap])], 2), options=opts)
    assert out.verdict == Verdict.SAT and out.witness_checked
    _, y = out.counterexample
    assert a @ y.astype(np.float64) <= m + gap
    # nothing goes below m - slack: unsat
    out = exact_check(net, spec_of(lo, hi, [(a[None, :], [m - slack - gap])], 2), options=opts)
    assert out.verdict == Verdict.UNSAT
    if split == "relu-bab-cuts" and "tighten_s" in out.stats:  # a second search ran: with SCIP's cuts
        assert out.stats["cut_pools"] >= 1, out.stats
    if split == "relu-bab-cuts-going-on" and "bab_continued" in out.stats:
        assert out.stats["bab_continued"] == 1 and out.stats["tighten_s"] == 0 and out.stats["cut_pools"] >= 1, out.stats


@pytest.mark.parametrize("seed", range(3))
def test_root_cuts_of_several_disjuncts_on_two_threads(tmp_path, seed):
    """Three disjuncts (y_j above its grid maximum) through tightening, SCIP's roots two at a time
    and the second search with their cuts: unsat, each disjunct's root gave cuts; with one
    disjunct a grid point meets, sat with a replayed witness."""
    from vnncert.options import ExactOptions

    opts = no_split(Options(mode="exact", threads=2)).with_(exact=ExactOptions(
        bab_min_unstable=0, refine_min_rows=0, bab_shallow=True, bab_quick_share=0.0, bab_continue_progress=2.0,
        bab_cuts=True, cut_after_share=0.0))
    net = load_network(mlp_onnx(tmp_path / f"t{seed}.onnx", random_mlp(200 + seed, [2, 12, 12, 3])), threads=1)
    lg = layer_graph(net)
    lo, hi = np.array([-1.0, -0.5]), np.array([0.5, 1.0])
    far = []
    for j in range(3):
        a = -np.eye(3)[j]
        m, slack, _ = _grid_min(lg, lo, hi, a)
        far.append((a[None, :], [m - slack - 0.05]))  # -y_j <= m - slack - gap: nothing reaches it
    out = exact_check(net, spec_of(lo, hi, far, 3), options=opts)
    assert out.verdict == Verdict.UNSAT
    assert "tighten_s" in out.stats and out.stats["cut_pools"] >= 2, out.stats
    a = -np.eye(3)[1]
    m, _, _ = _grid_min(lg, lo, hi, a)
    out = exact_check(net, spec_of(lo, hi, [far[0], (a[None, :], [m + 0.05]), far[2]], 3), options=opts)
    assert out.verdict == Verdict.SAT and out.witness_checked


def test_highs_thread_count_may_change_within_a_process(tmp_path):
    """HiGHS keeps one scheduler per process with the first run's thread count and failed later
    runs that asked for another (model status kNotset: `unknown`); an API caller may verify with
    threads=2, then 1, then 2 again: each MILP and LP still answers."""
    net = load_network(mlp_onnx(tmp_path / "h.onnx", random_mlp(11, [2, 10, 10, 2])), threads=1)
    lg = layer_graph(net)
    lo, hi = np.array([-1.0, -0.5]), np.array([0.5, 1.0])
    a = np.array([1.0, -1.0])
    m, slack, _ = _grid_min(lg, lo, hi, a)
    for threads in (2, 1, 2, 1):
        opts = no_split(Options(mode="exact", threads=threads))
        out = exact_check(net, spec_of(lo, hi, [(a[None, :], [m + 0.05])], 2), options=opts)
        assert out.verdict == Verdict.SAT and out.witness_checked, (threads, out.detail)
        out = exact_check(net, spec_of(lo, hi, [(a[None, :], [m - slack - 0.05])], 2), options=opts)
        assert out.verdict == Verdict.UNSAT, (threads, out.detail)


def test_disjunction_and_multi_row_disjuncts(tmp_path):
    net = load_network(mlp_onnx(tmp_path / "d.onnx", random_mlp(7, [2, 8, 8, 3])), threads=1)
    lg = layer_graph(net)
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201), indexing="ij"), -1).reshape(-1, 2)
    ys = lg.evaluate(g)
    # a disjunct of two rows that no grid point meets by a wide margin, and one that a grid point meets
    y0max, y1max = ys[:, 0].max(), ys[:, 1].max()
    far = ([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], [-(y0max + 50.0), -(y1max + 50.0)])  # y0 >= max+50 and y1 >= ...
    hit = ([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [-(ys[0, 0] - 0.01), ys[0, 2] + 0.01])
    out = exact_check(net, spec_of(lo, hi, [far, hit], 3))
    assert out.verdict == Verdict.SAT
    out = exact_check(net, spec_of(lo, hi, [far], 3))
    assert out.verdict == Verdict.UNSAT


# ---- edge cases ------------------------------------------------------------------------------------
def test_infeasible_input_region_is_unsat(tmp_path):
    net = load_network(mlp_onnx(tmp_path / "e.onnx", random_mlp(3, [2, 6, 2])), threads=1)
    anything = ([[0.0, 0.0]], [1.0])  # 0 <= 1: every output is unsafe
    # x0 + x1 <= -3 cannot hold in [-1, 1]^2
    out = exact_check(net, spec_of([-1, -1], [1, 1], [anything], 2, G=[[1.0, 1.0]], h=[-3.0]))
    assert out.verdict == Verdict.UNSAT
    # a box with lower > upper
    out = exact_check(net, spec_of([0.5, -1], [0.4, 1], [anything], 2))
    assert out.verdict == Verdict.UNSAT
    # feasible G x <= h: the witness respects it
    out = exact_check(net, spec_of([-1, -1], [1, 1], [anything], 2, G=[[1.0, 1.0]], h=[-1.5]))
    assert out.verdict == Verdict.SAT and out.counterexample[0].sum() <= -1.5


@pytest.mark.parametrize("split", [True, False], ids=["split", "one-milp"])
def test_disjunct_without_rows_is_met_by_any_input(tmp_path, split):
    from vnncert.engines import exact

    net = load_network(mlp_onnx(tmp_path / "n.onnx", random_mlp(6, [2, 6, 2])), threads=1)
    region = InputRegion(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    spec = Spec(2, 2, [Case(region, [Halfspaces(np.zeros((0, 2)), np.zeros(0), np.zeros(0, bool))])])
    out = exact.check(net, spec, deadline(), OPTS if split else no_split())
    assert out.verdict == Verdict.SAT and out.witness_checked


def test_no_unstable_relu(tmp_path):
    """A box so small every ReLU is stable: no binaries, the MILP is an LP, answers still exact
    (the disjunct bounds are disabled so that HiGHS has to decide)."""
    from vnncert.engines import exact

    net = load_network(mlp_onnx(tmp_path / "s.onnx", random_mlp(4, [2, 6, 6, 2])), threads=1)
    c = np.array([0.3, -0.2])
    lo, hi = c - 1e-4, c + 1e-4
    from vnncert.bounds.region import compute_bounds

    b = compute_bounds(layer_graph(net), InputRegion(lo, hi), deadline())
    assert sum(b.unstable) == 0
    y = net.evaluate(c[None, :])[0].astype(np.float64)
    from vnncert.options import ExactOptions

    auto = no_split().with_(exact=ExactOptions(row_bounds=False))  # HiGHS answers
    out = exact.check(net, spec_of(lo, hi, [([[1.0, 0.0]], [y[0] + 0.01])], 2), deadline(), auto)
    assert out.verdict == Verdict.SAT
    out = exact.check(net, spec_of(lo, hi, [([[1.0, 0.0]], [y[0] - 0.01])], 2), deadline(), auto)
    assert out.verdict == Verdict.UNSAT
    assert out.stats.get("binaries", 0) == 0 and out.stats.get("milp_solves", 0) >= 1


def test_candidates_that_do_not_replay_are_never_reported(tmp_path, monkeypatch):
    """If ONNX Runtime rejects every candidate, the engine must not say sat (nor unsat)."""
    from vnncert.engines import exact
    from vnncert.milp import case
    from vnncert.search import falsify, input_split

    for module in (case, exact, input_split, falsify):  # every place a witness is replayed: ORT says no
        monkeypatch.setattr(module, "sat_outcome", lambda *a, **k: None)
    net = load_network(mlp_onnx(tmp_path / "r.onnx", random_mlp(5, [2, 8, 2])), threads=1)
    lg = layer_graph(net)
    m, _, _ = _grid_min(lg, np.array([-1.0, -1.0]), np.array([1.0, 1.0]), np.array([1.0, -1.0]))
    out = exact.check(net, spec_of([-1, -1], [1, 1], [([[1.0, -1.0]], [m + 0.5])], 2), deadline(8), OPTS)
    assert out.verdict in (Verdict.UNKNOWN, Verdict.TIMEOUT)
    assert out.stats.get("spurious", 0) >= 1


def test_unsat_margin_scales_with_the_model():
    from vnncert.bounds.encoding import Encoding
    from vnncert.milp.solver import unsat_margin
    from vnncert.options import MilpOptions

    net = load_network(str(SPECS / "onnx" / "tiny_2in.onnx"), threads=1)
    lg = layer_graph(net)
    from vnncert.bounds.region import compute_bounds

    small = compute_bounds(lg, InputRegion(np.zeros(2), np.ones(2)), deadline()).enc
    big = compute_bounds(lg, InputRegion(-100 * np.ones(2), 100 * np.ones(2)), deadline()).enc
    A = np.array([[1.0, -1.0]])
    assert isinstance(small, Encoding)
    assert 1e-6 <= unsat_margin(small, A) < unsat_margin(big, A)
    assert unsat_margin(big, A) >= 10 * MilpOptions().dual_feas_tol * 200


def test_lp_bounds_are_sound_and_tighter_than_crown():
    """Sound: below every sampled output. Tighter: the LP bound is at least the CROWN bound."""
    from vnncert.bounds.region import compute_bounds, output_lower_bounds

    net = load_network(str(SPECS / "onnx" / "digits_mlp.onnx"), threads=1)
    spec = load_spec(str(SPECS / "vnnlib" / "digits_1_eps0.1.vnnlib"), net)
    case = spec.cases[0]
    lg = layer_graph(net)
    C = np.concatenate([hs.A for hs in case.output])
    crown = output_lower_bounds(lg, C, compute_bounds(lg, case.region, deadline(), method="crown"))
    lp = output_lower_bounds(lg, C, compute_bounds(lg, case.region, deadline(), method="lp"))
    assert np.all(lp >= crown - 1e-7)
    assert np.any(lp > crown + 1e-3)
    xs = case.region.lower + np.random.default_rng(0).random((2000, 64)) * (case.region.upper - case.region.lower)
    assert np.all((lg.evaluate(xs) @ C.T).min(axis=0) >= lp)


# ---- shipped models and benchmarks -----------------------------------------------------------------
EXPECTED = {  # vnnlib_specs/README.md: what PGD / CROWN / the construction establish
    "tiny_sat": Verdict.SAT, "tiny_unsat": Verdict.UNSAT,
    "digits_0_eps0.02": Verdict.UNSAT, "digits_1_eps0.02": Verdict.UNSAT, "digits_2_eps0.02": Verdict.UNSAT,
    "digits_3_eps0.02": Verdict.UNSAT, "digits_0_eps0.1": Verdict.SAT, "digits_2_eps0.1": Verdict.SAT,
}


def test_shipped_instances_exact_and_relaxed_agree():
    from vnncert.engines import exact, relaxed

    with open(SPECS / "instances.csv") as f:
        rows = [r for r in csv.reader(f) if r]
    for onnx_rel, vnnlib_rel, _ in rows:
        net = load_network(str(SPECS / onnx_rel), threads=1)
        spec = load_spec(str(SPECS / vnnlib_rel), net)
        ex = exact.check(net, spec, deadline(60), OPTS)
        name = vnnlib_rel.split("/")[-1][:-len(".vnnlib")]
        assert ex.verdict in (Verdict.SAT, Verdict.UNSAT), (name, ex.detail)
        if name in EXPECTED:
            assert ex.verdict == EXPECTED[name], name
        rx = relaxed.check(net, spec, deadline(30), Options(mode="relaxed", threads=1))
        if rx.verdict in (Verdict.SAT, Verdict.UNSAT):
            assert rx.verdict == ex.verdict, name


def _truth(bench):
    t = {}
    with open(shared_benchmark("") / "ground_truth.csv") as f:
        for r in csv.DictReader(f):
            if r["benchmark"] == bench:
                t[(r["onnx"], r["vnnlib"])] = r["consensus"]
    return t


def test_shared_test_benchmark_matches_ground_truth():
    root = shared_benchmark("test")
    truth = _truth("test")
    with open(root / "instances.csv") as f:
        rows = [r for r in csv.reader(f) if r]
    for onnx_rel, vnnlib_rel, _ in rows:
        net = load_network(str(root / onnx_rel), threads=1)
        out = exact_check(net, load_spec(str(root / vnnlib_rel), net), 60)
        want = truth.get((onnx_rel, vnnlib_rel))
        assert out.verdict.value == want, (onnx_rel, vnnlib_rel, out.detail)


@pytest.mark.parametrize("net,vnnlib_rel,route", [("256x2", "vnnlib/prop_3_0.05.vnnlib", "milp"),
                                                   ("256x2", "vnnlib/prop_1_0.03.vnnlib", "milp"),
                                                   ("256x4", "vnnlib/prop_3_0.05.vnnlib", "bab")])
def test_mnist_fc_instances_match_ground_truth(net, vnnlib_rel, route):
    """256x4 prop_3_0.05 keeps ~140 unstable ReLUs: it goes through the ReLU-split branch and bound."""
    root = shared_benchmark("mnist_fc")
    onnx_rel = f"onnx/mnist-net_{net}.onnx"
    want = _truth("mnist_fc")[(onnx_rel, vnnlib_rel)]
    net = load_network(str(root / onnx_rel), threads=1)
    out = exact_check(net, load_spec(str(root / vnnlib_rel), net), 120)
    assert out.verdict.value == want, out.detail
    if route == "bab" and want == "unsat":
        assert out.stats.get("bab_runs", 0) >= 1


def test_lp_time_limits_hold_after_highs_has_run_for_longer_than_them(tmp_path):
    """HiGHS's time_limit is against its run clock, which adds up over the runs of one object:
    after many LPs on one TriangleLP, each further LP still gets the time it is given (a limit
    taken as absolute made every LP past that point stop at once, and the bound was lost)."""
    from vnncert.bounds.region import compute_bounds

    net = load_network(mlp_onnx(tmp_path / "n.onnx", random_mlp(3, [20, 80, 80, 80, 4])), threads=1)
    lg = layer_graph(net)
    b = compute_bounds(lg, InputRegion(-np.ones(20), np.ones(20)), deadline(), method="lp")
    lp = b.lp
    k = lg.output
    rows = [np.eye(4)[i] * sign for i in range(4) for sign in (1.0, -1.0)]
    reference = [lp.objective_bound(k, r) for r in rows]
    assert np.all(np.isfinite(reference))
    assert lp.h.getRunTime() > 0.5
    # limits far shorter than HiGHS's accumulated run time, but plenty for each LP (the objective
    # changes every time, so each one needs simplex iterations)
    got = [lp.objective_bound(k, r, time_limit=0.4) for r in rows]
    assert got == pytest.approx(reference, abs=1e-9)
