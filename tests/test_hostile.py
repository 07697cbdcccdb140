"""Hostile and faulty input, table driven: every case is a command line run as a user would.

Each case names its input (files written into a fresh folder, then the command line), and what
must come out: the exit code, the first line of the result file (when one is named), the first
line of stdout (when it matters), a pattern on stderr, and the memory limit (RLIMIT_AS) the
process runs under. All cases run two at a time in a module fixture; each test reads its case's
record, so the whole module stays well under a minute.

Placeholders in a case's argv: {tmp} the case's folder, {tiny} the shipped 2-input model,
{res} {tmp}/result.txt. `files` maps a name in {tmp} to bytes, text, or a callable(tmp) that
writes it. The sections below group the cases by what they attack; docs/usage.md "Guarantees"
says what they promise.
"""
from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import pytest

from conftest import ROOT, SPECS

VNNCERT = [sys.executable, "-m", "vnncert.cli"]
TINY = SPECS / "onnx" / "tiny_2in.onnx"

# the tiny model's input box (tiny_2in: y0 = ..., y1 = 0.5 - 2 x1 on this box; see vnnlib_specs/)
HEAD = "".join(f"(declare-const {v} Real)\n" for v in ("X_0", "X_1", "Y_0", "Y_1"))
BOX = "(assert (>= X_0 0.5))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 0.5))\n"


@dataclass
class Hostile:
    id: str
    argv: Sequence[str]
    files: Dict[str, Union[str, bytes, Callable[[Path], None]]] = field(default_factory=dict)
    exit: int = 2
    result: Optional[str] = None  # first line of {res}; None: not checked
    stdout: Optional[str] = None  # first line of stdout; None: not checked
    stderr: Optional[str] = r"^vnncert: error: "  # regex searched in stderr; None: not checked
    stderr_lines: Optional[int] = 1  # number of non-empty stderr lines; None: not checked
    mem_mb: int = 3000
    timeout: float = 60.0
    env: Dict[str, str] = field(default_factory=dict)
    check: Optional[Callable[[Path, "subprocess.CompletedProcess"], None]] = None  # extra assertions


# ---------------------------------------------------------------------------------------------
# Property files: constants, declarations, NaN, sizes, gzip, endless input
# ---------------------------------------------------------------------------------------------
SPEC_CASES: List[Hostile] = [
    Hostile("spec-garbage-line-col", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--result-file", "{res}"],
            files={"p.vnnlib": HEAD + BOX + "(assert (>= Y_0 ))\n"}, result="error",
            stderr=r"p\.vnnlib:\d+:\d+"),
]

# ---------------------------------------------------------------------------------------------
# Processes and the command line: arguments, signals, stdout, files the user owns
# ---------------------------------------------------------------------------------------------
PROCESS_CASES: List[Hostile] = [
    Hostile("arg-timeout-abc", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--timeout", "abc", "--result-file", "{res}"],
            files={"p.vnnlib": HEAD + BOX + "(assert (>= Y_1 Y_0))\n"}, result="error", stderr=r"--timeout"),
]

# ---------------------------------------------------------------------------------------------
# Networks, engines, the benchmark runner
# ---------------------------------------------------------------------------------------------
NETWORK_CASES: List[Hostile] = [
    Hostile("net-missing", ["verify", "{tmp}/missing.onnx", "{tmp}/p.vnnlib", "--result-file", "{res}"],
            files={"p.vnnlib": HEAD + BOX + "(assert (>= Y_1 Y_0))\n"}, result="error", stderr=r"missing\.onnx"),
]

CASES = SPEC_CASES + PROCESS_CASES + NETWORK_CASES


# ---------------------------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------------------------
def _limit(mem_mb: int):
    def pre():
        os.setsid()
        b = mem_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (b, b))
    return pre


def _fill(s: str, tmp: Path) -> str:
    return s.format(tmp=tmp, tiny=TINY, res=tmp / "result.txt", root=ROOT)


def _run_case(case: Hostile, base: Path):
    tmp = base / re.sub(r"[^A-Za-z0-9_.-]", "_", case.id)
    tmp.mkdir(parents=True, exist_ok=True)
    for name, content in case.files.items():
        p = tmp / name
        if callable(content):
            content(p)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    argv = [_fill(a, tmp) for a in case.argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **case.env}
    try:
        proc = subprocess.run(VNNCERT + argv if argv[:1] != ["@sh"] else argv[1:], capture_output=True, text=True,
                              timeout=case.timeout, preexec_fn=_limit(case.mem_mb), env=env, cwd=tmp,
                              errors="replace")
    except subprocess.TimeoutExpired as e:
        return tmp, e
    return tmp, proc


@pytest.fixture(scope="module")
def records():
    base = Path(tempfile.mkdtemp(prefix="vnncert-hostile-"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futs = {c.id: pool.submit(_run_case, c, base) for c in CASES}
        return {k: f.result() for k, f in futs.items()}


def test_case_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile(case: Hostile, records):
    tmp, proc = records[case.id]
    assert not isinstance(proc, subprocess.TimeoutExpired), f"{case.id}: still running after {case.timeout} s"
    what = f"{case.id}: exit {proc.returncode}\nstdout: {proc.stdout[:2000]!r}\nstderr: {proc.stderr[:2000]!r}"
    assert proc.returncode == case.exit, what
    if case.result is not None:
        res = tmp / "result.txt"
        assert res.exists(), what
        assert res.read_text().splitlines()[:1] == [case.result], what + f"\nresult file: {res.read_text()[:500]!r}"
    if case.stdout is not None:
        assert proc.stdout.splitlines()[:1] == [case.stdout], what
    if case.stderr is not None:
        assert re.search(case.stderr, proc.stderr, re.M), what
    if case.stderr_lines is not None:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == case.stderr_lines, what
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, what
    if case.check is not None:
        case.check(tmp, proc)
