"""Equivalence of two networks on a box, with VNN-LIB 2.0's several-network queries (issue 22 figures).

f is a real mnist_fc network (../shared/benchmarks/mnist_fc, default mnist-net_256x2: 784-256-256-10);
g is a copy made in a temporary folder (never kept): its weights rounded to float16 and back
(`--variant float16`) or its smallest `--fraction` of weights by magnitude set to 0 (`--variant
prune`). The query: on the eps-box around a test point (the centre of an mnist_fc property's box,
clipped to [0, 1]), is there x with |f(x) - g(x)|_inf > delta? It is written over `real` with the
two networks' inputs equated (X == A), so vnncert composes one product graph with one shared input.

Two ways of proving it unsat, for a growing eps (bisection on eps, `--steps` rounds):
- differential: `vnncert.verify_query(query, {"f": ..., "g": ...}, mode=...)` (the engines on the
  product graph: f(x) - g(x) is one affine row over one x);
- separately: CROWN bounds of each network alone over the box (`bounds.compute` on each layer
  graph), the difference of the two intervals: max_j max(u_f - l_g, u_g - l_f) <= delta.
Prints, for each, the largest eps proven and the time of one check at that eps; and the raw CROWN
bound of max_j |f_j - g_j| both ways at a few eps, to show how much tighter the differential bound is.

Usage: .venv/bin/python benchmarks/equivalence.py [--variant float16|prune] [--fraction 0.1]
           [--delta 0.05] [--mode relaxed] [--timeout 60] [--prop prop_0_0.03.vnnlib]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"


def variant_model(src: str, dst: str, variant: str, fraction: float) -> None:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(src)
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32 or a.ndim < 2:
            continue
        if variant == "float16":
            b = a.astype(np.float16).astype(np.float32)
        else:
            cut = np.quantile(np.abs(a), fraction)
            b = np.where(np.abs(a) <= cut, 0.0, a).astype(np.float32)
        t.CopyFrom(numpy_helper.from_array(b, t.name))
    onnx.save(m, dst)


def query(x0: np.ndarray, eps: float, delta: float, in_shape, out_shape) -> str:
    from vnncert.spec.vnnlib2 import format_number

    n_out = int(np.prod(out_shape))
    dims = lambda s: "[" + ",".join(str(d) for d in s) + "]"  # noqa: E731
    lines = ["(vnnlib-version <2.0>)",
             f"(declare-network f (declare-input X real {dims(in_shape)}) (declare-output Y real {dims(out_shape)}))",
             f"(declare-network g (declare-input A real {dims(in_shape)}) (declare-output B real {dims(out_shape)}))"]
    idx = lambda i, s: "[" + ",".join(str(int(k)) for k in np.unravel_index(i, s)) + "]"  # noqa: E731
    lo, hi = np.clip(x0 - eps, 0.0, 1.0), np.clip(x0 + eps, 0.0, 1.0)
    for i in range(x0.size):
        v = idx(i, in_shape)
        lines.append(f"(assert (and (>= X{v} {format_number(lo[i])}) (<= X{v} {format_number(hi[i])}) (== X{v} A{v})))")
    d = format_number(delta)
    terms = []
    for j in range(n_out):
        v = idx(j, out_shape)
        terms += [f"(> (- Y{v} B{v}) {d})", f"(> (- B{v} Y{v}) {d})"]
    lines.append("(assert (or " + " ".join(terms) + "))")
    return "\n".join(lines) + "\n"


def crown_each(nets, x0, eps):
    """max_j |f_j - g_j| bounded from the two networks' separate CROWN output intervals."""
    from vnncert import bounds

    lo, hi = np.clip(x0 - eps, 0, 1)[None, :], np.clip(x0 + eps, 0, 1)[None, :]
    box = []
    for net in nets:
        n = net.n_outputs
        C = np.concatenate([np.eye(n), -np.eye(n)])[None, :, :]
        r = bounds.compute(bounds.prepare(net.layer_graph, "numpy"), lo, hi, C, "crown")
        box.append((r.lower[0, :n], -r.lower[0, n:]))
    (l1, u1), (l2, u2) = box
    return float(max((u1 - l2).max(), (u2 - l1).max()))


def crown_product(composed, x0, eps):
    """max_j |f_j - g_j| bounded by CROWN over the product graph (rows f_j - g_j, g_j - f_j)."""
    from vnncert import bounds

    n = composed.n_outputs // 2
    lo, hi = np.clip(x0 - eps, 0, 1)[None, :], np.clip(x0 + eps, 0, 1)[None, :]
    D = np.concatenate([np.eye(n), -np.eye(n)], axis=1)
    C = np.concatenate([D, -D])[None, :, :]
    r = bounds.compute(bounds.prepare(composed.layer_graph, "numpy"), lo, hi, C, "crown")
    return float(-r.lower[0].min())


def bisect(proves, lo: float, hi: float, steps: int):
    """The largest eps in [lo, hi] proves(eps) holds at (assuming monotone), by bisection."""
    best = None
    for _ in range(steps):
        mid = (lo + hi) / 2 if best is not None or lo > 0 else hi / 2
        ok, secs = proves(mid)
        if ok:
            best, lo = (mid, secs), mid
        else:
            hi = mid
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(SHARED / "mnist_fc" / "onnx" / "mnist-net_256x2.onnx"))
    ap.add_argument("--prop", default=str(SHARED / "mnist_fc" / "vnnlib" / "prop_0_0.03.vnnlib"))
    ap.add_argument("--variant", choices=("float16", "prune"), default="float16")
    ap.add_argument("--fraction", type=float, default=0.1, help="pruned fraction of each weight matrix")
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--mode", default="relaxed")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--max-eps", type=float, default=0.1)
    a = ap.parse_args()

    import vnncert
    from vnncert.api import load_problem
    from vnncert.network import load_network

    x0 = np.clip(vnncert.load_spec(a.prop).cases[0].region.center, 0.0, 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        g_path = os.path.join(tmp, "g.onnx")
        variant_model(a.model, g_path, a.variant, a.fraction)
        f_net, g_net = load_network(a.model, threads=1), load_network(g_path, threads=1)
        in_shape, out_shape = f_net.input_shape, f_net.output_shape
        gap = np.abs(f_net.evaluate(x0[None]) - g_net.evaluate(x0[None])).max()
        print(f"f = {os.path.basename(a.model)}, g = f with {a.variant}"
              + (f" ({a.fraction:.0%} of each weight matrix pruned)" if a.variant == "prune" else "")
              + f"; centre: {os.path.basename(a.prop)}; |f - g|_inf at the centre {gap:.3g}; delta {a.delta}")
        q = os.path.join(tmp, "q.vnnlib")
        networks = {"f": a.model, "g": g_path}

        def differential(eps):
            with open(q, "w") as fh:
                fh.write(query(x0, eps, a.delta, in_shape, out_shape))
            t0 = time.perf_counter()
            out = vnncert.verify_query(q, networks, mode=a.mode, timeout=a.timeout, threads=1)
            return out.verdict.value == "unsat", time.perf_counter() - t0

        def separate(eps):
            t0 = time.perf_counter()
            return crown_each((f_net, g_net), x0, eps) <= a.delta, time.perf_counter() - t0

        for name, fn in (("differential (product graph, vnncert.verify_query --mode " + a.mode + ")", differential),
                         ("separately (CROWN of each network, difference of the intervals)", separate)):
            best = bisect(fn, 0.0, a.max_eps, a.steps)
            print(f"  {name}: largest eps proven {best[0]:.5f} ({best[1]:.2f} s per check)" if best
                  else f"  {name}: no eps proven down to {a.max_eps / 2 ** a.steps:.2g}")
        with open(q, "w") as fh:
            fh.write(query(x0, 0.01, a.delta, in_shape, out_shape))
        composed, _ = load_problem(networks, q, threads=1)
        print("  CROWN bound of max_j |f_j - g_j|:   eps    product graph    each alone")
        for eps in (0.001, 0.003, 0.01, 0.03):
            print(f"                                   {eps:6.3f}  {crown_product(composed, x0, eps):12.4g}"
                  f"  {crown_each((f_net, g_net), x0, eps):12.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
