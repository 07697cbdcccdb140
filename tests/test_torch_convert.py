"""ONNX -> torch conversion: agreement with ONNX Runtime, the flat-batch contract, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from vnncert.errors import UnsupportedOperator  # noqa: E402
from vnncert.network import Network  # noqa: E402
from vnncert.network.ops import supported_ops  # noqa: E402


def _net(nodes, inits, in_shape, out_shape, opset=13, name="synthetic.onnx"):
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    g = helper.make_graph(nodes, "g", [inp], [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return Network(name, m.SerializeToString(), threads=1)


def _max_diff(net, n=32, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    xs = (rng.uniform(-1, 1, (n, net.n_inputs)) * scale).astype(np.float32)
    ref = np.stack([net.replay(x) for x in xs]).astype(np.float64)
    with torch.no_grad():
        got = net.torch_module()(torch.as_tensor(xs)).numpy().astype(np.float64)
    assert got.shape == (n, net.n_outputs)
    return float(np.abs(got - ref).max()), float(np.abs(ref).max())


def _f(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_supported_ops_cover_the_issue_list():
    ops = set(supported_ops())
    for op in ["Gemm", "MatMul", "Conv", "Flatten", "Reshape", "Sub", "Div", "Mul", "Add", "Relu",
               "BatchNormalization", "AveragePool", "MaxPool", "Concat", "Identity", "Dropout", "Slice",
               "Split", "Gather", "ReduceSum", "Sigmoid", "Pow"]:
        assert op in ops
    assert supported_ops() == sorted(supported_ops())


def test_weight_first_matmul_on_rank1_input():
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("MatMul", ["W1", "x"], ["h"]), helper.make_node("Add", ["h", "b1"], ["z"]),
             helper.make_node("Relu", ["z"], ["r"]), helper.make_node("MatMul", ["W2", "r"], ["y"])]
    net = _net(nodes, {"W1": _f(rng, 7, 3), "b1": _f(rng, 7), "W2": _f(rng, 2, 7)}, [3], [2])
    d, _ = _max_diff(net)
    assert d < 1e-5
    m = net.torch_module()
    assert any(isinstance(p, torch.nn.Parameter) for p in m.parameters())


def test_conv_bn_pool_normalisation_chain():
    rng = np.random.default_rng(2)
    C = 4
    inits = {"mean": np.float32([0.1, -0.2]).reshape(1, 2, 1, 1), "std": np.float32([0.5, 2.0]).reshape(1, 2, 1, 1),
             "W": _f(rng, C, 2, 3, 3), "B": _f(rng, C), "g": np.abs(_f(rng, C)) + 0.5, "be": _f(rng, C),
             "mu": _f(rng, C), "var": np.abs(_f(rng, C)) + 0.1, "W2": _f(rng, 3, C * 2 * 2), "b2": _f(rng, 3)}
    nodes = [helper.make_node("Sub", ["x", "mean"], ["s"]), helper.make_node("Div", ["s", "std"], ["n"]),
             helper.make_node("Conv", ["n", "W", "B"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"], epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Dropout", ["a"], ["d"]),
             helper.make_node("Flatten", ["d"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "W2", "b2"], ["y"], transB=1)]
    net = _net(nodes, inits, ["N", 2, 8, 8], ["N", 3])
    d, scale = _max_diff(net)
    assert d < 1e-4 * max(1.0, scale)


def test_residual_concat_split_slice_gather_reduce_sigmoid_pow():
    rng = np.random.default_rng(3)
    inits = {"W": _f(rng, 6, 6), "shape": np.int64([1, 2, 6]), "starts": np.int64([1]), "ends": np.int64([5]),
             "axes": np.int64([2]), "idx": np.int64(-1), "three": np.float32(3.0), "rs_axes": np.int64([2]),
             "W2": _f(rng, 6, 2)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),            # (1, 12) @ ... needs rank match: x is (1, 6)
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Add", ["r", "x"], ["res"]),              # residual
             helper.make_node("Concat", ["res", "x"], ["cat"], axis=1),  # (1, 12)
             helper.make_node("Reshape", ["cat", "shape"], ["rs"]),      # (1, 2, 6)
             helper.make_node("Split", ["rs"], ["s0", "s1"], axis=1),    # 2 x (1, 1, 6) (opset 13: equal split)
             helper.make_node("Slice", ["s0", "starts", "ends", "axes"], ["sl"]),  # (1, 1, 4)
             helper.make_node("Gather", ["s1", "idx"], ["ga"], axis=2),  # (1, 1)
             helper.make_node("Sigmoid", ["sl"], ["sg"]),
             helper.make_node("Pow", ["sg", "three"], ["pw"]),
             helper.make_node("ReduceSum", ["pw", "rs_axes"], ["red"], keepdims=0),  # (1, 1)
             helper.make_node("Mul", ["red", "ga"], ["y"])]
    net = _net(nodes, inits, [1, 6], [1, 1])
    d, scale = _max_diff(net)
    assert d < 1e-5 * max(1.0, scale)


def test_unbatched_2d_input_is_taken_flat():
    """A [3, 4] input (no batch axis, like pensieve_parallel's [12, 8]) is fed as (B, 12)."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["g"], transB=1), helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("ReduceSum", ["r"], ["y"], axes=[0], keepdims=1)]
    net = _net(nodes, {"W": _f(rng, 5, 4), "b": _f(rng, 5)}, [3, 4], [1, 5], opset=11)
    assert net.n_inputs == 12
    d, scale = _max_diff(net)
    assert d < 1e-5 * max(1.0, scale)


def test_module_accepts_shaped_input_and_double():
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Flatten", ["c"], ["y"])]
    net = _net(nodes, {"W": _f(rng, 2, 1, 2, 2)}, [1, 1, 3, 3], [1, 8])
    m = net.torch_module()
    xs = torch.rand(4, 9)
    a = m(xs)
    b = m(xs.reshape(4, 1, 3, 3))
    assert torch.allclose(a, b)
    md = m.double()
    assert md(xs.double()).dtype == torch.float64
    m.float()


def test_unsupported_operator_is_named():
    nodes = [helper.make_node("Atan", ["x"], ["y"])]
    net = _net(nodes, {}, ["N", 3], ["N", 3])
    with pytest.raises(UnsupportedOperator) as e:
        net.torch_module()
    assert "Atan" in str(e.value)
    assert e.value.op_type == "Atan"


def test_constant_folding_of_shape_arithmetic():
    """Shape -> Gather -> Concat feeding Reshape is folded to a constant target."""
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("Shape", ["x"], ["shp"]),
             helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["tgt"], axis=0),
             helper.make_node("Reshape", ["x", "tgt"], ["f"]),
             helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)]
    inits = {"zero": np.int64(0), "ax0": np.int64([0]), "minus1": np.int64([-1]), "W": _f(rng, 3, 8)}
    net = _net(nodes, inits, [1, 2, 4], [1, 3])
    from vnncert.network.graph import graph_of

    g = graph_of(net)
    assert [n.op_type for n in g.nodes] == ["Reshape", "Gemm"]
    d, _ = _max_diff(net)
    assert d < 1e-5


SHARED_MODELS = [
    "test/test_nano.onnx", "test/test_tiny.onnx", "test/test_small.onnx", "test/test_sat.onnx", "test/test_unsat.onnx",
    "acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/onnx/ACASXU_run2a_3_5_batch_2000.onnx",
    "acasxu/onnx/ACASXU_run2a_5_9_batch_2000.onnx",
    "mnist_fc/onnx/mnist-net_256x2.onnx", "mnist_fc/onnx/mnist-net_256x6.onnx",
    "oval21/onnx/cifar_base_kw.onnx", "oval21/onnx/cifar_deep_kw.onnx",
    "collins_rul_cnn/onnx/NN_rul_small_window_20.onnx", "collins_rul_cnn/onnx/NN_rul_full_window_40.onnx",
    "nn4sys/onnx/lindex.onnx", "nn4sys/onnx/lindex_deep.onnx", "nn4sys/onnx/mscn_128d.onnx",
    "nn4sys/onnx/mscn_128d_dual.onnx", "nn4sys/onnx/pensieve_small_simple.onnx",
    "nn4sys/onnx/pensieve_mid_simple.onnx", "nn4sys/onnx/pensieve_big_simple.onnx",
    "nn4sys/onnx/pensieve_small_parallel.onnx", "nn4sys/onnx/pensieve_big_parallel.onnx",
]


@pytest.mark.parametrize("rel", SHARED_MODELS)
def test_shared_models_agree_with_onnxruntime(rel):
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"needs ../shared/benchmarks/{rel} (not present beside this clone)")
    from vnncert.network import load_network

    net = load_network(str(path), threads=1)
    d, scale = _max_diff(net, n=8)
    # float32 evaluation-order differences only: relative to the output scale
    assert d <= 1e-5 * max(1.0, scale), f"max abs diff {d:.3g} at output scale {scale:.3g}"
