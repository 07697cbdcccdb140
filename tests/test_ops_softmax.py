"""Softmax, LogSoftmax (opset 11 vs 13 axis semantics) and LayerNormalization (network/ops:
softmax.py, normalization.py): torch lowerings agree with ONNX Runtime; no affine lowering (not
piecewise linear), so the MILP engines are kept out naming the op; the relaxed engine bounds a
Softmax classifier through auto_LiRPA."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from helpers import assert_lowerings_agree, box_spec, op_model
from vnncert.network import load_network
from vnncert.network.ops import lowerings

F32 = np.float32
pytest.importorskip("torch")


def _check(tmp_path, name, nodes, inits, in_shape, opset):
    net = load_network(op_model(tmp_path / f"{name}.onnx", nodes, inits, in_shape, opset=opset), threads=1)
    xs = np.random.default_rng(1).uniform(-3, 3, (100, net.n_inputs))
    assert_lowerings_agree(net, xs, layers=False)
    return net


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset,axis", [(11, None), (11, 1), (11, 2), (11, -1), (13, None), (13, 1), (13, 0)])
def test_softmax_axis_semantics(tmp_path, op, opset, axis):
    """Opset 11 flattens at axis (default 1) and normalises each row; 13 normalises along the axis
    (default -1); on a (1, 3, 4) tensor the two differ for every axis but the last."""
    attrs = {} if axis is None else {"axis": axis}
    _check(tmp_path, f"{op}{opset}", [helper.make_node(op, ["x"], ["y"], **attrs)], {}, (1, 3, 4), opset)


def test_softmax_of_an_opset_9_model(tmp_path):
    """The model is raised to opset 13 for the converters: Softmax keeps the opset-9 meaning."""
    _check(tmp_path, "sm9", [helper.make_node("Softmax", ["x"], ["y"])], {}, (1, 3, 4), 9)


@pytest.mark.parametrize("axis,bias", [(-1, True), (1, False), (2, True)])
def test_layer_normalization(tmp_path, axis, bias):
    rng = np.random.default_rng(2)
    shape = (1, 3, 4)
    norm_shape = shape[axis:] if axis >= 0 else shape[axis:]
    inits = {"g": rng.standard_normal(norm_shape).astype(F32)}
    ins = ["x", "g"]
    if bias:
        inits["b"] = rng.standard_normal(norm_shape).astype(F32)
        ins.append("b")
    _check(tmp_path, "ln", [helper.make_node("LayerNormalization", ins, ["y"], axis=axis, epsilon=1e-3)], inits, shape, 17)
    assert lowerings("LayerNormalization") == ["evaluate", "to_torch"]
    assert "to_affine" not in lowerings("Softmax")


def test_verify_a_softmax_classifier(tmp_path):
    """y = softmax(W x) on [-0.1, 0.1]^2 with W = [[4, 0], [0, 4]]: probabilities sum to 1 and
    stay within sigmoid(+-0.8) of each other, so y0 >= 0.75 is unsat (relaxed: auto_LiRPA), the
    exact mode answers unknown naming Softmax (no MILP encoding), and y0 >= 0.55 is sat."""
    from vnncert.api import verify

    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Softmax", ["z"], ["y"], axis=-1)]
    model = op_model(tmp_path / "sm.onnx", nodes, {"W": np.eye(2, dtype=F32) * 4}, (1, 2))
    unsat, sat = tmp_path / "u.vnnlib", tmp_path / "s.vnnlib"
    unsat.write_text(box_spec([-0.1, -0.1], [0.1, 0.1], [["(>= Y_0 0.75)"]], 2))
    sat.write_text(box_spec([-0.1, -0.1], [0.1, 0.1], [["(>= Y_0 0.55)"]], 2))
    out = verify(model, str(unsat), mode="relaxed", timeout=60, threads=1)
    assert out.verdict.value == "unsat", (out.verdict, out.detail)
    out = verify(model, str(unsat), mode="exact", timeout=60, threads=1)
    assert out.verdict.value == "unknown" and "Softmax" in out.detail, (out.verdict, out.detail)
    assert "no MILP encoding (--mode auto / relaxed can)" in out.detail, out.detail
    out = verify(model, str(sat), mode="auto", timeout=60, threads=1)
    assert out.verdict.value == "sat", (out.verdict, out.detail)
