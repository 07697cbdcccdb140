"""ACAS Xu properties rewritten in VNN-LIB 2.0 at run time (never committed) and answered through the
standard command line (`vnncert verify QUERY --network N=FILE --timeout T`), compared with the 1.0 run.

    .venv/bin/python benchmarks/acasxu_vnnlib2.py --every 12 [--compare benchmarks/out/acasxu_auto.csv]

The 2.0 text comes from vnncert.spec.vnnlib2.spec_to_vnnlib2 applied to the parsed 1.0 property.
"""
import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED, ground_truth, instances


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--compare", help="CSV of benchmarks/acasxu.py (1.0 run) to compare answers with")
    a = ap.parse_args()
    from vnncert import load_network, load_spec
    from vnncert.spec.vnnlib2 import spec_to_vnnlib2

    bench = SHARED / "acasxu"
    gt = ground_truth("acasxu")
    one = {}
    if a.compare:
        one = {(r["onnx"], r["vnnlib"]): r["result"] for r in csv.DictReader(open(a.compare))}
    same = differ = 0
    for o, v, t in instances(bench)[:: a.every]:
        net = load_network(str(bench / o))
        spec = load_spec(str(bench / v), network=net)
        text = spec_to_vnnlib2(spec, net.input_shape, net.output_shape)
        with tempfile.TemporaryDirectory() as d:
            q = Path(d) / "q.vnnlib"
            q.write_text(text)
            t0 = time.perf_counter()
            p = subprocess.run([str(ROOT / ".venv" / "bin" / "vnncert"), "verify", str(q), "--network", f"net={bench / o}",
                                "--timeout", str(t - 1)], capture_output=True, text=True)
            dt = time.perf_counter() - t0
        word = p.stdout.split("\n", 1)[0].strip()
        w1 = {"timed-out": "timeout"}.get(word, word)
        ref = one.get((o, v))
        if ref is not None:
            same += ref == w1
            differ += ref != w1
        print(f"{o} {v}: 2.0 {word} | 1.0 {ref} | truth {gt.get((o, v))} | {dt:.2f}s", flush=True)
    print(f"answers equal to the 1.0 run: {same}, different: {differ}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
