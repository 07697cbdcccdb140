"""Op inventory and conversion check of the benchmark networks (../shared/benchmarks).

For every folder: the op types of its models (nodes of the file, subgraphs included), then for
each model: the ops left after constant folding, the torch module against ONNX Runtime on
random inputs inside the boxes of its properties (instances.csv), and the layer graph (the
exact affine/MILP lowering) against ONNX Runtime where every op is piecewise linear (else the op
that keeps it out). Prints one line per model and a summary; exit 1 on any disagreement or
failed conversion.

    .venv/bin/python benchmarks/onnx_conversion.py [folder ...] [--samples 64]
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import os
import sys
import time
from pathlib import Path

import numpy as np

from common import SHARED, instances

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))


def file_ops(path: str):
    import onnx

    data = Path(path).read_bytes()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    m = onnx.load_from_string(data)
    ops = collections.Counter()

    def walk(g):
        for n in g.node:
            ops[n.op_type] += 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
    walk(m.graph)
    return ops, max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)


def boxes(folder: Path, model_rel: str, network, limit: int = 3):
    """Input boxes of up to `limit` properties of this model (the first case of each)."""
    from vnncert import load_spec

    out = []
    for o, v, _ in instances(folder):
        if os.path.normpath(o) == os.path.normpath(model_rel) and len(out) < limit:
            spec = load_spec(str(folder / v), network=network)
            r = spec.cases[0].region
            out.append((r.lower, r.upper))
    return out


TOLERANCE = 1e-4  # relative (to |output|, at least 1): ONNX Runtime computes in float32


def close(got, want):
    scale = np.maximum(np.abs(want), 1.0)
    return float(np.max(np.abs(got - want) / scale)) if want.size else 0.0


def check_model(folder: Path, path: str, samples: int, rng):
    import torch

    from vnncert.errors import VnncertError
    from vnncert.network import load_network

    rel = os.path.relpath(path, folder)
    t0 = time.perf_counter()
    net = load_network(path, threads=1)
    ops = net.graph.op_types
    bxs = boxes(folder, rel, net) or [(-np.ones(net.n_inputs), np.ones(net.n_inputs))]
    xs = np.concatenate([lo + rng.uniform(0, 1, (samples, lo.size)) * (hi - lo) for lo, hi in bxs])
    xs = xs.astype(net.input_dtype).astype(np.float64)
    want = net.evaluate(xs).astype(np.float64)
    res = {"ops": ops}
    try:
        with torch.no_grad():
            got = net.torch_module()(torch.as_tensor(xs, dtype=torch.float32)).numpy().astype(np.float64)
        res["torch"] = close(got, want)
    except VnncertError as e:
        res["torch"] = f"refused: {e}"
    try:
        res["layers"] = close(net.layer_graph.evaluate(xs), want)
    except VnncertError as e:
        res["layers"] = f"refused: {e}"
    res["seconds"] = time.perf_counter() - t0
    return rel, res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--samples", type=int, default=64, help="random inputs per property box")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"no benchmarks at {SHARED}")
        return 0
    folders = args.folders or sorted(p.name for p in SHARED.iterdir() if p.is_dir())
    rng = np.random.default_rng(0)
    bad, n_models, all_ops = 0, 0, set()
    for name in folders:
        folder = SHARED / name
        paths = sorted(glob.glob(str(folder / "**" / "*.onnx*"), recursive=True))
        ops, opsets = collections.Counter(), set()
        for p in paths:
            o, v = file_ops(p)
            ops.update(o)
            opsets.add(v)
        all_ops |= set(ops)
        print(f"== {name}: {len(paths)} models, opsets {sorted(opsets)}; ops: {', '.join(sorted(ops))}")
        for p in paths:
            n_models += 1
            try:
                rel, r = check_model(folder, p, args.samples, rng)
            except Exception as e:  # a model that does not load or convert at all
                print(f"   {os.path.relpath(p, folder)}: FAILED {type(e).__name__}: {e}")
                bad += 1
                continue
            words = []
            for what in ("torch", "layers"):
                v = r[what]
                if isinstance(v, str):
                    words.append(f"{what} {v}")
                    bad += what == "torch"  # every model must convert to torch; the layer graph only where PWL
                else:
                    ok = v <= TOLERANCE
                    words.append(f"{what} {'ok' if ok else 'MISMATCH'} ({v:.1e})")
                    bad += not ok
            print(f"   {rel}: {'; '.join(words)} [{r['seconds']:.1f} s; after folding: {', '.join(r['ops'])}]")
    print(f"{n_models} models; ops over all: {', '.join(sorted(all_ops))}; problems: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
