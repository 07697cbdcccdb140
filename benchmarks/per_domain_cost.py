"""Per-box cost of our CROWN against auto_LiRPA 0.3's on the same network (issue 21 item 2).

    python benchmarks/per_domain_cost.py MODEL.onnx PROP.vnnlib [--boxes 1 8 32] [--width 0.125]
        [--seconds 5] [--threads 1]

For each batch size B: B sub-boxes of the property's first case (each `--width` of the case's box
along every free dim, placed at random inside it), the rows of all its disjuncts bounded from
below by our torch CROWN (`bounds.compute(..., "crown")` on `bounds.prepare(layer_graph, "torch")`)
and by auto_LiRPA's CROWN (`bounds.prepare_lirpa(network)`, method lirpa-crown, float64), each
repeated for `--seconds` after one warm-up call; prints the seconds per box of each, and the
median over boxes and rows of (ours - auto_LiRPA's) lower bound (positive: ours tighter). CPU
time per box (time.process_time) is printed too: on a shared machine it moves less than wall
time. A network without a layer graph is bounded by auto_LiRPA alone.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugin"))


def timed(fn, seconds: float):
    fn()  # warm-up
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    while True:
        out = fn()
        n += 1
        if time.perf_counter() - t0 >= seconds:
            return out, (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("prop")
    ap.add_argument("--boxes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from vnncert import bounds, load_network, load_spec
    from vnncert.errors import VnncertError
    from vnncert.search.input_split import CaseRows

    net = load_network(a.model, threads=a.threads)
    spec = load_spec(a.prop, net)
    case = spec.cases[0]
    rows = CaseRows.of(case, spec.n_outputs)
    lo0, hi0 = case.region.lower.astype(np.float64), case.region.upper.astype(np.float64)
    free = ~case.region.fixed()
    try:
        ours = bounds.prepare(net.layer_graph, "torch")
    except VnncertError as e:
        print(f"no layer graph ({e}): auto_LiRPA only")
        ours = None
    lirpa = bounds.prepare_lirpa(net)
    print(f"{Path(a.model).name}: {int(free.sum())} free inputs, {rows.C.shape[0]} rows, width {a.width} of the box; "
          f"auto_LiRPA in {lirpa.mode} mode; {a.threads} thread(s)")
    rng = np.random.default_rng(a.seed)
    for B in a.boxes:
        start = lo0 + rng.random((B, lo0.size)) * (1 - a.width) * (hi0 - lo0)
        lo = np.where(free, start, lo0)
        hi = np.where(free, start + a.width * (hi0 - lo0), hi0)
        C = np.broadcast_to(rows.C[None], (B,) + rows.C.shape).copy()
        line = f"B={B:4d}"
        lb_l, t_l, c_l = timed(lambda: bounds.compute(lirpa, lo, hi, C, "lirpa-crown").lower, a.seconds)
        line += f"  auto_LiRPA {t_l / B:8.4f} s/box (cpu {c_l / B:8.4f})"
        if ours is not None:
            lb_o, t_o, c_o = timed(lambda: bounds.compute(ours, lo, hi, C, "crown").lower, a.seconds)
            line += f"  ours {t_o / B:8.4f} s/box (cpu {c_o / B:8.4f})  ours - auto_LiRPA: median {np.median(lb_o - lb_l):+.4g}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
