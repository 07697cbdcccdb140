"""Shape arithmetic and selections (network/ops: constant.py, cast.py, broadcast.py, where.py):
shape-only subgraphs fold to constants for a fixed input shape (symbolic dims as 1), in the opset
variants exporters write; Expand, Tile, Where (constant condition) and Cast lower exactly and
agree with ONNX Runtime; uses that are not continuous are refused naming the op."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import assert_lowerings_agree, op_model
from vnncert.errors import UnsupportedOperator
from vnncert.network import load_network
from vnncert.network.ops import constant_only_ops, lowerings, operators, supported_ops

F32, I64 = np.float32, np.int64
pytest.importorskip("torch")


def _xs(net, n=200, seed=1):
    return np.random.default_rng(seed).uniform(-2, 2, (n, net.n_inputs))


def _load(tmp_path, name, nodes, inits, in_shape, opset=13, batch=None):
    path = op_model(tmp_path / f"{name}.onnx", nodes, inits, in_shape, opset=opset)
    return load_network(path, threads=1)


def test_constant_only_ops_are_listed_without_converters():
    ops = constant_only_ops()
    assert {"Shape", "ConstantOfShape", "Constant", "Equal", "Less", "Greater", "Not", "And", "Floor", "Ceil",
            "Range", "Size"} <= set(ops)
    assert set(ops) <= set(operators())
    assert not set(ops) & (set(supported_ops("to_torch")) | set(supported_ops("to_affine")))
    for op in ("Cast", "Expand", "Tile", "Where"):
        assert {"to_torch", "to_affine"} <= set(lowerings(op)), op


@pytest.mark.parametrize("opset", [11, 13, 16])
def test_shape_subgraph_folds(tmp_path, opset):
    """The exporters' pattern: Shape -> Gather -> Unsqueeze -> Concat -> Reshape; ConstantOfShape
    of a computed shape; Range, Cast, Equal and Where on shapes; Floor of a scaled size. With a
    symbolic batch dim (counted as 1) every one of them folds, and the rest lowers exactly."""
    unsq = (lambda i, o: helper.make_node("Unsqueeze", [i], [o], axes=[0])) if opset < 13 else \
        (lambda i, o: helper.make_node("Unsqueeze", [i, "ax0"], [o]))
    inits = {"zero": np.asarray(0, I64), "one": np.asarray(1, I64), "minus1": np.asarray([-1], I64),
             "W": np.random.default_rng(0).standard_normal((6, 2)).astype(F32), "ax0": np.asarray([0], I64),
             "half": np.asarray(0.5, F32), "two": np.asarray([2], I64), "lim": np.asarray(3, I64)}
    nodes = [helper.make_node("Shape", ["x"], ["s"]),                               # [N, 2, 3]
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             unsq("n", "n1"),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),               # (1, 6)
             helper.make_node("Gather", ["s", "one"], ["c"], axis=0),               # 2
             helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["cf", "half"], ["cm"]),
             helper.make_node("Floor", ["cm"], ["cfl"]),                            # 1.0
             helper.make_node("Cast", ["cfl"], ["ci"], to=TensorProto.INT64),
             helper.make_node("Equal", ["ci", "one"], ["eq"]),                      # True
             helper.make_node("Where", ["eq", "two", "lim"], ["k"]),                # [2]
             helper.make_node("ConstantOfShape", ["k"], ["ones"], value=numpy_helper.from_array(np.asarray([0.5], F32))),
             helper.make_node("Range", ["zero", "lim", "one"], ["r"]),              # [0, 1, 2]
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["flat", "W"], ["h"]),                      # (1, 2)
             helper.make_node("Mul", ["h", "ones"], ["hm"]),
             helper.make_node("ReduceSum", ["rf"], ["rs"], keepdims=1),             # [3.0]
             helper.make_node("Add", ["hm", "rs"], ["y"])]
    path = tmp_path / "shape.onnx"
    from onnx import checker, save

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    m = helper.make_model(helper.make_graph(nodes, "g", [inp], [out], [numpy_helper.from_array(v, k) for k, v in inits.items()]),
                          opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    checker.check_model(m)
    save(m, str(path))
    net = load_network(str(path), threads=1)
    assert net.graph.op_types == ["Add", "MatMul", "Mul", "Reshape"], net.graph.op_types
    assert {"Shape", "ConstantOfShape", "Floor", "Equal", "Where", "Range", "Cast"} <= set(net.graph.folded)
    xs = _xs(net)
    want = np.stack([net.replay(x) for x in xs])
    np.testing.assert_allclose(net.layer_graph.evaluate(xs), want, rtol=1e-5, atol=1e-5)
    assert_lowerings_agree(net, xs)


def test_expand_tile_where_cast(tmp_path):
    """Expand (two-way broadcast), Tile, Where with a constant mask (both sides variables, one side
    a constant), Cast to float32 and CastLike of a float constant: exact index maps."""
    rng = np.random.default_rng(2)
    mask = rng.uniform(size=(2, 3, 4)) < 0.5
    inits = {"shape": np.asarray([2, 1, 4], I64), "reps": np.asarray([1, 2, 1], I64), "mask": mask,
             "c": rng.standard_normal((3, 4)).astype(F32), "like": np.zeros(1, F32)}
    nodes = [helper.make_node("Expand", ["x", "shape"], ["e"]),       # x (1, 3, 1) -> (2, 3, 4)
             helper.make_node("Tile", ["x", "reps"], ["t"]),          # (1, 6, 1)
             helper.make_node("Identity", ["t"], ["t2"]),
             helper.make_node("Where", ["mask", "e", "c"], ["w1"]),   # a variable and a constant
             helper.make_node("Neg", ["e"], ["ne"]),
             helper.make_node("Where", ["mask", "ne", "w1"], ["w2"]),  # two variables
             helper.make_node("Cast", ["w2"], ["w3"], to=TensorProto.FLOAT),
             helper.make_node("CastLike", ["w3", "like"], ["w4"]),
             helper.make_node("Flatten", ["w4"], ["f1"], axis=0),
             helper.make_node("Flatten", ["t2"], ["f2"], axis=0),
             helper.make_node("Concat", ["f1", "f2"], ["y"], axis=1)]
    net = _load(tmp_path, "sel", nodes, inits, (1, 3, 1), opset=15)
    assert net.layer_graph.n_relus == 0
    assert_lowerings_agree(net, _xs(net))


def test_tile_of_a_constant_folds_with_its_own_evaluation():
    from vnncert.network.graph import Node
    from vnncert.network.ops import handler
    from vnncert.network.ops.base import reference_evaluate

    x, reps = np.arange(6, dtype=F32).reshape(2, 3), np.asarray([2, 3], I64)
    node = Node("Tile", "t", ["x", "r"], ["y"])
    got = handler("Tile", "evaluate").evaluate(node, [x, reps], 13)[0]
    want = reference_evaluate(node, [x, reps], 13)[0]
    assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("case", ["floor", "compare-where", "cast-int", "cast-half", "expand-variable-shape"])
def test_uses_that_are_not_continuous_are_refused_by_name(tmp_path, case):
    inits = {"zero": np.asarray(0.0, F32), "W": np.eye(2, dtype=F32)}
    tail = {
        "floor": [helper.make_node("Floor", ["h"], ["y"], name="f")],
        "compare-where": [helper.make_node("Greater", ["h", "zero"], ["g"], name="g"),
                          helper.make_node("Where", ["g", "h", "zero"], ["y"], name="w")],
        "cast-int": [helper.make_node("Cast", ["h"], ["i"], to=TensorProto.INT32, name="c"),
                     helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT, name="c2")],
        "cast-half": [helper.make_node("Cast", ["h"], ["i"], to=TensorProto.FLOAT16, name="c"),
                      helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT, name="c2")],
        "expand-variable-shape": [helper.make_node("Mul", ["h", "zero"], ["h0"]),   # a shape [1] computed from x
                                  helper.make_node("Add", ["h0", "onef"], ["h1"]),
                                  helper.make_node("ReduceMin", ["h1"], ["a"], keepdims=1),
                                  helper.make_node("Reshape", ["a", "m1"], ["af"]),
                                  helper.make_node("Cast", ["af"], ["shp"], to=TensorProto.INT64, name="c"),
                                  helper.make_node("Expand", ["h", "shp"], ["y"], name="e")],
    }[case]
    if case == "expand-variable-shape":
        inits["m1"], inits["onef"] = np.asarray([-1], I64), np.asarray(1.0, F32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"])] + tail
    path = op_model(tmp_path / f"{case}.onnx", nodes, inits, (1, 2), out_shape=(1, 2))
    net = load_network(path, threads=1)
    where = {"floor": "Floor", "compare-where": "Greater", "cast-int": "Cast", "cast-half": "Cast",
             "expand-variable-shape": "Cast"}[case]
    with pytest.raises(UnsupportedOperator, match=where):
        _ = net.layer_graph
    with pytest.raises(UnsupportedOperator, match=where):
        net.torch_module()
