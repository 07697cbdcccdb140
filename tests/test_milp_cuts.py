"""SCIP's root cuts of the network's MILP (milp/cuts.py) in the alpha/beta bound: every cut holds
at every sampled point of the disjunct's unsafe set, the bound with them stays below every such
point, and the ReLU-split search with them never proves a property a sampled point violates."""
from __future__ import annotations

import time

import numpy as np
import pytest

from helpers import mlp_onnx, random_mlp

from vnncert.network.layers import layer_graph
from vnncert.network.loader import load_network
from vnncert.spec.model import InputRegion

torch = pytest.importorskip("torch")


def _setup(tmp_path, seed, q, width=40):
    """A seeded 6-w-w-w-2 ReLU net (w = `width`) on [-1, 1]^6, the row y0 - y1 <= b with b its q-quantile over
    200,000 samples (so some samples are unsafe): (lg, lo, hi, A, b, xs, row values, CROWN bounds)."""
    from vnncert.bounds.region import compute_bounds

    net = load_network(mlp_onnx(tmp_path / "n.onnx", random_mlp(seed, [6, width, width, width, 2])), threads=1)
    lg = layer_graph(net)
    lo, hi = -np.ones(6), np.ones(6)
    xs = np.random.default_rng(seed).uniform(lo, hi, size=(200_000, 6))
    A = np.array([[1.0, -1.0]])
    v = lg.evaluate(xs) @ A.T
    b = np.array([np.quantile(v, q)])
    bnd = compute_bounds(lg, InputRegion(lo, hi), time.monotonic() + 60, method="crown")
    return lg, lo, hi, A, b, xs, v, bnd


def _bab(lg, lo, hi, A, b, bnd, **options):
    from vnncert.bounds.graph import GraphView
    from vnncert.options import ActivationSplitOptions
    from vnncert.search.activation_split import SplitBaB

    pre = {L.source: bnd.layers[L.source] for L in lg.layers if L.kind in ("relu", "max")}
    return SplitBaB(GraphView.of(lg, 10**9), lo, hi, pre, A, b, ActivationSplitOptions(**options))


def _cut_values(lg, bab, layers, ind, vals):
    """The converted cuts' left-hand sides sum_L C_L v_L + C_z z at the points whose layer values
    are `vals` (z from the signs of bab's split neurons' inputs): (points, cuts)."""
    tot = sum((C @ vals[L].T).T for L, C in layers.items())
    if ind is not None:
        Z = np.concatenate([vals[lg.layers[j].source][:, nn] > 0 for j, nn in bab.split_neurons()], axis=1)
        tot = tot + (ind @ Z.T.astype(np.float64)).T
    return tot


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_root_cuts_hold_on_the_unsafe_set_and_tighten_the_bound(tmp_path, seed):
    from vnncert.milp.cuts import root_cuts, to_bound_cuts

    lg, lo, hi, A, b, xs, v, bnd = _setup(tmp_path, seed, 0.001)
    pool = root_cuts(bnd.enc, A, b, time.monotonic() + 120)
    assert pool is not None and pool.size > 10
    bab = _bab(lg, lo, hi, A, b, bnd)
    lb0, *_ = bab.bound(*bab.root_state(), 40, time.monotonic() + 60)
    d, layers, ind = to_bound_cuts(pool, bnd.enc, bab)
    assert bab.set_cuts(d, layers, ind) == len(d) > 10
    # each cut at each unsafe sample: sum over layers of C_L v_L + C_z z <= d
    unsafe = (v <= b).all(axis=1)
    assert unsafe.sum() >= 100
    vals = lg.evaluate(xs[unsafe], all_layers=True)
    assert np.all(_cut_values(lg, bab, layers, ind, vals) <= d[None, :])
    lb1, _, beta, _, _ = bab.bound(*bab.root_state(), 40, time.monotonic() + 60)
    assert beta.shape[-1] == bab.U + len(d)
    lb0, lb1 = float(lb0[0, 0]), float(lb1[0, 0])
    assert lb1 <= float(v[unsafe].min())  # below every unsafe point (they satisfy the cuts)
    assert lb1 > lb0 + 0.1, (lb0, lb1)  # and the cuts tighten the root bound on these nets


def test_no_cuts_when_the_root_cannot_finish(tmp_path):
    from vnncert.milp.cuts import root_cuts

    lg, lo, hi, A, b, xs, v, bnd = _setup(tmp_path, 1, 0.001)
    assert root_cuts(bnd.enc, A, b, time.monotonic() - 1.0) is None


def test_a_root_the_time_limit_stops_gives_the_cuts_it_had_separated(tmp_path):
    """A 450-ReLU net whose full root (50 separation rounds) takes seconds, stopped after about
    one: the cuts separated by then come back, by the deadline, and hold at every unsafe sample."""
    from vnncert.milp.cuts import root_cuts, to_bound_cuts

    lg, lo, hi, A, b, xs, v, bnd = _setup(tmp_path, 1, 0.001, width=150)
    t0 = time.monotonic()
    pool = root_cuts(bnd.enc, A, b, t0 + 2.0, 50)
    assert time.monotonic() - t0 < 6.0
    assert pool is not None and pool.size > 0
    unsafe = (v <= b).all(axis=1)
    assert unsafe.sum() >= 100
    vals = lg.evaluate(xs[unsafe], all_layers=True)
    bab = _bab(lg, lo, hi, A, b, bnd)
    d, layers, ind = to_bound_cuts(pool, bnd.enc, bab)
    assert d.size > 0
    assert np.all(_cut_values(lg, bab, layers, ind, vals) <= d[None, :])


def _two_thresholds(tmp_path, seed):
    """(lg, lo, hi, A, CROWN bounds, the uncut search, [(b, violated)]): a threshold just above the
    sampled minimum (a violation exists) and one a third of the way from it down to the root's
    bound (true, and within reach of a short search)."""
    lg, lo, hi, A, b, xs, v, bnd = _setup(tmp_path, seed, 0.0)
    probe = _bab(lg, lo, hi, A, b, bnd)
    root = float(probe.bound(*probe.root_state(), 40, time.monotonic() + 60)[0][0, 0])
    m = float(v.min())
    return lg, lo, hi, A, bnd, probe, [(np.array([m + 1e-3]), True), (np.array([m - (m - root) / 3]), False)]


def _cuts_hook(pool, enc, covers=(0,)):
    """A `cuts` hook as the engine's (`search_disjuncts`, `cut_trees`, `race_trees`): SCIP's `pool`
    for the disjuncts in `covers` (its `disjuncts`), none for the others."""
    from vnncert.milp.cuts import to_bound_cuts

    def hook(di, search):
        if di in covers:
            search.stats["cuts"] = search.set_cuts(*to_bound_cuts(pool, enc, search))
    hook.disjuncts = frozenset(covers)
    return hook


@pytest.mark.parametrize("seed", [1, 2])
def test_search_with_cuts_never_proves_a_violated_property_and_proves_a_true_one(tmp_path, seed):
    from vnncert.milp.cuts import root_cuts, to_bound_cuts

    lg, lo, hi, A, bnd, _, thresholds = _two_thresholds(tmp_path, seed)
    for b, violated in thresholds:
        pool = root_cuts(bnd.enc, A, b, time.monotonic() + 120)
        assert pool is not None
        bab = _bab(lg, lo, hi, A, b, bnd)
        bab.set_cuts(*to_bound_cuts(pool, bnd.enc, bab))
        r = bab.run(time.monotonic() + (5.0 if violated else 60.0), lambda p: None)
        if violated:
            assert r.status in ("timeout", "unknown"), r.status
        else:
            assert r.status == "proven", r.stats


@pytest.mark.parametrize("seed", [2])
def test_cuts_enter_a_search_under_way(tmp_path, seed):
    """A tree under way takes SCIP's cuts (`SplitBaB.set_cuts` with open domains): the domains keep
    their bounds and their cuts' multipliers start at zero after the split multipliers; the search
    goes on and proves the true threshold, never the violated one. `cut_trees` lets a new search
    with the cuts decide the disjunct within its probe's time (or replace the tree), else the tree
    takes them."""
    from vnncert.milp.cuts import root_cuts, to_bound_cuts
    from vnncert.search.activation_split import ActivationSplitStats, Trees, cut_trees, search_disjuncts

    lg, lo, hi, A, bnd, probe, thresholds = _two_thresholds(tmp_path, seed)
    for b, violated in thresholds:
        pool = root_cuts(bnd.enc, A, b, time.monotonic() + 120)
        assert pool is not None
        bab = _bab(lg, lo, hi, A, b, bnd, batch_parents=4)
        # under way: the root only (its deadline passes before the first round), or a few rounds more
        assert bab.run(time.monotonic() + (0.5 if violated else 0.01), lambda p: None).status == "timeout"
        n, lb = len(bab.pool), bab.pool.lb.clone()
        K = bab.set_cuts(*to_bound_cuts(pool, bnd.enc, bab))
        assert K > 0 and tuple(bab.pool.beta.shape) == (n, 1, bab.U + K)
        assert not bab.pool.beta[..., bab.U:].any() and torch.equal(bab.pool.lb, lb)
        r = bab.run(time.monotonic() + (5.0 if violated else 60.0), lambda p: None)
        if violated:
            assert r.status in ("timeout", "unknown"), r.status
        else:
            assert r.status == "proven", r.stats

    # cut_trees on a tree under way (the true threshold): a new search with the cuts for the probe's
    # time decides the disjunct, or the tree takes the cuts; then the search proves it
    from vnncert.options import ActivationSplitOptions

    pre, view = probe.pre, probe.view
    so = ActivationSplitOptions(batch_parents=4)

    hook = _cuts_hook(pool, bnd.enc)
    for probe_s in (0.0, 60.0):
        trees, stats, open_d = Trees(), ActivationSplitStats(), [0]
        assert search_disjuncts(view, lo, hi, pre, [(A, b)], open_d, time.monotonic() + 0.3, lambda p: None, so, stats,
                                trees=trees) is None
        if not open_d:  # (a fast machine may have proven it already)
            continue
        old = trees.searches[0]
        assert cut_trees(view, lo, hi, pre, [(A, b)], open_d, trees, hook, time.monotonic() + probe_s, lambda p: None,
                         so, stats) is None
        if probe_s == 0.0:  # no time to probe: the tree takes the cuts
            assert stats.cut_kept == 1 and trees.searches[0] is old and old.K > 0
            assert tuple(old.pool.beta.shape[1:]) == (1, old.U + old.K)
        elif stats.cut_probes_proven:  # a new search with the cuts proved it within the minute
            assert open_d == [] and 0 not in trees.searches, stats.runs
        elif stats.cut_restarts:  # ... or its time ran out (a slow machine) while it was closing domains: it goes on
            assert trees.searches[0] is not old and trees.searches[0].K > 0
        else:  # ... or while it was not: the tree took them
            assert stats.cut_kept == 1 and trees.searches[0] is old and old.K > 0
        search_disjuncts(view, lo, hi, pre, [(A, b)], open_d, time.monotonic() + 60, lambda p: None, so, stats,
                         search=2, trees=trees, cuts=hook)
        assert open_d == [], stats.runs


@pytest.mark.parametrize("seed", [2])
def test_only_the_disjuncts_with_cuts_start_new_trees(tmp_path, seed):
    """`Trees.restart` (the engine's default step when SCIP's roots come back): the disjuncts with
    cuts get new searches carrying them; a disjunct whose root gave none keeps its tree under way
    (the same search object, its domains and rounds) and both are then proven."""
    from vnncert.milp.cuts import root_cuts
    from vnncert.options import ActivationSplitOptions
    from vnncert.search.activation_split import ActivationSplitStats, Trees, search_disjuncts

    lg, lo, hi, A, bnd, probe, thresholds = _two_thresholds(tmp_path, seed)
    b = thresholds[1][0]  # the true threshold, as two disjuncts
    pool = root_cuts(bnd.enc, A, b, time.monotonic() + 120)
    assert pool is not None
    pre, view = probe.pre, probe.view
    so = ActivationSplitOptions(batch_parents=4)

    hook = _cuts_hook(pool, bnd.enc, covers=(0,))  # cuts for disjunct 0 only
    trees, stats, open_d = Trees(), ActivationSplitStats(), [0, 1]
    search_disjuncts(view, lo, hi, pre, [(A, b), (A, b)], open_d, time.monotonic() + 0.3, lambda p: None, so, stats,
                     trees=trees)
    if open_d != [0, 1]:
        pytest.skip("a fast machine proved a disjunct within the first search's 0.3 s")
    old0, old1 = trees.searches[0], trees.searches[1]
    rounds1 = old1.stats["rounds"]
    trees.restart([0])
    assert 0 not in trees.searches and 0 not in trees.latest and trees.searches[1] is old1
    search_disjuncts(view, lo, hi, pre, [(A, b), (A, b)], open_d, time.monotonic() + 120, lambda p: None, so, stats,
                     search=2, trees=trees, cuts=hook)
    assert open_d == [], stats.runs
    new0 = [r for r in stats.runs if r.get("disjunct") == 0 and r.get("search") == 2]
    assert len(new0) == 1 and new0[0].get("cuts", 0) > 0 and new0[0]["domains"] >= 1, stats.runs
    assert old0.K == 0 and old1.K == 0  # the old tree of 0 never took them; 1 went on without cuts
    assert old1.stats["rounds"] >= rounds1 and len(old1.pool) == 0


@pytest.mark.parametrize("seed", [2])
def test_a_search_with_cuts_races_the_tree_under_way(tmp_path, seed):
    """`race_trees` / `Race` (`ExactOptions.cut_race_share` < 1, after SCIP's roots): a disjunct
    with cuts and a tree under way gets a new search with them that shares the time with the tree
    in turns; the true threshold is proven (by either, `won_by`), the violated one never, and the
    race's figures count both searches."""
    from vnncert.milp.cuts import root_cuts
    from vnncert.options import ActivationSplitOptions
    from vnncert.search.activation_split import ActivationSplitStats, Race, Trees, race_trees, search_disjuncts

    lg, lo, hi, A, bnd, probe, thresholds = _two_thresholds(tmp_path, seed)
    pre, view = probe.pre, probe.view
    so = ActivationSplitOptions(batch_parents=4)
    for b, violated in thresholds:
        pool = root_cuts(bnd.enc, A, b, time.monotonic() + 120)
        assert pool is not None

        hook = _cuts_hook(pool, bnd.enc)
        trees, stats, open_d = Trees(), ActivationSplitStats(), [0]
        search_disjuncts(view, lo, hi, pre, [(A, b)], open_d, time.monotonic() + 0.3, lambda p: None, so, stats,
                         trees=trees)
        if not open_d:  # (a fast machine may have proven the true one already)
            assert not violated
            continue
        old = trees.searches[0]
        race_trees(view, lo, hi, pre, [(A, b)], trees, hook, 0.67, 0.5, so)
        race = trees.searches[0]
        assert isinstance(race, Race) and race.old is old and race.new.K > 0 and old.K == 0
        search_disjuncts(view, lo, hi, pre, [(A, b)], open_d, time.monotonic() + (5.0 if violated else 60.0),
                         lambda p: None, so, stats, search=2, trees=trees, cuts=hook)
        entry = stats.runs[-1]
        assert entry["race"] and entry["search"] == 2
        if violated:
            assert open_d == [0] and entry["won_by"] is None and entry["status"] in ("timeout", "unknown"), entry
        else:
            assert open_d == [] and entry["won_by"] in ("new", "old"), entry
            assert entry["domains"] >= 1 and stats.summary()["cut_races"] == 1
        # new searches only (share 1): the tree is dropped for a search with the cuts
        trees2 = Trees(searches={0: old})
        race_trees(view, lo, hi, pre, [(A, b)], trees2, hook, 1.0, 0.5, so)
        assert 0 not in trees2.searches


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("kind", ["mlp", "conv-maxpool", "residual", "random-graph", "shared-preactivation"])
def test_root_cuts_hold_at_unsafe_points_of_graphs(tmp_path, kind, seed):
    """On the conv / max-pool / residual / branching graphs of test_relu_bab (two random rows, b
    their 40 % quantiles): every cut, in the encoding's columns, holds at every sampled unsafe
    point (its every column's value from the network, the binaries from the signs), and so does
    every converted cut in the bound's terms. (HiGHS's cut pool, read through its callback, broke
    this on the max-pool graphs.)"""
    from test_relu_bab import NETS, _bab_of

    from vnncert.bounds.region import compute_bounds
    from vnncert.milp.cuts import root_cuts, to_bound_cuts

    net = load_network(NETS[kind](tmp_path, seed), threads=1)
    lg = layer_graph(net)
    n = lg.n_inputs
    rng = np.random.default_rng(300 + seed)
    lo, hi = -0.5 * np.ones(n), 0.5 * np.ones(n)
    xs = rng.uniform(lo, hi, size=(100_000, n))
    A = rng.standard_normal((2, lg.n_outputs))
    v = lg.evaluate(xs) @ A.T
    b = np.quantile(v, 0.4, axis=0)
    unsafe = np.flatnonzero((v <= b).all(axis=1))[:300]
    if unsafe.size == 0:  # the two rows' unsafe sets do not meet in the samples: the first row alone
        A, v, b = A[:1], v[:, :1], b[:1]
        unsafe = np.flatnonzero((v <= b).all(axis=1))[:300]
    bnd = compute_bounds(lg, InputRegion(lo, hi), time.monotonic() + 60, method="crown")
    enc = bnd.enc
    pool = root_cuts(enc, A, b, time.monotonic() + 120)
    assert pool is not None and pool.size > 0
    X = xs[unsafe]
    vals = lg.evaluate(X, all_layers=True)
    W = np.zeros((len(X), enc.n_cols + 1))
    for c, (k, layer, neuron) in enumerate(enc.col_label):
        if k == "x":
            W[:, c] = X[:, neuron]
        elif k in ("v", "z", "y", "m"):
            W[:, c] = vals[layer][:, neuron]
        elif k == "d":
            W[:, c] = vals[lg.layers[layer].source][:, neuron] > 0
    for g, mg in enumerate(enc.max_groups):
        dm = [c for c, lab in enumerate(enc.col_label) if lab[0] == "dm" and lab[1] == mg.layer and lab[2] == g]
        W[np.arange(len(X)), np.asarray(dm)[W[:, mg.cands].argmax(axis=1)]] = 1.0
    W[:, -1] = (v[unsafe] - b).max(axis=1)  # t
    M, rlo, rhi = enc.matrix(0)
    act = (M @ W[:, :-1].T).T
    assert np.all(act >= rlo - 1e-9) and np.all(act <= rhi + 1e-9)  # the points are the MILP's
    import scipy.sparse as sp

    C = sp.csr_matrix((pool.value, pool.index, pool.start), shape=(pool.size, enc.n_cols + 1))
    ca = (C @ W.T).T
    tol = 1e-6 * (1.0 + np.maximum(np.where(np.isfinite(pool.lower), np.abs(pool.lower), 0.0),
                                   np.where(np.isfinite(pool.upper), np.abs(pool.upper), 0.0)))
    assert np.all(ca <= pool.upper + tol) and np.all(ca >= pool.lower - tol)
    _, bab = _bab_of(net, lo, hi, A, b)
    d, layers, ind = to_bound_cuts(pool, enc, bab)
    assert np.all(_cut_values(lg, bab, layers, ind, vals) <= d)
