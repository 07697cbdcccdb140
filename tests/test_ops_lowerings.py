"""The op registry's lowerings (network/ops): each op's own evaluation agrees with onnx's reference
evaluator, the registry lists what each op has, and torch Steps that say `affine` are affine."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from vnncert.network.graph import Node
from vnncert.network.ops import all_handlers, constant_only_ops, lowerings, operators, supported_ops
from vnncert.network.ops.base import reference_evaluate

F32 = np.float32


def _r(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


def _i64(*v):
    return np.asarray(v, dtype=np.int64)


# (op, inputs, attrs, opset): each runs through the handler's evaluate and the reference evaluator
CASES = [
    ("Relu", [_r(3, 4)], {}, 13),
    ("Neg", [_r(5)], {}, 13),
    ("Identity", [_i64(1, 2, 3)], {}, 13),
    ("Add", [_r(2, 3), _r(3, seed=1)], {}, 13),
    ("Sub", [_i64(7, 8), _i64(1, 9)], {}, 13),
    ("Mul", [_r(2, 1, 3), _r(4, 1, seed=2)], {}, 13),
    ("Div", [_r(2, 3), _r(2, 3, seed=3)], {}, 13),
    ("Div", [_i64(7, -7, 9), _i64(2, 2, -4)], {}, 13),  # integers: the reference's rounding
    ("MatMul", [_r(2, 3, 4), _r(4, 5, seed=4)], {}, 13),
    ("Reshape", [_r(2, 3, 4), _i64(0, -1)], {}, 13),
    ("Reshape", [_r(2, 3, 4), _i64(4, 0, 2)], {"allowzero": 0}, 14),
    ("Flatten", [_r(2, 3, 4)], {"axis": -1}, 13),
    ("Flatten", [_r(2, 3, 4)], {"axis": 0}, 13),
    ("Squeeze", [_r(1, 3, 1, 2)], {}, 13),
    ("Squeeze", [_r(1, 3, 1, 2), _i64(-2)], {}, 13),
    ("Squeeze", [_r(1, 3, 1, 2)], {"axes": [0]}, 11),
    ("Unsqueeze", [_i64(5, 6), _i64(0, -1)], {}, 13),
    ("Unsqueeze", [_r(3, 2)], {"axes": [1]}, 11),
    ("Transpose", [_r(2, 3, 4)], {"perm": [2, 0, 1]}, 13),
    ("Transpose", [_r(2, 3, 4)], {}, 13),
    ("Concat", [_i64(1, 2), _i64(3)], {"axis": 0}, 13),
    ("Concat", [_r(2, 3), _r(2, 1, seed=5)], {"axis": -1}, 13),
    ("Split", [_r(6, 2), _i64(1, 5)], {"axis": 0}, 13, 2),
    ("Split", [_r(2, 7)], {"axis": -1}, 18, 3),  # uneven: ceil-sized pieces, the last smaller
    ("Split", [_r(4, 2)], {"axis": 0, "split": [3, 1]}, 11, 2),
    ("Slice", [_r(5, 6), _i64(1, -4), _i64(100, -1)], {}, 13),
    ("Slice", [_r(5, 6), _i64(-1), _i64(-100), _i64(1), _i64(-2)], {}, 13),  # negative step to the start
    ("Slice", [_r(5, 6), _i64(3, 0), _i64(0, 6), _i64(0, -1), _i64(-1, 2)], {}, 13),
    ("Slice", [_i64(4, 5, 6, 7), _i64(1), _i64(3)], {}, 13),
    ("Gather", [_i64(4, 5, 6, 7), np.asarray(-1, np.int64)], {"axis": 0}, 13),
    ("Gather", [_r(3, 4), _i64(0, -1, 2)], {"axis": 1}, 13),
    ("Gather", [_r(3, 4), np.asarray([[2, 0], [1, 1]], np.int64)], {"axis": 0}, 13),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_own_evaluation_agrees_with_the_reference(case):
    op, values, attrs, opset = case[:4]
    n_out = case[4] if len(case) > 4 else 1
    h = all_handlers()[op]
    assert h.supports("evaluate") and type(h).evaluate is not type(h).__mro__[-2].evaluate, op
    node = Node(op, "n", [f"i{k}" for k in range(len(values))], [f"o{k}" for k in range(n_out)], dict(attrs))
    got = h.evaluate(node, values, opset)
    want = reference_evaluate(node, values, opset)
    assert len(got) == len(want) == n_out
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (op, g.dtype, w.dtype, g.shape, w.shape)
        np.testing.assert_array_equal(g, w)


def test_the_registry_imports_without_torch_or_scipy():
    """Every op file registers on import, and none imports torch or scipy for it (start-up time)."""
    import subprocess
    import sys

    code = ("import sys, vnncert.network.ops as ops, vnncert.network.layers, vnncert.network.graph; "
            "print(len(ops.all_handlers()), [m for m in ('torch', 'scipy', 'onnx') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert int(out[0]) == len(all_handlers()) and out[1].strip() == "[]", out


def test_the_registry_lists_each_ops_lowerings():
    assert lowerings("Relu") == ["evaluate", "to_torch", "to_affine", "relaxation"]
    assert lowerings("MaxPool") == ["evaluate", "to_torch", "to_affine", "relaxation"]
    # folded by the reference evaluator; an act layer in the layer graph, but no MILP encoding
    assert lowerings("Sigmoid") == ["to_torch", "to_affine", "relaxation"] and "Sigmoid" not in supported_ops("to_milp")
    assert lowerings("Neg") == ["evaluate", "to_torch", "to_affine"]
    assert lowerings("NoSuchOp") == []
    assert operators() == sorted(set(supported_ops("to_torch")) | set(supported_ops("to_affine")) | set(constant_only_ops()))
    # every op the affine lowering handles is also one the torch converter handles
    assert set(supported_ops("to_affine")) <= set(supported_ops("to_torch"))


def _steps_net(tmp_path):
    """Conv, BatchNormalization (not folded: a residual reads the conv), AveragePool, MaxPool,
    Transpose, Slice, Concat, ReduceMean, Reshape, Gemm, Sub/Div by constants, Relu, Neg."""
    from onnx import helper

    from helpers import graph_onnx
    from vnncert.network import load_network

    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(F32)  # noqa: E731
    inits = {"m": f(1, 2, 1, 1), "s": np.abs(f(1, 2, 1, 1)) + 1, "W": f(4, 2, 3, 3), "B": f(4),
             "g": np.abs(f(4)) + 0.5, "be": f(4), "mu": f(4), "var": np.abs(f(4)) + 0.1,
             "st": _i64(1), "en": _i64(3), "ax": _i64(3), "shape": _i64(1, -1), "W2": f(3, 30), "b2": f(3)}
    nodes = [helper.make_node("Sub", ["x", "m"], ["a0"]), helper.make_node("Div", ["a0", "s"], ["a1"]),
             helper.make_node("Conv", ["a1", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"]),
             helper.make_node("Add", ["bn", "c"], ["res"]),
             helper.make_node("Relu", ["res"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("MaxPool", ["ap"], ["mp"], kernel_shape=[2, 2], strides=[1, 1]),
             helper.make_node("Transpose", ["mp"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("Slice", ["t", "st", "en", "ax"], ["sl"]),
             helper.make_node("Concat", ["sl", "t"], ["cat"], axis=3),
             helper.make_node("ReduceMean", ["cat"], ["red"], axes=[1], keepdims=1),
             helper.make_node("Concat", ["red", "cat"], ["cat2"], axis=1),
             helper.make_node("Reshape", ["cat2", "shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "W2", "b2"], ["z"], transB=1),
             helper.make_node("Neg", ["z"], ["y"])]
    return load_network(graph_onnx(tmp_path / "steps.onnx", nodes, inits, in_shape=(1, 2, 6, 6), out_shape=(1, 3),
                                   check=True), threads=1)


def test_steps_that_say_affine_are_affine(tmp_path):
    """Every single-input Step that sets `affine` maps x to A x + c (checked on random points), and
    `relu` marks exactly the relu steps: what the engines read instead of step class names."""
    torch = pytest.importorskip("torch")
    net = _steps_net(tmp_path)
    xs = np.random.default_rng(1).uniform(-1, 1, (5, net.n_inputs))
    np.testing.assert_allclose(net.torch_module()(torch.as_tensor(xs, dtype=torch.float32)).detach().numpy(),
                               net.evaluate(xs), rtol=1e-4, atol=1e-4)
    m = copy.deepcopy(net.torch_module()).double()
    env = {m.input_name: torch.as_tensor(xs).reshape((-1,) + m.input_rest)}
    seen, relus = set(), 0
    for step in m.steps:
        ins = [env[n] for n in step.in_names]
        with torch.no_grad():
            out = step(*ins)
        for n, o in zip(step.out_names, [out] if len(step.out_names) == 1 else list(out)):
            env[n] = o
        relus += step.relu
        assert step.relu == (type(step).__name__ == "Unary" and step.op == "Relu")
        if step.affine and len(ins) == 1 and len(step.out_names) == 1:
            seen.add(type(step).__name__)
            a, b = ins[0][:1], ins[0][1:2]
            with torch.no_grad():
                np.testing.assert_allclose(step(0.3 * a + 0.7 * b).numpy(), (0.3 * step(a) + 0.7 * step(b)).numpy(), atol=1e-9)
        elif type(step).__name__ in ("Unary", "MaxPool") and not step.affine:
            a = ins[0][:1]  # relu and max are not affine: 2 relu(-x) != -2 relu(x) somewhere
            with torch.no_grad():
                assert not torch.allclose(step(-2 * a), -2 * step(a))
    assert relus == 1
    assert {"ConstOp", "Conv", "Affine", "AvgPool", "Transpose", "Slice", "Reduce", "Reshape", "Linear"} <= seen, seen


def test_the_reference_evaluator_runs_the_ops_version_of_the_models_opset():
    """Folding once ran every op in its newest version: a Squeeze-11 with axes=[0] squeezed every
    unit axis, an Unsqueeze-11 could not fold, and a ConstantOfShape's tensor value was refused."""
    x = np.zeros((1, 3, 1, 2), F32)
    assert reference_evaluate(Node("Squeeze", "s", ["x"], ["y"], {"axes": [0]}), [x], 11)[0].shape == (3, 1, 2)
    assert reference_evaluate(Node("Unsqueeze", "u", ["x"], ["y"], {"axes": [1]}), [x], 11)[0].shape == (1, 1, 3, 1, 2)
    got = reference_evaluate(Node("ConstantOfShape", "c", ["s"], ["y"], {"value": np.asarray([1.5], F32)}), [_i64(2, 3)], 13)[0]
    assert got.dtype == F32 and got.shape == (2, 3) and np.all(got == 1.5)


def test_shape_arithmetic_of_an_opset_11_model_folds_as_onnxruntime_runs_it(tmp_path):
    """Shape -> Gather -> Unsqueeze(axes attribute) -> Concat -> Reshape, then Squeeze(axes
    attribute) and ConstantOfShape: folded, lowered and converted as ONNX Runtime computes them."""
    from onnx import helper, numpy_helper

    from helpers import graph_onnx
    from vnncert.network import load_network

    inits = {"zero": np.asarray(0, np.int64), "minus1": _i64(-1), "W": _r(6, 2), "shp": _i64(2)}
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),            # (1, 6)
             helper.make_node("ConstantOfShape", ["shp"], ["ones"], value=numpy_helper.from_array(np.asarray([0.5], F32))),
             helper.make_node("MatMul", ["flat", "W"], ["h"]),                  # (1, 2)
             helper.make_node("Mul", ["h", "ones"], ["hm"]),
             helper.make_node("Unsqueeze", ["hm"], ["u"], axes=[0]),            # (1, 1, 2)
             helper.make_node("Squeeze", ["u"], ["y"], axes=[0])]               # (1, 2)
    net = load_network(graph_onnx(tmp_path / "shape11.onnx", nodes, inits, in_shape=(1, 2, 3), out_shape=(1, 2),
                                  opset=11, ir_version=6, check=True), threads=1)
    xs = np.random.default_rng(0).uniform(-1, 1, (6, net.n_inputs))
    want = np.stack([net.replay(x) for x in xs])
    np.testing.assert_allclose(net.layer_graph.evaluate(xs), want, rtol=1e-5, atol=1e-6)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(net.torch_module()(torch.as_tensor(xs, dtype=torch.float32)).detach().numpy(), want,
                               rtol=1e-5, atol=1e-6)
