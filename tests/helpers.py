"""Small seeded ONNX models made in code for tests."""
from __future__ import annotations

import numpy as np


def mlp_onnx(path, weights, input_shape=None, opset=13, batch_symbolic=True):
    """Gemm+Relu MLP from [(W (out,in), b), ...]; last layer has no Relu. Returns path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n_in = weights[0][0].shape[1]
    n_out = weights[-1][0].shape[0]
    batch = "N" if batch_symbolic else 1
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, n_in] if input_shape is None else input_shape)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, n_out])
    nodes, inits = [], []
    cur = "x"
    for k, (W, b) in enumerate(weights):
        inits += [numpy_helper.from_array(np.asarray(W, np.float32), f"W{k}"),
                  numpy_helper.from_array(np.asarray(b, np.float32), f"b{k}")]
        nxt = "y" if k == len(weights) - 1 else f"h{k}"
        pre = nxt if k == len(weights) - 1 else f"z{k}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{k}", f"b{k}"], [pre], transB=1))
        if k < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [pre], [nxt]))
        cur = nxt
    g = helper.make_graph(nodes, "mlp", [inp], [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)


def random_mlp(seed, sizes):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((o, i)) / np.sqrt(i), rng.standard_normal(o) * 0.1) for i, o in zip(sizes[:-1], sizes[1:])]


def slow_onnx(path, width=2048, depth=64):
    """A chain of large MatMuls: thousands of samples take minutes in ONNX Runtime (native code)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    inits = [numpy_helper.from_array((rng.standard_normal((2, width)) * 0.5).astype(np.float32), "Win"),
             numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((width, 2)) / np.sqrt(width)).astype(np.float32), "Wout")]
    nodes = [helper.make_node("MatMul", ["x", "Win"], ["h0"])]
    for k in range(depth):
        nodes.append(helper.make_node("MatMul", [f"h{k}", "W"], [f"m{k}"]))
        nodes.append(helper.make_node("Relu", [f"m{k}"], [f"h{k + 1}"]))
    nodes.append(helper.make_node("MatMul", [f"h{depth}", "Wout"], ["y"]))
    g = helper.make_graph(nodes, "slow", [inp], [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return str(path)


def box_spec(lo, hi, out_rows, n_out):
    """VNN-LIB 1.0 text: box lo<=x<=hi and an OR of output conjunctions given as lists of strings."""
    lines = [f"(declare-const X_{i} Real)" for i in range(len(lo))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, (a, b) in enumerate(zip(lo, hi)):
        lines += [f"(assert (>= X_{i} {a!r}))", f"(assert (<= X_{i} {b!r}))"]
    lines.append("(assert (or " + " ".join("(and " + " ".join(c) + ")" for c in out_rows) + "))")
    return "\n".join(lines) + "\n"


def graph_onnx(path, nodes, inits=None, in_shape=("N", 2), out_shape=("N", 2), ir_version=8, opset=13, check=False):
    """A model from onnx.helper nodes and {name: array} initializers, input `x`, output `y` (float32),
    saved WITHOUT the ONNX checker unless check=True (tests of what the loader refuses). Returns path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))
    init = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    g = helper.make_graph(nodes, "g", [inp], [out], init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    if check:
        onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)


def gemm_then(path, op=None, W=((1.0, 1.0), (1.0, -1.0)), b=(0.0, 0.0), **kw):
    """y = op(W x + b) (op None: y = W x + b) on 2 inputs and 2 outputs, via graph_onnx."""
    from onnx import helper

    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z" if op else "y"], transB=1)]
    if op:
        nodes.append(helper.make_node(op, ["z"], ["y"]))
    return graph_onnx(path, nodes, {"W": np.asarray(W, np.float32), "b": np.asarray(b, np.float32)}, **kw)


def if_onnx(path, then_const=(0.0, 0.0)):
    """y = (sum(W x) > 0) ? W x + c : -(W x), W = [[1, 1], [1, -1]], c a Constant in the then-branch
    (an If whose condition depends on the input)."""
    from onnx import TensorProto, helper, numpy_helper

    c = numpy_helper.from_array(np.asarray(then_const, np.float32), "cv")
    then_g = helper.make_graph([helper.make_node("Constant", [], ["c"], value=c), helper.make_node("Add", ["z", "c"], ["t"])],
                               "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N", 2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["z"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["N", 2])])
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=1),
             helper.make_node("ReduceSum", ["z"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["cond"], name="cond"),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)]
    return graph_onnx(path, nodes, {"W": np.array([[1.0, 1.0], [1.0, -1.0]], np.float32), "b": np.zeros(2, np.float32),
                                    "zero": np.asarray(0.0, np.float32)})


def assert_lowerings_agree(net, xs, layers=True, rtol=1e-5, atol=1e-5):
    """The network's torch module and (when `layers`) its layer graph give ONNX Runtime's outputs on
    the flat inputs xs (B, n_inputs). Returns ONNX Runtime's outputs."""
    import torch

    xs = np.asarray(xs, np.float64).astype(np.float32).astype(np.float64)
    want = net.evaluate(xs).astype(np.float64)
    with torch.no_grad():
        got = net.torch_module()(torch.as_tensor(xs, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg="torch module vs ONNX Runtime")
    if layers:
        np.testing.assert_allclose(net.layer_graph.evaluate(xs), want, rtol=rtol, atol=atol,
                                   err_msg="layer graph vs ONNX Runtime")
    return want


def op_model(path, nodes, inits, in_shape, out_shape=None, opset=13, ir_version=8):
    """A model of onnx.helper nodes from input `x` (float32, in_shape) to output `y`, its output
    shape left to shape inference when out_shape is None; checked by the ONNX checker. Returns path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape) if out_shape is not None else None)
    init = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    m = helper.make_model(helper.make_graph(nodes, "g", [inp], [out], init), opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    if out_shape is None:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        shape = [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
        del m.graph.output[:]
        m.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, shape))
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)
