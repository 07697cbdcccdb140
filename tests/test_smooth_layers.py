"""The layer graph's nonlinear kinds beyond the piecewise-linear ones (network/layers.py: `act`,
a smooth function of an affine layer; `product`, two variables multiplied) and our CROWN over them
(bounds/crown.py): the layer graph agrees with ONNX Runtime on nets using each smooth op, Pow by
constants, Mul / Div / MatMul of two variable tensors (with broadcasting); CROWN's bounds hold
on sampled points of random boxes of random nets mixing ReLU, Sigmoid, Tanh, Sin, Exp and
products, numpy and torch agree, and intermediate bounds are never looser than interval bounds;
the MILP engines refuse the new kinds (the router: unknown, not error); the layer graph after a
Div by a variable reads the right layers whatever the memory addresses of the builder's Syms."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from onnx import helper

from helpers import assert_lowerings_agree, box_spec, op_model
from vnncert import bounds
from vnncert.network import load_network

F32 = np.float32
SMOOTH = ["Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal", "Softplus", "Erf", "Sin", "Cos"]
# an input range inside each op's domain (after W x + b with W, b >= 0 there)
POSITIVE = {"Log", "Sqrt", "Reciprocal"}


def _gemm(name, x, n_in, n_out, rng, inits, positive=False):
    W = rng.uniform(0.1, 1.0, (n_out, n_in)) if positive else rng.standard_normal((n_out, n_in))
    b = rng.uniform(0.1, 0.5, n_out) if positive else rng.standard_normal(n_out) * 0.3
    inits[f"W{name}"], inits[f"b{name}"] = W.astype(F32), b.astype(F32)
    return helper.make_node("Gemm", [x, f"W{name}", f"b{name}"], [name], transB=1)


def _unary_net(tmp_path, op, exponent=None):
    rng = np.random.default_rng(zlib.crc32(op.encode()) % 1000)  # str hash() differs per process
    inits = {}
    nodes = [_gemm("z", "x", 3, 4, rng, inits, positive=op in POSITIVE or exponent is not None)]
    if exponent is None:
        nodes.append(helper.make_node(op, ["z"], ["h"], name="act"))
    else:
        inits["e"] = np.asarray(exponent, F32)
        nodes.append(helper.make_node("Pow", ["z", "e"], ["h"], name="act"))
    nodes.append(_gemm("y", "h", 4, 2, rng, inits))
    return op_model(tmp_path / f"{op}{exponent}.onnx", nodes, inits, (1, 3))


@pytest.mark.parametrize("op", SMOOTH)
def test_layer_graph_of_each_smooth_op_agrees_with_onnxruntime(tmp_path, op):
    net = load_network(_unary_net(tmp_path, op), threads=1)
    lg = net.layer_graph
    acts = [L for L in lg.layers if L.kind == "act"]
    assert len(acts) == 1 and acts[0].fn == op and acts[0].name == "act" and not lg.piecewise_linear
    assert_lowerings_agree(net, np.random.default_rng(1).uniform(0 if op in POSITIVE else -2, 2, (200, 3)))


@pytest.mark.parametrize("e", [2.0, 3.0, 0.5, 1.5, -1.0, -2.0, 1.0])
def test_layer_graph_of_pow_agrees_with_onnxruntime(tmp_path, e):
    net = load_network(_unary_net(tmp_path, "Pow", e), threads=1)
    acts = [L for L in net.layer_graph.layers if L.kind == "act"]
    assert (len(acts) == 0) if e == 1.0 else (acts[0].fn == "Pow" and acts[0].exponent == e)
    assert_lowerings_agree(net, np.random.default_rng(2).uniform(0, 2, (200, 3)))


def _two_variable_net(tmp_path, kind):
    """Mul / Div of two variable tensors with broadcasting, and MatMul of two variable tensors."""
    rng = np.random.default_rng({"mul": 3, "div": 4, "matmul": 5}[kind])
    inits = {"s23": np.asarray([1, 2, 3], np.int64), "s32": np.asarray([1, 3, 2], np.int64),
             "s12": np.asarray([1, 2, 1], np.int64), "flat": np.asarray([1, -1], np.int64)}
    nodes = [_gemm("a", "x", 4, 6, rng, inits), _gemm("b", "x", 4, 2, rng, inits, positive=kind == "div")]
    if kind == "matmul":
        nodes += [_gemm("c", "x", 4, 6, rng, inits),
                  helper.make_node("Reshape", ["a", "s23"], ["A"]), helper.make_node("Reshape", ["c", "s32"], ["C"]),
                  helper.make_node("MatMul", ["A", "C"], ["P"], name="mm")]  # (1, 2, 3) @ (1, 3, 2)
    else:
        nodes += [helper.make_node("Reshape", ["a", "s23"], ["A"]), helper.make_node("Reshape", ["b", "s12"], ["Bv"]),
                  helper.make_node(kind.capitalize(), ["A", "Bv"], ["P"], name="prod")]  # (1, 2, 3) x (1, 2, 1)
    nodes += [helper.make_node("Reshape", ["P", "flat"], ["y"])]
    return op_model(tmp_path / f"{kind}.onnx", nodes, inits, (1, 4))


@pytest.mark.parametrize("kind", ["mul", "div", "matmul"])
def test_layer_graph_of_two_variable_products_agrees_with_onnxruntime(tmp_path, kind):
    net = load_network(_two_variable_net(tmp_path, kind), threads=1)
    lg = net.layer_graph
    prods = [L for L in lg.layers if L.kind == "product"]
    assert len(prods) == 1 and prods[0].op == {"mul": "Mul", "div": "Div", "matmul": "MatMul"}[kind]
    if kind == "div":
        assert [L.fn for L in lg.layers if L.kind == "act"] == ["Reciprocal"]
    if kind == "matmul":
        assert prods[0].size == 2 * 3 * 2  # every product, summed by the affine layer after it
    assert_lowerings_agree(net, np.random.default_rng(6).uniform(-1.5, 1.5, (200, 4)))


def assert_sources_fit(lg):
    """Every layer reads earlier layers of the sizes its terms and indices expect."""
    for L in lg.layers[1:]:
        if L.kind == "affine":
            for s, m in L.terms:
                assert s < L.index and m.shape == (L.size, lg.layers[s].size), (L.index, s, m.shape)
        elif L.kind in ("relu", "act"):
            assert L.source < L.index and lg.layers[L.source].size == L.size, (L.index, L.kind, L.source)
        elif L.kind == "product":
            assert max(L.source, L.source_b) < L.index, L.index
            assert L.ia.max() < lg.layers[L.source].size and L.ib.max() < lg.layers[L.source_b].size, L.index
        elif L.kind == "max":
            assert L.source < L.index and L.groups.max() < lg.layers[L.source].size, L.index


def test_a_freed_temporary_sym_never_lends_its_layer_to_a_later_one():
    """LayerBuilder.affine_layer reuses the layer of a Sym materialised before only while that very
    Sym lives: a temporary (Div's reciprocal) freed after its product left its id to the next Sym
    CPython allocated at its address, which then read the earlier layer (of another size): in
    nn4sys mscn_128d_dual a Relu of 768 read a layer of width 1, depending on memory layout."""
    from vnncert.network.affine import Sym
    from vnncert.network.layers import LayerBuilder

    class Graph:
        input_shape, input_name = (2,), "x"

    b = LayerBuilder(Graph())
    first = b.affine_layer(Sym((1,), {0: np.ones((1, 2))}, np.zeros(1)))  # freed on return
    second = b.affine_layer(Sym((3,), {0: np.ones((3, 2))}, np.zeros(3)))  # (CPython: often at the same address)
    assert (first, second) == (1, 2) and [L.size for L in b.layers] == [2, 1, 3]
    kept = Sym((3,), {0: np.full((3, 2), 2.0)}, np.zeros(3))
    assert b.affine_layer(kept) == b.affine_layer(kept) == 3 and len(b.layers) == 4  # a live Sym: one layer


def _div_then_relu_net(tmp_path, m):
    """x (1, 4) -> a / d (d one positive entry: Div's reciprocal a temporary Sym) and, from x, a
    MatMul of m (its Sym the first made after the Div's) then Relu -> Gemm 3, added to a / d."""
    rng = np.random.default_rng(m)
    inits = {"Wh": rng.standard_normal((4, m)).astype(F32)}
    nodes = [_gemm("a", "x", 4, 3, rng, inits), _gemm("d", "x", 4, 1, rng, inits, positive=True),
             helper.make_node("Div", ["a", "d"], ["q"], name="div"),
             helper.make_node("MatMul", ["x", "Wh"], ["h"]), helper.make_node("Relu", ["h"], ["r"], name="relu"),
             _gemm("o", "r", m, 3, rng, inits), helper.make_node("Add", ["o", "q"], ["y"])]
    return op_model(tmp_path / f"divrelu{m}.onnx", nodes, inits, (1, 4))


@pytest.mark.parametrize("reuse", [False, True])
@pytest.mark.parametrize("m", [1, 5, 12])
def test_layer_graph_after_a_div_by_a_variable_reads_the_right_layers(tmp_path, monkeypatch, m, reuse):
    """The pattern of mscn_128d_dual (Div of two variables, then a MatMul + Relu of the input): the
    Relu reads its own MatMul's layer and the graph computes the model, with ids as CPython gives
    them and (`reuse`) with every object's id the same, the worst reuse of freed addresses there is
    (the graph must not depend on memory addresses)."""
    from vnncert.network import layers

    if reuse:
        monkeypatch.setattr(layers, "id", lambda obj: 0, raising=False)  # the module's id(), not the builtin
    path = _div_then_relu_net(tmp_path, m)
    xs = np.random.default_rng(m).uniform(0, 2, (200, 4))
    for _ in range(3):
        net = load_network(path, threads=1)
        lg = net.layer_graph
        assert_sources_fit(lg)
        (relu,) = [L for L in lg.layers if L.kind == "relu"]
        src = lg.layers[relu.source]
        assert src.kind == "affine" and src.size == m and [s for s, _ in src.terms] == [0], (relu.source, src)
        assert_lowerings_agree(net, xs)


# ---- CROWN over act and product layers -----------------------------------------------------------
def _mixed_net(tmp_path, seed):
    """A random net: x (1, 4) -> Gemm -> [Relu | Sigmoid | Tanh | Sin] on four slices' Gemms,
    a product of the Tanh and Sin branches, Exp of a small Gemm, a residual Add, Gemm -> y (1, 3)."""
    rng = np.random.default_rng(seed)
    inits = {}
    nodes = [_gemm("h0", "x", 4, 6, rng, inits)]
    branches = []
    for op in ("Relu", "Sigmoid", "Tanh", "Sin"):
        nodes += [_gemm(f"p{op}", "h0", 6, 5, rng, inits), helper.make_node(op, [f"p{op}"], [f"a{op}"])]
        branches.append(f"a{op}")
    nodes += [helper.make_node("Mul", ["aTanh", "aSin"], ["m"]), _gemm("pe", "aRelu", 5, 5, rng, inits),
              helper.make_node("Mul", ["pe", "k"], ["pe2"]), helper.make_node("Exp", ["pe2"], ["e"]),
              helper.make_node("Add", ["m", "aSigmoid"], ["r"]), helper.make_node("Concat", ["r", "e", "aRelu"], ["cat"], axis=1),
              _gemm("q", "cat", 15, 5, rng, inits), helper.make_node("Relu", ["q"], ["rq"]),
              helper.make_node("Mul", ["rq", "aSigmoid"], ["m2"]), _gemm("y", "m2", 5, 3, rng, inits)]
    inits["k"] = np.asarray(0.3, F32)
    return op_model(tmp_path / f"mixed{seed}.onnx", nodes, inits, (1, 4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crown_bounds_hold_on_samples_and_backends_agree(tmp_path, seed):
    pytest.importorskip("torch")
    net = load_network(_mixed_net(tmp_path, seed), threads=1)
    lg = net.layer_graph
    kinds = {L.kind for L in lg.layers}
    assert {"act", "product", "relu"} <= kinds
    rng = np.random.default_rng(seed + 10)
    B, R = 6, 4
    centre = rng.uniform(-1, 1, (B, 4))
    rad = rng.choice([0.0, 1e-3, 0.05, 0.3, 1.0], (B, 4))
    lo, hi = centre - rad, centre + rad
    C = rng.standard_normal((B, R, 3))
    C[:, 0] = np.eye(3)[0]
    from vnncert.options import BoundsOptions

    # (torch without the linearised product relaxation: the same CROWN as numpy's; with it, never looser)
    g_np, g_t = bounds.prepare(lg, "numpy"), bounds.prepare(lg, "torch", BoundsOptions(quadratic_max_inputs=0))
    r_np = bounds.compute(g_np, lo, hi, C, "crown", want_scores=True)
    r_t = bounds.compute(g_t, lo, hi, C, "crown", want_scores=True)
    np.testing.assert_allclose(r_np.lower, r_t.lower, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r_np.scores, r_t.scores, rtol=1e-7, atol=1e-9)
    r_q = bounds.compute(bounds.prepare(lg, "torch"), lo, hi, C, "crown")
    assert np.all(r_q.lower >= r_t.lower - 1e-9 * (1 + np.abs(r_t.lower)))
    r_np.lower = np.minimum(r_np.lower, r_q.lower)  # (both checked on the samples below)
    assert np.all(np.isfinite(r_np.lower)) and np.all(r_np.scores >= 0)
    for b in range(B):
        xs = rng.uniform(lo[b], hi[b], (3000, 4))
        xs[:16] = np.where(rng.random((16, 4)) < 0.5, lo[b], hi[b])  # corners
        ys = lg.evaluate(xs)
        ort = net.evaluate(xs.astype(F32)).reshape(ys.shape).astype(np.float64)
        np.testing.assert_allclose(ys, ort, rtol=1e-4, atol=1e-4)
        vals = ys @ C[b].T  # (n, R)
        assert np.all(vals.min(axis=0) >= r_np.lower[b]), (b, vals.min(axis=0) - r_np.lower[b])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_crown_over_act_and_product_layers_holds_and_tightens(tmp_path, seed):
    """alpha-CROWN (bounds/crown.py `optimise`): the final rows' bounds with optimised ReLU slopes,
    act slopes (sound intercepts) and McCormick combinations hold on samples and are never below
    CROWN's; the intermediate rows optimised in place (`intermediate(alpha_iters=...)`) hold and
    are narrower in all than CROWN's own (not entrywise: CROWN is not monotone in the earlier
    layers' bounds); and the final bound from them tightens further."""
    torch = pytest.importorskip("torch")
    from vnncert.options import BoundsOptions

    net = load_network(_mixed_net(tmp_path, seed), threads=1)
    lg = net.layer_graph
    rng = np.random.default_rng(seed + 20)
    B, R = 5, 4
    centre = rng.uniform(-1, 1, (B, 4))
    rad = rng.choice([0.0, 0.05, 0.3, 1.0], (B, 4))
    lo, hi = centre - rad, centre + rad
    C = rng.standard_normal((B, R, 3))
    g = bounds.prepare(lg, "torch")
    crown = bounds.compute(g, lo, hi, C, "crown").lower
    alpha = bounds.compute(g, lo, hi, C, "alpha", options=BoundsOptions(alpha_iters=20)).lower
    assert np.all(alpha >= crown) and np.sum(alpha > crown + 1e-6) > B
    plain = g.intermediate(torch.as_tensor(lo), torch.as_tensor(hi))
    res = g.intermediate(torch.as_tensor(lo), torch.as_tensor(hi), alpha_iters=15)
    rows = g.optimise_final(C, res, 20, 0.25).numpy()
    assert rows.sum() > alpha.sum()
    width = {"alpha": 0.0, "crown": 0.0}
    for b in range(B):
        xs = rng.uniform(lo[b], hi[b], (4000, 4))
        xs[:16] = np.where(rng.random((16, 4)) < 0.5, lo[b], hi[b])
        vals = lg.evaluate(xs, all_layers=True)
        ys = vals[lg.output] @ C[b].T
        assert np.all(ys.min(axis=0) >= alpha[b]) and np.all(ys.min(axis=0) >= rows[b]), b
        for k, (l, u) in res.affine.items():
            l, u = l[b].numpy(), u[b].numpy()
            pl, pu = (v[b].numpy() for v in plain.affine[k])
            assert np.all(vals[k] >= l) and np.all(vals[k] <= u), (b, k)
            if np.all(np.isfinite(pu - pl)):
                width["alpha"] += float(np.sum(u - l))
                width["crown"] += float(np.sum(pu - pl))
    assert width["alpha"] < 0.95 * width["crown"], width


def _quadratic_net(tmp_path, seed, same=False):
    """Lyapunov-style quadratics (lsnc's shape): z = x - c, V = sum z * (z P) (P positive definite),
    a step x' = x + 0.1 tanh(Gemm x), the decrease D = sum (x' - x) * ((x' + x) P), and a product of
    two ReLU branches; with `same`, Mul(z, z) of one tensor. y = (V, D, r1 * r2 summed) (1, 3)."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((4, 4))
    inits = {"c": rng.uniform(-0.3, 0.3, (1, 4)).astype(F32), "P": (M @ M.T / 4 + 0.1 * np.eye(4)).astype(F32),
             "s": np.asarray(0.1, F32)}
    nodes = [helper.make_node("Sub", ["x", "c"], ["z"])]
    if same:
        nodes += [helper.make_node("Mul", ["z", "z"], ["zz"]), _gemm("V", "zz", 4, 1, rng, inits, positive=True)]
    else:
        nodes += [helper.make_node("MatMul", ["z", "P"], ["zP"]), helper.make_node("Mul", ["z", "zP"], ["zzP"]),
                  helper.make_node("ReduceSum", ["zzP"], ["V"], keepdims=1)]
    nodes += [_gemm("f", "x", 4, 4, rng, inits), helper.make_node("Tanh", ["f"], ["tf"]),
              helper.make_node("Mul", ["tf", "s"], ["step"]), helper.make_node("Add", ["x", "step"], ["xn"]),
              helper.make_node("Sub", ["xn", "x"], ["dx"]), helper.make_node("Add", ["xn", "x"], ["sx"]),
              helper.make_node("MatMul", ["sx", "P"], ["sxP"]), helper.make_node("Mul", ["dx", "sxP"], ["dd"]),
              helper.make_node("ReduceSum", ["dd"], ["D"], keepdims=1),
              _gemm("g1", "x", 4, 3, rng, inits), helper.make_node("Relu", ["g1"], ["r1"]),
              _gemm("g2", "x", 4, 3, rng, inits), helper.make_node("Relu", ["g2"], ["r2"]),
              helper.make_node("Mul", ["r1", "r2"], ["rr"]), helper.make_node("ReduceSum", ["rr"], ["R"], keepdims=1),
              helper.make_node("Concat", ["V", "D", "R"], ["y"], axis=1)]
    v0 = float(inits["bV"][0]) if same else 0.0  # V's minimum (at z = 0)
    return op_model(tmp_path / f"quad{seed}{same}.onnx", nodes, inits, (1, 4)), inits["c"].astype(np.float64)[0], v0


@pytest.mark.parametrize("seed,same", [(0, False), (1, False), (2, True)])
def test_linearised_product_relaxation_holds_and_tightens(tmp_path, seed, same):
    """The linearised product relaxation (bounds/crown.py `_quadratic_product`, torch, few inputs):
    every row's bound holds on sampled points and corners of random boxes (wide, tiny, zero-width
    dims), also through alpha (`intermediate=` state, as the input split calls it); it is never
    looser than McCormick's CROWN (quadratic_max_inputs=0) and far tighter on the quadratics: on a
    box holding the centre c, V's bound is its minimum (McCormick's is 0.1 below it on the wide ones)."""
    torch = pytest.importorskip("torch")
    from vnncert.options import BoundsOptions

    path, c, v0 = _quadratic_net(tmp_path, seed, same)
    net = load_network(path, threads=1)
    lg = net.layer_graph
    assert sum(L.kind == "product" for L in lg.layers) >= 3
    rng = np.random.default_rng(seed + 30)
    B, R = 12, 5
    centre = rng.uniform(-1, 1, (B, 4))
    centre[:4] = c + rng.uniform(-0.01, 0.01, (4, 4))  # boxes holding the centre of V
    rad = rng.choice([0.0, 1e-4, 0.02, 0.3, 1.0], (B, 4))
    rad[:4] = rng.choice([0.05, 0.5], (4, 1)) + 0.01
    lo, hi = centre - rad, centre + rad
    C = rng.standard_normal((B, R, 3))
    C[:, :3] = np.eye(3)
    g_q = bounds.prepare(lg, "torch")
    g_m = bounds.prepare(lg, "torch", BoundsOptions(quadratic_max_inputs=0))
    r_q = bounds.compute(g_q, lo, hi, C, "crown", want_A=True, want_state=True)
    r_m = bounds.compute(g_m, lo, hi, C, "crown")
    r_a = bounds.compute(g_q, lo, hi, C, "alpha", intermediate=r_q.state)
    assert np.all(np.isfinite(r_q.lower)) and np.all(r_q.lower >= r_m.lower - 1e-9 * (1 + np.abs(r_m.lower)))
    assert np.all(r_a.lower >= r_q.lower - 1e-6 * (1 + np.abs(r_q.lower)))
    for b in range(B):
        xs = rng.uniform(lo[b], hi[b], (4000, 4))
        xs[:16] = np.where(rng.random((16, 4)) < 0.5, lo[b], hi[b])
        ys = lg.evaluate(xs) @ C[b].T
        for r in (r_q, r_a):
            assert np.all(ys.min(axis=0) >= r.lower[b]), (b, ys.min(axis=0) - r.lower[b])
        # the coefficients in x: the bound is the linear function's minimum over the box, below every sample
        lin = xs @ r_q.A[b].T
        const = r_q.lower[b] - np.minimum(r_q.A[b] * lo[b], r_q.A[b] * hi[b]).sum(axis=1)
        assert np.all(lin + const <= ys + 1e-7 * (1 + np.abs(ys)))
    # each factor layer's linear bounds in x (Pass.lin, chord-parallel ReLU lines) hold on the samples
    res = g_q.intermediate(torch.as_tensor(lo), torch.as_tensor(hi))
    assert set(res.lin) == set(g_q.factors) and len(g_q.factors) >= 4
    for b in range(B):
        xs = rng.uniform(lo[b], hi[b], (3000, 4))
        xs[:16] = np.where(rng.random((16, 4)) < 0.5, lo[b], hi[b])
        vals = lg.evaluate(xs, all_layers=True)
        for k, (AL, cL, AU, cU) in res.lin.items():
            low = xs @ AL[b].numpy().T + cL[b].numpy()
            up = xs @ AU[b].numpy().T + cU[b].numpy()
            tol = 1e-9 * (1 + np.abs(vals[k]))
            assert np.all(low <= vals[k] + tol) and np.all(vals[k] <= up + tol), (b, k)
    v_q, v_m = r_q.lower[:4, 0] - v0, r_m.lower[:4, 0] - v0
    assert np.all(v_q >= -1e-6) and np.all(v_q <= 1e-6), v_q
    assert np.all(v_m[rad[:4, 0] > 0.3] < -0.1), v_m
    assert np.sum(r_q.lower > r_m.lower + 1e-6) >= B


@pytest.mark.parametrize("kind", ["mul", "div", "matmul"])
def test_linearised_product_relaxation_on_broadcast_and_matmul_products(tmp_path, kind):
    """The linearised relaxation where the product layer gathers its factors (broadcast Mul, Div's
    reciprocal factor, MatMul's products summed after): every row's bound holds on samples and
    corners of random boxes (some dims fixed), never looser than McCormick's; the rows' constants
    alone (C = 0) and a zero-width box are handled."""
    pytest.importorskip("torch")
    from vnncert.options import BoundsOptions

    net = load_network(_two_variable_net(tmp_path, kind), threads=1)
    lg = net.layer_graph
    g_q, g_m = bounds.prepare(lg, "torch"), bounds.prepare(lg, "torch", BoundsOptions(quadratic_max_inputs=0))
    assert g_q.factors
    rng = np.random.default_rng(40)
    B, R, n_out = 10, 4, lg.n_outputs
    centre = rng.uniform(-1, 1, (B, 4))
    rad = rng.choice([0.0, 1e-3, 0.1, 0.5], (B, 4))
    rad[0] = 0.0
    lo, hi = centre - rad, centre + rad
    C = rng.standard_normal((B, R, n_out))
    C[:, 0] = 0.0
    r_q = bounds.compute(g_q, lo, hi, C, "crown").lower
    r_m = bounds.compute(g_m, lo, hi, C, "crown").lower
    with np.errstate(invalid="ignore"):  # (-inf where a divisor's interval holds 0: no bound either way)
        assert np.all(np.isfinite(r_q) | ~np.isfinite(r_m)) and np.all((r_q >= r_m - 1e-9 * (1 + np.abs(r_m))) | (r_m == -np.inf))
    assert np.all(np.abs(r_q[:, 0]) <= 1e-8) and np.isfinite(r_q).sum() >= B
    # product layers beyond quadratic_max_products keep McCormick's planes alone
    g_few = bounds.prepare(lg, "torch", BoundsOptions(quadratic_max_products=1))
    assert not g_few.linearised and not g_few.factors
    np.testing.assert_array_equal(bounds.compute(g_few, lo, hi, C, "crown").lower, r_m)
    for b in range(B):
        xs = rng.uniform(lo[b], hi[b], (3000, 4))
        xs[:16] = np.where(rng.random((16, 4)) < 0.5, lo[b], hi[b])
        ys = lg.evaluate(xs) @ C[b].T
        assert np.all(ys.min(axis=0) >= r_q[b]), (b, ys.min(axis=0) - r_q[b])


def test_intermediate_bounds_inside_interval_bounds_and_hold(tmp_path):
    net = load_network(_mixed_net(tmp_path, 3), threads=1)
    lg = net.layer_graph
    crown = bounds.prepare(lg, "numpy")
    lo, hi = np.full((1, 4), -0.6), np.full((1, 4), 0.4)
    cr = crown.intermediate(lo, hi, method="crown", output=True)
    iv = crown.intermediate(lo, hi, method="interval", output=True)
    xs = np.random.default_rng(7).uniform(lo[0], hi[0], (5000, 4))
    vals = lg.evaluate(xs, all_layers=True)
    tighter = 0
    for k, (l, u) in cr.affine.items():
        il, iu = iv.affine[k]
        assert np.all(l >= il) and np.all(u <= iu), k
        assert np.all(vals[k] >= l[0]) and np.all(vals[k] <= u[0]), k
        tighter += int(np.sum((l > il + 1e-6) | (u < iu - 1e-6)))
    for L in lg.layers:
        if L.kind in ("act", "product"):
            l, u = cr.var[L.index]
            assert np.all(vals[L.index] >= l[0]) and np.all(vals[L.index] <= u[0]), L.index
    assert tighter > 0  # back-substitution through the act and product layers tightened some rows


def test_graph_interval_bounds_hold(tmp_path):
    """LayerGraph.layer_interval on the act and product kinds (its own IBP)."""
    net = load_network(_mixed_net(tmp_path, 4), threads=1)
    lg = net.layer_graph
    lo, hi = np.full(4, -0.5), np.full(4, 0.5)
    bnds = {0: (lo, hi)}
    for L in lg.layers[1:]:
        bnds[L.index] = lg.layer_interval(L, bnds)
    xs = np.random.default_rng(8).uniform(lo, hi, (3000, 4))
    vals = lg.evaluate(xs, all_layers=True)
    for k, (l, u) in bnds.items():
        assert np.all(vals[k] >= l - 1e-12) and np.all(vals[k] <= u + 1e-12), k


def test_infinite_relaxations_give_no_bound_never_nan(tmp_path):
    """Reciprocal of a value whose interval holds 0 has no bound: -inf, never NaN."""
    net = load_network(_unary_net(tmp_path, "Reciprocal"), threads=1)
    lg = net.layer_graph
    r = bounds.compute(bounds.prepare(lg, "numpy"), np.full((1, 3), -5.0), np.full((1, 3), 5.0), np.eye(2)[None], "crown")
    assert not np.any(np.isnan(r.lower))


def test_exact_and_lp_engines_refuse_the_smooth_kinds(tmp_path):
    """--mode exact on a Sigmoid net: the falsifier runs, then unknown naming the op; --relaxed-method
    lp likewise keeps the LP engine out; --mode relaxed proves it with our CROWN."""
    from vnncert.api import verify

    model = _unary_net(tmp_path, "Sigmoid")
    prop = tmp_path / "p.vnnlib"
    net = load_network(model, threads=1)
    ys = net.evaluate(np.random.default_rng(9).uniform(0, 1, (2000, 3)).astype(F32))
    prop.write_text(box_spec([0.0] * 3, [1.0] * 3, [[f"(>= Y_0 {float(ys[:, 0].max()) + 3.0})"]], 2))
    out = verify(model, str(prop), mode="exact", timeout=30, threads=1)
    assert out.verdict.value == "unknown" and "Sigmoid" in out.detail and "no MILP encoding" in out.detail, out.detail
    out = verify(model, str(prop), mode="relaxed", timeout=30, threads=1)
    assert out.verdict.value == "unsat" and out.stats["relaxed"]["bounder"] == "CROWN (layer graph, torch)", out.detail
    with pytest.raises(Exception, match="Sigmoid.*no MILP encoding"):
        net.layer_graph.require_piecewise_linear()


# ---- the smooth-activation split (search/smooth_split.py) ----------------------------------------
def _split_rounds(net, spec, rounds=3, free_dims=True):
    """Run the search's bound-and-split by hand for a few rounds; per domain, sampled points of its
    box that satisfy its narrowed bounds (evaluated in the layer graph) must respect its bounds."""
    from vnncert.options import InputSplitOptions, Options
    from vnncert.search.smooth_split import SmoothSplitStats, _Domains, _SmoothSplit

    lg = net.layer_graph
    opts = Options(input_split=InputSplitOptions(max_dims=16 if free_dims else 0))
    s = _SmoothSplit(net, spec, 0, bounds.prepare(lg, "torch"), opts, float("inf"), SmoothSplitStats(), "relaxed")
    d = _Domains(s.lo0[None].copy(), s.hi0[None].copy(), np.ones((1, s.rows.n_disjuncts), bool), np.zeros(1, np.int64), None)
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(rounds):
        lower, A, scores, sl, res, empty = s._bound(d)
        for b in range(len(d)):
            xs = rng.uniform(d.lo[b], d.hi[b], (4000, d.lo.shape[1]))
            vals = lg.evaluate(xs, all_layers=True)
            inside = np.ones(xs.shape[0], bool)
            if d.state is not None:  # the domain's constraints: its narrowed bounds
                for k, (l, u) in d.state.bounds.items():
                    l, u = np.asarray(l)[b], np.asarray(u)[b]
                    inside &= np.all((vals[k] >= l - 1e-9) & (vals[k] <= u + 1e-9), axis=1)
            ys = vals[lg.output][inside] @ s.rows.C.T
            if empty[b]:
                assert not inside.any()
            elif inside.any():
                assert np.all(ys.min(axis=0) >= lower[b] - 1e-9), (b, ys.min(axis=0) - lower[b])
                checked += 1
        dead = s.rows.refuted(lower, d.alive)
        w = np.ones_like(lower)
        d = s._split(d, dead, w, sl, res, scores, np.arange(len(d)), s.crown.ops)
        assert d is not None
    return checked, s.stats


@pytest.mark.parametrize("free_dims", [True, False])
def test_smooth_split_domains_bound_their_sampled_points(tmp_path, free_dims):
    pytest.importorskip("torch")
    from vnncert import load_spec

    net = load_network(_mixed_net(tmp_path, 5), threads=1)
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec([-0.5] * 4, [0.5] * 4, [["(>= Y_0 100.0)"], ["(<= Y_1 -100.0)"]], 3))
    spec = load_spec(str(prop), network=net)
    checked, st = _split_rounds(net, spec, rounds=4, free_dims=free_dims)
    assert checked > 8 and ((st.input_splits > 0) if free_dims else (st.act_splits > 0 and st.input_splits == 0))


def _sin_product_net(tmp_path):
    """y = sin(3 x0) * sigmoid(2 x1) + tanh(x0 - x1) on two inputs (one output)."""
    inits = {"W1": np.array([[3.0, 0.0], [0.0, 2.0], [1.0, -1.0]], F32), "b1": np.zeros(3, F32),
             "s0": np.array([0], np.int64), "s1": np.array([1], np.int64), "s2": np.array([2], np.int64),
             "s3": np.array([3], np.int64), "ax": np.array([1], np.int64)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["z"], transB=1),
             helper.make_node("Slice", ["z", "s0", "s1", "ax"], ["z0"]), helper.make_node("Slice", ["z", "s1", "s2", "ax"], ["z1"]),
             helper.make_node("Slice", ["z", "s2", "s3", "ax"], ["z2"]),
             helper.make_node("Sin", ["z0"], ["a"]), helper.make_node("Sigmoid", ["z1"], ["b"]), helper.make_node("Tanh", ["z2"], ["c"]),
             helper.make_node("Mul", ["a", "b"], ["m"]), helper.make_node("Add", ["m", "c"], ["y"])]
    return op_model(tmp_path / "sinprod.onnx", nodes, inits, (1, 2))


@pytest.mark.parametrize("max_dims", [16, 0])
def test_smooth_split_proves_what_crown_alone_cannot_and_finds_witnesses(tmp_path, max_dims):
    """On [-1, 1]^2 the maximum of y is found on a fine grid (the net is 6-Lipschitz: a 1e-3 grid
    errs by at most 6e-3); y >= max + 0.05 is unsat (CROWN alone does not prove it), y >= max - 0.05
    is sat: the relaxed engine proves the first by input splitting over our CROWN, and never the
    second; with activation splits only (no input dim may be split) it never answers wrongly."""
    from vnncert.api import verify
    from vnncert.options import InputSplitOptions

    model = _sin_product_net(tmp_path)
    net = load_network(model, threads=1)
    g = np.linspace(-1, 1, 2001)
    xs = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    top = float(net.layer_graph.evaluate(xs).max())
    unsat, sat = tmp_path / "unsat.vnnlib", tmp_path / "sat.vnnlib"
    unsat.write_text(box_spec([-1.0, -1.0], [1.0, 1.0], [[f"(>= Y_0 {top + 0.05})"]], 1))
    sat.write_text(box_spec([-1.0, -1.0], [1.0, 1.0], [[f"(>= Y_0 {top - 0.05})"]], 1))
    r = bounds.compute(bounds.prepare(net.layer_graph, "numpy"), -np.ones((1, 2)), np.ones((1, 2)), -np.ones((1, 1, 1)), "crown")
    assert -r.lower[0, 0] > top + 0.05  # CROWN alone is too loose
    opts = dict(mode="relaxed", timeout=60, threads=1, input_split=InputSplitOptions(max_dims=max_dims))
    out = verify(model, str(unsat), **opts)
    # (activation splits alone do not tie the first layer's neurons to each other: no beta here)
    assert out.verdict.value == "unsat" if max_dims else out.verdict.value in ("unsat", "unknown", "timeout"), out.detail
    st = out.stats["relaxed"]["smooth_split"]
    if max_dims:  # few free dims: the input-split search over our CROWN
        assert out.stats["relaxed"]["split"]["splits"] > 0 and st["domains"] == 0, out.stats["relaxed"]
    else:  # input dims may not be split: the smooth-activation split
        assert st["act_splits"] > 0 and st["input_splits"] == 0, st
    out = verify(model, str(sat), **opts)
    assert out.verdict.value in ("sat", "unknown", "timeout"), out.detail


@pytest.mark.parametrize("budget", [0.0, 300.0])
def test_forward_pass_through_act_and_product_layers_holds(tmp_path, budget):
    """The forward pass (few free inputs, budget 0: every layer's rows keep the forward bounds)
    through act lines and McCormick's planes: intermediate and final bounds hold on samples and
    stay inside the interval ones; numpy and torch agree."""
    pytest.importorskip("torch")
    from vnncert.options import BoundsOptions

    net = load_network(_mixed_net(tmp_path, 6), threads=1)
    lg = net.layer_graph
    opts = BoundsOptions(forward_max_inputs=64, backward_budget=budget, quadratic_max_inputs=0)
    lo, hi = np.array([[-0.4, -0.2, 0.1, -0.3]]), np.array([[0.2, 0.3, 0.5, 0.1]])
    xs = np.random.default_rng(12).uniform(lo[0], hi[0], (4000, 4))
    vals = lg.evaluate(xs, all_layers=True)
    C = np.eye(3)[None]
    got = []
    for backend in ("numpy", "torch"):
        cr = bounds.prepare(lg, backend, opts)
        assert cr.forward_worthwhile or budget > 0
        res = cr.intermediate(lo, hi, method="crown", output=True)
        iv = cr.intermediate(lo, hi, method="interval", output=True)
        for k, (l, u) in res.affine.items():
            l, u, il, iu = (cr.ops.numpy(v)[0] for v in (l, u, *iv.affine[k]))
            tol = 1e-12 * (1 + np.abs(il) + np.abs(iu))  # (the forward pass's interval column: another product order)
            assert np.all(l >= il - tol) and np.all(u <= iu + tol) and np.all(vals[k] >= l) and np.all(vals[k] <= u), k
        r = bounds.compute(cr, lo, hi, C, "crown", options=opts)
        assert np.all(vals[lg.output].min(axis=0) >= r.lower[0])
        got.append(r.lower)
    np.testing.assert_allclose(got[0], got[1], rtol=1e-9, atol=1e-9)
