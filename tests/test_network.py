"""ONNX loading: shapes and variable counts, batched evaluation equal to the original model, .gz, errors."""
import gzip

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
