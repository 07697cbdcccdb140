"""CPU set-up done once, when vnncert is imported (before torch is).

torch 1.12.1's wheels bundle MKL 2020.0, which gives CPUs it does not recognise as Intel its
generic SSE code path for matrix products. On the AMD EPYC development machine (AVX2, FMA),
one-thread products of the branch and bound's shapes ((2304 x 256) @ (256 x 256)) ran at
20.7 GFLOP/s in float64 and 12.6 GFLOP/s in float32; with MKL's AVX2 path forced
(MKL_DEBUG_CPU_TYPE=5, which MKL 2020.0 still honours) they ran at 39.7 and 81.3 GFLOP/s
(benchmarks/matmul_speed.py). The variable only changes which kernels compute the products, not
the arithmetic they do (IEEE float64 / float32 either way; every bound vnncert claims is
re-evaluated in float64 and widened by a margin, docs/relaxed.md).

It is set only on AMD CPUs whose flags list avx2 and fma, only when the user has not set it, and
only before torch is imported (MKL reads it once); Intel CPUs get MKL's own dispatch.
"""
from __future__ import annotations

import os
import sys


def _cpu_flags() -> tuple:
    """(vendor, flags) from /proc/cpuinfo, or ("", set()) where there is none (macOS, Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            text = f.read(65536)
    except OSError:
        return "", set()
    vendor, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if vendor and flags:
            break
    return vendor, flags


def mkl_avx2_dispatch() -> bool:
    """Force MKL's AVX2 kernels on AMD CPUs that have AVX2 and FMA (see the module docstring).
    True when the variable was set here."""
    if "MKL_DEBUG_CPU_TYPE" in os.environ or "torch" in sys.modules:
        return False
    vendor, flags = _cpu_flags()
    if vendor != "AuthenticAMD" or not {"avx2", "fma"} <= flags:
        return False
    os.environ["MKL_DEBUG_CPU_TYPE"] = "5"
    return True
