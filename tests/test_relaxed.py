"""Relaxed engine: bound soundness against sampling, input-split BaB answers, modes, ACAS Xu."""
from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import SHARED

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
pytest.importorskip("auto_LiRPA")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from vnncert import bounds  # noqa: E402
from vnncert.engines import relaxed  # noqa: E402
from vnncert.network import Network, load_network  # noqa: E402
from vnncert.options import Options  # noqa: E402
from vnncert.results import Verdict  # noqa: E402
from vnncert.spec.model import Case, Halfspaces, InputRegion, Spec  # noqa: E402

OPTS = Options(threads=1, seed=0)


def _model(nodes, inits, in_shape, out_shape):
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    g = helper.make_graph(nodes, "g", [inp], [out], [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return Network("synthetic.onnx", m.SerializeToString(), threads=1)


def mlp(seed, sizes, scale=1.0):
    rng = np.random.default_rng(seed)
    nodes, inits, cur = [], {}, "x"
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits[f"W{k}"] = (rng.standard_normal((o, i)) * scale / np.sqrt(i)).astype(np.float32)
        inits[f"b{k}"] = (rng.standard_normal(o) * 0.1).astype(np.float32)
        last = k == len(sizes) - 2
        z = "y" if last else f"z{k}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{k}", f"b{k}"], [z], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [z], [f"h{k}"]))
            cur = f"h{k}"
    return _model(nodes, inits, ["N", sizes[0]], ["N", sizes[-1]])


def small_cnn(seed):
    rng = np.random.default_rng(seed)
    inits = {"m": np.float32(0.5), "s": np.float32(2.0), "W": (rng.standard_normal((3, 1, 3, 3)) * 0.5).astype(np.float32),
             "B": (rng.standard_normal(3) * 0.1).astype(np.float32),
             "W2": (rng.standard_normal((4, 3 * 3 * 3)) * 0.3).astype(np.float32), "b2": np.zeros(4, np.float32)}
    nodes = [helper.make_node("Sub", ["x", "m"], ["a"]), helper.make_node("Div", ["a", "s"], ["n"]),
             helper.make_node("Conv", ["n", "W", "B"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "W2", "b2"], ["y"], transB=1)]
    return _model(nodes, inits, [1, 1, 5, 5], [1, 4])


def _sampled_min(net, C, lo, hi, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    xs = lo + rng.random((n, lo.size)) * (hi - lo)
    corners = np.where(rng.random((256, lo.size)) < 0.5, lo, hi)
    ys = net.evaluate(np.concatenate([xs, corners])).astype(np.float64)
    return (ys @ C.T).min(axis=0)


@pytest.mark.parametrize("method", ["lirpa-ibp", "lirpa-crown", "lirpa-alpha", "interval", "crown", "alpha", "crown-numpy"])
@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_bounds_hold_on_samples(method, which):
    """Every method of the bounds layer, auto_LiRPA's and ours (torch; numpy), on an MLP and a CNN."""
    net = mlp(1, [4, 16, 16, 3]) if which == "mlp" else small_cnn(2)
    if method.startswith("lirpa-"):
        g = bounds.prepare_lirpa(net)
    else:
        g = bounds.prepare(net.layer_graph, "numpy" if method.endswith("-numpy") else "torch")
        method = method.replace("-numpy", "")
    rng = np.random.default_rng(3)
    C = rng.standard_normal((5, net.n_outputs))
    for trial in range(3):
        c = rng.uniform(-1, 1, net.n_inputs)
        w = rng.uniform(0.05, 0.5)
        lo, hi = c - w, c + w
        lb = bounds.compute(g, lo[None], hi[None], C[None], method).lower
        smin = _sampled_min(net, C, lo, hi, seed=trial)
        # float32 ORT outputs against a float64 bound: allow float32 rounding of the outputs only
        assert np.all(lb[0] <= smin + 1e-5 * (1 + np.abs(smin))), (lb[0], smin)


def test_bounds_are_float64_and_leave_the_float32_module_alone():
    net = mlp(4, [3, 8, 2])
    m32 = net.torch_module()
    b = bounds.prepare_lirpa(net)
    assert next(b.module.parameters()).dtype == torch.float64
    assert next(m32.parameters()).dtype == torch.float32
    assert torch.get_default_dtype() == torch.float32


def test_crown_tighter_than_ibp_and_lA_shape():
    net = mlp(5, [2, 20, 20, 2])
    b = bounds.prepare_lirpa(net)
    C = np.array([[1.0, -1.0]])
    lo, hi = np.array([[-0.5, -0.5]]), np.array([[0.5, 0.5]])
    l_ibp = bounds.compute(b, lo, hi, C[None], "lirpa-ibp").lower
    r = bounds.compute(b, lo, hi, C[None], "lirpa-crown", want_A=True)
    l_crown, lA = r.lower, r.A
    assert l_crown[0, 0] >= l_ibp[0, 0] - 1e-9
    assert lA.shape == (1, 1, 2)


def test_margin_needs_a_strictly_positive_gap():
    b = np.array([1.0, 1.0, 1.0])
    lower = np.array([1.0, 1.0 + 1e-12, 1.1])
    assert bounds.refutes(lower, b).tolist() == [False, False, True]
    assert not bounds.refutes(np.array([-np.inf]), np.array([0.0]))[0]
    assert not bounds.refutes(np.array([np.nan]), np.array([0.0]))[0]


def _spec_max_at_least(n_in, lo, hi, A, b):
    region = InputRegion(np.asarray(lo, float), np.asarray(hi, float))
    hs = Halfspaces(np.atleast_2d(np.asarray(A, float)), np.atleast_1d(np.asarray(b, float)), np.zeros(len(np.atleast_1d(b)), bool))
    return Spec(n_in, hs.A.shape[1], [Case(region, [hs])])


def _true_max(net, lo, hi, n=401):
    g = np.stack(np.meshgrid(*[np.linspace(l, h, n) for l, h in zip(lo, hi)]), -1).reshape(-1, len(lo))
    return float(net.evaluate(g)[:, 0].astype(np.float64).max())


def _lipschitz(net):
    """Upper bound of the Lipschitz constant (inf-norm in, output 0) from the weight matrices."""
    L = 1.0
    for p in net.torch_module().parameters():
        if p.dim() == 2:
            L *= float(p.detach().abs().sum(dim=1).max())
    return L


def test_bab_proves_unsat_with_known_answer():
    net = mlp(7, [2, 12, 12, 1], scale=1.5)
    lo, hi = [-1.0, -1.0], [1.0, 1.0]
    m = _true_max(net, lo, hi)
    h = 2.0 / 400
    threshold = m + _lipschitz(net) * h / 2 + 0.02  # above the true maximum, by construction
    spec = _spec_max_at_least(2, lo, hi, [[-1.0]], [-threshold])  # unsafe: y >= threshold
    out = relaxed.check(net, spec, time.monotonic() + 120, OPTS)
    assert out.verdict == Verdict.UNSAT, out.detail
    assert out.counterexample is None


def test_bab_finds_witness_when_sat():
    net = mlp(7, [2, 12, 12, 1], scale=1.5)
    lo, hi = [-1.0, -1.0], [1.0, 1.0]
    m = _true_max(net, lo, hi)
    spec = _spec_max_at_least(2, lo, hi, [[-1.0]], [-(m - 0.01)])
    out = relaxed.check(net, spec, time.monotonic() + 120, OPTS)
    assert out.verdict == Verdict.SAT
    assert out.witness_checked
    x, y = out.counterexample
    assert np.all(x >= -1) and np.all(x <= 1) and float(y[0]) >= m - 0.01


def test_split_heuristics_agree_on_the_answer():
    net = mlp(8, [3, 10, 10, 2], scale=1.5)
    lo, hi = [-1.0] * 3, [1.0] * 3
    ys = net.evaluate(np.random.default_rng(0).uniform(-1, 1, (20000, 3))).astype(np.float64)
    d = ys[:, 0] - ys[:, 1]
    spec = _spec_max_at_least(3, lo, hi, [[-1.0, 1.0]], [-(d.max() + 0.5)])  # y0 - y1 >= max + 0.5: unsat
    for h in ("slack", "smear", "width", "abswidth"):
        out = relaxed.check(net, spec, time.monotonic() + 120, OPTS.with_(split_heuristic=h))
        assert out.verdict in (Verdict.UNSAT, Verdict.UNKNOWN) and out.counterexample is None
        assert out.verdict == Verdict.UNSAT, (h, out.detail)


@pytest.mark.parametrize("sat", [False, True])
def test_alpha_schedule_and_pgd_share_keep_the_answers(sat):
    """Alpha skipped once it stops paying (every box counted costly, a payoff nobody meets) and
    PGD given no time: the same answers, unsat proven and sat only with a replayed witness."""
    from vnncert.options import InputSplitOptions

    net = mlp(7, [2, 12, 12, 1], scale=1.5)
    lo, hi = [-1.0, -1.0], [1.0, 1.0]
    m = _true_max(net, lo, hi)
    thr = m - 0.01 if sat else m + _lipschitz(net) * (2.0 / 400) / 2 + 0.02
    spec = _spec_max_at_least(2, lo, hi, [[-1.0]], [-thr])
    opts = OPTS.with_(input_split=InputSplitOptions(costly_box_seconds=0.0, alpha_payoff=1e-12, alpha_probe_every=3,
                                                    pgd_share=0.0))
    out = relaxed.check(net, spec, time.monotonic() + 120, opts)
    if sat:
        assert out.verdict == Verdict.SAT and out.witness_checked and float(out.counterexample[1][0]) >= thr
    else:
        assert out.verdict == Verdict.UNSAT, out.detail
        st = out.stats["split"]
        assert st["splits"] > 0 and st["pgd_calls"] == 0 and st["alpha_skipped"] > 0


def test_timeout_is_reported_not_guessed():
    net = mlp(9, [2, 12, 12, 1], scale=1.5)
    spec = _spec_max_at_least(2, [-1, -1], [1, 1], [[-1.0]], [-100.0])
    out = relaxed.check(net, spec, time.monotonic() - 1, OPTS)
    assert out.verdict == Verdict.TIMEOUT


def test_mode_relaxed_registered():
    from vnncert import router

    assert router.MODES["relaxed"] == ["relaxed"]
    auto = router.MODES["auto"]
    assert "attack" in auto and "relaxed" in auto and auto.index("attack") < auto.index("relaxed")
    assert "relaxed" in router.ENGINES and "relaxed" in router.MODE_HELP


def _acas(net_id, prop):
    base = SHARED / "acasxu"
    if not base.is_dir():
        pytest.skip("needs ../shared/benchmarks/acasxu (not present beside this clone)")
    from vnncert import load_spec

    net = load_network(str(base / "onnx" / f"ACASXU_run2a_{net_id}_batch_2000.onnx"), threads=1)
    return net, load_spec(str(base / "vnnlib" / f"prop_{prop}.vnnlib"), net)


def _truth(net_id, prop):
    import csv

    with open(SHARED / "ground_truth.csv") as f:
        for row in csv.DictReader(f):
            if row["benchmark"] == "acasxu" and row["onnx"].endswith(f"_{net_id}_batch_2000.onnx") \
                    and row["vnnlib"].endswith(f"prop_{prop}.vnnlib"):
                return row["consensus"]
    return None


@pytest.mark.parametrize("net_id,prop", [("1_1", 3), ("1_1", 4), ("2_3", 4)])
def test_acasxu_unsat_instances(net_id, prop):
    net, spec = _acas(net_id, prop)
    out = relaxed.check(net, spec, time.monotonic() + 60, OPTS)
    assert out.verdict.value in ("unsat", "unknown", "timeout")
    assert out.verdict.value == _truth(net_id, prop) == "unsat", out.detail


@pytest.mark.parametrize("net_id,prop", [("4_2", 2)])
def test_acasxu_answers_never_contradict_ground_truth(net_id, prop):
    net, spec = _acas(net_id, prop)
    out = relaxed.check(net, spec, time.monotonic() + 20, OPTS)
    truth = _truth(net_id, prop)
    if out.verdict in (Verdict.SAT, Verdict.UNSAT):
        assert out.verdict.value == truth


# ---- our CROWN (torch, over the layer graph) used inside input splitting -----------------------------
def _chain(net):
    return relaxed.ours(net, OPTS)


def test_our_crown_is_at_least_as_tight_as_auto_lirpa_crown_and_sound():
    """Our intermediate bounds are CROWN intersected with interval bounds, so the final bounds are
    never looser than auto_LiRPA's CROWN (up to the margin rule's widening); and they hold on
    sampled points."""
    net = mlp(11, [3, 16, 16, 16, 4], scale=1.5)
    g = _chain(net)
    assert g is not None and g.backend == "torch" and [L.size for L in g.relus] == [16, 16, 16]
    b = bounds.prepare_lirpa(net)
    rng = np.random.default_rng(0)
    C = rng.standard_normal((6, 3, 4))
    c = rng.uniform(-1, 1, (6, 3))
    w = rng.uniform(0.01, 0.5, (6, 1))
    lo, hi = c - w, c + w
    ref = bounds.compute(b, lo, hi, C, "lirpa-crown").lower
    r = bounds.compute(g, lo, hi, C, want_A=True)
    got, A = r.lower, r.A
    assert np.all(got >= ref - 1e-6 * (1 + np.abs(ref)))
    assert np.any(got > ref + 1e-6)  # strictly tighter somewhere on these boxes
    assert A.shape == (6, 3, 3)
    for i in range(6):
        xs = lo[i] + rng.random((4000, 3)) * (hi[i] - lo[i])
        ys = net.layer_graph.evaluate(xs) @ C[i].T
        assert np.all(ys.min(axis=0) >= got[i] - 1e-9)


def test_child_bounds_hold_on_samples():
    """Children reuse the parent's intermediate bounds: still sound, checked by sampling."""
    net = mlp(12, [2, 20, 20, 20, 2], scale=2.0)
    chain = _chain(net)
    rng = np.random.default_rng(1)
    C = np.array([[[1.0, -1.0], [0.0, 1.0]]])
    lo, hi = np.array([[-1.0, -1.0]]), np.array([[1.0, 1.0]])
    state = bounds.compute(chain, lo, hi, C, want_state=True).state
    for _ in range(4):  # descend into random halves, carrying the state
        d = int(rng.integers(2))
        mid = (lo[0, d] + hi[0, d]) / 2
        if rng.random() < 0.5:
            hi = hi.copy(); hi[0, d] = mid
        else:
            lo = lo.copy(); lo[0, d] = mid
        r = bounds.compute(chain, lo, hi, C, parent=state, want_scores=True, want_state=True)
        state = r.state
        smin = _sampled_min(net, C[0], lo[0], hi[0], n=3000)
        assert np.all(r.lower[0] <= smin + 1e-5 * (1 + np.abs(smin)))
        assert np.all(r.scores >= 0)


def test_graphs_without_a_layer_graph_go_to_auto_lirpa():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    # (Sigmoid has a layer graph now, an act layer: Softmax has none)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["g"], transB=1), helper.make_node("Softmax", ["g"], ["y"], axis=1)]
    net = _model(nodes, {"W": W}, ["N", 3], ["N", 4])
    assert _chain(net) is None
    lo, hi = -np.ones((1, 3)), np.ones((1, 3))
    lb = bounds.compute(bounds.prepare_lirpa(net), lo, hi, np.eye(4)[None], "lirpa-crown").lower
    assert np.all(np.isfinite(lb)) and np.all(lb[0] <= _sampled_min(net, np.eye(4), lo[0], hi[0]))


def test_alpha_is_sound_and_no_looser():
    from vnncert.options import BoundsOptions

    net = mlp(13, [3, 24, 24, 24, 3], scale=2.0)
    chain = _chain(net)
    rng = np.random.default_rng(5)
    C = rng.standard_normal((4, 2, 3))
    c = rng.uniform(-1, 1, (4, 3))
    lo, hi = c - 0.3, c + 0.3
    r = bounds.compute(chain, lo, hi, C, want_state=True)
    alpha = bounds.compute(chain, lo, hi, C, "alpha", intermediate=r.state, options=BoundsOptions(alpha_iters=15)).lower
    assert np.all(alpha >= r.lower - 1e-12)
    assert np.any(alpha > r.lower + 1e-6)
    for k in range(4):
        smin = _sampled_min(net, C[k], lo[k], hi[k], n=3000, seed=k)
        assert np.all(alpha[k] <= smin + 1e-5 * (1 + np.abs(smin)))
