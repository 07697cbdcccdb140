"""vnncert bench / score / compare: instances files, results CSV durability, resume after a kill,
crash isolation, VNN-COMP scoring with witness re-checks, tool comparison, the Dask path.

Fake tools here are VNN-COMP scripts folders written by the tests (shell scripts that crash,
hang, exceed a memory limit or answer after a delay): they exercise the runner, not a verifier.
"""
import csv
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SPECS, shared_benchmark
from helpers import box_spec, mlp_onnx

VNNCERT = [sys.executable, "-m", "vnncert.cli"]


def vnncert(*args, timeout=180, **kw):
    return subprocess.run(VNNCERT + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)


def csv_rows(path):
    with open(path, newline="") as f:
        return [r for r in csv.reader(f)]


def without_times(rows):
    return [(r[0], r[1], r[2], r[4]) for r in rows]


# ---- fixtures: a fake VNN-COMP tool and a suite for it -----------------------------------------------
FAKE_RUN = r"""#!/bin/bash
# fake run_instance.sh: behaviour chosen by the property's file name (a test fixture, not a verifier)
[ "$1" = v1 ] || { echo "expected v1" >&2; exit 1; }
HERE="$(cd "$(dirname "$0")" && pwd)"
case "$(basename "$4")" in
  segv*) exec "$PY" -c "import ctypes; ctypes.string_at(0)" ;;
  hang*) sleep 300 & echo $! >> "$HERE/hang.pids"; echo $$ >> "$HERE/hang.pids"; wait ;;
  mem*) exec "$PY" -c "x = bytearray(1500 * 1024 * 1024); print(len(x))" ;;
  exit3*) echo "fake tool failing on purpose" >&2; exit 3 ;;
  noresult*) exit 0 ;;
  holds*) echo holds > "$5" ;;
  satw*) printf 'sat\n((X_0 1.0)\n (Y_0 2.0))\n' > "$5" ;;
  slow*) sleep 0.25; echo unsat > "$5" ;;
  *) echo unsat > "$5" ;;
esac
exit 0
"""

FAKE_PREPARE = """#!/bin/bash
[ "$1" = v1 ] || exit 1
exit 0
"""


@pytest.fixture
def fake_tool(tmp_path):
    d = tmp_path / "faketool"
    d.mkdir()
    (d / "run_instance.sh").write_text(FAKE_RUN.replace('"$PY"', f'"{sys.executable}"'))
    (d / "prepare_instance.sh").write_text(FAKE_PREPARE)
    for f in d.iterdir():
        f.chmod(0o755)
    return d


def make_suite(root: Path, names, timeout=20, newline_at_end=True):
    """A benchmark folder with onnx/ and vnnlib/ (empty files) and instances.csv rows for `names`."""
    (root / "onnx").mkdir(parents=True, exist_ok=True)
    (root / "vnnlib").mkdir(exist_ok=True)
    (root / "onnx" / "net.onnx").write_bytes(b"")
    lines = []
    for n in names:
        (root / "vnnlib" / f"{n}.vnnlib").write_text("; fixture\n")
        lines.append(f"onnx/net.onnx,vnnlib/{n}.vnnlib,{timeout}")
    text = "\n".join(lines) + ("\n" if newline_at_end else "")
    (root / "instances.csv").write_text(text)
    return root


# ---- instances.csv --------------------------------------------------------------------------------
def test_instances_file_forms(tmp_path):
    from vnncert.bench.instances import load_suite, read_instances

    b = tmp_path / "acme"
    (b / "onnx").mkdir(parents=True)
    (b / "vnnlib").mkdir()
    (b / "onnx" / "a.onnx").write_bytes(b"x")
    with gzip.open(b / "onnx" / "b.onnx.gz", "wb") as f:
        f.write(b"x")
    (b / "vnnlib" / "p.vnnlib").write_text("x")
    (b / "q.vnnlib").write_text("x")
    # 2021 bare names, a .gz name for an uncompressed file and vice versa, CRLF, no final newline
    (b / "instances.csv").write_bytes(b"a.onnx,p.vnnlib,10\r\nonnx/b.onnx,vnnlib/p.vnnlib.gz,20\r\n"
                                      b"\r\nonnx/a.onnx.gz,q.vnnlib,30.5")
    rows = read_instances(str(b / "instances.csv"))
    assert [r.category for r in rows] == ["acme"] * 3
    assert [os.path.relpath(r.onnx, b) for r in rows] == ["onnx/a.onnx", "onnx/b.onnx.gz", "onnx/a.onnx"]
    assert [os.path.relpath(r.vnnlib, b) for r in rows] == ["vnnlib/p.vnnlib", "vnnlib/p.vnnlib", "q.vnnlib"]
    assert [r.timeout for r in rows] == [10.0, 20.0, 30.5]
    assert rows[1].witness_name == "b_p.counterexample"
    scaled = load_suite(str(b), timeout_scale=0.5)
    assert [r.timeout for r in scaled] == [5.0, 10.0, 15.25]
    # a folder of benchmark folders: one category each
    make_suite(tmp_path / "zeta", ["u1"])
    both = load_suite(str(tmp_path))
    assert sorted({r.category for r in both}) == ["acme", "zeta"] and len(both) == 4


def test_instances_file_errors(tmp_path):
    from vnncert.bench.instances import InstancesError, read_instances

    p = tmp_path / "instances.csv"
    p.write_text("onnx,vnnlib,timeout\na.onnx,b.vnnlib,ten\n")  # a header line is tolerated, a bad timeout is not
    with pytest.raises(InstancesError, match=":2: timeout"):
        read_instances(str(p))


def test_instances_file_hostile(tmp_path):
    """NUL bytes, other encodings, endless lines, control characters in paths, an infinite timeout:
    one InstancesError naming the line, never a traceback."""
    from vnncert.bench import csvio
    from vnncert.bench.instances import InstancesError, load_suite, read_instances

    p = tmp_path / "instances.csv"
    cases = {
        b"a.onnx,b.vnnlib,10\nc\x00.onnx,d.vnnlib,10\n": r":2: NUL byte",
        b"a\xff.onnx,b.vnnlib,10\n": r":1: not UTF-8",
        b"a.onnx,b.vnnlib,10\n" + b"x" * (csvio.MAX_LINE + 10) + b"\n": r":2: line longer than",
        b"a.onnx," + b"b" * 200_000 + b".vnnlib,10\n": r":1: not a CSV line: field larger",
        b"a\x01.onnx,b.vnnlib,10\n": r":1: .* is not a file path",
        b'"a.onnx",,10\n': r":1: '' is not a file path",
        b"a.onnx,b.vnnlib,inf\n": r":1: timeout must be a positive number",
        b'"a\nb.onnx",b.vnnlib,10\n': r":1: expected onnx,vnnlib,timeout",  # a quoted newline: two lines
    }
    for data, pattern in cases.items():
        p.write_bytes(data)
        with pytest.raises(InstancesError, match=pattern):
            read_instances(str(p))
    make_suite(tmp_path / "ok", ["u1"])
    for bad in ("../../escaped", "/abs/olute", "a/b", "..", ".", "", "a\\b", "tab\there"):
        with pytest.raises(InstancesError, match="not a folder name"):
            load_suite(str(tmp_path / "ok"), category=bad)
    assert [r.category for r in load_suite(str(tmp_path / "ok"), category="mine-2026")] == ["mine-2026"]


def test_witness_paths_stay_inside_the_results_folder(tmp_path):
    from vnncert.bench.instances import Instance, safe_component
    from vnncert.bench.runner import witness_path

    out = tmp_path / "out"
    for cat, onnx, vnnlib in [("../../escaped", "a.onnx", "p.vnnlib"), ("/abs", "../../x.onnx", "/etc/p.vnnlib"),
                              ("..", "..", "."), ("c\x00d", "x\x00y.onnx", "q\n.vnnlib"), ("", "", "")]:
        w = witness_path(str(out), Instance(cat, onnx, vnnlib, 1.0))
        assert os.path.dirname(os.path.dirname(w)) == str(out), w
        assert os.path.realpath(w).startswith(str(out) + os.sep)
        assert "\x00" not in w and "\n" not in w
    assert safe_component("acasxu_2023") == "acasxu_2023" and safe_component("..") == "_.."
    assert safe_component("../x") == ".._x" and safe_component("") == "_"


def test_bench_rows_naming_files_outside_write_witnesses_inside(tmp_path):
    """instances.csv rows that climb out of the benchmark folder (`../x.onnx`) and a category from
    the folder name: the witness lands under --out's folder; a bad --category is refused."""
    bench = tmp_path / "bench" / "suite"
    (tmp_path / "elsewhere").mkdir()
    bench.mkdir(parents=True)
    shutil.copy(SPECS / "onnx" / "tiny_2in.onnx", tmp_path / "elsewhere" / "tiny_2in.onnx")
    shutil.copy(SPECS / "vnnlib" / "tiny_sat.vnnlib", tmp_path / "elsewhere" / "tiny_sat.vnnlib")
    (bench / "instances.csv").write_text("../../elsewhere/tiny_2in.onnx,../../elsewhere/tiny_sat.vnnlib,30\n")
    out = tmp_path / "work" / "out" / "r1" / "results.csv"
    before = set(tmp_path.rglob("*"))
    p = vnncert("bench", bench, "--out", out, "--category", "../../escaped", "--no-progress", "--threads", 1)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "not a folder name" in p.stderr, p.stderr
    assert set(tmp_path.rglob("*")) == before
    p = vnncert("bench", bench, "--out", out, "--no-progress", "--threads", 1)
    assert p.returncode == 0, p.stderr
    (row,) = csv_rows(out)
    assert row[0] == "suite" and row[4] == "sat"
    new = [q for q in set(tmp_path.rglob("*")) - before if q.is_file()]
    assert all(str(q).startswith(str(out.parent) + os.sep) for q in new), new
    assert (out.parent / "suite" / "tiny_2in_tiny_sat.counterexample").read_text().startswith("sat\n")


def test_vnncomp_scripts_witnesses_stay_inside_too(tmp_path, fake_tool):
    """Another tool's sat answers (--vnncomp-scripts) go through the same witness path."""
    suite = make_suite(tmp_path / "suite", ["satw_1"])
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "satw_2.vnnlib").write_text("; fixture\n")
    with open(suite / "instances.csv", "a") as f:
        f.write("onnx/net.onnx,../up/satw_2.vnnlib,20\n")
    out = tmp_path / "o" / "r1" / "results.csv"
    p = vnncert("bench", suite, "--out", out, "--vnncomp-scripts", fake_tool, "--no-progress")
    assert p.returncode == 0, p.stderr
    assert [r[4] for r in csv_rows(out)] == ["sat", "sat"]
    found = sorted(q.relative_to(tmp_path) for q in tmp_path.rglob("*.counterexample"))
    assert found == [Path("o/r1/suite/net_satw_1.counterexample"), Path("o/r1/suite/net_satw_2.counterexample")]
    p = vnncert("bench", suite, "--out", out, "--vnncomp-scripts", fake_tool, "--category", "/tmp", "--no-progress")
    assert p.returncode == 2 and "not a folder name" in p.stderr


# ---- the results CSV ------------------------------------------------------------------------------
def test_result_words_of_every_harness():
    from vnncert.bench.resultscsv import normalise_result

    cases = {"sat": "sat", "violated": "sat", "unsat": "unsat", "holds": "unsat", "unknown": "unknown",
             "timeout": "timeout", "run_instance_timeout": "timeout", "prepare_instance_timeout": "timeout",
             "error_exit_code_1": "error", "error": "error", "prepare_instance_error_2": "unknown",
             "no_result_in_file": "unknown", "": "unknown", "timeout(X_00 0.1)": "timeout", "garbage": "unknown",
             "Holds": "unsat", "run_single_instance_error": "error"}
    for word, want in cases.items():
        assert normalise_result(word) == want, word


def test_torn_last_line_is_dropped_and_bad_middle_line_refused(tmp_path):
    from vnncert.bench.resultscsv import ResultsCsvError, read_rows, repair

    p = tmp_path / "r.csv"
    good = "c,a.onnx,p.vnnlib,0.1,unsat,1.5\nc,a.onnx,q.vnnlib,0.2,sat,2.5\n"
    p.write_text(good + "c,a.onnx,r.vnnlib,0.1,uns")  # killed mid-write
    rows, notes = repair(str(p))
    assert [r.vnnlib for r in rows] == ["p.vnnlib", "q.vnnlib"] and notes
    assert p.read_text() == good
    p.write_text(good + "c,a.onnx,r.vnnlib,0.1,unsat,1.0")  # complete fields but no newline: still torn
    rows, _ = repair(str(p))
    assert len(rows) == 2 and p.read_text() == good
    p.write_text("c,a.onnx,p.vnnlib,0.1,unsat,1.5\nnot,a,row\n" + good)
    with pytest.raises(ResultsCsvError):
        repair(str(p))
    assert len(read_rows(str(p), strict=False)) == 3
    # 2021 files have no prepare_time column
    p.write_text("acasxu,net.onnx,prop.vnnlib,holds,3.5\n")
    (r,) = read_rows(str(p))
    assert r.verdict == "unsat" and r.run_time == 3.5 and r.prepare_time == 0.0


def test_hostile_results_and_ground_truth_files(tmp_path):
    """A NUL byte, other encodings or an endless line make a file 'not a results CSV' (one
    ResultsCsvError naming the line); a complete bad last line is a bad row, not a torn one; a
    witness larger than the read limit is not read."""
    from vnncert.bench import csvio
    from vnncert.bench.resultscsv import ResultsCsvError, read_rows, repair
    from vnncert.bench.score import GroundTruth
    from vnncert.bench.solvers import read_result_text

    p = tmp_path / "r.csv"
    good = "c,a.onnx,p.vnnlib,0.1,unsat,1.5\n"
    for data, pattern in [(good.encode() + b"c,b\x00.onnx,p.vnnlib,0.1,unsat,1.5\n" + good.encode(), r":2: NUL byte"),
                          (b"c,\xe9.onnx,p.vnnlib,0.1,unsat,1.5\n", r":1: not UTF-8"),
                          (b"x" * (csvio.MAX_LINE + 1) + b"\n" + good.encode(), r":1: line longer")]:
        p.write_bytes(data)
        for strict in (True, False):
            with pytest.raises(ResultsCsvError, match=pattern):
                read_rows(str(p), strict=strict)
        with pytest.raises(ResultsCsvError, match=pattern):
            repair(str(p))
    # a NUL in a torn last line (a kill mid-write) is dropped like any torn line
    p.write_bytes(good.encode() + b"c,a\x00")
    assert len(repair(str(p))[0]) == 1 and p.read_text() == good
    # a complete last line that is not a row: refused when strict, skipped with a note otherwise
    p.write_text(good + "c,a.onnx," + "b" * 200_000 + ",0.1,unsat,1\n")
    with pytest.raises(ResultsCsvError, match=":2: not a results-CSV row: field larger"):
        read_rows(str(p))
    notes = []
    assert len(read_rows(str(p), strict=False, notes=notes)) == 1 and "skipped" in notes[0]
    gt = tmp_path / "gt.csv"
    for data, pattern in [(b"", "empty ground-truth file"), (b"benchmark,onnx\nx,y\n", "needs onnx, vnnlib and consensus"),
                          (b"onnx,vnnlib,consensus\na.onnx,p\x00.vnnlib,sat\n", ":2: NUL byte"),
                          (b"onnx,vnnlib,consensus\na\xff.onnx,p.vnnlib,sat\n", ":2: not UTF-8"),
                          (b"onnx,vnnlib,consensus\n" + b"a" * 200_000 + b",p,sat\n", ":2: not a CSV line"),
                          (b"onnx,vnnlib,consensus\na.onnx\n", ":2: no onnx or vnnlib value")]:
        gt.write_bytes(data)
        with pytest.raises(ResultsCsvError, match=pattern):
            GroundTruth(str(gt))
    gt.write_bytes(b"onnx,vnnlib,consensus,extra\na.onnx,p.vnnlib,holds\n")
    assert GroundTruth(str(gt)).by_stems[("a", "p")].verdict == "unsat"
    w = tmp_path / "w.counterexample"
    w.write_text("sat\n((X_0 1.0))\n")
    assert read_result_text(str(w)) == "sat\n((X_0 1.0))\n" and read_result_text(str(w), limit=8) is None
    with gzip.open(tmp_path / "w.gz", "wb") as f:
        f.write(b"sat\n" + b" " * 100)
    assert read_result_text(str(tmp_path / "w.gz"), limit=50) is None
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8bnot gzip")
    assert read_result_text(str(tmp_path / "bad.gz")) is None


# ---- running ----------------------------------------------------------------------------------------
def test_crash_hang_and_memory_limit_cost_their_row_only(tmp_path, fake_tool):
    suite = make_suite(tmp_path / "crashy", ["ok_a", "segv", "ok_b", "hang", "mem", "exit3", "noresult", "holds_c"],
                       timeout=20)
    # the hang instance gets a short timeout
    text = (suite / "instances.csv").read_text().replace("vnnlib/hang.vnnlib,20", "vnnlib/hang.vnnlib,1.5")
    (suite / "instances.csv").write_text(text)
    out = tmp_path / "res" / "results.csv"
    t0 = time.monotonic()
    p = vnncert("bench", suite, "--out", out, "--vnncomp-scripts", fake_tool, "--jobs", 2, "--memory-limit", 400,
                "--no-progress")
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 30
    got = {Path(r[2]).stem: r for r in csv_rows(out)}
    assert len(got) == 8
    assert {k: v[4] for k, v in got.items()} == {
        "ok_a": "unsat", "segv": "error", "ok_b": "unsat", "hang": "timeout", "mem": "error", "exit3": "error",
        "noresult": "unknown", "holds_c": "unsat"}
    assert 1.4 <= float(got["hang"][5]) < 5.0
    log = [json.loads(x) for x in (tmp_path / "res" / "results.log.jsonl").read_text().splitlines()]
    detail = {Path(r["vnnlib"]).stem: r["detail"] for r in log if r["type"] == "row"}
    assert "SIGSEGV" in detail["segv"]
    assert "MemoryError" in detail["mem"]
    assert "exit code 3" in detail["exit3"] and "failing on purpose" in detail["exit3"]
    # the hung script and its background child were killed with the instance
    pids = list(map(int, (fake_tool / "hang.pids").read_text().split()))
    assert len(pids) == 2
    t0 = time.monotonic()
    while any(alive(p) for p in pids) and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def alive(pid):
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_memory_limit_on_vnncert_itself(tmp_path):
    """RLIMIT_AS too small for the verifier to start: an `error` row, the run goes on."""
    sub = tmp_path / "sub.csv"
    sub.write_text("onnx/tiny_2in.onnx,vnnlib/tiny_sat.vnnlib,20\n")
    out = tmp_path / "r.csv"
    p = vnncert("bench", SPECS, "--instances", sub, "--out", out, "--memory-limit", 64, "--threads", 1, "--no-progress")
    assert p.returncode == 0, p.stderr
    (row,) = csv_rows(out)
    assert row[4] == "error"


def _wait_lines(path, n, proc, limit=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {n} lines")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_resume_after_kill_gives_the_same_csv(tmp_path, fake_tool, sig):
    names = [f"slow_{i}" for i in range(8)]
    suite = make_suite(tmp_path / "slowbench", names)
    ref = tmp_path / "ref" / "results.csv"
    p = vnncert("bench", suite, "--out", ref, "--vnncomp-scripts", fake_tool, "--no-progress")
    assert p.returncode == 0, p.stderr
    out = tmp_path / "run" / "results.csv"
    proc = subprocess.Popen(VNNCERT + ["bench", str(suite), "--out", str(out), "--vnncomp-scripts", str(fake_tool),
                                       "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_lines(out, 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "rerun the same command to resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    partial = csv_rows(out)
    assert 2 <= len(partial) < 8
    with open(out, "a") as f:  # what a kill inside a write would leave: a torn last line
        f.write("slowbench,slowbench/onnx/net.onnx,slowbench/vnnlib/slo")
    p = vnncert("bench", suite, "--out", out, "--vnncomp-scripts", fake_tool, "--no-progress")
    assert p.returncode == 0, p.stderr
    assert "torn last line" in p.stderr
    final = csv_rows(out)
    assert without_times(final) == without_times(csv_rows(ref))
    assert final[:len(partial)] == partial  # finished rows were kept as they were, not rerun
    p = vnncert("bench", suite, "--out", out, "--vnncomp-scripts", fake_tool, "--no-progress")  # nothing left to do
    assert "0 run, 8 already done" in p.stdout and csv_rows(out) == final


def test_jobs_and_the_vnncomp_scripts_of_vnncert(tmp_path):
    """Two instances at once, through vnncert's own VNN-COMP scripts; tiny_sat's witness is written."""
    if not (ROOT / ".venv" / "bin" / "vnncert").exists():
        pytest.skip("vnncomp_scripts need the .venv install (make install)")
    sub = tmp_path / "sub.csv"
    sub.write_text("onnx/tiny_2in.onnx,vnnlib/tiny_sat.vnnlib,20\nonnx/tiny_2in.onnx,vnnlib/tiny_unsat.vnnlib,6")
    out = tmp_path / "res" / "results.csv"
    p = vnncert("bench", SPECS, "--instances", sub, "--out", out, "--vnncomp-scripts", ROOT / "vnncomp_scripts",
                "--jobs", 2, "--no-progress", env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    rows = {Path(r[2]).stem: r for r in csv_rows(out)}
    assert rows["tiny_sat"][4] == "sat" and rows["tiny_unsat"][4] in ("unsat", "unknown", "timeout")
    w = tmp_path / "res" / "vnnlib_specs" / "tiny_2in_tiny_sat.counterexample"
    assert w.read_text().startswith("sat\n((X_0 ")
    s = vnncert("score", out, "--json", tmp_path / "s.json")
    assert s.returncode == 0, s.stderr
    js = json.loads((tmp_path / "s.json").read_text())
    sat_row = next(r for r in js["rows"] if r["vnnlib"].endswith("tiny_sat.vnnlib"))
    assert sat_row["witness"] == "valid" and sat_row["points"] == 10


def test_bench_vnncert_on_shared_test_suite_and_score(tmp_path):
    bench = shared_benchmark("test")
    out = tmp_path / "results.csv"
    p = vnncert("bench", bench, "--out", out, "--timeout-scale", 0.1, "--jobs", 2, "--threads", 1, "--no-progress")
    assert p.returncode == 0, p.stderr
    rows = csv_rows(out)
    assert len(rows) == 5 and all(r[0] == "test" and r[4] in ("sat", "unsat", "unknown", "timeout") for r in rows)
    gt = bench.parent / "ground_truth.csv"
    s = vnncert("score", out, "--ground-truth", gt, "--json", tmp_path / "s.json")
    assert s.returncode == 0, s.stderr
    js = json.loads((tmp_path / "s.json").read_text())
    assert all(r["outcome"] not in ("wrong", "bad_witness") for r in js["rows"]), js["rows"]


# ---- scoring -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scoring_world(tmp_path_factory):
    """A benchmark folder with y = [x0 + x1, x0 - x1] on [0,1]^2 and copies of 'unsafe if y0 >= 1.9'."""
    root = tmp_path_factory.mktemp("world")
    bench = root / "benchmarks" / "lin"
    (bench / "onnx").mkdir(parents=True)
    (bench / "vnnlib").mkdir()
    mlp_onnx(bench / "onnx" / "lin.onnx", [(np.array([[1.0, 1.0], [1.0, -1.0]]), np.zeros(2))])
    for n in "abcdefghijk":
        (bench / "vnnlib" / f"p_{n}.vnnlib").write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 1.9)"]], 2))
    return root


def witness_text(x0, x1):
    return f"sat\n((X_0 {x0!r})\n (X_1 {x1!r})\n (Y_0 0.0)\n (Y_1 0.0))\n"


def test_score_hand_made_csv(tmp_path, scoring_world):
    res = tmp_path / "mytool"
    (res / "lin").mkdir(parents=True)
    pre = "./benchmarks/lin"
    rows = [  # prop, word, run_time ; ground truth below
        ("a", "sat", 1.0),        # valid witness -> +10
        ("b", "sat", 2.0),        # witness outside the box -> -150
        ("c", "violated", 3.0),   # witness missing -> -150
        ("d", "sat", 4.0),        # 5e-5 outside the box: accepted by the scorer's 1e-4 slack -> +10
        ("e", "holds", 5.0),      # ground truth sat -> -150
        ("f", "unsat", 0.5),      # ground truth unsat -> +10
        ("g", "unsat", 20.0),     # no ground truth -> +10, unconfirmed
        ("h", "run_instance_timeout", 30.0),
        ("i", "error_exit_code_1", 0.1),
        ("j", "unsat", 99.0),     # after the ground truth's 50 s timeout -> counts as a timeout
        ("k", "sat", 1.5),        # witness in the box whose output is safe -> -150
    ]
    with open(res / "results.csv", "w") as f:
        for p, word, t in rows:
            f.write(f"lin,{pre}/onnx/lin.onnx,{pre}/vnnlib/p_{p}.vnnlib,0.5,{word},{t}\n")
    (res / "lin" / "lin_p_a.counterexample").write_text(witness_text(1.0, 1.0))
    (res / "lin" / "lin_p_b.counterexample").write_text(witness_text(2.0, 2.0))
    with gzip.open(res / "lin" / "lin_p_d.counterexample.gz", "wt") as f:
        f.write(witness_text(1.00005, 1.0))
    (res / "lin" / "lin_p_k.counterexample").write_text(witness_text(0.0, 0.0))
    gt = tmp_path / "gt.csv"
    gt.write_text("benchmark,onnx,vnnlib,timeout,consensus\n" +
                  "".join(f"2024_lin,onnx/lin.onnx,vnnlib/p_{p}.vnnlib,50,{v}\n"
                          for p, v in zip("abcdefhijk", ["sat", "unsat", "sat", "sat", "sat", "unsat", "unknown",
                                                         "unsat", "unsat", "unsat"])))
    p = vnncert("score", res / "results.csv", "--ground-truth", gt, "--benchmarks", scoring_world / "benchmarks",
                "--json", tmp_path / "s.json", "--markdown", tmp_path / "s.md", "--cactus", tmp_path / "c.png")
    assert p.returncode == 0, p.stderr
    js = json.loads((tmp_path / "s.json").read_text())
    by = {Path(r["vnnlib"]).stem[2:]: r for r in js["rows"]}
    assert {k: (r["outcome"], r["points"]) for k, r in by.items()} == {
        "a": ("correct", 10), "b": ("bad_witness", -150), "c": ("bad_witness", -150), "d": ("correct", 10),
        "e": ("wrong", -150), "f": ("correct", 10), "g": ("unconfirmed", 10), "h": ("none", 0), "i": ("none", 0),
        "j": ("late", 0), "k": ("bad_witness", -150)}
    assert by["a"]["witness"] == "valid" and by["d"]["witness"] == "valid_tol" and by["c"]["witness"] == "missing"
    assert by["b"]["witness"] == "invalid" and "outside" in by["b"]["witness_detail"]
    assert by["k"]["witness"] == "invalid" and "output" in by["k"]["witness_detail"]
    assert js["score"] == 4 * 10 - 4 * 150
    assert "mytool: score -560" in p.stdout and "lin" in p.stdout
    total = js["categories"]["total"]
    assert total["solved"] == "4" and total["wrong"] == "4" and total["median s"] == "2.50"
    assert total["<=1s"] == "2" and total["<=10s"] == "3" and total["<=60s"] == "4"
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| total |" in (tmp_path / "s.md").read_text()
    # with the witness check off, a sat answer rests on the ground truth alone
    p = vnncert("score", res / "results.csv", "--ground-truth", gt, "--no-check", "--json", tmp_path / "n.json")
    by = {Path(r["vnnlib"]).stem[2:]: r for r in json.loads((tmp_path / "n.json").read_text())["rows"]}
    assert by["b"]["outcome"] == "wrong" and by["a"]["outcome"] == "correct"


# ---- comparing ---------------------------------------------------------------------------------------
def test_compare_real_format_results(tmp_path, scoring_world):
    """Two tools in VNN-COMP results-repo layout with different path prefixes, category names and words."""
    a = tmp_path / "toolA" / "lin"
    a.mkdir(parents=True)
    b = tmp_path / "toolB" / "2025_lin_2023"
    b.mkdir(parents=True)
    pa, pb = "./benchmarks/lin", "vnncomp2025_benchmarks/benchmarks/lin_2023"
    a_rows = [("a", "sat", 1.0), ("b", "violated", 1.2), ("c", "holds", 2.0), ("d", "unknown", 5.0),
              ("e", "unsat", 3.0)]
    b_rows = [("a", "holds", 4.0), ("b", "unsat", 0.8), ("c", "unsat", 2.5), ("d", "error_exit_code_1", 0.2),
              ("e", "run_instance_timeout", 60.0)]
    (a / "results.csv").write_text("".join(f"lin,{pa}/onnx/lin.onnx,{pa}/vnnlib/p_{p}.vnnlib,0.9,{w},{t}\n"
                                           for p, w, t in a_rows))
    (b / "results.csv").write_text("".join(f"lin_2023,{pb}/onnx/lin.onnx.gz,{pb}/vnnlib/p_{p}.vnnlib.gz,1.1,{w},{t}\n"
                                           for p, w, t in b_rows))
    with gzip.open(a / "lin_p_a.counterexample.gz", "wt") as f:
        f.write(witness_text(0.95, 0.99))  # valid: A is right, B wrong
    (a / "lin_p_b.counterexample").write_text(witness_text(0.1, 0.2))  # invalid: B is right, A wrong
    out = tmp_path / "cmp"
    p = vnncert("compare", tmp_path / "toolA", tmp_path / "toolB" / "2025_lin_2023" / "results.csv",
                "--benchmarks", scoring_world / "benchmarks", "--out", out)
    assert p.returncode == 0, p.stderr
    md = (out / "summary.md").read_text()
    assert (out / "cactus.png").read_bytes()[:4] == b"\x89PNG"
    assert "Comparison of toolA, toolB" in md
    # agreement: both answered a, b, c; they agree on c only
    assert "| toolA | 4 | 1/3 |" in md and "| toolB | 1/3 | 3 |" in md
    con = md.split("## Contradictions")[1].split("##")[0]
    assert "lin / lin / p_a: truth **sat** (a witness replays)" in con
    assert "lin / lin / p_b: truth **unsat** (no sat witness replays)" in con
    assert "toolA: sat in 1.00 s; witness valid -> right" in con
    assert "toolB: unsat in 4.00 s -> WRONG" in con
    assert "toolA: sat in 1.20 s; witness INVALID" in con and "toolB: unsat in 0.80 s -> right" in con
    # per tool: A: +10 (a) -150 (b) +10 (c, agreed unsat, unconfirmed) +10 (e) ; B: -150 +10 +10
    assert "| toolA | 5 | 2 | 2 | 1 | 3 | 1 | -120 |" in md
    assert "| toolB | 5 | 0 | 3 | 2 | 2 | 1 | -130 |" in md
    # names and a ground truth that says otherwise on p_c: truth comes from it
    gt = tmp_path / "gt.csv"
    gt.write_text("benchmark,onnx,vnnlib,consensus\nlin,onnx/lin.onnx,vnnlib/p_c.vnnlib,sat\n")
    p = vnncert("compare", tmp_path / "toolA", tmp_path / "toolB", "--names", "A,B", "--ground-truth", gt,
                "--benchmarks", scoring_world / "benchmarks", "--out", out, "--check", "contradictions")
    assert p.returncode == 0, p.stderr
    md = (out / "summary.md").read_text()
    assert "| A | 5 | 2 | 2 | 1 | 2 | 2 | -280 |" in md


# ---- Dask ----------------------------------------------------------------------------------------------
def test_dask_cluster_rows_match_a_local_run_and_resume(tmp_path, fake_tool):
    from distributed import LocalCluster

    names = ["ok_1", "holds_2", "exit3_3", "noresult_4", "ok_5", "segv_6"]
    suite = make_suite(tmp_path / "dbench", names)
    local = tmp_path / "local" / "results.csv"
    p = vnncert("bench", suite, "--out", local, "--vnncomp-scripts", fake_tool, "--no-progress")
    assert p.returncode == 0, p.stderr
    out = tmp_path / "dask" / "results.csv"
    out.parent.mkdir()
    done = csv_rows(local)[:2]  # as if an earlier run had finished two rows
    with open(out, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(done)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        p = vnncert("bench", suite, "--out", out, "--vnncomp-scripts", fake_tool, "--scheduler",
                    cluster.scheduler_address, "--no-progress", timeout=120)
    assert p.returncode == 0, p.stderr
    assert "4 run, 2 already done" in p.stdout
    rows = csv_rows(out)
    assert rows[:2] == done
    assert sorted(without_times(rows)) == sorted(without_times(csv_rows(local)))
    log = [json.loads(x) for x in (tmp_path / "dask" / "results.log.jsonl").read_text().splitlines()]
    assert all("worker" in r.get("extra", {}) for r in log if r["type"] == "row")


def test_dask_scheduler_unreachable_is_a_clean_error(tmp_path, fake_tool):
    suite = make_suite(tmp_path / "nb", ["ok_1"])
    p = vnncert("bench", suite, "--out", tmp_path / "r.csv", "--vnncomp-scripts", fake_tool, "--scheduler",
                "tcp://127.0.0.1:9", "--no-progress", timeout=120, env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert p.returncode == 2 and "cannot connect to the Dask scheduler" in p.stderr
