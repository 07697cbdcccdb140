"""Two vnncert checkouts on the same instances, alternately, so both see the same machine load.

    git worktree add /tmp/before pre-arch          # the "before" checkout (any commit)
    python benchmarks/ab.py --a /tmp/before --b . --bench acasxu --mode auto --out ab_acasxu.csv
    python benchmarks/ab.py --a /tmp/before --b . --bench mnist_fc --mode exact --runners 2 --out ab_mnist.csv

Each instance is run by A then by B (B then A on every other instance, so neither always goes
first), one `vnncert verify` process each under the instance's timeout (start-up included), with
`--threads 1`. A checkout is run with this repository's venv and PYTHONPATH=<checkout>/plugin, so
a `git worktree` needs no install of its own. `--runners 2` runs two instances at a time (one per
core); each pair A/B of one instance stays on one runner. Rows are appended to --out as they
finish and the run resumes when --out exists. The summary gives, per checkout: solved sat / unsat,
wrong answers against ground_truth.csv (must be 0), total and median wall time, and the instances
whose answers differ.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, ground_truth, instances  # noqa: E402

FIELDS = ["onnx", "vnnlib", "timeout", "truth", "side", "result", "seconds"]


def run_one(checkout: Path, bench: Path, onnx: str, vnnlib: str, timeout: float, mode: str):
    env = {**os.environ, "PYTHONPATH": str(checkout / "plugin"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as d:
        res = Path(d) / "r.txt"
        t0 = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "vnncert.cli", "verify", str(bench / onnx),
                        str(bench / vnnlib), "--mode", mode, "--timeout", str(timeout), "--threads", "1",
                        "--result-file", str(res)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       cwd=d)
        dt = time.perf_counter() - t0
        word = res.read_text().split("\n", 1)[0].strip() if res.exists() else "error"
    return word, dt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="checkout A (e.g. a git worktree of the 'before' commit)")
    p.add_argument("--b", default=str(ROOT), help="checkout B (default: this one)")
    p.add_argument("--bench", required=True, help="folder name under ../shared/benchmarks")
    p.add_argument("--mode", default="auto")
    p.add_argument("--every", type=int, default=1, help="only every n-th instance line")
    p.add_argument("--timeout-scale", type=float, default=1.0)
    p.add_argument("--runners", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    bench = SHARED / args.bench
    if not bench.is_dir():
        print(f"needs {bench}", file=sys.stderr)
        return 2
    sides = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    truth = ground_truth(args.bench)
    todo = [r for i, r in enumerate(instances(bench)) if i % args.every == 0]
    done = set()
    if Path(args.out).exists():
        with open(args.out) as f:
            done = {(r["onnx"], r["vnnlib"], r["side"]) for r in csv.DictReader(f)}
    else:
        with open(args.out, "w", newline="") as f:
            csv.writer(f).writerow(FIELDS)
    lock = threading.Lock()
    queue = list(enumerate(todo))

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                k, (onnx, vnnlib, timeout) = queue.pop(0)
            order = ("A", "B") if k % 2 == 0 else ("B", "A")
            for side in order:
                if (onnx, vnnlib, side) in done:
                    continue
                word, dt = run_one(sides[side], bench, onnx, vnnlib, timeout * args.timeout_scale, args.mode)
                t = truth.get((onnx, vnnlib), "unknown")
                with lock:
                    with open(args.out, "a", newline="") as f:
                        csv.writer(f).writerow([onnx, vnnlib, timeout * args.timeout_scale, t, side, word, f"{dt:.3f}"])
                        f.flush()
                        os.fsync(f.fileno())
                    print(f"[{k + 1}/{len(todo)}] {side} {Path(onnx).stem} {Path(vnnlib).stem}: {word} (truth {t}) "
                          f"{dt:.2f}s", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.runners))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarise(args.out)


def summarise(path: str) -> int:
    rows = list(csv.DictReader(open(path)))
    by = {}
    for r in rows:
        by.setdefault(r["side"], {})[(r["onnx"], r["vnnlib"])] = r
    bad = 0
    for side in sorted(by):
        rs = list(by[side].values())
        sat = sum(r["result"] == "sat" for r in rs)
        unsat = sum(r["result"] == "unsat" for r in rs)
        wrong = [r for r in rs if r["result"] in ("sat", "unsat") and r["truth"] in ("sat", "unsat")
                 and r["result"] != r["truth"]]
        bad += len(wrong)
        times = [float(r["seconds"]) for r in rs]
        solved_t = [float(r["seconds"]) for r in rs if r["result"] in ("sat", "unsat")]
        print(f"{side}: {len(rs)} instances, solved {sat + unsat} (sat {sat}, unsat {unsat}), wrong {len(wrong)}, "
              f"total {sum(times):.1f} s, median {statistics.median(times):.2f} s"
              + (f", median over solved {statistics.median(solved_t):.2f} s" if solved_t else ""))
    if {"A", "B"} <= set(by):
        diff = [(k, by["A"][k]["result"], by["B"][k]["result"]) for k in by["A"] if k in by["B"]
                and by["A"][k]["result"] != by["B"][k]["result"]]
        for (o, v), a, b in diff:
            print(f"  differs: {Path(o).stem} {Path(v).stem}: A {a}, B {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
