"""The piecewise-linear ops added with issue 20 (network/ops: Abs, PRelu, HardSigmoid in relu.py;
Max, Min, Sum, Mean in variadic.py; ReduceMax, ReduceMin in reduce.py): the torch module and the
exact layer-graph lowering agree with ONNX Runtime; verify answers exactly on nets with them."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from helpers import assert_lowerings_agree, box_spec, op_model
from vnncert.network import load_network
from vnncert.network.ops import lowerings

F32 = np.float32
pytest.importorskip("torch")


def _xs(net, n=300, lo=-2.0, hi=2.0, seed=1):
    return np.random.default_rng(seed).uniform(lo, hi, (n, net.n_inputs))


def _net(tmp_path, name, nodes, inits, in_shape, opset=13):
    return load_network(op_model(tmp_path / f"{name}.onnx", nodes, inits, in_shape, opset=opset), threads=1)


def test_abs_prelu_hardsigmoid(tmp_path):
    rng = np.random.default_rng(0)
    inits = {"W": rng.standard_normal((2, 1, 3, 3)).astype(F32), "slope": np.asarray([[[0.1]], [[-0.7]]], F32),
             "s1": np.asarray([0.25], F32)}
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("PRelu", ["c", "slope"], ["p"]),  # one slope per channel (2, 1, 1)
             helper.make_node("Abs", ["p"], ["a"]),
             helper.make_node("PRelu", ["c", "s1"], ["q"]),  # one slope for everything
             helper.make_node("HardSigmoid", ["q"], ["h"], alpha=0.3, beta=0.4),
             helper.make_node("Sub", ["a", "h"], ["y"])]
    net = _net(tmp_path, "pwl", nodes, inits, (1, 1, 4, 4))
    assert_lowerings_agree(net, _xs(net))
    # exact in ReLUs, over the 32 entries of c: each PRelu and Abs one per entry, HardSigmoid two
    assert net.layer_graph.n_relus == 32 + 32 + 32 + 2 * 32
    for op in ("Abs", "PRelu", "HardSigmoid", "Max", "Min", "ReduceMax", "ReduceMin", "Sum", "Mean"):
        assert {"to_torch", "to_affine"} <= set(lowerings(op)), op


@pytest.mark.parametrize("op", ["Max", "Min", "Sum", "Mean"])
def test_variadic_ops_with_broadcasting_and_constants(tmp_path, op):
    """Three operands: a (1, 3) and a (1, 1) tensor made from the input, and a constant (3,) (for Max
    with opset 6's far default -3.4e38)."""
    inits = {"W": np.asarray([[1.0, -1.0, 0.5], [0.3, 0.2, -2.0]], F32), "V": np.asarray([[1.0, 2.0]], F32).T,
             "c": np.asarray([-3.4e38 if op == "Max" else 0.5, 0.0, -0.25], F32) if op in ("Max", "Min") else
             np.asarray([0.5, 0.0, -0.25], F32)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]),          # (1, 3)
             helper.make_node("MatMul", ["x", "V"], ["b0"]),         # (1, 1)
             helper.make_node("Transpose", ["b0"], ["b"]),
             helper.make_node(op, ["a", "b", "c"], ["m"]),          # (1, 3)
             helper.make_node(op, ["m"], ["y"])]                    # one operand: the identity
    net = _net(tmp_path, op, nodes, inits, (1, 2))
    assert_lowerings_agree(net, _xs(net))
    if op in ("Max", "Min"):
        assert net.layer_graph.n_relus == 2 * 3  # two ReLUs per output entry; the far constant adds nothing huge
    else:
        assert net.layer_graph.n_relus == 0


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("opset,axes,keep", [(13, [1], 1), (13, [-1, 1], 0), (13, None, 1), (18, [2], 0), (18, [], 1)])
def test_reduce_max_min(tmp_path, op, opset, axes, keep):
    inits = {}
    ins = ["x"]
    attrs = {"keepdims": keep}
    if axes is not None and opset >= 18:
        if axes:
            inits["axes"] = np.asarray(axes, np.int64)
            ins.append("axes")
    elif axes is not None:
        attrs["axes"] = axes
    nodes = [helper.make_node(op, ins, ["r"], **attrs), helper.make_node("Flatten", ["r"], ["y"], axis=0)]
    net = _net(tmp_path, "red", nodes, inits, (1, 3, 4), opset=opset)
    assert_lowerings_agree(net, _xs(net))
    assert "max" in {L.kind for L in net.layer_graph.layers}  # a max node over each reduced group


@pytest.mark.parametrize("mode", ["exact", "relaxed"])
def test_verify_max_and_abs(tmp_path, mode):
    """y0 = max(x0, x1) - |x0 - x1| / 2 = (x0 + x1) / 2 exactly, on [0, 1]^2: y0 >= 1.01 is unsat,
    y0 >= 0.9 sat."""
    from vnncert.api import verify

    inits = {"D": np.asarray([[1.0], [-1.0]], F32), "P": np.asarray([[1.0, 0.0]], F32).T,
             "Q": np.asarray([[0.0, 1.0]], F32).T, "h": np.asarray(0.5, F32)}
    nodes = [helper.make_node("MatMul", ["x", "P"], ["x0"]), helper.make_node("MatMul", ["x", "Q"], ["x1"]),
             helper.make_node("Max", ["x0", "x1"], ["m"]), helper.make_node("MatMul", ["x", "D"], ["d"]),
             helper.make_node("Abs", ["d"], ["a"]), helper.make_node("Mul", ["a", "h"], ["ah"]),
             helper.make_node("Sub", ["m", "ah"], ["y0"]), helper.make_node("Concat", ["y0", "d"], ["y"], axis=1)]
    model = op_model(tmp_path / "maxabs.onnx", nodes, inits, (1, 2))
    unsat, sat = tmp_path / "u.vnnlib", tmp_path / "s.vnnlib"
    unsat.write_text(box_spec([0.0, 0.0], [1.0, 1.0], [["(>= Y_0 1.01)"]], 2))
    sat.write_text(box_spec([0.0, 0.0], [1.0, 1.0], [["(>= Y_0 0.9)", "(>= Y_1 0.05)"]], 2))
    out = verify(model, str(unsat), mode=mode, timeout=60, threads=1)
    assert out.verdict.value == "unsat" and out.engine == mode, (out.verdict, out.engine, out.detail)
    out = verify(model, str(sat), mode=mode, timeout=60, threads=1)
    assert out.verdict.value == "sat", (out.verdict, out.detail)
    x, _ = out.counterexample
    assert (x[0] + x[1]) / 2 >= 0.9 - 1e-6 and x[0] - x[1] >= 0.05 - 1e-6


@pytest.mark.parametrize("opset", [6, 11, 12])
def test_clip_in_its_opset_variants(tmp_path, opset):
    """Clip-6 (bounds as attributes; the model is raised to opset 13 for the converters) and
    Clip-11/12 (bounds as inputs, here one of them left out)."""
    if opset < 11:
        nodes = [helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.75)]
        inits = {}
    else:
        nodes = [helper.make_node("Clip", ["x", "", "hi"], ["y"])]
        inits = {"hi": np.asarray(0.25, F32)}
    net = load_network(op_model(tmp_path / f"clip{opset}.onnx", nodes, inits, (1, 5), opset=opset,
                                ir_version=3 if opset < 11 else 8), threads=1)
    assert_lowerings_agree(net, _xs(net))
