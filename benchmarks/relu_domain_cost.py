"""Per-domain cost of the ReLU-split search's bound (bounds/alpha_beta.py) on a network and property.

    python benchmarks/relu_domain_cost.py MODEL.onnx PROP.vnnlib [--domains 512] [--depth 8]
        [--iters 12] [--repeats 3] [--threads 1] [--seed 0]

Over the property's first case: CROWN bounds of the layers the ReLUs read (the search's `pre`;
the exact engine tightens them further, which changes the unstable counts, not the cost per
neuron), then, for the disjunct whose one-pass bound is lowest, `--domains` random domains of
`--depth` split neurons each (random unstable neurons, random sides, CROWN's slopes, beta 0).
Timed, each `--repeats` times after one warm-up: `AlphaBeta.bound` with `--iters` optimiser
steps and no freezing (what one round of the search does to its children), and the filtered smart
branching (`smart_branch`) on half of them as parents. Prints the median seconds per call, per
domain and step, and per parent; the bounds themselves are not the point (random splits).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugin"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("prop")
    ap.add_argument("--domains", type=int, default=512)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from vnncert import load_network, load_spec
    from vnncert.bounds.graph import GraphView
    from vnncert.bounds.region import compute_bounds
    from vnncert.network.layers import layer_graph
    from vnncert.options import ActivationSplitOptions, BoundsOptions
    from vnncert.search.activation_split import SplitBaB, _Domains, smart_branch

    net = load_network(a.model, threads=a.threads)
    case = load_spec(a.prop, net).cases[0]
    lg = layer_graph(net)
    bo = BoundsOptions()
    view = GraphView.of(lg, bo.dense_max_elements)
    if view is None:
        print("no layer graph the ReLU-split search covers")
        return 1
    t0 = time.perf_counter()
    b = compute_bounds(lg, case.region, time.monotonic() + 600, method="crown", encode=False)
    pre = {L.source: b.layers[L.source] for L in lg.layers if L.kind in ("relu", "max")}
    t_crown = time.perf_counter() - t0
    so = ActivationSplitOptions()
    lo, hi = case.region.lower.astype(np.float64), case.region.upper.astype(np.float64)
    margins = []
    for hs in case.output:
        s = SplitBaB(view, lo, hi, pre, hs.A, hs.b, so, bo)
        with torch.no_grad():
            lb, _, _ = s._pass(*s.root_state())
        margins.append(float((lb[0].numpy() - np.asarray(hs.b, np.float64)).max()))
    d = int(np.argmin(margins))
    bab = SplitBaB(view, lo, hi, pre, case.output[d].A, case.output[d].b, so, bo)
    print(f"{Path(a.model).name} / {Path(a.prop).name}: CROWN {t_crown:.1f} s; disjunct {d} of {len(case.output)} "
          f"(one-pass margin {margins[d]:+.4g}); unstable per ReLU layer {[r.n_u for r in bab.relus]} (U = {bab.U}); "
          f"{a.domains} domains of depth {a.depth}; {a.iters} steps; {a.threads} thread(s)")
    rng = np.random.default_rng(a.seed)
    split0, alpha0, beta0 = bab.root_state()
    N = a.domains
    split = torch.zeros((N, bab.U), dtype=torch.int8)
    for i in range(N):
        pos = rng.choice(bab.U, size=min(a.depth, bab.U), replace=False)
        split[i, torch.as_tensor(pos)] = torch.as_tensor(rng.choice([-1, 1], size=pos.size).astype(np.int8))
    alpha = alpha0.expand(N, -1, -1).clone()
    beta = beta0.expand(N, -1, -1).clone()

    def timed(fn):
        fn()  # warm-up
        ts = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t)
        return out, statistics.median(ts)

    (lb, al, be, sc, _), t_b = timed(lambda: bab.bound(split, alpha, beta, a.iters, time.monotonic() + 1e6))
    n = N // 2
    parents = _Domains(split[:n], al[:n], be[:n], lb[:n], torch.zeros(n, dtype=torch.int32), sc[:n],
                       candidates=so.fsb_candidates)
    _, t_f = timed(lambda: smart_branch(bab, parents, bab.b))
    print(f"bound: {t_b:.3f} s per call, {1e6 * t_b / (N * (a.iters + 1)):.1f} us per domain and step; "
          f"smart branching ({parents.cand.shape[1]} candidates): {t_f:.3f} s for {n} parents, {1e3 * t_f / n:.2f} ms per parent")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
