"""vnncert/cpu.py: MKL's AVX2 kernels forced on AMD CPUs with AVX2 + FMA, and only there."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vnncert import cpu


@pytest.mark.parametrize("vendor,flags,expected", [
    ("AuthenticAMD", {"sse2", "avx2", "fma"}, "5"),
    ("AuthenticAMD", {"sse2", "avx"}, None),  # no AVX2: the AVX2 kernels would crash
    ("GenuineIntel", {"sse2", "avx2", "fma"}, None),  # MKL's own dispatch is right on Intel
    ("", set(), None),  # no /proc/cpuinfo
])
def test_the_variable_is_set_only_on_amd_cpus_with_avx2(monkeypatch, vendor, flags, expected):
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(cpu, "_cpu_flags", lambda: (vendor, flags))
    assert cpu.mkl_avx2_dispatch() is (expected is not None)
    assert os.environ.get("MKL_DEBUG_CPU_TYPE") == expected


def test_a_value_the_user_set_or_an_already_imported_torch_is_left_alone(monkeypatch):
    monkeypatch.setattr(cpu, "_cpu_flags", lambda: ("AuthenticAMD", {"avx2", "fma"}))
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "0")
    assert not cpu.mkl_avx2_dispatch()
    assert os.environ["MKL_DEBUG_CPU_TYPE"] == "0"
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE")
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch") or object())
    assert not cpu.mkl_avx2_dispatch()  # too late: MKL has read its settings
    assert "MKL_DEBUG_CPU_TYPE" not in os.environ


def test_importing_vnncert_sets_it_before_torch_on_this_machine():
    vendor, flags = cpu._cpu_flags()
    want = "5" if vendor == "AuthenticAMD" and {"avx2", "fma"} <= flags else "None"
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    out = subprocess.run([sys.executable, "-c", "import os, vnncert, torch; print(os.environ.get('MKL_DEBUG_CPU_TYPE'))"],
                         env=env, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == want
