"""Run the ACAS Xu instances through the CLI, one process each (start-up counts), and report.

    .venv/bin/python benchmarks/acasxu.py                      # all 186, instance timeouts
    .venv/bin/python benchmarks/acasxu.py --props 1 2 --nets 4_9 3_3 --mode relaxed
    .venv/bin/python benchmarks/acasxu.py --every 6            # a spread-out subset (every 6th line)

Prints solved sat / unsat / unknown / timeout / error, wrong answers against
../shared/benchmarks/ground_truth.csv (must be 0), and total and median wall time per instance
measured around the whole `vnncert verify` process. Writes one CSV row per instance to --out.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, ground_truth  # noqa: E402
from common import instances as read_instances  # noqa: E402


def instances(args):
    out = []
    for i, (onnx, vnnlib, timeout) in enumerate(read_instances(SHARED / "acasxu")):
        net_id = onnx.split("run2a_")[1].split("_batch")[0]
        prop = vnnlib.split("prop_")[1].split(".")[0]
        if args.nets and net_id not in args.nets:
            continue
        if args.props and prop not in args.props:
            continue
        if args.every > 1 and i % args.every:
            continue
        out.append((onnx, vnnlib, timeout))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", default="auto")
    p.add_argument("--nets", nargs="*", help="network ids like 4_9")
    p.add_argument("--props", nargs="*", help="property numbers like 2")
    p.add_argument("--every", type=int, default=1, help="only every n-th instance line")
    p.add_argument("--timeout", type=float, help="override the instance timeout (seconds)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="acasxu_results.csv")
    p.add_argument("--vnncert", default=str(ROOT / ".venv" / "bin" / "vnncert"))
    args = p.parse_args(argv)
    if not (SHARED / "acasxu").is_dir():
        print(f"needs {SHARED / 'acasxu'}", file=sys.stderr)
        return 2
    truth = ground_truth("acasxu")
    todo = instances(args)
    counts = {"sat": 0, "unsat": 0, "unknown": 0, "timeout": 0, "error": 0}
    wrong, times, rows = [], [], []
    tmp = tempfile.mkdtemp(prefix="acasxu-")
    for n, (onnx, vnnlib, timeout) in enumerate(todo, 1):
        t_lim = args.timeout or timeout
        res = os.path.join(tmp, "result.txt")
        cmd = [args.vnncert, "verify", str(SHARED / "acasxu" / onnx), str(SHARED / "acasxu" / vnnlib),
               "--timeout", str(t_lim), "--result-file", res, "--mode", args.mode]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        dt = time.monotonic() - t0
        try:
            with open(res) as f:
                verdict = f.readline().strip() or "error"
        except OSError:
            verdict = "error"
        if verdict not in counts:
            verdict = "error"
        counts[verdict] += 1
        times.append(dt)
        expect = truth.get((onnx, vnnlib), "unknown")
        bad = verdict in ("sat", "unsat") and expect in ("sat", "unsat") and verdict != expect
        if bad:
            wrong.append((onnx, vnnlib, verdict, expect))
        rows.append([onnx, vnnlib, t_lim, verdict, expect, f"{dt:.3f}", proc.returncode])
        print(f"[{n}/{len(todo)}] {Path(onnx).stem} {Path(vnnlib).stem}: {verdict} (truth {expect}) {dt:.2f}s"
              + ("  WRONG" if bad else ""), flush=True)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["onnx", "vnnlib", "timeout", "result", "ground_truth", "wall_seconds", "exit_code"])
        w.writerows(rows)
    solved = counts["sat"] + counts["unsat"]
    print(f"\n{len(todo)} instances, mode {args.mode}: solved {solved} (sat {counts['sat']}, unsat {counts['unsat']}), "
          f"unknown {counts['unknown']}, timeout {counts['timeout']}, error {counts['error']}")
    print(f"wrong answers vs ground truth: {len(wrong)}")
    for w_ in wrong:
        print("  WRONG:", *w_)
    if times:
        print(f"wall time: total {sum(times):.1f} s, median {statistics.median(times):.2f} s, max {max(times):.1f} s")
    print(f"per-instance CSV: {args.out}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
