"""Randomized smoothing engine: statistics on models with closed-form answers, sampler agreement, files.

The statistical tests run CERTIFY / PREDICT many times with fixed seeds on linear models whose
exact pA and exact robust radius of g are known in closed form. Each count of "bad" answers is
a Binomial(R, p) variable; the bounds below are that distribution's 1e-6 tails, derived here
with scipy from the exact p (computable for these models), so a correct implementation fails
with probability ~1e-6 per seed while an implementation with the wrong bound, the wrong alpha,
reused noise or a wrong radius formula moves far outside them.
"""
from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats

from conftest import ROOT, SPECS, shared_benchmark
from helpers import mlp_onnx

from vnncert import load_network, load_spec
from vnncert import smoothing as S
from vnncert.engines import probabilistic as P
from vnncert.errors import SpecError
from vnncert.options import Options
from vnncert.results import Verdict, check_witness
from vnncert.spec import parse_spec

TAIL = 1e-6


def linear_net(tmp_path, W, b, name="lin.onnx", batch_symbolic=True):
    W = np.asarray(W, np.float64)
    return load_network(mlp_onnx(tmp_path / name, [(W, np.asarray(b, np.float64))], batch_symbolic=batch_symbolic), threads=1)


def binom_band(R: int, p: float):
    """[lo, hi]: a Binomial(R, p) count falls outside with probability <= 2e-6."""
    return int(stats.binom.ppf(TAIL, R, p)), int(stats.binom.isf(TAIL, R, p))


def exact_bad_probability(p0: float, n0: int, n: int, alpha: float, too_large) -> float:
    """P(bad certificate) for a two-class f with P(f = 0) = p0 > 1/2.

    Selection picks class 0 unless class 1 has more of the n0 votes (ties go to class 0, as argmax).
    Bad: class 0 selected and too_large(lcb(N0)), or class 1 selected and lcb(N1) >= 1/2 (wrong class).
    """
    k = np.arange(n + 1)
    lcb = np.array([S.lower_confidence_bound(int(c), n, alpha) for c in k])
    pmf0 = stats.binom.pmf(k, n, p0)
    pmf1 = stats.binom.pmf(k, n, 1 - p0)
    sel1 = stats.binom.sf(n0 // 2, n0, 1 - p0)  # class 1 strictly more than half of n0 votes
    q0 = float(pmf0[np.array([too_large(v) for v in lcb])].sum())
    q1 = float(pmf1[lcb >= 0.5].sum())
    return (1 - sel1) * q0 + sel1 * q1


# ---- closed-form statistics ----------------------------------------------------------------------
@pytest.mark.parametrize("noise,project", [("gaussian", True), ("gaussian", False), ("laplace", True), ("uniform", True)])
def test_certify_wrong_or_too_large_rate_is_at_most_alpha(tmp_path, noise, project):
    """Linear f along one axis: f(x) = 0 iff x_0 <= t. g's exact radius is the distance m = t - x_0
    (L2 and L1 alike), and pA = F(m / scale) for the noise's CDF F, so a certificate is bad iff it
    names class 1 or has radius > m. Gaussian noise runs both ways: drawn in the 5 input dims, and
    projected through the (5 -> 2) layer."""
    d, scale, t = 5, 0.5, 0.3
    w = np.zeros((2, d))
    w[1, 0] = 1.0  # y0 = 0, y1 = x0 - t: class 1 iff x0 > t (tie -> class 0)
    net = linear_net(tmp_path, w, [0.0, -t])
    if noise == "gaussian":
        m = scale * 1.0
        p0 = stats.norm.cdf(1.0)
    elif noise == "laplace":
        m = scale * 1.0
        p0 = 1 - 0.5 * math.exp(-1.0)
    else:
        m = scale * 0.6
        p0 = (0.6 + 1.0) / 2.0
    x = np.zeros(d)
    x[0] = t - m
    x[1:] = np.linspace(-1, 1, d - 1)  # coordinates f ignores
    n0, n, alpha, R = 10, 100, 0.1, 1500
    g = S.SmoothedClassifier(net, noise=noise, scale=scale, batch=1000, seed=7, threads=1, project=project)
    assert g.path == ("in-graph noise, projected through the first linear layer (5 -> 2)"
                      if noise == "gaussian" and project else "in-graph noise")
    bad = 0
    radii = []
    for r in range(R):
        res = g.certify(x, n0, n, alpha, key=(r,))
        radii.append(res.radius)
        if res.prediction == 1 or (res.prediction == 0 and res.radius > m):
            bad += 1
    p_bad = exact_bad_probability(p0, n0, n, alpha, lambda v: v > p0)
    assert p_bad <= alpha  # Clopper-Pearson is conservative
    lo, hi = binom_band(R, p_bad)
    assert bad <= binom_band(R, alpha)[1], f"{bad} bad certificates of {R}: more than alpha allows"
    assert lo <= bad <= hi, f"{bad} bad certificates of {R}, exact expectation {p_bad * R:.1f} (band {lo}..{hi})"
    # not vacuous: the median radius matches the median of the exact radius distribution
    k = np.arange(n + 1)
    lcb = np.array([S.lower_confidence_bound(int(c), n, alpha) for c in k])
    exact_r = np.array([S.certified_radius(noise, scale, v) for v in lcb])
    cdf = np.cumsum(stats.binom.pmf(k, n, p0))
    median_exact = exact_r[np.searchsorted(cdf, 0.5)]
    assert abs(np.median(radii) - median_exact) <= 0.15 * m


def test_radii_never_exceed_exact_beyond_stated_probability_two_sided_linear(tmp_path):
    """A generic direction w in 8 dims: pA = Phi(m / (sigma ||w||)), exact L2 radius m / ||w||."""
    rng = np.random.default_rng(3)
    d, sigma = 8, 0.25
    w = rng.standard_normal(d)
    W = np.stack([np.zeros(d), w])
    x = rng.standard_normal(d)
    b1 = -float(w @ x) - 0.8 * sigma * np.linalg.norm(w)  # margin: y1 = w.x' + b1, class 0 iff y1 <= 0
    net = linear_net(tmp_path, W, [0.0, b1])
    exact_radius = 0.8 * sigma
    p0 = stats.norm.cdf(0.8)
    n0, n, alpha, R = 20, 200, 0.05, 1000
    g = S.SmoothedClassifier(net, noise="gaussian", scale=sigma, batch=4096, seed=11, threads=1)
    assert g.projection is not None and g.noise_dim == 2
    bad = sum(1 for r in range(R) for res in [g.certify(x, n0, n, alpha, key=(r,))]
              if res.prediction == 1 or (res.prediction == 0 and res.radius > exact_radius))
    p_bad = exact_bad_probability(p0, n0, n, alpha, lambda v: v > p0)
    lo, hi = binom_band(R, p_bad)
    assert bad <= binom_band(R, alpha)[1]
    assert lo <= bad <= hi


def test_constant_classifier_radius_is_closed_form(tmp_path):
    """f always says class 2: nA = n, pA = alpha^(1/n), radius from each formula exactly."""
    d = 6
    net = linear_net(tmp_path, np.zeros((3, d)), [0.0, 0.0, 1.0])
    n, alpha = 500, 0.01
    pA = alpha ** (1.0 / n)
    expect = {"gaussian": 0.5 * stats.norm.ppf(pA), "laplace": -0.5 * math.log(2 * (1 - pA)), "uniform": 2 * 0.5 * (pA - 0.5)}
    for noise, r in expect.items():
        g = S.SmoothedClassifier(net, noise=noise, scale=0.5, batch=128, seed=0, threads=1)
        res = g.certify(np.zeros(d), 50, n, alpha)
        assert res.prediction == 2 and res.count == n
        assert res.pA_lower == pytest.approx(pA, rel=1e-12)
        assert res.radius == pytest.approx(r, rel=1e-9)
        pr = g.predict(np.zeros(d), 100, alpha)
        assert pr.prediction == 2 and pr.pvalue == pytest.approx(2 * 0.5 ** 100)


def test_radius_formulas_and_bounds_match_scipy():
    assert S.certified_radius("gaussian", 0.5, 0.9) == pytest.approx(0.5 * stats.norm.ppf(0.9))
    assert S.certified_radius("laplace", 0.5, 0.9) == pytest.approx(-0.5 * math.log(0.2))
    assert S.certified_radius("uniform", 0.5, 0.9) == pytest.approx(0.4)
    for noise in S.NOISES:
        assert S.certified_radius(noise, 1.0, 0.5) == pytest.approx(0.0, abs=1e-15)
        assert S.certified_radius(noise, 1.0, 0.4) == 0.0
    for n in (1, 7, 100, 10_000):
        for c in range(1, n + 1, max(1, n // 37)):
            for a in (0.1, 0.001):
                assert S.lower_confidence_bound(c, n, a) == stats.beta.ppf(a, c, n - c + 1)
    assert S.lower_confidence_bound(0, 10, 0.05) == 0.0
    assert S.binomial_pvalue(60, 100) == stats.binomtest(60, 100, 0.5).pvalue


def test_abstention_on_the_decision_boundary(tmp_path):
    """pA = 1/2 exactly: CERTIFY may answer only with probability <= alpha, PREDICT likewise."""
    d = 3
    w = np.zeros((2, d))
    w[1, 0] = 1.0
    net = linear_net(tmp_path, w, [0.0, 0.0])  # class 1 iff x0 > 0; x0 = 0 sits on the boundary
    x = np.zeros(d)
    alpha, R = 0.1, 800
    g = S.SmoothedClassifier(net, noise="gaussian", scale=1.0, batch=1000, seed=5, threads=1)
    answered_c = sum(g.certify(x, 10, 100, alpha, key=(r,)).prediction != S.ABSTAIN for r in range(R))
    answered_p = sum(g.predict(x, 100, alpha, key=(10_000 + r,)).prediction != S.ABSTAIN for r in range(R))
    # exact: CERTIFY answers iff lcb(N) >= 1/2 with N ~ Bin(n, 1/2); PREDICT iff the test rejects
    k = np.arange(101)
    p_c = float(stats.binom.pmf(k, 100, 0.5)[[S.lower_confidence_bound(int(c), 100, alpha) >= 0.5 for c in k]].sum())
    p_p = float(stats.binom.pmf(k, 100, 0.5)[[stats.binomtest(int(max(c, 100 - c)), 100, 0.5).pvalue <= alpha for c in k]].sum())
    assert p_c <= alpha and p_p <= alpha
    assert binom_band(R, p_c)[0] <= answered_c <= binom_band(R, p_c)[1]
    assert binom_band(R, p_p)[0] <= answered_p <= binom_band(R, p_p)[1]
    # far from the boundary: always the right class
    x_far = np.array([-5.0, 0.0, 0.0])
    assert all(g.certify(x_far, 10, 100, alpha, key=(r,)).prediction == 0 for r in range(20))
    assert all(g.predict(x_far, 100, alpha, key=(r,)).prediction == 0 for r in range(20))


# ---- the sampler --------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["gaussian", "laplace", "uniform"])
@pytest.mark.parametrize("bank", [0, 3000])
def test_ort_sampler_agrees_with_numpy_on_the_same_noise(tmp_path, noise, bank):
    rng = np.random.default_rng(1)
    d, k = 10, 4
    W, b = rng.standard_normal((k, d)), rng.standard_normal(k)
    net = linear_net(tmp_path, W, b, batch_symbolic=False)  # fixed batch dim 1: rewritten to a batch
    x = rng.standard_normal(d)
    g = S.SmoothedClassifier(net, noise=noise, scale=0.7, batch=700, seed=2, threads=1, bank_rows=bank)
    # gaussian: the noise is drawn projected through the (10 -> 4) layer; noisy_inputs gives the
    # inputs x + zeta U^T it stands for
    assert g.path.startswith("in-graph noise") and (g.projection is not None) == (noise == "gaussian")
    num = 2500
    counts = g.counts(x, num, g.stream((4,)))
    xs = g.noisy_inputs(x, num, g.stream((4,)))
    assert xs.shape == (num, d) and xs.dtype == np.float32
    logits = xs.astype(np.float64) @ W.T + b
    top2 = np.sort(logits, axis=1)[:, -2:]
    ambiguous = int(np.sum(top2[:, 1] - top2[:, 0] < 1e-4))
    ref = np.bincount(logits.argmax(axis=1), minlength=k)
    assert counts.sum() == num
    assert np.abs(counts - ref).sum() <= 2 * ambiguous
    # the numpy + batched-session path sees the same noisy inputs as the in-graph one, same counts
    raw = S.SmoothedClassifier(net, noise=noise, scale=0.7, batch=700, seed=2, threads=1, bank_rows=bank, project=False)
    assert raw.path == "in-graph noise"
    plain = S.SmoothedClassifier(net, noise=noise, scale=0.7, batch=700, seed=2, threads=1, bank_rows=bank, in_graph=False)
    assert plain.path == "numpy noise + batched session"
    assert np.array_equal(plain.counts(x, num, plain.stream((4,))), raw.counts(x, num, raw.stream((4,))))
    # and the ONNX Runtime logits are those of numpy on those inputs
    seen = []
    g.counts(x, num, g.stream((4,)), watch=lambda lg, inputs_of: seen.append(lg.copy()))
    assert np.allclose(np.concatenate(seen), logits, rtol=1e-5, atol=1e-5)


def test_projected_noise_has_the_law_of_the_first_layer(tmp_path):
    """Gaussian noise drawn through the first layer (Gemm 12 -> 3, then ReLU and a second
    layer): the first layer's values t = W(x + e) + b must be N(Wx + b, sigma^2 W W^T). Checked on
    the layer itself (a net that is only that layer) by mean, covariance and a KS test per
    coordinate, and the full net's outputs against its replay on the inputs the samples stand for."""
    rng = np.random.default_rng(5)
    d, h, sigma = 12, 3, 0.4
    W, b = rng.standard_normal((h, d)), rng.standard_normal(h)
    x = rng.uniform(-1, 1, d)
    net = linear_net(tmp_path, W, b, name="first.onnx")
    g = S.SmoothedClassifier(net, noise="gaussian", scale=sigma, batch=5000, seed=3, threads=1)
    assert g.projection is not None and g.noise_dim == h
    seen = []
    g.counts(x, 20000, g.stream((0,)), watch=lambda lg, inputs_of: seen.append(lg.astype(np.float64)))
    t = np.concatenate(seen)
    mean, cov = W @ x + b, sigma ** 2 * W @ W.T
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(t.mean(axis=0) - mean) <= 6 * sd / math.sqrt(t.shape[0]))
    assert np.allclose(np.cov(t.T), cov, atol=6 * np.outer(sd, sd).max() * math.sqrt(2 / t.shape[0]))
    for j in range(h):
        assert stats.kstest((t[:, j] - mean[j]) / sd[j], stats.norm.cdf).pvalue > 1e-4
    # a deeper net: ORT's outputs on the projected samples are the replays of x + zeta U^T
    W2, b2 = rng.standard_normal((4, h)), rng.standard_normal(4)
    deep = load_network(mlp_onnx(tmp_path / "deep.onnx", [(W, b), (W2, b2)], batch_symbolic=True), threads=1)
    gd = S.SmoothedClassifier(deep, noise="gaussian", scale=sigma, batch=500, seed=3, threads=1)
    assert gd.projection is not None
    logits = []
    gd.counts(x, 300, gd.stream((1,)), watch=lambda lg, inputs_of: logits.append((lg.copy(), inputs_of(np.arange(lg.shape[0])))))
    lg = np.concatenate([a for a, _ in logits])
    xs = np.concatenate([c for _, c in logits])
    assert np.allclose(xs, gd.noisy_inputs(x, 300, gd.stream((1,))))
    replay = np.stack([deep.replay(v) for v in xs[:50]]).reshape(50, -1)
    assert np.allclose(lg[:50], replay, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("noise,cdf", [("gaussian", stats.norm.cdf), ("laplace", stats.laplace.cdf),
                                       ("uniform", stats.uniform(loc=-1, scale=2).cdf)])
def test_noise_has_the_stated_distribution_and_fresh_rows_are_independent(tmp_path, noise, cdf):
    net = linear_net(tmp_path, np.eye(3), np.zeros(3))
    for bank in (0, 5000):
        g = S.SmoothedClassifier(net, noise=noise, scale=1.0, batch=1000, seed=9, threads=1, bank_rows=bank)
        z = g.noisy_inputs(np.zeros(3), 4000, g.stream((0,))).astype(np.float64)
        assert np.all(np.isfinite(z))
        for j in range(3):
            assert stats.kstest(z[:, j], cdf).pvalue > 1e-4
        # no row repeats within one certification; rows and coordinates uncorrelated
        assert np.unique(z, axis=0).shape[0] == z.shape[0]
        c = np.corrcoef(np.concatenate([z[:-1], z[1:]], axis=1).T)
        off = c[np.triu_indices_from(c, 1)]
        assert np.max(np.abs(off)) < 5 * 1 / math.sqrt(z.shape[0])  # ~5 sd of a null correlation


def test_seeds_streams_and_bank_budget(tmp_path):
    net = linear_net(tmp_path, np.eye(2), np.zeros(2))
    g = S.SmoothedClassifier(net, seed=1, threads=1, batch=64)
    a = g.noisy_inputs(np.zeros(2), 100, g.stream((3,)))
    assert np.array_equal(a, g.noisy_inputs(np.zeros(2), 100, g.stream((3,))))
    assert not np.array_equal(a, g.noisy_inputs(np.zeros(2), 100, g.stream((4,))))
    h = S.SmoothedClassifier(net, seed=2, threads=1, batch=64)
    assert not np.array_equal(a, h.noisy_inputs(np.zeros(2), 100, h.stream((3,))))
    # results do not depend on the number of noise threads
    t2 = S.SmoothedClassifier(net, seed=1, threads=2, batch=64)
    assert np.array_equal(a, t2.noisy_inputs(np.zeros(2), 100, t2.stream((3,))))
    t2.close()
    bank = S.SmoothedClassifier(net, seed=1, threads=1, batch=64, bank_rows=150)
    s = bank.stream((0,))
    bank.counts(np.zeros(2), 150, s)
    with pytest.raises(RuntimeError, match="exhausted"):
        bank.counts(np.zeros(2), 1, s)
    with pytest.raises(RuntimeError, match="exhausted"):
        bank.certify(np.zeros(2), 100, 100, 0.1)
    # two certifications of one bank see different sign patterns / offsets
    u = bank.noisy_inputs(np.zeros(2), 150, bank.stream((0,)))
    v = bank.noisy_inputs(np.zeros(2), 150, bank.stream((1,)))
    assert not np.array_equal(u, v)
    assert np.allclose(np.sort(np.abs(u).ravel()), np.sort(np.abs(v).ravel()))  # same bank, transformed
    with pytest.raises(ValueError):
        S.SmoothedClassifier(net, noise="cauchy")
    with pytest.raises(ValueError):
        S.SmoothedClassifier(net, scale=0.0)
    with pytest.raises(ValueError):
        g.certify(np.zeros(2), 10, 10, 1.5)


def test_fixed_batch_mnist_fc_is_rewritten_and_agrees_with_replay():
    bench = shared_benchmark("mnist_fc")
    net = load_network(str(bench / "onnx" / "mnist-net_256x2.onnx"), threads=1)
    assert net.input_shape[0] == 1 and net.batch_mode == "batched"
    g = S.SmoothedClassifier(net, scale=0.25, batch=500, seed=0, threads=1)
    assert g.path == "in-graph noise, projected through the first linear layer (784 -> 256)"
    x = np.full(784, 0.5)
    c = g.counts(x, 1200, g.stream((0,)))
    assert c.sum() == 1200
    xs = g.noisy_inputs(x, 1200, g.stream((0,)))
    preds = np.array([int(np.argmax(net.replay(v))) for v in xs[:40]])
    seen = []
    g.counts(x, 40, g.stream((0,)), watch=lambda lg, inputs_of: seen.append(lg.argmax(axis=1)))
    assert np.array_equal(np.concatenate(seen), preds)


# ---- VNN-LIB queries -----------------------------------------------------------------------------
def _spec(text, n_in, n_out):
    return parse_spec(text, n_inputs=n_in, n_outputs=n_out)


def _decl(n_in, n_out):
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_out))


def test_robustness_query_reads_robustness_and_rejects_the_rest():
    net = load_network(str(SPECS / "onnx" / "digits_mlp.onnx"))
    spec = load_spec(str(SPECS / "vnnlib" / "digits_0_eps0.02.vnnlib"), network=net)
    q = P.robustness_query(spec)
    assert q.label == 7 and q.others == tuple(j for j in range(10) if j != 7)
    box = "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 -1.0))\n(assert (<= X_1 2.0))\n"
    ok = _spec(_decl(2, 3) + box + "(assert (or (and (> Y_0 Y_2)) (and (<= Y_2 Y_1))))\n", 2, 3)
    q = P.robustness_query(ok)
    assert q.label == 2 and q.others == (0, 1)
    assert P.needed_radius(q, "l2") == pytest.approx(math.hypot(0.5, 1.5))
    assert P.needed_radius(q, "l1") == pytest.approx(2.0)
    bad = {
        "constant": "(assert (<= Y_0 3.0))\n",
        "conjunction": "(assert (>= Y_0 Y_2))\n(assert (>= Y_1 Y_2))\n",
        "two labels": "(assert (or (and (>= Y_0 Y_2)) (and (>= Y_0 Y_1))))\n",
        "scaled": "(assert (>= Y_0 3.0))\n",
    }
    for what, tail in bad.items():
        with pytest.raises(SpecError, match="local-robustness"):
            P.robustness_query(_spec(_decl(2, 3) + box + tail, 2, 3))
    two_boxes = (_decl(2, 3) + "(assert (or (and (>= X_0 0.0) (<= X_0 1.0) (>= X_1 0.0) (<= X_1 1.0) (>= Y_0 Y_1))"
                 " (and (>= X_0 2.0) (<= X_0 3.0) (>= X_1 0.0) (<= X_1 1.0) (>= Y_0 Y_1))))\n")
    with pytest.raises(SpecError, match="different input boxes"):
        P.robustness_query(_spec(two_boxes, 2, 3))


def test_check_sat_only_for_a_replayed_witness_of_f():
    net = load_network(str(SPECS / "onnx" / "tiny_2in.onnx"), threads=1)
    spec = load_spec(str(SPECS / "vnnlib" / "tiny_sat.vnnlib"), network=net)
    out = P.check(net, spec, time.monotonic() + 60, Options.make(sigma=0.25, threads=1, n=2000, seed=3))
    assert out.verdict == Verdict.SAT and out.witness_checked
    x, y = out.counterexample
    assert check_witness(net, spec, x) is not None
    spec_u = load_spec(str(SPECS / "vnnlib" / "tiny_unsat.vnnlib"), network=net)
    out = P.check(net, spec_u, time.monotonic() + 60, Options.make(sigma=0.25, threads=1, n=2000))
    assert out.verdict == Verdict.UNKNOWN and out.certificate is not None  # never unsat: g is not f


def test_check_certificate_on_a_digits_property():
    net = load_network(str(SPECS / "onnx" / "digits_mlp_noise025.onnx"), threads=1)
    spec = load_spec(str(SPECS / "vnnlib" / "digits_0_eps0.02.vnnlib"), network=net)
    q = P.robustness_query(spec)
    for noise in ("gaussian", "uniform"):
        out = P.check(net, spec, time.monotonic() + 60, Options.make(sigma=0.25, noise=noise, threads=1, n=5000, alpha=0.01))
        c = out.certificate
        assert out.verdict == Verdict.UNKNOWN and out.counterexample is None
        assert c.noise == noise and c.n == 5000 and c.alpha == 0.01 and c.sigma == 0.25
        assert c.norm == S.NOISES[noise]
        assert c.needed_radius == pytest.approx(P.needed_radius(q, c.norm))
        assert c.covered == (c.predicted == q.label and c.radius > c.needed_radius)
        assert c.radius == pytest.approx(S.certified_radius(noise, 0.25, c.pA_lower))
        assert "smoothed classifier g" in c.claim and "not the network f" in c.claim
    # a deadline already passed: no claim at all
    out = P.check(net, spec, time.monotonic() - 1, Options.make(sigma=0.25, threads=1, n=100_000, batch=1000))
    assert out.verdict == Verdict.TIMEOUT and out.certificate is None


def test_verify_cli_probabilistic_mode(tmp_path):
    res, js = tmp_path / "r.txt", tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "vnncert.cli", "verify", str(SPECS / "onnx" / "digits_mlp_noise025.onnx"),
                        str(SPECS / "vnnlib" / "digits_1_eps0.02.vnnlib"), "--mode", "probabilistic", "--sigma", "0.25",
                        "--n", "2000", "--threads", "1", "--timeout", "60", "--result-file", str(res), "--json", str(js)],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    lines = res.read_text().splitlines()
    assert lines[0] == "unknown" and all(line.startswith(";") for line in lines[1:]) and len(lines) > 1
    import json

    cert = json.loads(js.read_text())["certificate"]
    assert cert["n"] == 2000 and cert["noise"] == "gaussian" and "smoothed classifier g" in cert["claim"]
    prop = tmp_path / "c.vnnlib"
    prop.write_text(_decl(2, 2) + "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n"
                    "(assert (<= X_1 1.0))\n(assert (<= Y_0 0.5))\n")
    p = subprocess.run([sys.executable, "-m", "vnncert.cli", "verify", str(SPECS / "onnx" / "tiny_2in.onnx"), str(prop),
                        "--mode", "probabilistic"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "local-robustness" in p.stderr


# ---- data sets, files, report --------------------------------------------------------------------
def test_certify_dataset_writes_the_reference_format(tmp_path):
    from vnncert.smoothing.report import CERTIFY_HEADER, certify_dataset, load_dataset, read_tsv

    net = load_network(str(SPECS / "onnx" / "digits_mlp_noise050.onnx"), threads=1)
    x, y = load_dataset(str(SPECS / "data" / "digits_test.npz"), net.n_inputs)
    assert x.shape == (360, 64) and y.shape == (360,)
    out = tmp_path / "c.tsv"
    rows = certify_dataset(net, x, y, 0.5, n0=50, n=500, alpha=0.01, batch=256, skip=3, max=20, seed=1,
                           progress=False, out=str(out), threads=1)
    lines = out.read_text().splitlines()
    assert lines[0] == CERTIFY_HEADER
    assert [int(line.split("\t")[0]) for line in lines[1:]] == [0, 3, 6, 9, 12, 15, 18] == [r.idx for r in rows]
    for line, r in zip(lines[1:], rows):
        f = line.split("\t")
        assert f[3] == f"{r.radius:.3}" and int(f[2]) == r.predict and int(f[4]) == int(r.predict == r.label)
        assert f[5].startswith("0:00:")
    cols = read_tsv(str(out))
    assert cols["idx"].tolist() == [r.idx for r in rows]
    # the noise of example i depends on (seed, i) only: the same rows with another skip
    again = certify_dataset(net, x, y, 0.5, n0=50, n=500, alpha=0.01, batch=256, skip=9, max=20, seed=1,
                            progress=False, out=None, threads=1)
    by_idx = {r.idx: r for r in rows}
    assert all(by_idx[r.idx].radius == r.radius and by_idx[r.idx].predict == r.predict for r in again)


def test_report_table_average_radius_and_plot(tmp_path):
    from vnncert.smoothing.report import certified_accuracy, report

    tsv = tmp_path / "a.tsv"
    tsv.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
                   "0\t1\t1\t0.7\t1\t0:00:00.1\n1\t2\t2\t1.6\t1\t0:00:00.1\n"
                   "2\t3\t-1\t0.0\t0\t0:00:00.1\n3\t4\t5\t2.0\t0\t0:00:00.1\n")
    (tmp_path / "a.tsv.json").write_text('{"sigma": 0.5, "noise": "gaussian", "norm": "l2"}')
    acc = certified_accuracy(np.array([0.7, 1.6, 0.0, 2.0]), np.array([1, 1, 0, 0]), [0.0, 0.5, 1.0, 1.6, 2.0])
    assert acc.tolist() == [0.5, 0.5, 0.25, 0.25, 0.0]
    png = tmp_path / "p.png"
    text = report([str(tsv)], radii=[0.0, 1.0, 2.0], plot=str(png))
    row = [line for line in text.splitlines() if line.startswith("sigma=0.5")][0].split()
    assert row[1:] == ["4", "0.500", "0.250", "0.000", "0.575", "0.250"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smooth_cli_certify_predict_report(tmp_path):
    from vnncert.cli import main

    tsv, ptsv, png = tmp_path / "c.tsv", tmp_path / "p.tsv", tmp_path / "c.png"
    model, data = str(SPECS / "onnx" / "digits_mlp_noise025.onnx"), str(SPECS / "data" / "digits_test.npz")
    common = ["--data", data, "--sigma", "0.25", "--n", "300", "--max", "10", "--threads", "1", "--no-progress"]
    assert main(["smooth", "certify", model, *common, "--n0", "30", "--out", str(tsv)]) == 0
    assert len(tsv.read_text().splitlines()) == 11
    assert main(["smooth", "predict", model, *common, "--fresh-noise", "--out", str(ptsv)]) == 0
    assert ptsv.read_text().splitlines()[0] == "idx\tlabel\tpredict\tcorrect\ttime"
    assert main(["smooth", "report", str(tsv), "--radii", "0", "0.25", "--plot", str(png)]) == 0
    assert png.exists()
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 5)), y=np.zeros(3, int))
    assert main(["smooth", "certify", model, "--data", str(bad), "--sigma", "0.25", "--out", str(tmp_path / "x.tsv")]) == 2


def test_float64_model_gets_float64_noise(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    W = np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 0.0]])
    g = helper.make_graph([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], "lin64",
                          [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])],
                          [numpy_helper.from_array(W, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "lin64.onnx"))
    net = load_network(str(tmp_path / "lin64.onnx"), threads=1)
    for noise in S.NOISES:
        sc = S.SmoothedClassifier(net, noise=noise, scale=0.3, batch=500, seed=0, threads=1)
        assert sc.path == "in-graph noise" and sc.dtype == np.float64  # 2 -> 3: nothing to project
        x = np.array([0.2, -0.1])
        xs = sc.noisy_inputs(x, 1500, sc.stream((1,)))
        assert xs.dtype == np.float64 and np.all(np.abs(xs - x) <= 0.3 * (40 if noise != "uniform" else 1))
        ref = np.bincount((xs @ W.T).argmax(axis=1), minlength=3)
        assert np.array_equal(sc.counts(x, 1500, sc.stream((1,))), ref)
