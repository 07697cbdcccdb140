"""The falsifier (engines/attack.py, search/falsify.py) on small seeded nets whose unsafe set is small.

The unsafe sets are cut below the best of 100,000 uniform samples of the box (so sampling alone
would need luck); the falsifier runs with its sampling reduced to the centre, so PGD has to get
there. Every `sat` must carry a witness that ONNX Runtime replays into the unsafe set (checked
again here with `results.check_witness`), and a property that sound interval bounds refute is
never called sat.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from helpers import box_spec, mlp_onnx, random_mlp

pytest.importorskip("torch")

from vnncert import load_network  # noqa: E402
from vnncert.engines import attack  # noqa: E402
from vnncert.options import Options  # noqa: E402
from vnncert.results import Verdict, check_witness  # noqa: E402
from vnncert.search.falsify import FalsifyStats, padded_spec, pgd_search, sample_region  # noqa: E402
from vnncert.spec import parse_spec  # noqa: E402

N_IN, N_OUT = 5, 3
LO, HI = [-1.0] * N_IN, [1.0] * N_IN


def _net(tmp_path, seed):
    w = random_mlp(seed, [N_IN, 12, 12, N_OUT])
    return load_network(mlp_onnx(tmp_path / f"m{seed}.onnx", w), threads=1), w


def _samples(net, seed, n=100_000):
    x = np.random.default_rng(1000 + seed).uniform(-1, 1, (n, N_IN)).astype(np.float32)
    return x, net.evaluate(x).astype(np.float64)


def _term(a, names):
    """VNN-LIB sum a . Y."""
    parts = [f"(* {float(c)!r} {n})" for c, n in zip(a, names) if c != 0]
    return "(+ " + " ".join(parts) + ")" if len(parts) > 1 else parts[0]


def _dir(rng):
    """A direction of the outputs with 3-decimal coefficients (the parser evaluates rows exactly)."""
    return np.round(rng.standard_normal(N_OUT), 3)


def _row(a, t, up=False):
    """a . Y <= t, t rounded to 6 decimals (down; up: up)."""
    t = (np.ceil if up else np.floor)(float(t) * 1e6) / 1e6
    return f"(<= {_term(a, [f'Y_{j}' for j in range(N_OUT)])} {t!r})"


def _interval_min(weights, a):
    """A sound lower bound of a . f(x) over the box [-1, 1]^n (interval arithmetic, float64, widened)."""
    lo, hi = np.array(LO), np.array(HI)
    for k, (W, b) in enumerate(weights):
        c, r = (lo + hi) / 2, (hi - lo) / 2
        mid, rad = W @ c + b, np.abs(W) @ r
        lo, hi = mid - rad, mid + rad
        if k < len(weights) - 1:
            lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
    a = np.asarray(a, float)
    return float(np.where(a > 0, a * lo, a * hi).sum()) - 1e-6 * (1 + float(np.abs(a) @ np.maximum(np.abs(lo), np.abs(hi))))


def _pgd_only(**kw):
    o = Options(threads=1)
    return o.with_(attack=replace(o.attack, samples=1, **kw))


def _check(net, spec, out):
    assert out.verdict == Verdict.SAT, out.detail
    assert out.witness_checked and out.counterexample is not None
    x, y = out.counterexample
    assert np.all(x >= np.float32(-1.0)) and np.all(x <= np.float32(1.0))
    assert check_witness(net, spec, x) is not None  # ONNX Runtime puts it in the unsafe set again


def _milp_min(net, A, b):
    """The exact min over the box of max_i (A_i . f(x) - b_i) (the MILP, solved to optimality)."""
    from vnncert.milp.solver import minimize
    from vnncert.network.layers import layer_graph
    from vnncert.spec.model import InputRegion

    r = minimize(layer_graph(net), InputRegion(np.array(LO), np.array(HI)), np.atleast_2d(A), np.asarray(b, float),
                 time.monotonic() + 60)
    assert r.status == "optimal"
    return float(r.incumbent)


def _pgd(net, spec, seed, seconds=2.0):
    """PGD alone (no sampling in front) on the spec's one case."""
    st = FalsifyStats()
    o = Options(threads=1).attack
    out = pgd_search(net, padded_spec(spec, max(hs.rows for hs in spec.cases[0].output)), time.monotonic() + 30, o,
                     np.random.default_rng(seed), [0], st, seconds=seconds)
    return out, st


@pytest.mark.parametrize("seed", range(3))
def test_pgd_reaches_a_sliver_above_the_exact_minimum(tmp_path, seed):
    """Unsafe: a . y <= m* + 1e-3 (m*: the MILP's minimum): no more than 1e-4 of the box."""
    net, _ = _net(tmp_path, seed)
    a = _dir(np.random.default_rng(seed))
    _, ys = _samples(net, seed)
    t = _milp_min(net, a, [0.0]) + 1e-3
    assert np.mean(ys @ a <= t) <= 1e-4
    spec = parse_spec(box_spec(LO, HI, [[_row(a, t)]], N_OUT), n_inputs=N_IN, n_outputs=N_OUT)
    out, st = _pgd(net, spec, seed)
    _check(net, spec, out)
    assert st.pgd_steps > 0 and "PGD witness" in out.detail


@pytest.mark.parametrize("seed", range(3))
def test_pgd_meets_every_row_of_a_conjunction_and_skips_an_empty_disjunct(tmp_path, seed):
    """Unsafe: (a1 . y <= t1 and a2 . y <= t2) or (a1 . y <= far below its sound minimum). t1, t2:
    the 5 % quantiles of the samples' rows moved by the MILP's min of the worse row plus 1e-3, so
    that the conjunction holds on a sliver of the box; the second disjunct is empty."""
    net, w = _net(tmp_path, seed)
    rng = np.random.default_rng(50 + seed)
    a1, a2 = _dir(rng), _dir(rng)
    _, ys = _samples(net, seed)
    r1, r2 = ys @ a1, ys @ a2
    q = np.array([np.quantile(r1, 0.05), np.quantile(r2, 0.05)])
    t = q + _milp_min(net, np.stack([a1, a2]), q) + 1e-3
    assert np.mean((r1 <= t[0]) & (r2 <= t[1])) <= 1e-4
    empty = _interval_min(w, a1) - 1.0
    spec = parse_spec(box_spec(LO, HI, [[_row(a1, t[0]), _row(a2, t[1])], [_row(a1, empty)]], N_OUT),
                      n_inputs=N_IN, n_outputs=N_OUT)
    out, st = _pgd(net, spec, seed)
    _check(net, spec, out)
    y = out.counterexample[1].astype(np.float64)
    assert y @ a1 <= t[0] + 1e-9 and y @ a2 <= t[1] + 1e-9  # the conjunction's disjunct, not the empty one


def test_the_falsifier_finds_it_through_its_sampling_or_pgd(tmp_path):
    net, _ = _net(tmp_path, 7)
    a = _dir(np.random.default_rng(7))
    t = _milp_min(net, a, [0.0]) + 1e-3
    spec = parse_spec(box_spec(LO, HI, [[_row(a, t)]], N_OUT), n_inputs=N_IN, n_outputs=N_OUT)
    for seed in range(2):
        out = attack.check(net, spec, time.monotonic() + 30, Options(threads=1).with_(seed=seed))
        _check(net, spec, out)


@pytest.mark.parametrize("seed", range(3))
def test_a_property_the_interval_bounds_refute_is_never_sat(tmp_path, seed):
    net, w = _net(tmp_path, seed)
    a = _dir(np.random.default_rng(seed))
    spec = parse_spec(box_spec(LO, HI, [[_row(a, _interval_min(w, a) - 1e-3)]], N_OUT), n_inputs=N_IN, n_outputs=N_OUT)
    out = attack.check(net, spec, time.monotonic() + 30, Options(threads=1).with_(seed=seed))
    assert out.verdict == Verdict.UNKNOWN, out.detail
    st = out.stats
    assert st["pgd_steps"] > 0 and st["pgd_rounds"] >= 1 and st["replays"] == 0


def test_restarts_scale_with_the_nets_cost(tmp_path):
    """A tiny net gets far more restarts a round than the floor `pgd_restarts`, never more than
    `pgd_max_restarts`; without a time (`seconds=None`) it gets the floor, in `pgd_rounds` rounds."""
    net, w = _net(tmp_path, 0)
    a = np.ones(N_OUT)
    spec = padded_spec(parse_spec(box_spec(LO, HI, [[_row(a, _interval_min(w, a) - 1.0)]], N_OUT),
                                  n_inputs=N_IN, n_outputs=N_OUT), 1)
    o = Options(threads=1).attack
    # timed: a generous time and factor, so that other work on the cores does not decide it
    for opts, seconds, check in ((o, 3.0, lambda r: r >= 4 * o.pgd_restarts),
                                 (replace(o, pgd_max_restarts=100), 1.0, lambda r: o.pgd_restarts <= r <= 100),
                                 (o, None, lambda r: r == o.pgd_restarts)):
        st = FalsifyStats()
        assert pgd_search(net, spec, time.monotonic() + 30, opts, np.random.default_rng(0), [0], st, seconds=seconds) is None
        assert st.pgd_rounds >= 1 and check(st.pgd_restarts // st.pgd_rounds), (seconds, st)
    assert st.pgd_rounds == o.pgd_rounds


def test_pgd_stops_at_the_deadline_and_at_its_own_time(tmp_path):
    net, w = _net(tmp_path, 1)
    a = np.ones(N_OUT)
    spec = parse_spec(box_spec(LO, HI, [[_row(a, _interval_min(w, a) - 1.0)]], N_OUT), n_inputs=N_IN, n_outputs=N_OUT)
    out = attack.check(net, spec, time.monotonic() - 1, Options(threads=1))
    assert out.verdict == Verdict.TIMEOUT and out.stats["pgd_steps"] == 0
    t = time.monotonic()
    out = attack.check(net, spec, t + 1.0, _pgd_only(pgd_seconds=1e6, pgd_time_share=1.0))
    assert out.verdict == Verdict.TIMEOUT and time.monotonic() - t < 3.0  # the deadline, not pgd_seconds
    t = time.monotonic()
    out = attack.check(net, spec, t + 4.0, _pgd_only(pgd_seconds=1e6))
    assert out.verdict == Verdict.UNKNOWN and time.monotonic() - t < 4.0  # half the time left: its own answer
    t = time.monotonic()
    out = attack.check(net, spec, t + 1e6, _pgd_only(pgd_seconds=0.5))
    assert out.verdict == Verdict.UNKNOWN and time.monotonic() - t < 3.0


def test_samples_hold_centre_corners_faces_and_stay_in_the_box():
    from vnncert.spec.model import InputRegion

    reg = InputRegion(np.array([-1.0, 0.0, 2.0, 5.0]), np.array([1.0, 0.5, 3.0, 5.0]))
    pts = sample_region(reg, 1000, np.random.default_rng(0))
    assert pts.shape == (1000, 4)
    assert np.all(pts >= reg.lower) and np.all(pts <= reg.upper)
    np.testing.assert_array_equal(pts[0], reg.center)
    on_end = (pts == reg.lower) | (pts == reg.upper)
    free = on_end[:, :3]
    assert free.all(axis=1).sum() >= 8  # the 2^3 corners of the free dims
    partly = free.any(axis=1) & ~free.all(axis=1)
    assert partly.sum() > 200  # face points: some coordinates pinned, others inside


def test_seeds_are_kept_for_the_closest_cases_only(tmp_path):
    """A property with many cases: the sampling keeps PGD seeds for the `pgd_cases` cases that came
    closest (the ones PGD will attack), not for every case (memory)."""
    from vnncert.search.falsify import random_search
    from vnncert.spec.model import Case, Halfspaces, InputRegion, Spec

    net, w = _net(tmp_path, 2)
    a = np.ones(N_OUT)
    far = _interval_min(w, a) - 1.0
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(40):
        c = rng.uniform(-0.9, 0.9, N_IN)
        cases.append(Case(InputRegion(c - 0.1, c + 0.1), [Halfspaces(a[None, :], np.array([far]), np.zeros(1, bool))]))
    spec = Spec(N_IN, N_OUT, cases)
    o = replace(Options(threads=1).attack, pgd_cases=4, samples=400)
    out, best, seeds = random_search(net, spec, time.monotonic() + 30, o, np.random.default_rng(1), FalsifyStats())
    assert out is None and np.all(np.isfinite(best))
    held = [k for k, sd in enumerate(seeds) if sd is not None]
    assert sorted(held) == sorted(np.argsort(best, kind="stable")[:4].tolist())
    assert all(len(seeds[k]) == 1 and seeds[k][0].shape == (o.pgd_seeds, N_IN) for k in held)
