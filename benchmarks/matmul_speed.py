"""One-thread matrix-product speed of torch (MKL) in float64 and float32, with and without MKL's
AVX2 path forced (MKL_DEBUG_CPU_TYPE=5, what vnncert/cpu.py sets on AMD CPUs with AVX2 + FMA).

    .venv/bin/python benchmarks/matmul_speed.py [--rows 2304] [--repeat 50]

Each setting runs in a fresh interpreter (MKL reads the variable once). The shape is the branch
and bound's: (domains x rows, 256) @ (256, 256).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch
torch.set_num_threads(1)
rows, repeat = int(sys.argv[1]), int(sys.argv[2])
out = {}
for name, dt in (("float64", torch.float64), ("float32", torch.float32)):
    a = torch.randn(rows, 256, dtype=dt); w = torch.randn(256, 256, dtype=dt)
    for _ in range(5):
        a @ w
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(repeat):
            a @ w
        best = min(best, (time.perf_counter() - t) / repeat)
    out[name] = 2 * rows * 256 * 256 / best / 1e9
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2304)
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    print("| MKL_DEBUG_CPU_TYPE | float64 GFLOP/s | float32 GFLOP/s |")
    print("| --- | --- | --- |")
    for setting in (None, "5"):
        env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        if setting:
            env["MKL_DEBUG_CPU_TYPE"] = setting
        r = subprocess.run([sys.executable, "-c", CHILD, str(a.rows), str(a.repeat)], env=env,
                           capture_output=True, text=True, check=True)
        g = json.loads(r.stdout)
        print(f"| {setting or 'unset'} | {g['float64']:.1f} | {g['float32']:.1f} |")


if __name__ == "__main__":
    main()
