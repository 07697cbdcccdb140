"""Clip (network/ops/clip.py): evaluation, torch lowering and layer graph agree with ONNX Runtime;
verify answers on a tiny net with Clip in exact and relaxed modes."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from helpers import box_spec, graph_onnx
from vnncert.network import load_network
from vnncert.network.graph import Node
from vnncert.network.ops import handler, lowerings, operators
from vnncert.network.ops.base import reference_evaluate

F32 = np.float32


def _clip_net(tmp_path, name, lo, hi, opset=13):
    """y = clip(W x + b, lo, hi) @ V, 3 inputs, 2 outputs; lo / hi None: that input left out."""
    rng = np.random.default_rng(0)
    inits = {"W": rng.standard_normal((3, 4)).astype(F32), "b": rng.standard_normal(4).astype(F32) * 0.3,
             "V": rng.standard_normal((4, 2)).astype(F32)}
    ins = ["z"]
    for key, v in (("lo", lo), ("hi", hi)):
        if v is not None:
            inits[key] = np.asarray(v, F32)
        ins.append(key if v is not None else "")
    while ins and not ins[-1]:
        ins.pop()
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["z"]),
             helper.make_node("Clip", ins, ["c"]), helper.make_node("MatMul", ["c", "V"], ["y"])]
    return graph_onnx(tmp_path / f"{name}.onnx", nodes, inits, in_shape=(1, 3), out_shape=(1, 2), opset=opset, check=True)


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.75), (None, 0.25), (-0.25, None), (None, None), (0.5, -0.5), (0.3, 0.3)],
                         ids=["both", "max-only", "min-only", "neither", "min-above-max", "equal"])
def test_clip_agrees_with_onnxruntime(tmp_path, lo, hi):
    torch = pytest.importorskip("torch")
    net = load_network(_clip_net(tmp_path, "clip", lo, hi), threads=1)
    xs = np.random.default_rng(1).uniform(-2, 2, (200, 3)).astype(F32).astype(np.float64)
    want = net.evaluate(xs).astype(np.float64)  # ONNX Runtime
    np.testing.assert_allclose(net.layer_graph.evaluate(xs), want, rtol=1e-5, atol=1e-5)
    got = net.torch_module()(torch.as_tensor(xs, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert net.layer_graph.n_relus == 4 * ((lo is not None) + (hi is not None))


@pytest.mark.parametrize("opset,attrs,extra", [
    (13, {}, [np.asarray(-0.5, F32), np.asarray(0.5, F32)]),
    (13, {}, [None, np.asarray(0.0, F32)]),
    (13, {}, [np.asarray(1.0, F32), np.asarray(-1.0, F32)]),
    (10, {"min": -0.25, "max": 0.125}, []),  # opset 6-10: bounds as attributes
    (10, {"max": 0.0}, []),
])
def test_clip_evaluation_is_the_reference(opset, attrs, extra):
    x = np.random.default_rng(2).uniform(-2, 2, (3, 5)).astype(F32)
    values = [x] + extra
    node = Node("Clip", "c", ["x"] + [f"b{i}" if v is not None else "" for i, v in enumerate(extra)], ["y"], attrs)
    got = handler("Clip", "evaluate").evaluate(node, values, opset)[0]
    want = reference_evaluate(node, values, opset)[0]
    assert got.dtype == want.dtype == F32
    np.testing.assert_array_equal(got, want)


def test_clip_of_a_constant_folds_and_old_opsets_load(tmp_path):
    """A Clip on weights folds away; an opset-10 Clip (attributes) converts and lowers."""
    W = np.asarray([[2.0, -3.0], [0.5, 1.0]], F32)
    nodes = [helper.make_node("Clip", ["W"], ["Wc"], min=-1.0, max=1.0), helper.make_node("MatMul", ["x", "Wc"], ["y0"]),
             helper.make_node("Clip", ["y0"], ["y"], min=-0.5, max=0.5)]
    net = load_network(graph_onnx(tmp_path / "old.onnx", nodes, {"W": W}, in_shape=(1, 2), out_shape=(1, 2), opset=10,
                                  ir_version=5, check=True), threads=1)
    assert [n.op_type for n in net.graph.nodes] == ["MatMul", "Clip"] and "Clip" in net.graph.folded
    xs = np.random.default_rng(3).uniform(-1, 1, (50, 2))
    np.testing.assert_allclose(net.layer_graph.evaluate(xs), net.evaluate(xs), atol=1e-6)


def test_clip_is_in_the_registry():
    assert "Clip" in operators()
    assert lowerings("Clip") == ["evaluate", "to_torch", "to_affine"]


def test_clip_with_a_variable_bound_is_an_unsupported_use(tmp_path):
    """A bound computed from the input (here a scalar sum) runs in ONNX Runtime; both converters
    refuse that use of Clip by name, which the router treats as the op being unsupported."""
    from vnncert.errors import UnsupportedOperator

    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Clip", ["x", "s"], ["y"], name="clip")]
    net = load_network(graph_onnx(tmp_path / "var.onnx", nodes, {}, in_shape=(1, 2), out_shape=(1, 2), check=True),
                       threads=1)
    with pytest.raises(UnsupportedOperator, match=r"Clip \(node 'clip'\) by the MILP encoder: a variable min"):
        _ = net.layer_graph
    pytest.importorskip("torch")
    with pytest.raises(UnsupportedOperator, match=r"Clip \(node 'clip'\) by the torch converter: a variable min"):
        net.torch_module()


@pytest.mark.parametrize("mode", ["exact", "relaxed"])
def test_verify_a_net_with_clip(tmp_path, mode):
    """y0 = clip(x0 + x1, -1, 0.5), y1 = x0 - x1 on [0, 1]^2: y0 >= 0.6 is unsat only because of the
    clip (x0 + x1 reaches 2), y0 >= 0.4 is sat."""
    from vnncert.api import verify

    nodes = [helper.make_node("MatMul", ["x", "S"], ["s"]), helper.make_node("Clip", ["s", "lo", "hi"], ["c"]),
             helper.make_node("MatMul", ["x", "D"], ["d"]), helper.make_node("Concat", ["c", "d"], ["y"], axis=1)]
    inits = {"S": np.ones((2, 1), F32), "D": np.asarray([[1.0], [-1.0]], F32), "lo": np.asarray(-1.0, F32),
             "hi": np.asarray(0.5, F32)}
    model = graph_onnx(tmp_path / "clipnet.onnx", nodes, inits, in_shape=(1, 2), out_shape=(1, 2), check=True)
    unsat, sat = tmp_path / "unsat.vnnlib", tmp_path / "sat.vnnlib"
    unsat.write_text(box_spec([0.0, 0.0], [1.0, 1.0], [["(>= Y_0 0.6)"]], 2))
    sat.write_text(box_spec([0.0, 0.0], [1.0, 1.0], [["(>= Y_0 0.4)", "(>= Y_1 0.2)"]], 2))
    out = verify(model, str(unsat), mode=mode, timeout=60, threads=1)
    assert out.verdict.value == "unsat" and out.engine == mode, (out.verdict, out.engine, out.detail)
    out = verify(model, str(sat), mode=mode, timeout=60, threads=1)
    assert out.verdict.value == "sat", (out.verdict, out.detail)
    x, y = out.counterexample
    assert min(x[0] + x[1], 0.5) >= 0.4 and x[0] - x[1] >= 0.2
