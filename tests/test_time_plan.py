"""The auto mode's time plan (router.SHARES): an engine followed by another engine that can take
the network stops at its share of the time left; stopped by its share, it counts as `unknown`
and the next engine starts with what is left; the last engine, or one no later engine can
follow, keeps the whole deadline. And the bound passes stop near their deadline."""
from __future__ import annotations

import time

import numpy as np
import pytest

from helpers import box_spec, gemm_then, slow_onnx

pytest.importorskip("torch")

from vnncert.api import verify  # noqa: E402

UNIT = ([0.0, 0.0], [1.0, 1.0])


def test_an_engine_out_of_its_share_hands_over_to_the_next(tmp_path):
    """relu(x0 + x1) >= 1.5 over [0, 1]^2 is sat: with no share for the falsifier, the relaxed
    engine finds the witness while splitting; with no share for it either, the exact engine does;
    each engine left without time says `unknown`, not `timeout`."""
    from vnncert import router
    from vnncert.options import AttackOptions, Options, QuickOptions, RelaxedOptions

    assert set(router.SHARES) == {"quick_bounds", "attack", "relaxed"}
    model = gemm_then(tmp_path / "relu.onnx", "Relu")
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec(*UNIT, [["(>= Y_0 1.5)"]], 2))
    out = verify(model, str(prop), mode="auto", timeout=30, threads=1)
    assert out.verdict.value == "sat" and out.engine == "attack", out.detail
    none = dict(attack=AttackOptions(share=0.0), quick=QuickOptions(share=0.0))
    out = verify(model, str(prop), mode="auto", timeout=30, threads=1, **none)
    assert out.verdict.value == "sat" and out.engine == "relaxed" and out.witness_checked, out.detail
    assert out.detail.startswith("quick_bounds: unknown") and "attack: unknown" in out.detail, out.detail
    out = verify(model, str(prop), mode="auto", timeout=30, threads=1, relaxed=RelaxedOptions(share=0.0), **none)
    assert out.verdict.value == "sat" and out.engine == "exact" and out.witness_checked, out.detail
    assert "relaxed: unknown" in out.detail, out.detail
    # the mode's last engine keeps the whole deadline whatever its share
    out = verify(model, str(prop), mode="relaxed", timeout=30, threads=1, relaxed=RelaxedOptions(share=0.0))
    assert out.verdict.value == "sat" and out.engine == "relaxed", out.detail


def test_a_crown_pass_stops_near_its_deadline(tmp_path):
    """A numpy CROWN pass over a large network raises `bounds.Expired` between layers or row
    chunks once its deadline has passed, instead of running to its end; the quick pass then
    answers `timeout` at once."""
    from vnncert import bounds
    from vnncert.network.loader import load_network
    from vnncert.options import BoundsOptions, Options
    from vnncert.engines import quick_bounds
    from vnncert.spec.model import Case, Halfspaces, InputRegion, Spec

    net = load_network(slow_onnx(tmp_path / "slow.onnx", width=512, depth=16), threads=1)
    lg = net.layer_graph
    n = lg.n_inputs
    lo, hi = -np.ones((1, n)), np.ones((1, n))
    C = np.ones((1, 1, lg.n_outputs))
    backward = BoundsOptions(forward_max_inputs=0)  # (2 inputs: the forward pass would make it short)
    crown = bounds.prepare(lg, "numpy", backward)
    t = time.monotonic()
    bounds.compute(crown, lo, hi, C, "crown")
    full = time.monotonic() - t
    assert full > 0.5, full  # (a pass long enough to cut)
    t = time.monotonic()
    with pytest.raises(bounds.Expired):
        bounds.compute(crown, lo, hi, C, "crown", deadline=time.monotonic() + 0.1 * full)
    assert time.monotonic() - t < 0.5 * full
    spec = Spec(n, lg.n_outputs, [Case(InputRegion(lo[0], hi[0]), [Halfspaces(C[0], np.array([-1e9]), np.zeros(1, bool))])])
    t = time.monotonic()
    out = quick_bounds.check(net, spec, time.monotonic() + 0.1 * full, Options(threads=1).with_(bounds=backward))
    assert out.verdict.value == "timeout" and time.monotonic() - t < 0.5 * full, out.detail
