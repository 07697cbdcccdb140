"""The networks of the benchmark folders issue 20 brought in (../shared/benchmarks: cgan,
eran_2021, lsnc, verivital_2021; skipped when absent): every model converts to torch and agrees
with ONNX Runtime on random points of its properties' boxes, and the layer graph (the exact
lowering) agrees where the network is piecewise linear. `benchmarks/onnx_conversion.py` runs the
same check over every folder."""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from conftest import shared_benchmark
from helpers import assert_lowerings_agree

FOLDERS = ["cgan", "eran_2021", "lsnc", "verivital_2021"]
# the exact lowering of these (big ConvTranspose stacks) takes seconds: checked by the script only
LAYERS_SKIPPED = {"cGAN_imgSz64_nCh_1.onnx", "cGAN_imgSz64_nCh_3.onnx"}


def _models(folder):
    d = shared_benchmark(folder)
    return [(d, p) for p in sorted(glob.glob(str(d / "**" / "*.onnx"), recursive=True))]


@pytest.mark.parametrize("folder", FOLDERS)
def test_benchmark_networks_convert(folder):
    pytest.importorskip("torch")
    from vnncert import load_spec
    from vnncert.errors import UnsupportedOperator
    from vnncert.network import load_network

    rng = np.random.default_rng(0)
    for d, path in _models(folder):
        rel = os.path.relpath(path, d)
        net = load_network(path, threads=1)
        rows = [ln.split(",") for ln in (d / "instances.csv").read_text().splitlines() if ln.strip()]
        prop = next(v for o, v, _ in rows if os.path.normpath(o) == os.path.normpath(rel))
        region = load_spec(str(d / prop), network=net).cases[0].region
        xs = region.lower + rng.uniform(0, 1, (16, net.n_inputs)) * (region.upper - region.lower)
        pwl = True
        try:
            if os.path.basename(path) not in LAYERS_SKIPPED:
                _ = net.layer_graph
            else:
                pwl = False
        except UnsupportedOperator as e:  # an op without a layer-graph lowering, named
            assert e.op_type in ("Softmax",), (rel, str(e))
            pwl = False
        assert_lowerings_agree(net, xs, layers=pwl, rtol=1e-4, atol=1e-4)
