"""Where the LP relaxation (`--relaxed-method lp`) is tighter or looser than CROWN / alpha-CROWN.

    python benchmarks/lp_vs_crown.py                       # the shipped models (vnnlib_specs)
    python benchmarks/lp_vs_crown.py --bench ../shared/benchmarks/mnist_fc --limit 6

For every instance and every output row a_i . y - b_i of every disjunct: the lower bound from
auto_LiRPA's CROWN and alpha-CROWN (`bounds.compute` with "lirpa-crown" / "lirpa-alpha", float64)
and from the LP (`bounds.region`: triangle relaxation over LP-tightened intermediate bounds,
weak-duality safe); per instance: how many rows each method rules out (bound > 0), the mean gain of the LP
over CROWN and alpha-CROWN, rows where the LP is looser, and each method's time.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, instances  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=str(ROOT / "vnnlib_specs"))
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from vnncert import bounds, load_spec
    from vnncert.bounds.region import compute_bounds, output_lower_bounds
    from vnncert.network.loader import load_network

    bench = Path(a.bench)
    rows = instances(bench)
    if a.limit:
        rows = rows[:a.limit]
    print(f"{'instance':44s} {'rows':>4s} {'ruled out: crown/alpha/lp':>26s} {'lp-crown':>9s} {'lp-alpha':>9s} "
          f"{'lp looser':>9s} {'t crown/alpha/lp (s)':>22s}")
    tot = np.zeros(3)
    for o, v, _ in rows:
        net = load_network(str(bench / o), threads=1)
        spec = load_spec(str(bench / v), net)
        lg = net.layer_graph
        bounder = bounds.prepare_lirpa(net)
        for ci, case in enumerate(spec.cases):
            C = np.concatenate([hs.A for hs in case.output])
            b = np.concatenate([hs.b for hs in case.output])
            if C.shape[0] == 0:
                continue
            lo, hi = case.region.lower[None], case.region.upper[None]
            t0 = time.perf_counter()
            cr = bounds.compute(bounder, lo, hi, C[None], "lirpa-crown").lower[0] - b
            t1 = time.perf_counter()
            al = bounds.compute(bounder, lo, hi, C[None], "lirpa-alpha").lower[0] - b
            t2 = time.perf_counter()
            bnd = compute_bounds(lg, case.region, time.monotonic() + 600, method="lp")
            lp = output_lower_bounds(lg, C, bnd) - b
            t3 = time.perf_counter()
            tot += [t1 - t0, t2 - t1, t3 - t2]
            name = f"{Path(o).stem}/{Path(v).stem}" + (f"#{ci}" if len(spec.cases) > 1 else "")
            looser = int(np.sum(lp < np.maximum(cr, al) - 1e-6))
            print(f"{name[:44]:44s} {C.shape[0]:4d} {int((cr > 0).sum()):>14d}/{int((al > 0).sum())}/{int((lp > 0).sum())}"
                  f" {np.mean(lp - cr):9.4f} {np.mean(lp - al):9.4f} {looser:9d} "
                  f"{t1 - t0:8.2f}/{t2 - t1:.2f}/{t3 - t2:.2f}")
    print(f"total time: crown {tot[0]:.1f} s, alpha-crown {tot[1]:.1f} s, lp {tot[2]:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
