"""ONNX loading: shapes and variable counts, batched evaluation equal to the original model, .gz, errors."""
import gzip
import re

import numpy as np
import pytest

from conftest import SHARED, SPECS, shared_benchmark
from helpers import mlp_onnx, random_mlp
from vnncert import load_network
from vnncert.errors import NetworkError


def _check_batched_equals_replay(net, n=5, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-1, 1, (n, net.n_inputs)).astype(np.float32)
    batched = net.evaluate(xs)
    single = np.stack([net.replay(x) for x in xs])
    assert batched.shape == (n, net.n_outputs)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)


def test_shipped_models_load():
    for f in sorted((SPECS / "onnx").glob("*.onnx")):
        net = load_network(str(f), threads=1)
        assert net.n_inputs > 0 and net.n_outputs > 0
        assert net.batch_mode == "batched"
        _check_batched_equals_replay(net)


def test_fixed_batch_dim_is_rewritten(tmp_path):
    path = mlp_onnx(tmp_path / "m.onnx", random_mlp(0, [3, 5, 2]), batch_symbolic=False)
    net = load_network(path, threads=1)
    assert net.input_shape == (1, 3) and net.n_inputs == 3 and net.n_outputs == 2
    assert net.batch_mode == "batched"
    _check_batched_equals_replay(net)


def test_gzip_model(tmp_path):
    path = mlp_onnx(tmp_path / "m.onnx", random_mlp(1, [2, 4, 2]))
    gz = tmp_path / "m.onnx.gz"
    gz.write_bytes(gzip.compress(open(path, "rb").read()))
    a, b = load_network(path), load_network(str(gz))
    x = np.array([0.3, -0.2], np.float32)
    assert np.array_equal(a.replay(x), b.replay(x))


def test_errors_are_clear(tmp_path):
    with pytest.raises(NetworkError, match="cannot read"):
        load_network(str(tmp_path / "missing.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(NetworkError, match="not a valid ONNX file"):
        load_network(str(bad))


@pytest.mark.parametrize("name,shape,n_in,n_out", [
    ("test_nano.onnx", (1,), 1, 1),
    ("test_tiny.onnx", (1,), 1, 1),
    ("test_small.onnx", (1,), 1, 1),
    ("test_sat.onnx", (1, 1, 1, 5), 5, 5),
])
def test_competition_test_models(name, shape, n_in, n_out):
    bench = shared_benchmark("test")
    net = load_network(str(bench / name), threads=1)
    assert net.input_shape == shape and net.n_inputs == n_in and net.n_outputs == n_out
    _check_batched_equals_replay(net)


def test_acasxu_old_opset_with_weights_as_inputs():
    bench = shared_benchmark("acasxu")
    for f in sorted((bench / "onnx").glob("*.onnx"))[:3]:
        net = load_network(str(f), threads=1)
        assert net.opset == 8 and net.n_inputs == 5 and net.n_outputs == 5  # initializers are not inputs
        assert net.batch_mode == "batched"
        _check_batched_equals_replay(net)
        norm = net.normalised_model()
        inits = {t.name for t in norm.graph.initializer}
        assert [i.name for i in norm.graph.input if i.name not in inits] == [net.input_name]
        assert len(norm.graph.input) == 1


def test_input_without_batch_dim():
    bench = shared_benchmark("nn4sys")
    f = bench / "onnx" / "pensieve_small_parallel.onnx"
    if not f.exists():
        pytest.skip("pensieve_small_parallel.onnx not in ../shared/benchmarks/nn4sys")
    net = load_network(str(f), threads=1)
    assert net.input_shape == (12, 8) and net.n_inputs == 96
    _check_batched_equals_replay(net, n=3)


# ---- validation at load: the same for every engine and mode ---------------------------------------
def _bad_models(d):
    from onnx import helper, numpy_helper

    from helpers import gemm_then, graph_onnx, if_onnx

    W = np.array([[1.0, 1.0], [1.0, -1.0]], np.float32)
    nan_const = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array([np.nan, 0], np.float32)))
    return {
        "ir14": (gemm_then(d / "ir14.onnx", ir_version=14), r"ONNX Runtime cannot load the model: Unsupported model IR version: 14"),
        "opset99": (gemm_then(d / "opset99.onnx", opset=99), r"ONNX Runtime cannot load the model: .*Opset 99"),
        "nan_init": (gemm_then(d / "nan.onnx", W=[[1.0, np.nan], [1.0, -1.0]]), r"initializer 'W' holds NaN \(1 of 4 values\)"),
        "inf_bias": (gemm_then(d / "inf.onnx", b=[0.0, -np.inf]), r"initializer 'b' holds infinity \(1 of 2 values\)"),
        "nan_constant": (graph_onnx(d / "nanc.onnx", [helper.make_node("Gemm", ["x", "W", "W0"], ["z"], transB=1), nan_const,
                                                        helper.make_node("Add", ["z", "c"], ["y"])],
                                    {"W": W, "W0": np.zeros(2, np.float32)}), r"Constant node 'c' holds NaN"),
        "nan_in_branch": (if_onnx(d / "ifnan.onnx", [np.nan, 1.0]), r"Constant node 'c' \(in the 'then_branch' branch of If"),
        "zero_input": (gemm_then(d / "zin.onnx", W=np.zeros((2, 0)), in_shape=(1, 0)), r"input 'x' has shape \[1, 0\]: no elements"),
        "zero_output": (gemm_then(d / "zout.onnx", W=np.zeros((0, 2)), b=np.zeros(0), out_shape=(1, 0)),
                        r"output 'y' has shape \[1, 0\]: no elements"),
        # ONNX Runtime loads these but cannot run them, whatever the input
        "runtime_reshape": (graph_onnx(d / "rs.onnx", [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
                                       {"s": np.array([1, 3], np.int64)}),
                            r"ONNX Runtime cannot run the model: Reshape node 'rs': .*Input shape:\{1,2\}, requested shape:\{1,3\}$"),
        "runtime_clip": (graph_onnx(d / "clip.onnx", [helper.make_node("Clip", ["x", "lo"], ["y"], name="c")],
                                    {"lo": np.zeros(2, np.float32)}),
                         r"ONNX Runtime cannot run the model: Clip node 'c': min->Shape\(\)\.IsScalar\(\) was false\. min should be a scalar\.$"),
    }


def test_models_refused_at_load(tmp_path):
    for name, (path, pattern) in _bad_models(tmp_path).items():
        with pytest.raises(NetworkError, match=pattern) as e:
            load_network(path, threads=1)
        msg = str(e.value)
        assert "\n" not in msg and len(msg) < 450, (name, msg)
        assert "onnxruntime_src" not in msg and "ONNXRuntimeError" not in msg, msg
    # a finite Constant in the same branch loads; ONNX Runtime's session exists from the start
    from helpers import if_onnx

    net = load_network(if_onnx(tmp_path / "ifok.onnx", [0.5, 1.0]), threads=1)
    assert vars(net).get("session") is not None  # made at load, not on first use
    np.testing.assert_allclose(net.replay(np.array([2.0, 1.0], np.float32)), [3.5, 2.0])


@pytest.mark.parametrize("mode", ["auto", "exact", "relaxed", "falsify", "probabilistic"])
def test_refused_models_are_errors_in_every_mode(tmp_path, mode):
    """Before validation at load, the quick numpy pass answered `unsat` on models ONNX Runtime
    cannot load, and NaN weights ran to the timeout."""
    from helpers import box_spec
    from vnncert.api import verify

    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec([0.0, 0.0], [1.0, 1.0], [["(>= Y_0 2.5)"]], 2))
    for name, (path, pattern) in _bad_models(tmp_path).items():
        if name.startswith("zero"):
            continue  # their variable counts do not match this property
        out = verify(path, str(prop), mode=mode, timeout=20, threads=1)
        assert out.verdict.value == "error", (name, out.verdict, out.detail)
        assert re.search(pattern, out.detail), (name, out.detail)


def test_one_line_reason():
    from vnncert.network.loader import one_line_reason

    ort_msg = ("[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/graph/model.cc:181 "
               "onnxruntime::Model::Model(onnx::ModelProto&&, const onnxruntime::PathString&) Unsupported model IR "
               "version: 14, max supported IR version: 11\n")
    assert one_line_reason(RuntimeError(ort_msg)) == "Unsupported model IR version: 14, max supported IR version: 11"
    long = "First sentence here. " + "Filler words without figures. " * 20 + "The limit is 23."
    r = one_line_reason(ValueError(long), limit=120)
    assert r.startswith("First sentence here.") and r.endswith("The limit is 23.") and len(r) <= 120
    assert len(one_line_reason(ValueError("x" * 1000))) <= 300
    assert one_line_reason(KeyError()) == "KeyError"
