"""The ReLU-split branch and bound (search/activation_split.py over bounds/alpha_beta.py): sound
bounds on every domain, verdicts that agree with the MILP. (Verdicts against grid enumeration and
mnist_fc 256x4 through it: test_exact.py.)"""
from __future__ import annotations

import time

import numpy as np
import pytest

from helpers import mlp_onnx, random_mlp

from vnncert.network.layers import layer_graph
from vnncert.network.loader import load_network
from vnncert.results import Verdict
from vnncert.spec.model import InputRegion

from test_exact import spec_of


def _chain_of(lg):
    from vnncert.bounds.chain import ChainView

    return ChainView.of(lg, 10**8)


def _bab_of(net, lo, hi, A, b):
    from vnncert.bounds.region import compute_bounds
    from vnncert.search.activation_split import SplitBaB

    lg = layer_graph(net)
    bounds = compute_bounds(lg, InputRegion(np.asarray(lo, float), np.asarray(hi, float)), time.monotonic() + 60, method="crown")
    chain = _chain_of(lg)
    src = [L.source for L in lg.layers if L.kind == "relu"]
    lows = [bounds.layers[k][0] for k in src]
    ups = [bounds.layers[k][1] for k in src]
    return lg, SplitBaB(chain, lo, hi, lows, ups, A, b)


@pytest.mark.parametrize("seed", range(4))
def test_domain_bounds_hold_on_the_points_of_each_domain(tmp_path, seed):
    """Random splits, random alpha in [0, 1] and beta >= 0: each domain's bound is below A y at
    every sampled input whose activations agree with the domain's splits."""
    import torch

    sizes = [4, 12, 12, 12, 3]
    net = load_network(mlp_onnx(tmp_path / "n.onnx", random_mlp(seed, sizes)), threads=1)
    lo, hi = -np.ones(4), np.ones(4)
    A = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]])
    lg, bab = _bab_of(net, lo, hi, A, np.zeros(2))
    assert bab.U > 4
    rng = np.random.default_rng(seed)
    # activations of many sampled inputs, in the root-unstable coordinates of the split vectors
    xs = rng.uniform(lo, hi, size=(200_000, 4))
    h = xs
    signs = []
    chain = bab.chain
    for j in range(chain.n_relu):
        z = h @ chain.W[j].numpy().T + chain.b[j].numpy()
        signs.append(np.sign(z[:, bab.layers[j][0].numpy()]))
        h = np.maximum(z, 0)
    ys = (h @ chain.W[-1].numpy().T + chain.b[-1].numpy()) @ A.T
    S = np.concatenate(signs, axis=1).astype(np.int8)  # (P, U)
    # non-empty domains: the sign pattern of a sampled input, on a random subset of the neurons
    N = 64
    keep = rng.uniform(size=(N, bab.U)) < rng.uniform(0.1, 0.9, size=(N, 1))
    split = torch.as_tensor((S[rng.integers(0, len(xs), N)] * keep).astype(np.int8))
    # (float32 values, as a domain stores them)
    alpha = torch.as_tensor(rng.uniform(0, 1, size=(N, 2, bab.U))).float().double()
    beta = torch.as_tensor(rng.exponential(0.5, size=(N, 2, bab.U))).float().double()
    with torch.no_grad():
        lb, _, _ = bab._pass(split.double(), alpha, beta)
    # the optimiser's bound: float32 steps from these parameters, then one float64 pass
    opt, _, _, _, _ = bab.bound(split, alpha.float(), beta.float(), 10, time.monotonic() + 60)
    assert opt.dtype == torch.float64
    lb, opt = lb.numpy(), opt.numpy()
    # never worse than where it started, beyond float32's choice among near-equal steps
    assert np.all(opt >= lb - 1e-5 * (1 + np.abs(lb)))
    assert (opt > lb + 1e-3).any()  # and the steps do improve some rows
    # as the search calls it: a domain with a row above `freeze` leaves the steps (here about
    # half of them at once), the others go on; the bounds stay sound and never below the start
    thr = np.full(2, np.median(lb.max(axis=1)))
    fz, fa, fb, fsc, _ = bab.bound(split, alpha.float(), beta.float(), 10, time.monotonic() + 60, freeze=thr)
    assert fz.dtype == torch.float64 and fsc.shape == (N, bab.U) and fa.shape == fb.shape == (N, 2, bab.U)
    assert float(fa.min()) >= 0 and float(fa.max()) <= 1 and float(fb.min()) >= 0
    fz = fz.numpy()
    assert np.all(fz >= lb - 1e-5 * (1 + np.abs(lb)))
    assert (fz > lb + 1e-3).any()
    checked = 0
    for d in range(N):
        s = split[d].numpy()
        agree = np.all((s == 0) | (S * s >= 0), axis=1)
        if agree.any():
            checked += 1
            for bound in (lb, opt, fz):
                assert np.all(bound[d] <= ys[agree].min(axis=0) + 1e-9), d
    assert checked == N


def test_bab_proves_what_the_milp_proves_on_a_deeper_net(tmp_path):
    """A 6-input, 3 x 16 net with a threshold the LP relaxation cannot prove: the branch and bound
    proves it (unsat), agreeing with the MILP alone; just above the sampled minimum it is sat."""
    from vnncert.bounds.region import compute_bounds, output_lower_bounds
    from vnncert.engines import exact
    from vnncert.options import ExactOptions, InputSplitOptions, Options

    def opts(bab_min_unstable):  # one MILP (or BaB) over the whole box: no input splitting
        return Options(mode="exact", threads=1).with_(input_split=InputSplitOptions(max_dims=0),
                                                      exact=ExactOptions(bab_min_unstable=bab_min_unstable))

    net = load_network(mlp_onnx(tmp_path / "d.onnx", random_mlp(11, [6, 16, 16, 16, 2])), threads=1)
    lg = layer_graph(net)
    lo, hi = -0.5 * np.ones(6), 0.5 * np.ones(6)
    a = np.array([[1.0, -1.0]])
    xs = np.random.default_rng(0).uniform(lo, hi, size=(200_000, 6))
    sampled_min = float((lg.evaluate(xs) @ a.T).min())
    bnd = compute_bounds(lg, InputRegion(lo, hi), time.monotonic() + 60, method="lp")
    thr = sampled_min - 0.03
    assert float(output_lower_bounds(lg, a, bnd)[0]) < thr - 0.5  # far beyond the relaxation alone
    out = exact.check(net, spec_of(lo, hi, [(a, [thr])], 2), time.monotonic() + 60, opts(0))
    assert out.verdict == Verdict.UNSAT and out.stats["bab_proven"] == 1, out.detail
    # where the bounds' time went: CROWN, alpha-CROWN and the LPs, disjoint parts of bounds_s;
    # a chain the branch and bound takes gets no LPs (alpha-CROWN bounds as tightly)
    parts = [out.stats[k] for k in ("crown_s", "refine_s", "lp_s")]
    assert min(parts) >= 0 and sum(parts) <= out.stats["bounds_s"] + 1e-6
    assert out.stats["bounds_method"] == "alpha-crown" and out.stats["lp_s"] == 0 and out.stats["refine_s"] > 0
    out = exact.check(net, spec_of(lo, hi, [(a, [thr])], 2), time.monotonic() + 60, opts(10**9))
    assert out.verdict == Verdict.UNSAT and "bab_runs" not in out.stats
    assert out.stats["bounds_method"] == "lp" and out.stats["lp_s"] > 0
    out = exact.check(net, spec_of(lo, hi, [(a, [sampled_min + 0.01])], 2), time.monotonic() + 60, opts(0))
    assert out.verdict == Verdict.SAT and out.witness_checked


def test_a_search_stopped_at_its_deadline_continues_where_it_stopped(tmp_path):
    """run() after a timeout goes on with the same tree (the exact engine's second pass does
    this): it ends proven, and its domain count includes the first run's."""
    net = load_network(mlp_onnx(tmp_path / "d.onnx", random_mlp(11, [6, 16, 16, 16, 2])), threads=1)
    lg = layer_graph(net)
    lo, hi = -0.5 * np.ones(6), 0.5 * np.ones(6)
    a = np.array([[1.0, -1.0]])
    xs = np.random.default_rng(0).uniform(lo, hi, size=(200_000, 6))
    thr = float((lg.evaluate(xs) @ a.T).min()) - 0.03
    _, bab = _bab_of(net, lo, hi, a, np.array([thr]))
    no_witness = lambda xs: None  # noqa: E731
    first = bab.run(time.monotonic(), no_witness)  # already due: the root only
    assert first.status == "timeout" and len(bab.pool) > 0
    n1 = first.stats["domains"]
    second = bab.run(time.monotonic() + 120, no_witness)
    assert second.status == "proven" and len(bab.pool) == 0
    assert second.stats["domains"] > n1


def _sampled_chain(tmp_path, seed, alpha: bool):
    """A 5-16-16-16-3 chain over [-1, 1]^5: (lo, hi, chain, lows, ups, zs) with the ReLU layers'
    pre-activation bounds from CROWN (or alpha-CROWN, as the exact engine's LP-free route has
    them), copies, and each layer's pre-activations at 100,000 sampled inputs."""
    from vnncert.bounds.region import compute_bounds
    from vnncert.engines import exact
    from vnncert.options import Options

    net = load_network(mlp_onnx(tmp_path / "n.onnx", random_mlp(seed, [5, 16, 16, 16, 3])), threads=1)
    lo, hi = -np.ones(5), np.ones(5)
    lg = layer_graph(net)
    region = InputRegion(lo, hi)
    t = time.monotonic()
    g = exact._Graph(lg, Options(threads=1))
    bounds = compute_bounds(lg, region, t + 60, method="crown", refine=exact._refiner(g, region, t + 60, t, Options()) if alpha else None)
    chain = g.chain
    src = [L.source for L in lg.layers if L.kind == "relu"]
    lows = [bounds.layers[k][0].copy() for k in src]
    ups = [bounds.layers[k][1].copy() for k in src]
    h = np.random.default_rng(seed).uniform(lo, hi, size=(100_000, 5))
    zs = []
    for j in range(len(src)):
        zs.append(h @ chain.W[j].numpy().T + chain.b[j].numpy())
        h = np.maximum(zs[-1], 0)
    return lo, hi, chain, lows, ups, zs


@pytest.mark.parametrize("seed,elements", [(0, 2_000_000), (1, 2_000_000), (2, 64)])
def test_optimised_rows_are_sound_and_at_least_as_tight_as_crown(tmp_path, seed, elements):
    """alpha-CROWN bounds of each hidden layer's unstable rows (`bounds.alpha_beta.optimised_rows`,
    what the exact engine feeds its LP) contain every sampled pre-activation and are inside CROWN's."""
    from vnncert.bounds.alpha_beta import optimised_rows
    from vnncert.options import BoundsOptions

    options = BoundsOptions(refine_elements=elements)  # 64: rows in chunks of one or two
    lo, hi, chain, lows, ups, zs = _sampled_chain(tmp_path, seed, alpha=False)
    tighter = 0
    for j, z in enumerate(zs):
        rows = np.flatnonzero((lows[j] < 0) & (ups[j] > 0))
        if j == 0 or rows.size == 0:
            continue
        l, u = optimised_rows(chain, lo, hi, lows, ups, j, rows, 30, time.monotonic() + 60, options)
        assert np.all(z[:, rows] >= l - 1e-9) and np.all(z[:, rows] <= u + 1e-9)
        assert np.all(l >= lows[j][rows] - 1e-9) and np.all(u <= ups[j][rows] + 1e-9)
        tighter += int((l > lows[j][rows] + 1e-6).sum() + (u < ups[j][rows] - 1e-6).sum())
    assert tighter > 0


@pytest.mark.parametrize("seed", range(3))
def test_tightened_rows_are_sound_and_tighter_than_alpha_crown(tmp_path, seed):
    """Branch-and-bound tightening of each hidden layer's unstable rows
    (`search.activation_split.tighten_rows`, what the exact engine runs before its ReLU-split
    search on deep nets) contains every sampled pre-activation and tightens some of alpha-CROWN's
    bounds (the engine keeps the intersection: a row's search may end a little below the
    alpha-CROWN bound of the same row)."""
    from vnncert.options import ActivationSplitOptions
    from vnncert.search.activation_split import tighten_rows

    side_weight = ActivationSplitOptions().tighten_side_weight

    lo, hi, chain, lows, ups, zs = _sampled_chain(tmp_path, seed, alpha=True)
    tighter = skipped = 0
    for j, z in enumerate(zs):
        rows = np.flatnonzero((lows[j] < 0) & (ups[j] > 0))
        if j == 0 or rows.size == 0:
            continue
        st = {}
        l, u = tighten_rows(chain, lo, hi, lows, ups, j, rows, time.monotonic() + 2.0, st)
        assert st["domains"] > 0
        assert np.all(z[:, rows] >= l - 1e-9) and np.all(z[:, rows] <= u + 1e-9)
        # a side far from zero next to the other is not searched: no bound for it (the caller
        # keeps alpha-CROWN's); every other side gets a finite one
        lj, uj = lows[j][rows], ups[j][rows]
        skip_l = uj ** 2 / (uj - lj) ** 2 < side_weight
        skip_u = lj ** 2 / (uj - lj) ** 2 < side_weight
        assert np.all(np.isneginf(l[skip_l])) and np.all(np.isfinite(l[~skip_l]))
        assert np.all(np.isposinf(u[skip_u])) and np.all(np.isfinite(u[~skip_u]))
        skipped += int(skip_l.sum() + skip_u.sum())
        tighter += int((l > lows[j][rows] + 1e-6).sum() + (u < ups[j][rows] - 1e-6).sum())
        # later layers start from the tightened rows (as the engine does)
        lows[j][rows] = np.maximum(lows[j][rows], l)
        ups[j][rows] = np.minimum(ups[j][rows], u)
    assert tighter > 0 and skipped > 0


@pytest.mark.parametrize("seed", range(2))
def test_tightened_chain_skips_last_layer_rows_no_disjunct_reads(tmp_path, seed):
    """`search.activation_split.tighten_chain` with the open disjuncts' rows: the last ReLU
    layer's rows whose weight in every row's bound is >= 0 are left to alpha-CROWN (their upper
    chord is never read); every layer's bounds still contain the sampled pre-activations."""
    from vnncert.options import ActivationSplitOptions, BoundsOptions
    from vnncert.search.activation_split import ActivationSplitStats, tighten_chain

    lo, hi, chain, lows, ups, zs = _sampled_chain(tmp_path, seed, alpha=True)
    out_A = np.array([[1.0, -1.0, 0.0]])
    lam = out_A @ chain.W[-1].numpy()
    for A in (None, out_A):
        cs = ActivationSplitStats()
        tl, tu = tighten_chain(chain, lo, hi, lows, ups, time.monotonic() + 6.0, 30, ActivationSplitOptions(), BoundsOptions(),
                               cs, out_A=A)
        for j, z in enumerate(zs):
            assert np.all(z >= tl[j] - 1e-9) and np.all(z <= tu[j] + 1e-9)
        if A is None:
            assert cs.tighten_rows_skipped == 0
        else:
            # the rows skipped are unstable after the layer's alpha-CROWN pass and not read
            unread = (lam[0] >= 0) & (tl[-1] < 0) & (tu[-1] > 0)
            assert 0 < cs.tighten_rows_skipped <= int(((lam[0] >= 0) & (lows[-1] < 0) & (ups[-1] > 0)).sum())
            assert cs.tighten_rows_skipped == int(unread.sum())


def test_tightening_with_no_time_bounds_nothing(tmp_path):
    """A deadline already passed: no bound is claimed (infinite), nothing is searched."""
    from vnncert.bounds.region import compute_bounds
    from vnncert.search.activation_split import tighten_rows

    net = load_network(mlp_onnx(tmp_path / "n.onnx", random_mlp(0, [5, 16, 16, 3])), threads=1)
    lo, hi = -np.ones(5), np.ones(5)
    lg = layer_graph(net)
    b = compute_bounds(lg, InputRegion(lo, hi), time.monotonic() + 60, method="crown")
    src = [L.source for L in lg.layers if L.kind == "relu"]
    lows = [b.layers[k][0] for k in src]
    ups = [b.layers[k][1] for k in src]
    rows = np.flatnonzero((lows[1] < 0) & (ups[1] > 0))
    l, u = tighten_rows(_chain_of(lg), lo, hi, lows, ups, 1, rows, time.monotonic() - 1.0)
    assert rows.size and np.all(l == -np.inf) and np.all(u == np.inf)
