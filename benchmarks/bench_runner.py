"""Figures of the benchmark runner itself (not of the verifier).

    python benchmarks/bench_runner.py overhead ../shared/benchmarks/test [--reps 3] [--mode auto]
    python benchmarks/bench_runner.py throughput vnnlib_specs [--reps 2] [--scale 0.25]

overhead:   `vnncert bench --jobs 1` into a fresh CSV; per instance:
            runner  = (bench wall time - sum of the instance processes' wall times) / instances
            startup = (sum of process wall times - sum of vnncert's own load+engine times) / instances
            (interpreter start, imports, result/JSON files: the price of one process per instance)
throughput: the same suite with --jobs 1 and --jobs 2 (--threads 1 each): instances per second.
Each figure is the median over --reps fresh runs. Numbers come from the run's log (session record).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run(bench_dir: str, jobs: int, extra, workdir: str):
    out = os.path.join(workdir, f"r{jobs}", "results.csv")
    cmd = [sys.executable, "-m", "vnncert.cli", "bench", bench_dir, "--out", out, "--jobs", str(jobs),
           "--threads", "1", "--no-progress", *extra]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    recs = [json.loads(x) for x in open(os.path.splitext(out)[0] + ".log.jsonl")]
    session = [r for r in recs if r["type"] == "session"][-1]
    rows = [r for r in recs if r["type"] == "row"]
    return session, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("overhead", "throughput"))
    ap.add_argument("bench_dir")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="--timeout-scale")
    ap.add_argument("--mode", default="auto")
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()
    extra = ["--timeout-scale", str(a.scale), "--mode", a.mode] + (["--limit", str(a.limit)] if a.limit else [])
    if a.what == "overhead":
        runner, startup, per = [], [], []
        for _ in range(a.reps):
            with tempfile.TemporaryDirectory() as d:
                s, rows = run(a.bench_dir, 1, extra, d)
            n = s["ran"]
            runner.append((s["wall"] - s["run_time"] - s["prepare_time"]) / n)
            startup.append((s["run_time"] - s["verifier_seconds"]) / n)
            per.append(s["wall"] / n)
        print(f"{a.bench_dir}: {n} instances, {a.reps} runs (median): wall {statistics.median(per):.3f} s/instance, "
              f"runner overhead {statistics.median(runner) * 1000:.1f} ms/instance, "
              f"process start-up + I/O outside vnncert's own timers {statistics.median(startup) * 1000:.0f} ms/instance")
        print("  runner overhead per run (ms):", ", ".join(f"{x * 1000:.1f}" for x in runner))
    else:
        res = {}
        for jobs in (1, 2):
            rates = []
            for _ in range(a.reps):
                with tempfile.TemporaryDirectory() as d:
                    s, rows = run(a.bench_dir, jobs, extra, d)
                rates.append(s["ran"] / s["wall"])
            res[jobs] = statistics.median(rates)
            print(f"--jobs {jobs}: {res[jobs]:.3f} instances/s (runs: {', '.join(f'{r:.3f}' for r in rates)})")
        print(f"speed-up jobs 2 / jobs 1: {res[2] / res[1]:.2f}x on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
