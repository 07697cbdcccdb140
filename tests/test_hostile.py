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
def _never_sat(tmp: Path, proc) -> None:
    """check: an answer, but not sat (the property is unsat in exact arithmetic)."""
    first = (tmp / "result.txt").read_text().splitlines()[:1]
    assert first in (["unsat"], ["unknown"], ["timeout"]), first
    assert proc.stdout.splitlines()[:1] == first


def _not_written(name: str):
    def check(tmp: Path, proc) -> None:
        assert not (tmp / name).exists(), f"{name} was written"
    return check


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _gzip_bomb(p: Path, mib: int = 2048) -> None:
    """mib MiB of zeros as concatenated gzip members of 1 MiB each (a file of about mib KiB)."""
    import gzip

    member = gzip.compress(bytes(1 << 20), compresslevel=9)
    with open(p, "wb") as f:
        for _ in range(mib):
            f.write(member)


def _broken_gzip(kind: str, payload: bytes):
    def write(p: Path) -> None:
        import gzip

        data = bytearray(gzip.compress(payload))
        if kind == "corrupt":
            data[10] = 0x07  # the first deflate block gets a reserved type: zlib's "invalid block type"
        else:
            del data[len(data) // 2:]
        p.write_bytes(bytes(data))
    return write


def _tiny_gz(kind: str):
    return _broken_gzip(kind, TINY.read_bytes())


# the repro of issue 18 point 1: y1 = 0.5 - 2 x1 <= 0.5 here, so y1 >= 0.50000000000000001 is unsat;
# with X_1 fixed at 0, y0 = 2 x1 = 0 < 1e-400 too. Both once answered sat (the constants rounded).
REPRO = HEAD + BOX + "(assert (>= Y_1 0.50000000000000001))\n"
REPRO_1E400 = HEAD + BOX.replace("(<= X_1 0.5)", "(<= X_1 0)") + "(assert (>= Y_0 1e-400))\n"
V2_HEAD = ("(vnnlib-version <2.0>)\n(declare-network f\n  (declare-input X float32 [1,2])\n"
           "  (declare-output Y float32 [1,2])\n)\n")


def _exact_cases() -> List[Hostile]:
    out = []
    for name, text in (("repro", REPRO), ("1e400", REPRO_1E400)):
        for mode in ("auto", "exact", "falsify"):
            # (falsify answers `unknown` well inside its deadline; 10 s so a loaded machine's start-up
            # cannot turn it into `timeout`; the other modes run to their deadline, 3 s)
            argv = ["verify", "{tiny}", "{tmp}/p.vnnlib", "--mode", mode, "--timeout", "10" if mode == "falsify" else "3",
                    "--threads", "1", "--result-file", "{res}"]
            out.append(Hostile(f"spec-exact-{name}-{mode}", argv, files={"p.vnnlib": text}, exit=0,
                               result="unknown" if mode == "falsify" else None, stderr=None, stderr_lines=None,
                               check=_never_sat, timeout=30))
    return out



def _v2_model(kind: str):
    """Model files for the VNN-LIB 2.0 composition cases: a copy of tiny (same tensor names), a model of
    another structure (one Gemm), the same in float64."""
    def write(p: Path) -> None:
        if kind == "copy":
            p.write_bytes(TINY.read_bytes())
            return
        import numpy as np
        import onnx
        from onnx import helper, numpy_helper

        t = onnx.TensorProto.DOUBLE if kind == "gemm64" else onnx.TensorProto.FLOAT
        dt = np.float64 if kind == "gemm64" else np.float32
        g = helper.make_graph([helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], "g",
                              [helper.make_tensor_value_info("x", t, [1, 2])], [helper.make_tensor_value_info("y", t, [1, 2])],
                              [numpy_helper.from_array(np.eye(2, dtype=dt), "W"), numpy_helper.from_array(np.zeros(2, dt), "b")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        onnx.save(m, str(p))
    return write


V2_TWO = V2_HEAD + "(declare-network g (declare-input A float32 [1,2]) (declare-output B float32 [1,2]))\n"
V2_BOXES = ("(assert (and (>= X[0,0] 0.5) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 0.5)))\n"
            "(assert (and (>= A[0,0] 0.5) (<= A[0,0] 1.0) (>= A[0,1] 0.0) (<= A[0,1] 0.5)))\n")
V2_STD = ["verify", "{tmp}/q.vnnlib", "--network", "f={tiny}", "--threads", "1"]


def _empty_stdout(tmp: Path, proc) -> None:
    assert proc.stdout == "", proc.stdout


def _first_line_in(*words):
    def check(tmp: Path, proc) -> None:
        assert proc.stdout.splitlines()[:1] in [[w] for w in words], proc.stdout[:200]
    return check


VERIFY_P = ["verify", "{tiny}", "{tmp}/p.vnnlib", "--result-file", "{res}"]
SPEC_CASES: List[Hostile] = [
    Hostile("spec-garbage-line-col", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--result-file", "{res}"],
            files={"p.vnnlib": HEAD + BOX + "(assert (>= Y_0 ))\n"}, result="error",
            stderr=r"p\.vnnlib:\d+:\d+"),
    # point 1: constants are exact; never sat on the rounded constant
    *_exact_cases(),
    # point 2: memory bounded by the input: a declared index far beyond the inputs
    Hostile("spec-x999-verify", VERIFY_P, files={"p.vnnlib": HEAD.replace("X_1", "X_999999999") + BOX.replace(
        "X_1", "X_999999999") + "(assert (>= Y_1 Y_0))\n"}, result="error",
            stderr=r"p\.vnnlib:2:16: variable X_999999999 is out of range: the network has 2 inputs \(X_0\.\.X_1\)"),
    Hostile("spec-x999-show", ["spec", "show", "{tmp}/p.vnnlib"], files={"p.vnnlib": HEAD.replace(
        "X_1", "X_999999999") + BOX.replace("X_1", "X_999999999") + "(assert (>= Y_1 Y_0))\n"}, mem_mb=1000,
            stderr=r"p\.vnnlib: X_ variables are not numbered 0\.\.999999999 without gaps \(missing X_1\)"),
    Hostile("spec-x999-show-model", ["spec", "show", "{tmp}/p.vnnlib", "--model", "{tiny}"], files={
        "p.vnnlib": HEAD.replace("X_1", "X_999999999") + BOX.replace("X_1", "X_999999999") + "(assert (>= Y_1 Y_0))\n"},
            stderr=r"p\.vnnlib:2:16: variable X_999999999 is out of range"),
    Hostile("spec-v2-huge-shape-show", ["spec", "show", "{tmp}/q.vnnlib"], mem_mb=1000, files={
        "q.vnnlib": V2_HEAD.replace("[1,2])\n  (declare-output", "[1000000000])\n  (declare-output")
        + "(assert (<= X[0] 1.0))\n(assert (>= X[0] 0.0))\n(assert (<= Y[0,0] 0.0))\n"},
            stderr=r"q\.vnnlib:3:3: X has 1000000000 elements; without a model"),
    # gzip that expands past the limit, endless input, FIFOs, corrupt and truncated .gz
    Hostile("spec-gzip-bomb-verify", VERIFY_P[:2] + ["{tmp}/p.vnnlib.gz"] + VERIFY_P[3:],
            files={"p.vnnlib.gz": _gzip_bomb}, result="error",
            stderr=r"p\.vnnlib\.gz: property file decompresses to more than 256 MiB \(the limit\); refused"),
    Hostile("spec-gzip-bomb-show", ["spec", "show", "{tmp}/p.vnnlib.gz"], files={"p.vnnlib.gz": _gzip_bomb},
            mem_mb=1000, stderr=r"decompresses to more than 256 MiB"),
    Hostile("spec-dev-zero", ["verify", "{tiny}", "/dev/zero", "--result-file", "{res}"], result="error",
            stderr=r"/dev/zero: cannot read property file: a character device, not a regular file"),
    Hostile("spec-fifo", VERIFY_P, files={"p.vnnlib": _fifo}, result="error", timeout=30,
            stderr=r"p\.vnnlib: cannot read property file: a FIFO \(named pipe\), not a regular file"),
    Hostile("spec-fifo-show", ["spec", "show", "{tmp}/p.vnnlib"], files={"p.vnnlib": _fifo}, timeout=30,
            mem_mb=1000, stderr=r"a FIFO \(named pipe\), not a regular file"),
    Hostile("spec-gzip-corrupt", VERIFY_P[:2] + ["{tmp}/p.vnnlib.gz"] + VERIFY_P[3:],
            files={"p.vnnlib.gz": _broken_gzip("corrupt", (HEAD + BOX + "(assert (>= Y_1 Y_0))\n").encode())},
            result="error", stderr=r"p\.vnnlib\.gz: broken gzip file: corrupt compressed data \(invalid block type\)"),
    Hostile("spec-gzip-corrupt-show", ["spec", "show", "{tmp}/p.vnnlib.gz"], mem_mb=1000,
            files={"p.vnnlib.gz": _broken_gzip("corrupt", (HEAD + BOX + "(assert (>= Y_1 Y_0))\n").encode())},
            stderr=r"p\.vnnlib\.gz: broken gzip file: corrupt compressed data"),
    Hostile("spec-gzip-truncated", VERIFY_P[:2] + ["{tmp}/p.vnnlib.gz"] + VERIFY_P[3:],
            files={"p.vnnlib.gz": _broken_gzip("truncated", (HEAD + BOX + "(assert (>= Y_1 Y_0))\n").encode())},
            result="error", stderr=r"p\.vnnlib\.gz: broken gzip file: truncated"),
    Hostile("spec-model-gz-corrupt", ["verify", "{tmp}/m.onnx.gz", "{tmp}/p.vnnlib", "--result-file", "{res}"],
            files={"m.onnx.gz": _tiny_gz("corrupt"), "p.vnnlib": HEAD + BOX + "(assert (>= Y_1 Y_0))\n"},
            result="error", stderr=r"m\.onnx\.gz: broken gzip file: corrupt compressed data"),
    # point 11: NaN (and infinities) are not numbers, in every position, with file:line:column
    Hostile("spec-nan-output", VERIFY_P, files={"p.vnnlib": HEAD + BOX + "(assert (>= Y_1 nan))\n"},
            result="error", stderr=r"p\.vnnlib:9:17: 'nan' is not a number of VNN-LIB"),
    Hostile("spec-nan-input", VERIFY_P, files={"p.vnnlib": HEAD + BOX.replace("(<= X_0 1)", "(<= X_0 NaN)")
                                                + "(assert (>= Y_1 Y_0))\n"},
            result="error", stderr=r"p\.vnnlib:6:17: 'NaN' is not a number of VNN-LIB"),
    Hostile("spec-nan-term", VERIFY_P, files={"p.vnnlib": HEAD + BOX + "(assert (<= (+ Y_0 -nan) 1))\n"},
            result="error", stderr=r"p\.vnnlib:9:20: '-nan' is not a number of VNN-LIB"),
    Hostile("spec-inf-output", VERIFY_P, files={"p.vnnlib": HEAD + BOX + "(assert (or (<= Y_0 inf) (>= Y_1 0)))\n"},
            result="error", stderr=r"p\.vnnlib:9:21: 'inf' is not a number of VNN-LIB"),
    Hostile("spec-nan-v2", ["verify", "{tiny}", "{tmp}/q.vnnlib", "--result-file", "{res}"], result="error",
            files={"q.vnnlib": V2_HEAD + "(assert (<= X[0,0] 1.0))\n(assert (>= X[0,0] nan))\n"
                                         "(assert (<= X[0,1] 1.0))\n(assert (>= X[0,1] 0.0))\n(assert (<= Y[0,0] 0.0))\n"},
            stderr=r"q\.vnnlib:7:\d+: 'nan' is not a number of VNN-LIB"),
    Hostile("spec-robustness-eps-nan", ["spec", "robustness", "--point", "0.5,0.5", "--label", "0", "--n-classes", "2",
                                        "--eps", "nan", "--out", "{tmp}/r.vnnlib"], mem_mb=1000, stderr=r"eps",
            check=_not_written("r.vnnlib")),
    Hostile("spec-robustness-point-inf", ["spec", "robustness", "--point", "0.5,inf", "--label", "0", "--n-classes", "2",
                                          "--eps", "0.1", "--out", "{tmp}/r.vnnlib"], mem_mb=1000,
            stderr=r"not a finite number"),
    Hostile("spec-robustness-clip-nan", ["spec", "robustness", "--point", "0.5,0.5", "--label", "0", "--n-classes", "2",
                                         "--eps", "0.1", "--clip", "nan", "1", "--out", "{tmp}/r.vnnlib"], mem_mb=1000,
            stderr=r"clip"),
    # point 12: an offending 1 MB token is quoted in at most ~200 characters
    Hostile("spec-huge-token", VERIFY_P, files={"p.vnnlib": HEAD + BOX + "(assert (>= Y_1 " + "q" * 1_000_000 + "))\n"},
            result="error", stderr=r"^vnncert: error: p\.vnnlib:9:17: expected a declared variable or a number, found "
                                   r"'q{200}'\.\.\. \(1000000 characters\)$"),
    Hostile("spec-huge-number", VERIFY_P, files={"p.vnnlib": HEAD + BOX + "(assert (>= Y_1 0." + "1" * 1_000_000 + "))\n"},
            result="error", stderr=r"^vnncert: error: p\.vnnlib:9:17: number with 1000002 characters \(at most 1000"),
    Hostile("spec-huge-exponent", VERIFY_P, files={"p.vnnlib": HEAD + BOX + "(assert (>= Y_1 1e-99999999999))\n"},
            result="error", stderr=r"p\.vnnlib:9:17: exponent of '1e-99999999999' is out of range"),
    # issue 19 item 9: one back end, one limit on the disjuncts (1.0 and 2.0), refused before anything is built
    Hostile("spec-dnf-limit-v1", VERIFY_P, result="error", files={"p.vnnlib": HEAD + BOX
            + "(assert (or " + " ".join(f"(<= Y_0 {i})" for i in range(1001)) + "))\n"
            + "(assert (or " + " ".join(f"(>= Y_1 {i})" for i in range(1000)) + "))\n"},
            stderr=r"p\.vnnlib:10:1: property expands to more than 1000000 disjuncts \(the limit\)$"),
    Hostile("spec-dnf-limit-v2", ["verify", "{tiny}", "{tmp}/q.vnnlib", "--result-file", "{res}"], result="error", files={"q.vnnlib": V2_HEAD + "(assert (>= X[0,0] 0.5))\n(assert (<= X[0,0] 1.0))\n"
                                   "(assert (>= X[0,1] 0.0))\n(assert (<= X[0,1] 0.5))\n"
                                   + "(assert (or " + " ".join(f"(<= Y[0,0] {i}.0)" for i in range(1001)) + "))\n"
                                   + "(assert (or " + " ".join(f"(>= Y[0,1] {i}.0)" for i in range(1000)) + "))\n"},
            stderr=r"q\.vnnlib:11:\d+: property expands to more than 1000000 disjuncts \(the limit\)$"),
    # the same rule on empty boxes in both versions: a single conjunction's empty box is an error
    Hostile("spec-empty-box-v2", ["verify", "{tiny}", "{tmp}/q.vnnlib", "--result-file", "{res}"], result="error",
            files={"q.vnnlib": V2_HEAD + "(assert (>= X[0,0] 0.5))\n(assert (<= X[0,0] 0.25))\n"
                                         "(assert (>= X[0,1] 0.0))\n(assert (<= X[0,1] 0.5))\n(assert (<= Y[0,0] 0.0))\n"},
            stderr=r"q\.vnnlib:7:\d+: empty input box: X\[0,0\] has lower bound 0\.5 above upper bound 0\.25"),
    # issue 22: every new input path of VNN-LIB 2.0 (hidden nodes, several networks, products), standard CLI
    Hostile("spec-v2-hidden-missing", V2_STD, files={"q.vnnlib": V2_HEAD.replace(
        "  (declare-output", '  (declare-hidden H float32 [1,2] "nope")\n  (declare-output') + V2_BOXES.split("\n")[0]
        + "\n(assert (<= H[0,0] 0.0))\n"}, check=_empty_stdout,
            stderr=r"q\.vnnlib:4:3: hidden node H of network f: 'nope' is not the output of any node of the model "
                   r"tiny_2in\.onnx"),
    Hostile("spec-v2-hidden-is-input", V2_STD, files={"q.vnnlib": V2_HEAD.replace(
        "  (declare-output", '  (declare-hidden H float32 [1,2] "x")\n  (declare-output') + V2_BOXES.split("\n")[0]
        + "\n(assert (<= H[0,0] 0.0))\n"}, check=_empty_stdout, stderr=r"'x' is an input of the model tiny_2in\.onnx"),
    Hostile("spec-v2-hidden-shape", V2_STD, files={"q.vnnlib": V2_HEAD.replace(
        "  (declare-output", '  (declare-hidden H float32 [1,3] "h")\n  (declare-output') + V2_BOXES.split("\n")[0]
        + "\n(assert (<= H[0,0] 0.0))\n"}, check=_empty_stdout,
            stderr=r"q\.vnnlib:4:3: hidden node H is declared with shape \[1,3\] but 'h' of tiny_2in\.onnx has shape "
                   r"\[1,2\]"),
    Hostile("spec-v2-network-twice", V2_STD, files={"q.vnnlib": V2_TWO.replace(
        "network g", "network f") + V2_BOXES + "(assert (<= Y[0,0] B[0,0]))\n"}, check=_empty_stdout,
            stderr=r"q\.vnnlib:6:1: network f is declared twice"),
    Hostile("spec-v2-network-missing", V2_STD, files={"q.vnnlib": V2_TWO + V2_BOXES + "(assert (<= Y[0,0] B[0,0]))\n"},
            check=_empty_stdout, stderr=r"no model for network 'g' declared in q\.vnnlib: give --network g=FILE\.onnx"),
    Hostile("spec-v2-two-networks-vnncomp-form", ["verify", "{tiny}", "{tmp}/q.vnnlib", "--result-file", "{res}"],
            files={"q.vnnlib": V2_TWO + V2_BOXES + "(assert (<= Y[0,0] B[0,0]))\n"}, result="error",
            stderr=r"q\.vnnlib declares 2 networks that need a model \(f, g\); one model file was given"),
    # two models with the same tensor names (a copy): renamed apart in the product graph; equal on tied inputs
    Hostile("spec-v2-clashing-names", V2_STD + ["--network", "g={tmp}/g.onnx"], exit=0, stderr=None,
            stderr_lines=None, check=_first_line_in("sat"), timeout=30, files={"g.onnx": _v2_model("copy"),
            "q.vnnlib": V2_TWO + V2_BOXES + "(assert (and (== X[0,0] A[0,0]) (== X[0,1] A[0,1])))\n"
            "(assert (>= Y[0,1] B[0,1]))\n"}),
    Hostile("spec-v2-not-isomorphic", V2_STD + ["--network", "g={tmp}/g.onnx"], check=_empty_stdout,
            files={"g.onnx": _v2_model("gemm"), "q.vnnlib": V2_TWO.replace("network g", "network g (isomorphic-to f)")
                   + V2_BOXES + "(assert (<= Y[0,0] B[0,0]))\n"},
            stderr=r"network g is declared isomorphic-to f, but g\.onnx and tiny_2in\.onnx are not isomorphic"),
    Hostile("spec-v2-input-types-differ", V2_STD + ["--network", "g={tmp}/g.onnx"], check=_empty_stdout,
            files={"g.onnx": _v2_model("gemm64"), "q.vnnlib": V2_TWO.replace("A float32", "A float64").replace(
                "B float32", "B float64") + V2_BOXES + "(assert (<= Y[0,0] 0.0))\n"},
            stderr=r"inputs of element types float32, float64; vnncert composes networks whose inputs share one"),
    Hostile("spec-v2-product-unbounded", V2_STD, check=_empty_stdout, files={"q.vnnlib": V2_HEAD.replace(
        "float32", "real") + "(assert (and (>= X[0,0] 0.5) (<= X[0,0] 1.0) (<= X[0,1] 0.5)))\n"
        "(assert (>= (* X[0,0] X[0,1] Y[0,1]) 1.0))\n"},
            stderr=r"q\.vnnlib: input X\[0,1\] has no lower bound; expected a constraint such as \(>= X\[0,1\]"),
    # a product over inputs as wide as float32 allows: its values overflow float32 in the composed graph;
    # whatever the engines make of it, the answer is clean (a witness is checked exactly, in float64)
    Hostile("spec-v2-product-huge", V2_STD + ["--timeout", "4"], exit=0, stderr=None, stderr_lines=None, timeout=30,
            check=_first_line_in("sat", "unknown", "timed-out"), files={"q.vnnlib": V2_HEAD.replace("float32", "real")
            + "(assert (and (>= X[0,0] -300000000000000000000000000000000000000.0) (<= X[0,0] "
              "300000000000000000000000000000000000000.0)))\n(assert (and (>= X[0,1] -300000000000000000000000000000000"
              "000000.0) (<= X[0,1] 300000000000000000000000000000000000000.0)))\n"
              "(assert (<= (* X[0,0] X[0,1]) -10000000000000000000000000000000000000000000000000000000000000.0))\n"}),
]

# ---------------------------------------------------------------------------------------------
# Processes and the command line: arguments, signals, stdout, files the user owns
# ---------------------------------------------------------------------------------------------
SAT = HEAD + BOX + "(assert (>= Y_1 Y_0))\n"  # sat on the tiny model (x1 = 0 gives y1 = 0.5 >= y0)
RUN_INSTANCE = str(ROOT / "vnncomp_scripts" / "run_instance.sh")


def _copy_tiny(p: Path) -> None:
    p.write_bytes(TINY.read_bytes())


def _link_to(name: str, hard: bool = False):
    def make(p: Path) -> None:
        (os.link if hard else os.symlink)(p.parent / name if hard else name, p)
    return make


def _unchanged(name: str, original: Callable[[], bytes]):
    """check: {tmp}/name still holds what it held before the run."""
    def check(tmp: Path, proc) -> None:
        assert (tmp / name).read_bytes() == original(), f"{name} was changed"
    return check


def _tiny_bytes() -> bytes:
    return TINY.read_bytes()


def _no_stdout(tmp: Path, proc) -> None:
    assert proc.stdout == "", proc.stdout


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _written_through_link(tmp: Path, proc) -> None:
    assert (tmp / "result.txt").is_symlink(), "the link at the result path was replaced"
    assert (tmp / "target.txt").read_text().splitlines()[0] == "sat"
    assert (tmp / "target.txt").stat().st_mode & 0o777 == 0o640  # the replaced file's mode is kept


def _new_file_mode(tmp: Path, proc) -> None:
    for name in ("result.txt", "r.json"):
        assert (tmp / name).stat().st_mode & 0o777 == 0o666 & ~_umask(), name


def _help_lists_name(tmp: Path, proc) -> None:
    assert "--name" in proc.stdout


def _many_disjuncts(p: Path, n: int = 200_000) -> None:
    """A 7 MB property with n two-row disjuncts: parsing it needs about 430 MB."""
    disjuncts = " ".join(f"(and (>= Y_0 {i}) (<= Y_1 {i}))" for i in range(n))
    p.write_text(HEAD + BOX + f"(assert (or {disjuncts}))\n")


def _arg(case_id: str, args: Sequence[str], needle: str) -> Hostile:
    """A bad argument to `vnncert verify MODEL PROP`: exit 2, `error` on stdout and in the result file."""
    return Hostile(case_id, ["verify", "{tiny}", "{tmp}/p.vnnlib", *args, "--result-file", "{res}"],
                   files={"p.vnnlib": SAT}, result="error", stdout="error", stderr=needle)


def _std(case_id: str, args: Sequence[str], needle: str) -> Hostile:
    """The same bad argument to the VNN-LIB 2.0 form: exit 2, nothing on stdout."""
    return Hostile(case_id, ["verify", "{tmp}/p.vnnlib", "--network", "N={tiny}", *args],
                   files={"p.vnnlib": SAT}, stderr=needle, check=_no_stdout)


PROCESS_CASES: List[Hostile] = [
    # ---- 6. argument errors: one line, exit 2, `error` in the result file, both verify grammars ----
    _arg("arg-timeout-abc", ["--timeout", "abc"], r"--timeout"),
    _arg("arg-timeout-nan", ["--timeout", "nan"], r"--timeout must be"),
    _arg("arg-timeout-negative", ["--timeout", "-1"], r"--timeout must be"),
    _arg("arg-mode-bogus", ["--mode", "bogus"], r"--mode"),
    _arg("arg-seed-negative", ["--seed", "-5"], r"--seed must be"),
    _arg("arg-n-zero", ["--n", "0"], r"--n must be"),
    _arg("arg-n0-zero", ["--n0", "0"], r"--n0 must be"),
    _arg("arg-alpha-2", ["--alpha", "2"], r"--alpha must"),
    _arg("arg-sigma-negative", ["--sigma", "-1"], r"--sigma must be"),
    _arg("arg-threads-huge", ["--threads", "100000"], r"--threads must be an integer in 0\.\.1024"),
    _arg("arg-noise-bogus", ["--noise", "bogus"], r"--noise must be one of"),
    _arg("arg-relaxed-method-bogus", ["--relaxed-method", "bogus"], r"--relaxed-method must be one of"),
    _arg("arg-unknown-option", ["--bogus"], r"unrecognized arguments: --bogus"),
    _arg("arg-abbreviated-result-file", ["--timeout", "abc", "--result", "{res}"], r"--timeout"),
    Hostile("arg-timeout-inf-is-no-limit", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--timeout", "inf", "--threads", "1",
                                            "--result-file", "{res}"],
            files={"p.vnnlib": SAT}, exit=0, result="sat", stdout="sat", stderr=None, stderr_lines=0),
    Hostile("arg-result-file-before-bad-option", ["verify", "--result-file={res}", "--mode", "bogus", "--", "{tiny}",
                                                  "{tmp}/p.vnnlib"],
            files={"p.vnnlib": SAT}, result="error", stdout="error", stderr=r"--mode"),
    Hostile("arg-no-paths", ["verify", "--result-file", "{res}"], result="error", stdout="error",
            stderr=r"verify takes MODEL\.onnx PROP\.vnnlib \(VNN-COMP form\) or QUERY\.vnnlib --network .*got 0 path"),
    Hostile("arg-neither-form", ["verify", "{tiny}", "{tmp}/p.vnnlib", "{tmp}/p.vnnlib"], files={"p.vnnlib": SAT},
            stderr=r"\(VNN-COMP form\) or .* \(VNN-LIB 2\.0 form\); got 3 positional", check=_no_stdout),
    Hostile("arg-both-forms", ["verify", "{tmp}/p.vnnlib", "--network", "N={tiny}", "--result-file", "{res}"],
            files={"p.vnnlib": SAT}, result="error", stdout="error",
            stderr=r"--network is an option of the VNN-LIB 2\.0 form and --result-file one of the VNN-COMP form"),
    _std("std-timeout-abc", ["--timeout", "abc"], r"--timeout"),
    _std("std-timeout-nan", ["--timeout", "nan"], r"--timeout must be"),
    _std("std-timeout-negative", ["--timeout", "-1"], r"--timeout must be"),
    _std("std-mode-bogus", ["--mode", "bogus"], r"--mode"),
    _std("std-seed-negative", ["--seed", "-5"], r"--seed must be"),
    _std("std-threads-huge", ["--threads", "100000"], r"--threads must be an integer in 0\.\.1024"),
    _std("std-unknown-option", ["--bogus"], r"unrecognized arguments: --bogus"),
    Hostile("std-timeout-inf-is-no-limit", ["verify", "{tmp}/p.vnnlib", "--network", "N={tiny}", "--timeout", "inf",
                                            "--threads", "1"],
            files={"p.vnnlib": SAT}, exit=0, stdout="sat", stderr=None, stderr_lines=0),
    # other subcommands: one line, exit 2, no usage dump
    Hostile("cmd-none", []),
    Hostile("cmd-unknown", ["bogus"], stderr=r"invalid choice: 'bogus'"),
    Hostile("cmd-spec-missing", ["spec"], stderr=r"required"),
    Hostile("cmd-spec-eps-nan", ["spec", "robustness", "--point", "0.5,0.5", "--label", "0", "--eps", "nan",
                                 "--n-classes", "2", "--out", "{tmp}/q.vnnlib"], stderr=r"--eps must be"),
    Hostile("cmd-spec-show-out-of-memory", ["spec", "show", "{tmp}/big.vnnlib"], files={"big.vnnlib": _many_disjuncts},
            mem_mb=300, stderr=r"^vnncert: error: \S*big\.vnnlib: out of memory while reading it$"),
    Hostile("cmd-spec-eps-missing-value", ["spec", "robustness", "--point", "0.5,0.5", "--eps"], stderr=r"--eps"),
    Hostile("cmd-smooth-sigma-negative", ["smooth", "certify", "{tiny}", "--data", "{tmp}/d.npz", "--sigma", "-1",
                                          "--out", "{tmp}/o.tsv"], stderr=r"--sigma must be"),
    Hostile("cmd-smooth-threads-huge", ["smooth", "certify", "{tiny}", "--data", "{tmp}/d.npz", "--sigma", "0.5",
                                        "--threads", "100000", "--out", "{tmp}/o.tsv"], stderr=r"--threads must be"),
    Hostile("cmd-bench-jobs-abc", ["bench", "{tmp}", "--out", "{tmp}/r.csv", "--jobs", "abc"], stderr=r"--jobs"),
    Hostile("cmd-score-missing", ["score"], stderr=r"required: RESULTS"),
    Hostile("cmd-compare-check-bogus", ["compare", "{tmp}/a.csv", "--check", "bogus"], stderr=r"--check"),
    Hostile("cmd-supports-bogus", ["supports", "--bogus"], stderr=r"unknown capability"),
    Hostile("help-lists-name", ["--help"], exit=0, stderr=None, stderr_lines=0, check=_help_lists_name),
    Hostile("name", ["--name"], exit=0, stdout="vnncert", stderr=None, stderr_lines=0),
    # ---- 7. nothing the user owns is destroyed ----
    Hostile("out-result-is-model", ["verify", "{tmp}/m.onnx", "{tmp}/p.vnnlib", "--result-file", "{tmp}/m.onnx"],
            files={"p.vnnlib": SAT, "m.onnx": _copy_tiny}, stdout="error", stderr=r"same file as the model",
            check=_unchanged("m.onnx", _tiny_bytes)),
    Hostile("out-result-is-property-via-symlink", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--result-file", "{tmp}/link"],
            files={"p.vnnlib": SAT, "link": _link_to("p.vnnlib")}, stdout="error",
            stderr=r"same file as the property", check=_unchanged("p.vnnlib", lambda: SAT.encode())),
    Hostile("out-result-is-model-via-hard-link", ["verify", "{tmp}/m.onnx", "{tmp}/p.vnnlib", "--result-file",
                                                  "{tmp}/h.onnx"],
            files={"p.vnnlib": SAT, "m.onnx": _copy_tiny, "h.onnx": _link_to("m.onnx", hard=True)}, stdout="error",
            stderr=r"same file as the model", check=_unchanged("m.onnx", _tiny_bytes)),
    Hostile("out-result-is-model-with-bad-argument", ["verify", "{tmp}/m.onnx", "{tmp}/p.vnnlib", "--timeout", "abc",
                                                      "--result-file", "{tmp}/m.onnx"],
            files={"p.vnnlib": SAT, "m.onnx": _copy_tiny}, stdout="error", stderr=r"--timeout",
            check=_unchanged("m.onnx", _tiny_bytes)),
    Hostile("out-json-is-result-file", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--result-file", "{res}", "--json", "{res}"],
            files={"p.vnnlib": SAT}, result="error", stdout="error", stderr=r"--json .* same file as --result-file"),
    Hostile("out-json-is-property", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--result-file", "{res}", "--json",
                                     "{tmp}/p.vnnlib"],
            files={"p.vnnlib": SAT}, result="error", stdout="error", stderr=r"same file as the property",
            check=_unchanged("p.vnnlib", lambda: SAT.encode())),
    Hostile("out-json-no-folder", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--result-file", "{res}", "--json",
                                   "{tmp}/nowhere/r.json"],
            files={"p.vnnlib": SAT}, result="error", stdout="error", stderr=r"--json .*no such folder"),
    Hostile("out-json-is-a-folder", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--result-file", "{res}", "--json", "{tmp}"],
            files={"p.vnnlib": SAT}, result="error", stdout="error", stderr=r"--json .*is a folder"),
    # /proc takes no new file, even from root (a test with a device such as /dev/full would risk the device)
    Hostile("out-json-unwritable-folder", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--result-file", "{res}", "--json",
                                           "/proc/vnncert-hostile.json"],
            files={"p.vnnlib": SAT}, result="error", stdout="error", stderr=r"--json /proc/\S+: cannot write in /proc"),
    Hostile("out-result-no-folder", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--result-file", "{tmp}/nowhere/r.txt"],
            files={"p.vnnlib": SAT}, stdout="error", stderr=r"--result-file .*no such folder"),
    Hostile("out-result-symlink-written-through", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--threads", "1",
                                                   "--result-file", "{res}"],
            files={"p.vnnlib": SAT, "target.txt": lambda p: (p.write_text("old\n"), p.chmod(0o640)),
                   "result.txt": _link_to("target.txt")},
            exit=0, result="sat", stdout="sat", stderr=None, stderr_lines=0, check=_written_through_link),
    Hostile("out-new-files-get-umask-mode", ["verify", "{tiny}", "{tmp}/p.vnnlib", "--threads", "1", "--result-file",
                                             "{res}", "--json", "{tmp}/r.json"],
            files={"p.vnnlib": SAT}, exit=0, result="sat", stdout="sat", stderr=None, stderr_lines=0,
            check=_new_file_mode),
    Hostile("out-spec-robustness-out-is-model", ["spec", "robustness", "--point", "0.5,0.5", "--label", "0", "--eps",
                                                 "0.1", "--model", "{tmp}/m.onnx", "--out", "{tmp}/m.onnx"],
            files={"m.onnx": _copy_tiny}, stderr=r"--out .* same file as the --model",
            check=_unchanged("m.onnx", _tiny_bytes)),
    Hostile("out-std-serialise-into-a-file", ["verify", "{tmp}/p.vnnlib", "--network", "N={tiny}",
                                              "--serialise-assignments", "{tmp}/p.vnnlib"],
            files={"p.vnnlib": SAT}, stderr=r"--serialise-assignments .* not a folder", check=_no_stdout),
    Hostile("out-smooth-out-is-model", ["smooth", "certify", "{tmp}/m.onnx", "--data", "{tmp}/d.npz", "--sigma", "0.5",
                                        "--out", "{tmp}/m.onnx"],
            files={"m.onnx": _copy_tiny}, stderr=r"--out .* same file as the model",
            check=_unchanged("m.onnx", _tiny_bytes)),
    Hostile("out-smooth-report-plot-is-input", ["smooth", "report", "{tmp}/a.tsv", "--plot", "{tmp}/a.tsv"],
            files={"a.tsv": "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"}, stderr=r"--plot .* same file as the input",
            check=_unchanged("a.tsv", lambda: b"idx\tlabel\tpredict\tradius\tcorrect\ttime\n")),
    # ---- run_instance.sh: `--` before the paths, `error` for a TIMEOUT that is not a number >= 0 ----
    Hostile("script-model-named-like-an-option", ["@sh", "bash", RUN_INSTANCE, "v1", "c", "-net.onnx", "p.vnnlib",
                                                  "{res}", "20"],
            files={"p.vnnlib": SAT, "-net.onnx": _copy_tiny, "result.txt": "old\n"}, exit=0, result="sat",
            stderr=None, stderr_lines=0, env={"VNNCERT_MARGIN": "1.0"}),
    Hostile("script-timeout-abc", ["@sh", "bash", RUN_INSTANCE, "v1", "c", "{tiny}", "p.vnnlib", "{res}", "abc"],
            files={"p.vnnlib": SAT, "result.txt": "old\n"}, exit=0, result="error",
            stderr=r"^run_instance.sh: TIMEOUT must be a number"),
    Hostile("script-timeout-negative", ["@sh", "bash", RUN_INSTANCE, "v1", "c", "{tiny}", "p.vnnlib", "{res}", "-1"],
            files={"p.vnnlib": SAT}, exit=0, result="error", stderr=r"^run_instance.sh: TIMEOUT must be a number"),
    Hostile("script-timeout-abc-result-is-model", ["@sh", "bash", RUN_INSTANCE, "v1", "c", "m.onnx", "p.vnnlib",
                                                   "m.onnx", "abc"],
            files={"p.vnnlib": SAT, "m.onnx": _copy_tiny}, exit=0, stderr=r"^run_instance.sh: TIMEOUT", stderr_lines=2,
            check=_unchanged("m.onnx", _tiny_bytes)),
]

# ---------------------------------------------------------------------------------------------
# Networks, engines, the benchmark runner
# ---------------------------------------------------------------------------------------------
def _net(op=None, **kw):
    """files entry: y = op(W x + b) on 2 inputs (tests/helpers.py gemm_then; W = [[1, 1], [1, -1]])."""
    def make(p: Path) -> None:
        from helpers import gemm_then

        gemm_then(p, op, **kw)
    return make


def _if_net(p: Path) -> None:
    from helpers import if_onnx

    if_onnx(p)


def _at(text: Union[str, bytes]):
    """files entry for a path in a subfolder (the folders are made)."""
    def make(p: Path) -> None:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return make


def _bench_suite(rows: str):
    """files entry 'b/suite/instances.csv': the tiny model and a sat property beside it, these rows."""
    def make(p: Path) -> None:
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.parent / "tiny_2in.onnx").write_bytes(TINY.read_bytes())
        (p.parent / "sat.vnnlib").write_text(SAT)
        p.write_text(rows)
    return make


def _nothing_outside(*names: str):
    """check: the run created none of these paths (relative to {tmp})."""
    def check(tmp: Path, proc) -> None:
        for n in names:
            assert not (tmp / n).exists(), f"{n} was written"
    return check


def _witness_inside(tmp: Path, proc) -> None:
    out = tmp / "out" / "r1"
    w = out / "suite" / "tiny_2in_sat.counterexample"
    assert w.read_text().startswith("sat\n"), list(out.rglob("*"))
    found = [q for q in tmp.rglob("*.counterexample")]
    assert found == [w], found


# y = W x on [0, 1]^2: y0 >= 1.9 forces y1 <= 0.1 (unsat; no single row refutes it); y1 >= 0.05 is reachable
LIN_BOX = "".join(f"(declare-const {v} Real)\n" for v in ("X_0", "X_1", "Y_0", "Y_1")) + \
    "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
LIN_UNSAT = LIN_BOX + "(assert (>= Y_0 1.9))\n(assert (>= Y_1 0.2))\n"
LIN_SAT = LIN_BOX + "(assert (>= Y_0 1.9))\n(assert (>= Y_1 0.05))\n"
OP_UNSAT = LIN_BOX + "(assert (>= Y_0 2.5))\n"  # erf, sin <= 1; the If net gives y = W x here
RESULTS_OK = "acasxu,a.onnx,p.vnnlib,0.1,unsat,1.0\n"
GT_HEAD = "benchmark,onnx,vnnlib,consensus\n"


def _lin(case_id: str, mode: str, prop: str, want: str, *extra: str) -> Hostile:
    """5. an affine net (no ReLU) in one mode: answered, exit 0, one word, nothing on stderr."""
    return Hostile(case_id, ["verify", "{tmp}/lin.onnx", "{tmp}/p.vnnlib", "--mode", mode, *extra, "--threads", "1",
                             "--result-file", "{res}"], files={"lin.onnx": _net(), "p.vnnlib": prop},
                   exit=0, result=want, stdout=want, stderr=None, stderr_lines=0)


def _bad_net(case_id: str, mode: str, make, needle: str) -> Hostile:
    """9. a model refused at load: error with the reason, in every mode."""
    return Hostile(case_id, ["verify", "{tmp}/m.onnx", "{tmp}/p.vnnlib", "--mode", mode, "--threads", "1",
                             "--result-file", "{res}"], files={"m.onnx": make, "p.vnnlib": OP_UNSAT},
                   result="error", stdout="error", stderr=needle)


def _op(case_id: str, make, mode: str, needle: str, want: str = "error") -> Hostile:
    """10. an op outside some engines' converters, in one mode."""
    exit_code, stderr = (2, needle) if want == "error" else (0, needle)
    return Hostile(case_id, ["verify", "{tmp}/m.onnx", "{tmp}/p.vnnlib", "--mode", mode, "--threads", "1",
                             "--timeout", "20", "--result-file", "{res}"], files={"m.onnx": make, "p.vnnlib": OP_UNSAT},
                   exit=exit_code, result=want, stdout=want, stderr=stderr, stderr_lines=1 if stderr else 0)


def _csv_tool(case_id: str, cmd: str, data: bytes, needle: str, *extra: str) -> Hostile:
    """12. `vnncert score` / `compare` on a malformed results CSV: one line, exit 2."""
    args = ["--no-check"] if cmd == "score" else ["--check", "none", "--out", "{tmp}/cmp"]
    return Hostile(case_id, [cmd, "{tmp}/r.csv", *args, *extra], files={"r.csv": data}, stderr=needle, check=_no_stdout)


def _small_net(kind: str):
    """files entry: z = W x + b (W = [[1, 1], [1, -1]]) then one op. ONNX Runtime loads but cannot
    run "reshape" (to 3 elements), "gather" (index 5 of 2), "clip-vector" (a bound that is not a
    scalar); "clip-variable" (a bound computed from x) runs but no converter takes it."""
    def make(p: Path) -> None:
        import numpy as np
        from onnx import helper

        from helpers import graph_onnx

        f32, i64 = np.float32, np.int64
        tail, extra = {
            "reshape": ([helper.make_node("Reshape", ["z", "s"], ["y"], name="rs")], {"s": np.asarray([1, 3], i64)}),
            "gather": ([helper.make_node("Gather", ["z", "i"], ["y"], axis=1, name="ga")], {"i": np.asarray([5, 0], i64)}),
            "clip-vector": ([helper.make_node("Clip", ["z", "lo"], ["y"], name="clip")], {"lo": np.asarray([0, 1], f32)}),
            "clip-variable": ([helper.make_node("ReduceSum", ["z"], ["s"], keepdims=0),
                               helper.make_node("Clip", ["z", "s"], ["y"], name="clip")], {}),
        }[kind]
        graph_onnx(p, [helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=1)] + tail,
                   {"W": np.asarray([[1, 1], [1, -1]], f32), "b": np.zeros(2, f32), **extra})
    return make


NETWORK_CASES: List[Hostile] = [
    Hostile("net-missing", ["verify", "{tmp}/missing.onnx", "{tmp}/p.vnnlib", "--result-file", "{res}"],
            files={"p.vnnlib": HEAD + BOX + "(assert (>= Y_1 Y_0))\n"}, result="error", stderr=r"missing\.onnx"),
    # ---- 5. networks without a ReLU: an LP, answered exactly (the conjunction needs the LP) ----
    _lin("lin-conj-unsat-auto", "auto", LIN_UNSAT, "unsat"),
    _lin("lin-conj-unsat-exact", "exact", LIN_UNSAT, "unsat"),
    _lin("lin-conj-sat-exact", "exact", LIN_SAT, "sat"),
    _lin("lin-conj-unsat-relaxed", "relaxed", LIN_UNSAT, "unsat"),
    _lin("lin-conj-unsat-relaxed-lp", "relaxed", LIN_UNSAT, "unsat", "--relaxed-method", "lp"),
    _lin("lin-conj-sat-relaxed-alpha", "relaxed", LIN_SAT, "sat", "--relaxed-method", "alpha-crown"),
    # ---- 9. validated once at load, the same in every mode ----
    _bad_net("net-ir14-auto", "auto", _net(ir_version=14), r"ONNX Runtime cannot load the model: Unsupported model IR version: 14"),
    _bad_net("net-opset99-falsify", "falsify", _net(opset=99), r"ONNX Runtime cannot load the model: .*Opset 99"),
    _bad_net("net-nan-weight-auto", "auto", _net(W=[[1.0, float("nan")], [1.0, -1.0]]), r"initializer 'W' holds NaN"),
    _bad_net("net-inf-bias-exact", "exact", _net(b=[0.0, float("inf")]), r"initializer 'b' holds infinity"),
    Hostile("net-zero-input", ["verify", "{tmp}/m.onnx", "{tmp}/p.vnnlib", "--result-file", "{res}"],
            files={"m.onnx": _net(W=[[], []], in_shape=(1, 0)), "p.vnnlib": OP_UNSAT}, result="error",
            stderr=r"input 'x' has shape \[1, 0\]: no elements"),
    # a model ONNX Runtime loads but cannot run: refused at load in one line (once an internal error
    # with ONNX Runtime's log in auto/exact, unknown in relaxed)
    _bad_net("net-runtime-reshape-auto", "auto", _small_net("reshape"),
             r"ONNX Runtime cannot run the model: Reshape node 'rs': .*cannot be reshaped to the requested shape"),
    _bad_net("net-runtime-gather-relaxed", "relaxed", _small_net("gather"),
             r"ONNX Runtime cannot run the model: Gather node 'ga': indices element out of data bounds, idx=5"),
    _bad_net("net-runtime-clip-bound-exact", "exact", _small_net("clip-vector"),
             r"ONNX Runtime cannot run the model: Clip node 'clip': min->Shape\(\)\.IsScalar\(\) was false\. min should be a scalar\.$"),
    # ---- 10. unsupported operators: error when no engine of the mode takes the net, else a note ----
    # ... an op some other converter has: the falsifier runs, then unknown saying which modes take it
    _op("op-erf-exact", _net("Erf"), "exact", r"^vnncert: note: unsupported ONNX operator Erf: not supported by exact "
                                              r"\(the MILP encoding: piecewise-linear ops only\); no engine of --mode exact can take the "
                                              r"network: no MILP encoding \(--mode auto / relaxed can\)$", want="unknown"),
    _op("op-round-relaxed", _net("Round"), "relaxed", r"unsupported ONNX operator Round: not supported by relaxed"),
    _op("op-sin-relaxed", _net("Sin"), "relaxed", None, want="unsat"),  # auto_LiRPA bounds Sin (sin <= 1)
    _op("op-if-relaxed-lp", _if_net, "relaxed", r"operators Greater \(node 'cond'\), If \(node 'branch'\): not supported",),
    # ... and in auto mode the quick pass bounds it (our CROWN: Erf is an act layer of the layer graph)
    _op("op-erf-auto", _net("Erf"), "auto", None, want="unsat"),
    _op("op-sin-falsify", _net("Sin"), "falsify", None, want="unknown"),
    # Sign is not continuous: no layer-graph lowering, but a torch step (unknown); Floor of a value computed
    # from x: shape arithmetic only (folded on constants), so no converter at all (error)
    _op("op-sign-exact", _net("Sign"), "exact", r"^vnncert: note: unsupported ONNX operator Sign: not supported by exact "
                                                r"\(the MILP encoding: piecewise-linear ops only\); no engine of --mode exact can take the "
                                                r"network: no MILP encoding \(--mode auto / relaxed can\)$", want="unknown"),
    _op("op-floor-exact", _net("Floor"), "exact", r"^vnncert: error: unsupported ONNX operator Floor: not supported by exact "
                                                  r"\(the MILP encoding: piecewise-linear ops only\), the only engine of --mode exact$"),
    _op("op-floor-auto", _net("Floor"), "auto", r"^vnncert: note: unsupported ONNX operator Floor: not supported by "
                                                r"quick_bounds, relaxed, exact .*; only attack ran$", want="unknown"),
    # a use of a supported op that no converter takes (Clip with a bound computed from x): named like an op
    _op("op-clip-variable-bound-exact", _small_net("clip-variable"), "exact",
        r"^vnncert: error: exact: unsupported ONNX operator Clip \(node 'clip'\) by the MILP encoder: a variable min, "
        r"the only engine of --mode exact$"),
    _op("op-clip-variable-bound-auto", _small_net("clip-variable"), "auto",
        r"^vnncert: note: quick_bounds, exact: unsupported ONNX operator Clip \(node 'clip'\) by the MILP encoder: "
        r"a variable min; relaxed: .* by the torch converter: a variable min; only attack ran$", want="unknown"),
    # ---- 8. bench: witnesses stay under --out's folder ----
    Hostile("bench-category-dotdot", ["bench", "{tmp}/b/suite", "--out", "{tmp}/out/r1/results.csv", "--category",
                                      "../../escaped", "--no-progress"],
            files={"b/suite/instances.csv": _bench_suite("tiny_2in.onnx,sat.vnnlib,20\n")},
            stderr=r"--category '\.\./\.\./escaped' is not a folder name", check=_nothing_outside("escaped", "out")),
    Hostile("bench-category-absolute", ["bench", "{tmp}/b/suite", "--out", "{tmp}/out/r1/results.csv", "--category",
                                        "{tmp}/abs", "--no-progress"],
            files={"b/suite/instances.csv": _bench_suite("tiny_2in.onnx,sat.vnnlib,20\n")},
            stderr=r"is not a folder name", check=_nothing_outside("abs", "out")),
    Hostile("bench-row-dotdot", ["bench", "{tmp}/b/suite", "--out", "{tmp}/out/r1/results.csv", "--no-progress",
                                 "--threads", "1"],
            files={"b/suite/instances.csv": _bench_suite("../suite/../../b/suite/tiny_2in.onnx,../../b/suite/sat.vnnlib,20\n")},
            exit=0, stderr=None, stderr_lines=0, check=_witness_inside),
    Hostile("bench-instances-nul", ["bench", "{tmp}/b/suite", "--out", "{tmp}/out/results.csv", "--no-progress"],
            files={"b/suite/instances.csv": _bench_suite("tiny_2in.onnx,sat\x00.vnnlib,20\n")},
            stderr=r"instances\.csv:1: NUL byte at column 18: not an instances file", check=_nothing_outside("out")),
    # ---- 12. score / compare on malformed CSV files ----
    _csv_tool("score-nul", "score", RESULTS_OK.encode() + b"acasxu,b\x00.onnx,p.vnnlib,0.1,unsat,1.0\n",
              r"r\.csv:2: NUL byte at column 9: not a results CSV"),
    _csv_tool("compare-nul", "compare", b"acasxu,\x00,p.vnnlib,0.1,unsat,1.0\n", r"r\.csv:1: NUL byte"),
    _csv_tool("score-not-utf8", "score", b"acasxu,\xe9.onnx,p.vnnlib,0.1,unsat,1.0\n", r"r\.csv:1: not UTF-8 text"),
    _csv_tool("score-empty", "score", b"", r"no result rows to score$"),
    _csv_tool("compare-missing-columns", "compare", b"acasxu,a.onnx\n",
              r"no result rows to compare \(.*r\.csv:1: skipped \(expected 6 columns, got 2\)\)"),
    _csv_tool("score-huge-field", "score", b"acasxu," + b"a" * 200_000 + b",p.vnnlib,0.1,unsat,1.0\n",
              r"no result rows to score \(.*field larger than field limit"),
    _csv_tool("score-endless-line", "score", b"a" * (3 << 20), r"no result rows to score \(.*line longer than"),
    Hostile("score-ground-truth-nul", ["score", "{tmp}/r.csv", "--no-check", "--ground-truth", "{tmp}/gt.csv"],
            files={"r.csv": RESULTS_OK, "gt.csv": (GT_HEAD + "acasxu,a.onnx,p\x00.vnnlib,unsat\n").encode()},
            stderr=r"gt\.csv:2: NUL byte", check=_no_stdout),
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
