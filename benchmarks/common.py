"""Shared helpers of the benchmark scripts: instances.csv, ground truth, running the CLI per instance."""
from __future__ import annotations

import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"


def instances(bench_dir: Path) -> List[Tuple[str, str, float]]:
    rows = []
    for line in (bench_dir / "instances.csv").read_text().splitlines():
        if line.strip():
            o, v, t = [c.strip() for c in line.split(",")]
            rows.append((o, v, float(t)))
    return rows


def ground_truth(benchmark: str) -> Dict[Tuple[str, str], str]:
    gt = {}
    with open(SHARED / "ground_truth.csv") as f:
        for r in csv.DictReader(f):
            if r["benchmark"] == benchmark:
                gt[(r["onnx"], r["vnnlib"])] = r["consensus"]
    return gt


def run_cli(onnx: Path, vnnlib: Path, timeout: float, mode: str, extra=()) -> Tuple[str, float]:
    """One `vnncert verify` process; returns (first word of the result file, wall seconds incl. start-up)."""
    with tempfile.TemporaryDirectory() as d:
        res = Path(d) / "r.txt"
        t0 = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "vnncert"), "verify", str(onnx), str(vnnlib), "--mode", mode,
                        "--timeout", str(timeout), "--result-file", str(res), *extra],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dt = time.perf_counter() - t0
        word = res.read_text().split("\n", 1)[0].strip() if res.exists() else "error"
    return word, dt


def summarise(rows, label=""):
    """rows: (onnx, vnnlib, truth, word, seconds). Prints counts, wrong answers, total and median time."""
    counts: Dict[str, int] = {}
    wrong = []
    for o, v, truth, word, dt in rows:
        counts[word] = counts.get(word, 0) + 1
        if word in ("sat", "unsat") and truth in ("sat", "unsat") and word != truth:
            wrong.append((o, v, truth, word))
    times = [r[4] for r in rows]
    print(f"{label}instances: {len(rows)}; " + ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())))
    print(f"{label}wrong against ground truth: {len(wrong)}")
    for w in wrong:
        print("  WRONG", *w)
    if times:
        print(f"{label}total wall time: {sum(times):.1f} s; median per instance: {statistics.median(times):.2f} s")
    return counts, wrong
