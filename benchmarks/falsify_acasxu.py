"""Falsifier alone on ACAS Xu: how many of the known-sat instances are found within 10 s each,
and that none of the known-unsat ones is ever called sat.

Usage: .venv/bin/python benchmarks/falsify_acasxu.py [--timeout 10] [--limit N]
Each instance is one `vnncert verify --mode falsify` process (start-up included).
"""
import argparse
import sys

from common import SHARED, ground_truth, instances, run_cli, summarise


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--only-sat", action="store_true", help="run only the known-sat instances")
    a = ap.parse_args()
    bench = SHARED / "acasxu"
    if not bench.is_dir():
        print(f"needs {bench}", file=sys.stderr)
        return 2
    gt = ground_truth("acasxu")
    rows = []
    todo = instances(bench)
    if a.only_sat:
        todo = [r for r in todo if gt.get((r[0], r[1])) == "sat"]
    if a.limit:
        todo = todo[: a.limit]
    for o, v, _ in todo:
        word, dt = run_cli(bench / o, bench / v, a.timeout, "falsify")
        truth = gt.get((o, v), "?")
        rows.append((o, v, truth, word, dt))
        print(f"{o} {v} truth={truth} -> {word} {dt:.2f}s", flush=True)
    found = sum(1 for r in rows if r[2] == "sat" and r[3] == "sat")
    n_sat = sum(1 for r in rows if r[2] == "sat")
    false_sat = sum(1 for r in rows if r[2] == "unsat" and r[3] == "sat")
    print(f"known-sat found: {found}/{n_sat}; sat claimed on known-unsat: {false_sat}/{sum(1 for r in rows if r[2] == 'unsat')}")
    summarise(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
