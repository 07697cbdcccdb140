"""Start-up overhead: wall time of vnncomp_scripts/run_instance.sh on ../shared/benchmarks/test/test_nano.

Usage: .venv/bin/python benchmarks/startup.py [--repeat 5]
Prints each run and the median. Goal (issue 2): <= 1 s.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "benchmarks" / "test"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--timeout", default="60")
    a = ap.parse_args()
    if not BENCH.is_dir():
        print(f"needs {BENCH}", file=sys.stderr)
        return 2
    times = []
    with tempfile.TemporaryDirectory() as d:
        res = Path(d) / "r.txt"
        for i in range(a.repeat):
            t0 = time.perf_counter()
            subprocess.run(["bash", str(ROOT / "vnncomp_scripts" / "run_instance.sh"), "v1", "test",
                            str(BENCH / "test_nano.onnx"), str(BENCH / "test_nano.vnnlib"), str(res), a.timeout], check=True)
            times.append(time.perf_counter() - t0)
            print(f"run {i + 1}: {times[-1]:.3f} s -> {res.read_text().splitlines()[0]}")
    print(f"median of {a.repeat}: {statistics.median(times):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
