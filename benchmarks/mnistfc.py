"""The exact engine on VNN-COMP mnist_fc (../shared/benchmarks/mnist_fc): answers, time split, unstable ReLUs.

    python benchmarks/mnistfc.py                          # all 90 instances at their timeouts (hours)
    python benchmarks/mnistfc.py --nets 256x2             # the 30 256x2 instances (120 s each)
    python benchmarks/mnistfc.py --nets 256x4 --limit 5 --timeout-scale 0.5
    python benchmarks/mnistfc.py --mode auto              # the whole route (attack -> relaxed -> exact)

Each instance is one `vnncert verify --mode MODE --threads 1 --json` process under the instance's
timeout (start-up included). Rows go to --out (CSV, resumed when it exists); the summary gives
solved sat/unsat, wrong answers against ground_truth.csv (must be 0), median time, the split of
the exact engine's time between bounds (IBP/CROWN/LP tightening), the ReLU-split branch and
bound, Pyomo model building (build + handing the model to HiGHS) and HiGHS's MILP solves, and
the unstable-ReLU counts.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, ground_truth, instances  # noqa: E402

FIELDS = ["onnx", "vnnlib", "timeout", "truth", "result", "seconds", "bounds_s", "build_s", "set_instance_s", "solve_s",
          "unstable_relus", "binaries", "lp_solved", "milp_solves", "milp_nodes", "tighten_s", "unstable_tightened", "bab_s",
          "bab_domains", "bab_proven", "bab_runs", "detail"]


def run_one(bench: Path, onnx: str, vnnlib: str, timeout: float, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        res, js = Path(d) / "r.txt", Path(d) / "r.json"
        t0 = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "vnncert"), "verify", str(bench / onnx), str(bench / vnnlib),
                        "--mode", mode, "--timeout", str(timeout), "--threads", "1", "--result-file", str(res),
                        "--json", str(js)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dt = time.perf_counter() - t0
        word = res.read_text().split("\n", 1)[0].strip() if res.exists() else "error"
        info = json.loads(js.read_text()) if js.exists() else {}
    stats = info.get("stats", {}) or {}
    ex = stats.get("exact", stats) if isinstance(stats, dict) else {}
    row = {"result": word, "seconds": round(dt, 2), "detail": (info.get("detail") or "")[:300]}
    for k in ("bounds_s", "build_s", "set_instance_s", "solve_s", "binaries", "lp_solved", "milp_solves", "milp_nodes",
              "tighten_s", "bab_s", "bab_domains", "bab_proven", "bab_runs"):
        row[k] = ex.get(k, "")
    for k in ("unstable_relus", "unstable_tightened"):
        u = ex.get(k, "")
        row[k] = "/".join(str(x) for x in u) if isinstance(u, list) else u
    return row


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return 0.0


def summarise(rows) -> None:
    solved = [r for r in rows if r["result"] in ("sat", "unsat")]
    wrong = [r for r in solved if r["truth"] in ("sat", "unsat") and r["result"] != r["truth"]]
    n_sat = sum(r["result"] == "sat" for r in rows)
    n_unsat = sum(r["result"] == "unsat" for r in rows)
    print(f"instances: {len(rows)}; solved: {len(solved)} (sat {n_sat}, unsat {n_unsat}); "
          + ", ".join(f"{w}: {sum(r['result'] == w for r in rows)}" for w in ("timeout", "unknown", "error")))
    print(f"wrong against ground truth: {len(wrong)}")
    for r in wrong:
        print("  WRONG", r["onnx"], r["vnnlib"], "truth", r["truth"], "got", r["result"])
    if rows:
        print(f"median time: all {statistics.median(_num(r['seconds']) for r in rows):.1f} s"
              + (f", solved {statistics.median(_num(r['seconds']) for r in solved):.1f} s" if solved else ""))
    tot = {k: sum(_num(r.get(k)) for r in rows) for k in ("bounds_s", "build_s", "set_instance_s", "solve_s", "tighten_s", "bab_s")}
    total = sum(tot.values()) or 1.0
    print("exact engine time split (sum over instances): "
          f"bounds {tot['bounds_s']:.0f} s ({100 * tot['bounds_s'] / total:.0f}%), "
          f"Pyomo build {tot['build_s']:.1f} s + to HiGHS {tot['set_instance_s']:.1f} s "
          f"({100 * (tot['build_s'] + tot['set_instance_s']) / total:.1f}%), "
          f"HiGHS MILP {tot['solve_s']:.0f} s ({100 * tot['solve_s'] / total:.0f}%), "
          f"BaB tightening of intermediate bounds {tot['tighten_s']:.0f} s ({100 * tot['tighten_s'] / total:.0f}%), "
          f"ReLU-split BaB {tot['bab_s']:.0f} s ({100 * tot['bab_s'] / total:.0f}%)")
    bab = [r for r in rows if str(r.get("bab_runs") or "").strip()]
    if bab:
        print(f"ReLU-split BaB ran on {len(bab)} instances: {sum(int(_num(r['bab_proven'])) for r in bab)} of "
              f"{sum(int(_num(r['bab_runs'])) for r in bab)} disjunct runs proven, "
              f"{sum(int(_num(r['bab_domains'])) for r in bab)} domains bounded")
    by_net = {}
    for r in rows:
        by_net.setdefault(r["onnx"], []).append(r)
    for net, rs in sorted(by_net.items()):
        unst = [sum(int(x) for x in str(r["unstable_relus"]).split("/") if x.strip().isdigit()) for r in rs if r["unstable_relus"]]
        bins = [int(_num(r["binaries"])) for r in rs if str(r["binaries"]).strip()]
        ok = sum(r["result"] in ("sat", "unsat") for r in rs)
        print(f"  {Path(net).stem}: solved {ok}/{len(rs)}; unstable ReLUs after bounds median "
              f"{statistics.median(unst) if unst else '-'} (max {max(unst) if unst else '-'}); "
              f"MILP binaries median {statistics.median(bins) if bins else '-'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=str(SHARED / "mnist_fc"))
    ap.add_argument("--nets", default="256x2,256x4,256x6", help="comma-separated net sizes to include")
    ap.add_argument("--eps", default="", help="only these eps (comma-separated, e.g. 0.03)")
    ap.add_argument("--limit", type=int, default=0, help="at most N instances per net")
    ap.add_argument("--timeout-scale", type=float, default=1.0)
    ap.add_argument("--mode", default="exact")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "mnistfc.csv"))
    ap.add_argument("--summary-only", action="store_true", help="summarise --out without running")
    a = ap.parse_args()
    bench = Path(a.bench)
    if not (bench / "instances.csv").is_file():
        print(f"no mnist_fc benchmark at {bench}", file=sys.stderr)
        return 1
    truth = ground_truth("mnist_fc")
    nets = [n.strip() for n in a.nets.split(",") if n.strip()]
    eps = [e.strip() for e in a.eps.split(",") if e.strip()]
    todo, per_net = [], {}
    for o, v, t in instances(bench):
        if not any(f"_{n}." in o for n in nets) or (eps and not any(v.endswith(f"_{e}.vnnlib") for e in eps)):
            continue
        per_net[o] = per_net.get(o, 0) + 1
        if a.limit and per_net[o] > a.limit:
            continue
        todo.append((o, v, t))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if out.exists():
        with open(out) as f:
            for r in csv.DictReader(f):
                done[(r["onnx"], r["vnnlib"])] = r
    if not a.summary_only:
        new = not out.exists()
        with open(out, "a", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            if new:
                w.writeheader()
            for i, (o, v, t) in enumerate(todo):
                if (o, v) in done:
                    continue
                tt = t * a.timeout_scale
                row = {"onnx": o, "vnnlib": v, "timeout": tt, "truth": truth.get((o, v), "")}
                row.update(run_one(bench, o, v, tt, a.mode))
                w.writerow(row)
                f.flush()
                done[(o, v)] = row
                flag = "WRONG" if row["result"] in ("sat", "unsat") and row["truth"] in ("sat", "unsat") and row["result"] != row["truth"] else ""
                print(f"[{i + 1}/{len(todo)}] {Path(o).stem} {Path(v).stem}: {row['result']} in {row['seconds']} s "
                      f"(truth {row['truth']}) bounds {row['bounds_s']} build {row['build_s']} solve {row['solve_s']} "
                      f"unstable {row['unstable_relus']} {flag}", flush=True)
    rows = [done[(o, v)] for o, v, _ in todo if (o, v) in done]
    summarise(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
