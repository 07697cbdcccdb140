"""Run nnenum (a peer verifier, fetched and installed OUTSIDE this project) on ACAS Xu, timed the same
way as benchmarks/acasxu.py times vnncert (one process per instance, start-up included).

    # once, outside the project: a copy of github.com/stanleybak/nnenum with its own venv
    #   python3.11 -m venv NNENUM_DIR/venv && NNENUM_DIR/venv/bin/pip install NNENUM_DIR
    .venv/bin/python benchmarks/nnenum_acasxu.py --nnenum-dir NNENUM_DIR [--every N] [--out nnenum.csv]

Runs what nnenum's own vnncomp_scripts/run_instance.sh runs (`python -m nnenum.nnenum ONNX VNNLIB
TIMEOUT RESULT` with OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=1), but without its prepare script
(which kills every python3 process on the machine). Nothing of nnenum is committed here.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SHARED, ground_truth, instances, summarise


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnenum-dir", required=True, type=Path)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--out", default="nnenum_acasxu.csv")
    a = ap.parse_args()
    py = a.nnenum_dir / "venv" / "bin" / "python"
    bench = SHARED / "acasxu"
    gt = ground_truth("acasxu")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(a.nnenum_dir / "src"))
    rows = []
    todo = instances(bench)[:: a.every]
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        for k, (o, v, t) in enumerate(todo):
            with tempfile.TemporaryDirectory() as d:
                res = Path(d) / "r.txt"
                t0 = time.perf_counter()
                try:
                    subprocess.run([str(py), "-m", "nnenum.nnenum", str(bench / o), str(bench / v), str(int(t)), str(res)],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=t + 10)
                except subprocess.TimeoutExpired:
                    pass
                dt = time.perf_counter() - t0
                word = res.read_text().split("\n", 1)[0].strip() if res.exists() else "error"
            word = {"holds": "unsat", "violated": "sat"}.get(word, word)
            truth = gt.get((o, v), "?")
            rows.append((o, v, truth, word, dt))
            w.writerow([o, v, truth, word, f"{dt:.3f}"])
            f.flush()
            print(f"[{k + 1}/{len(todo)}] {o} {v}: {word} (truth {truth}) {dt:.2f}s", flush=True)
    summarise(rows, "nnenum ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
