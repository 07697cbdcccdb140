"""Input-domain clipping in the input-split search (search/input_split.clip_boxes, docs/relaxed.md §3):
every point a clipped box loses violates some row of every disjunct open on it, by the network
itself and by the rows' linear bounds (random seeded nets, many random boxes and properties); a
case whose rows are each satisfiable on the box but not together is refuted by clipping alone;
and CROWN's bounds of an affine copy of a stable ReLU read by an act layer are back-substituted
(bounds/crown.py `all_rows`), sound on samples."""
from __future__ import annotations

import time

import numpy as np
import pytest
from onnx import helper

from helpers import op_model
from vnncert import bounds
from vnncert.network import load_network
from vnncert.options import Options
from vnncert.search.input_split import CaseRows, InputSplitStats, clip_boxes, split_case
from vnncert.spec.model import Case, Halfspaces, InputRegion, Spec

pytest.importorskip("torch")
F32 = np.float32


def _net(tmp_path, seed, smooth: bool):
    """x (1, 3) -> Gemm 12 -> Relu -> Gemm 12 (b) -> (Tanh(b) * b | Relu) -> Gemm 3 -> y, random weights."""
    rng = np.random.default_rng(seed)
    inits = {}
    nodes = []
    for name, src, n_in, n_out in (("a", "x", 3, 12), ("b", "ra", 12, 12), ("y", "rb", 12, 3)):
        inits[f"W{name}"] = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in) * 1.5).astype(F32)
        inits[f"c{name}"] = (rng.standard_normal(n_out) * 0.3).astype(F32)
        nodes.append(helper.make_node("Gemm", [src, f"W{name}", f"c{name}"], [name], transB=1))
        if name == "a":
            nodes.append(helper.make_node("Relu", ["a"], ["ra"]))
        elif name == "b" and smooth:  # Tanh(b) * b: an act and a product layer
            nodes += [helper.make_node("Tanh", ["b"], ["tb"]), helper.make_node("Mul", ["tb", "b"], ["rb"])]
        elif name == "b":
            nodes.append(helper.make_node("Relu", ["b"], ["rb"]))
    return load_network(op_model(tmp_path / f"n{seed}{smooth}.onnx", nodes, inits, (1, 3)), threads=1)


def _rows(rng, n_disj, n_rows, n_out=3):
    hs = [Halfspaces(rng.standard_normal((n_rows, n_out)), np.zeros(n_rows), np.zeros(n_rows, bool)) for _ in range(n_disj)]
    return hs


@pytest.mark.parametrize("seed,smooth", [(0, False), (1, False), (2, True), (3, True)])
def test_clipped_away_points_violate_every_open_disjunct(tmp_path, seed, smooth):
    net = _net(tmp_path, seed, smooth)
    g = bounds.prepare(net.layer_graph, "torch")
    rng = np.random.default_rng(100 + seed)
    shrunk = refuted = 0
    for trial in range(12):
        K = 16
        centre = rng.uniform(-1, 1, (K, 3))
        rad = rng.choice([0.05, 0.3, 1.0], (K, 3))
        if trial % 3 == 0:
            rad[:, 2] = 0.0  # a fixed input: never clipped, still in the bound
        lo, hi = centre - rad, centre + rad
        n_disj, n_rows = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        hs = _rows(rng, n_disj, n_rows)
        case = Case(InputRegion(lo[0], hi[0]), hs)
        rows = CaseRows.of(case, 3)
        C = np.broadcast_to(rows.C[None], (K,) + rows.C.shape).copy()
        r = bounds.compute(g, lo, hi, C, "crown", want_A=True)
        # thresholds between the bound and the sampled maximum of each row on each box: clipping bites
        xs = lo[:, None, :] + rng.random((K, 1500, 3)) * (hi - lo)[:, None, :]
        corners = np.where(rng.random((K, 64, 3)) < 0.5, lo[:, None, :], hi[:, None, :])
        xs = np.concatenate([xs, corners], axis=1)
        ys = net.evaluate(xs.reshape(-1, 3).astype(F32)).astype(np.float64).reshape(K, -1, 3)
        vals = np.einsum("kpo,ro->kpr", ys, rows.C)  # (K, P, R)
        top = vals.max(axis=1)
        # one b per row for the case (the same for every box): from box 0's range, then per box
        # the test compares against that b
        frac = rng.uniform(0.1, 0.9, rows.b.shape)
        b = r.lower[0] + frac * (top[0] - r.lower[0])
        rows = CaseRows(rows.C, b, rows.owner, rows.n_disjuncts, rows.empty_disjunct)
        dead = rows.refuted(r.lower)
        alive = ~dead
        lo2, hi2, alive2 = clip_boxes(lo, hi, r.A, r.lower, rows, alive, np.arange(3))
        assert np.all(lo2 >= lo) and np.all(hi2 <= hi)
        assert np.all(~alive2 | alive)  # never revives a disjunct
        assert np.all(lo2[:, 2][rad[:, 2] == 0] == lo[:, 2][rad[:, 2] == 0])
        # linear bounds: L_r(x) = A_r x + c_r with c_r from the bound over the box
        c = r.lower - np.minimum(r.A * lo[:, None, :], r.A * hi[:, None, :]).sum(axis=2)
        lin = np.einsum("kpn,krn->kpr", xs, r.A) + c[:, None, :]
        for k in range(K):
            gone_box = not alive2[k].any()
            outside = gone_box | ((xs[k] < lo2[k]) | (xs[k] > hi2[k])).any(axis=1)
            for d in np.flatnonzero(alive[k]):
                sel = rows.owner == d
                # points the clipped box lost, and every point when the disjunct was emptied
                lost = outside | (not alive2[k, d])
                if not lost.any():
                    continue
                violated = (vals[k][:, sel] > b[sel]).any(axis=1)
                assert violated[lost].all(), (trial, k, d)
                assert (lin[k][:, sel] > b[sel]).any(axis=1)[lost].all(), (trial, k, d)
            shrunk += int(((lo2[k] > lo[k]) | (hi2[k] < hi[k])).any())
            refuted += int(gone_box and alive[k].any())
    assert shrunk >= 10  # the thresholds make clipping bite on many boxes
    assert refuted >= 0


def _identity_net(tmp_path):
    inits = {"W": np.eye(2, dtype=F32), "c": np.zeros(2, F32)}
    nodes = [helper.make_node("Gemm", ["x", "W", "c"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"])]
    return load_network(op_model(tmp_path / "ident.onnx", nodes, inits, (1, 2)), threads=1)


def _case():
    # y = relu(x) on [0.1, 1]^2 (the ReLUs stable, so CROWN is exact): y0 >= 0.6 and y0 <= 0.4 together
    # hold nowhere, while each row alone holds on part of the box
    hs = Halfspaces(np.array([[-1.0, 0.0], [1.0, 0.0]]), np.array([-0.6, 0.4]), np.zeros(2, bool))
    return Spec(2, 2, [Case(InputRegion(np.array([0.1, 0.1]), np.array([1.0, 1.0])), [hs])])


@pytest.mark.parametrize("clip", [True, False])
def test_a_case_refuted_by_clipping_alone(tmp_path, clip):
    net = _identity_net(tmp_path)
    spec = _case()
    g = bounds.prepare(net.layer_graph, "torch")
    opts = Options(threads=1).with_(split_clip=clip)
    st = InputSplitStats()
    out, status = split_case(net, spec, 0, g, "crown", opts, time.monotonic() + 60, st, "relaxed")
    assert out is None and status == "refuted"
    if clip:
        assert st.boxes == 1 and st.clip_refuted == 1 and st.splits == 0
    else:
        assert st.boxes > 1 and st.clip_refuted == 0


def test_clipping_shrinks_to_the_half_space(tmp_path):
    """One row y0 <= 0.4 on y = relu(x), x in [0.1, 1]^2: the box becomes x0 <= 0.4 (up to the margin)."""
    net = _identity_net(tmp_path)
    g = bounds.prepare(net.layer_graph, "torch")
    rows = CaseRows.of(Case(InputRegion(np.array([0.1, 0.1]), np.array([1.0, 1.0])),
                            [Halfspaces(np.array([[1.0, 0.0]]), np.array([0.4]), np.zeros(1, bool))]), 2)
    lo, hi = np.array([[0.1, 0.1]]), np.array([[1.0, 1.0]])
    r = bounds.compute(g, lo, hi, rows.C[None], "crown", want_A=True)
    lo2, hi2, alive2 = clip_boxes(lo, hi, r.A, r.lower, rows, np.ones((1, 1), bool), np.arange(2))
    assert alive2.all()
    assert 0.4 <= hi2[0, 0] < 0.4 + 1e-5 and hi2[0, 1] == 1.0 and np.all(lo2 == lo)


def test_crown_back_substitutes_a_stable_relu_read_by_an_act_layer(tmp_path):
    """x (2) -> Gemm [[1, 1], [1, -1]] + 10 -> Relu (stable) -> Gemm [1, 1] + 5 -> Relu -> Pow 3:
    the Pow's input is 2 x0 + 25 in [23, 27] on [-1, 1]^2, while interval bounds through the stable
    first layer give [21, 29]; the bounds the act layer reads are the back-substituted ones."""
    inits = {"W1": np.array([[1, 1], [1, -1]], F32), "b1": np.array([10, 10], F32),
             "W2": np.array([[1, 1]], F32), "b2": np.array([5], F32), "e": np.asarray(3.0, F32)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"], transB=1), helper.make_node("Relu", ["z1"], ["h1"]),
             helper.make_node("Gemm", ["h1", "W2", "b2"], ["z2"], transB=1), helper.make_node("Relu", ["z2"], ["h2"]),
             helper.make_node("Pow", ["h2", "e"], ["y"])]
    net = load_network(op_model(tmp_path / "stable.onnx", nodes, inits, (1, 2)), threads=1)
    lg = net.layer_graph
    for backend in ("numpy", "torch"):
        g = bounds.prepare(lg, backend)
        lo, hi = np.array([[-1.0, -1.0]]), np.array([[1.0, 1.0]])
        res = g.intermediate(g.ops.asarray(lo) if backend == "torch" else lo, g.ops.asarray(hi) if backend == "torch" else hi)
        act = [L for L in lg.layers if L.kind == "act"]
        assert act
        l, u = (np.asarray(g.ops.numpy(v)).reshape(-1) for v in res.affine[act[0].source])
        assert 23 - 1e-6 <= l[0] <= 23 and 27 <= u[0] <= 27 + 1e-6, (l, u)
        r = bounds.compute(g, lo, hi, np.array([[[1.0]]]), "crown")
        xs = np.random.default_rng(0).uniform(-1, 1, (2000, 2))
        ys = net.evaluate(xs.astype(F32)).astype(np.float64).reshape(-1)
        assert r.lower[0, 0] <= ys.min() and r.lower[0, 0] > 23.0 ** 3 - 1e3  # interval would give 21^3-ish


def test_rebound_takes_the_boxes_clipping_halved_or_more(tmp_path):
    """`InputSplit._rebound`: a box clipping shrank to at most `clip_rebound` of its volume over
    its free dims wider than min_width is bounded again whole; less shrunk, emptied, too thin,
    or with the option off, it is not."""
    from vnncert.search.input_split import InputSplit

    net = _identity_net(tmp_path)
    spec = _case()
    g = bounds.prepare(net.layer_graph, "torch")
    s = InputSplit(net, spec, 0, g, "crown", Options(threads=1), time.monotonic() + 60, InputSplitStats(), "relaxed")
    lo = np.array([[0.0, 0.0]] * 5)
    hi = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1e-10, 1e-10]])
    lo2 = lo.copy()
    hi2 = np.array([[0.5, 1.0], [0.6, 0.8], [0.6, 1.0], [-1.0, 1.0], [5e-11, 5e-11]])
    lo2[3, 0] = 0.0  # (row 3: emptied, lo > hi)
    assert s._rebound(lo, hi, lo2, hi2).tolist() == [True, True, False, False, False]
    off = InputSplit(net, spec, 0, g, "crown", Options(threads=1).with_(split_clip_rebound=0.0), time.monotonic() + 60,
                     InputSplitStats(), "relaxed")
    assert not off._rebound(lo, hi, lo2, hi2).any()


@pytest.mark.parametrize("seed,smooth", [(0, False), (2, True)])
def test_rebound_keeps_the_verdicts(tmp_path, seed, smooth):
    """Random seeded nets, random one-row cases over boxes with 1 or 3 free inputs, b at a quantile
    of sampled outputs: the search with re-bounding of shrunk boxes (default) and without gives
    the same verdict; a sat's witness is in the unsafe set by the network; a refuted case has no
    sampled point in it."""
    net = _net(tmp_path, seed, smooth)
    g = bounds.prepare(net.layer_graph, "torch")
    rng = np.random.default_rng(300 + seed)
    rebounds = refuted = 0
    for trial in range(10):
        c = rng.uniform(-1, 1, 3)
        r = np.array([0.8, 0.8, 0.8]) if trial % 2 else np.array([0.8, 0.0, 0.0])
        reg = InputRegion(c - r, c + r)
        xs = rng.uniform(c - r, c + r, (4000, 3))
        C = rng.standard_normal((1, 3))
        v = (net.evaluate(xs.astype(F32)).astype(np.float64) @ C.T)[:, 0]
        b = np.quantile(v, 0.002) - (0.02 if trial % 3 else -0.05) * (v.max() - v.min())
        spec = Spec(3, 3, [Case(reg, [Halfspaces(C, np.array([b]), np.zeros(1, bool))])])
        got = []
        for f in (0.5, 0.0):
            st = InputSplitStats()
            out, status = split_case(net, spec, 0, g, "crown", Options(threads=1).with_(split_clip_rebound=f),
                                     time.monotonic() + 60, st, "relaxed")
            if f:
                rebounds += st.rebounds
            else:
                assert st.rebounds == 0
            if out is not None:
                x = np.asarray(out.counterexample[0], np.float64)
                y = net.evaluate(x[None].astype(F32)).astype(np.float64)
                assert (y @ C.T)[0, 0] <= b + 1e-6
                status = "sat"
            got.append(status)
        assert got[0] == got[1], (trial, got)
        if got[0] == "refuted":
            refuted += 1
            assert not (v <= b).any()
    assert refuted >= 2 and rebounds >= 1
