"""The quick numpy CROWN pass: proves easy instances without torch, never claims what it cannot prove."""
import numpy as np

from helpers import box_spec, mlp_onnx, random_mlp
from vnncert.deadline import remaining
from vnncert.engines import quick_bounds
from vnncert.options import Options
from vnncert.spec.vnnlib1 import parse_vnnlib1
from vnncert import load_network


def _net_and_range(tmp_path):
    net = load_network(mlp_onnx(tmp_path / "m.onnx", random_mlp(3, [2, 8, 8, 1])), threads=1)
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1).reshape(-1, 2)
    y = net.evaluate(g.astype(np.float32))[:, 0].astype(np.float64)
    return net, y.min(), y.max()


def test_refutes_far_threshold_and_leaves_reachable_one(tmp_path):
    import time

    net, lo, hi = _net_and_range(tmp_path)
    deadline = time.monotonic() + 60
    far = parse_vnnlib1(box_spec([-1, -1], [1, 1], [[f"(>= Y_0 {hi + 10 * (hi - lo) + 1})"]], 1), 2, 1)
    out = quick_bounds.check(net, far, deadline, Options(threads=1))
    assert out.verdict.value == "unsat" and out.engine == "quick_bounds"
    reachable = parse_vnnlib1(box_spec([-1, -1], [1, 1], [[f"(>= Y_0 {hi})"]], 1), 2, 1)  # the grid reaches it
    out = quick_bounds.check(net, reachable, deadline, Options(threads=1))
    assert out.verdict.value == "unknown"
    assert remaining(deadline) > 0
