"""The VNN-LIB 2.0 standard command line (byte for byte), its error conditions, and driving 2.0 solvers
(`StandardCliSolver`) against the configurable fake solver and against vnncert itself."""
import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SPECS, shared_benchmark
from helpers import mlp_onnx, slow_onnx

import vnncert
from vnncert.cli import standard
from vnncert.bench.instances import Instance
from vnncert.bench.solvers import StandardCliSolver, drive, make_solver
from vnncert.spec.vnnlib2 import THEORIES, spec_to_vnnlib2

VNNCERT = [sys.executable, "-m", "vnncert.cli"]
FAKE = shutil.which("vnnlibTestSolver") or str(Path(sys.executable).parent / "vnnlibTestSolver")


def run(*args, timeout=120):
    return subprocess.run(VNNCERT + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def query(lo, hi, outputs, etype="float32", name="f", x_shape="[1,2]", y_shape="[1,2]"):
    """2.0 text: box lo <= X[0,i] <= hi and one assert per output term."""
    lines = ["(vnnlib-version <2.0>)", f"(declare-network {name}",
             f"  (declare-input X {etype} {x_shape})", f"  (declare-output Y {etype} {y_shape}))"]
    for i, (a, b) in enumerate(zip(lo, hi)):
        lines += [f"(assert (>= X[0,{i}] {a}))", f"(assert (<= X[0,{i}] {b}))"]
    lines += [f"(assert {t})" for t in outputs]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def lin(tmp_path_factory):
    """y = [x0 + x1, x0 - x1] with a symbolic batch dim: input [N,2] -> [1,2], output [1,2]."""
    d = tmp_path_factory.mktemp("std")
    return mlp_onnx(d / "lin.onnx", [(np.array([[1.0, 1.0], [1.0, -1.0]]), np.zeros(2))])


@pytest.fixture(scope="module")
def half(tmp_path_factory):
    """A float16 Relu model (the loader takes it; vnncert does not claim sound float16 analysis)."""
    import onnx
    from onnx import TensorProto, helper

    d = tmp_path_factory.mktemp("half")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 2])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "h", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    p = d / "half.onnx"
    onnx.save(m, str(p))
    return str(p)


# ---- global options, dispatch, supports ---------------------------------------------------------
def test_name_and_version_bytes():
    assert run("--name").stdout == "vnncert\n"
    p = run("--version")
    assert p.returncode == 0 and p.stdout == vnncert.__version__ + "\n" and p.stderr == ""


def _registry_ops():
    from vnncert.network import ops

    handlers = ops.all_handlers()
    methods = {m for h in handlers.values() for m in dir(type(h)) if m.startswith("to_")}
    # every op a converter method handles, and the constant-only ops (folded before any converter runs)
    return sorted(op for op, h in handlers.items() if h.constant_only or any(h.supports(m) for m in methods))


@pytest.mark.parametrize("capability,expected", [
    ("--onnx-element-types", "float32\nfloat64\nreal\n"),
    ("--vnnlib-versions", "1.0\n2.0\n"),
    ("--hidden-node-theories", "NH\nH\n"),
    ("--multiple-input-output-theories", "SIO\nMIO\n"),
    ("--multiple-inputs-output-theories", "SIO\nMIO\n"),  # the spelling of the standard's own example
    ("--multiple-network-theories", "SNET\nMENET\nMINET\nMNET\n"),
    ("--multiple-node-comparison-theories", "SNC\nMNC\n"),
    ("--arithmetic-complexity-theories", "BND\nOUTC\nLIN\nPOLY\n"),
    ("--optimised-disjunctive-reasoning", "false\n"),
    ("--serialise-assignments", "true\n"),
])
def test_supports_bytes(capsys, capability, expected):
    assert standard.main(["supports", capability]) == 0
    assert capsys.readouterr().out == expected


def test_supports_reads_theories_and_operators_off_the_code(capsys):
    assert standard.main(["supports", "--arithmetic-complexity-theories"]) == 0
    assert capsys.readouterr().out.split() == list(THEORIES["arithmetic-complexity"])
    assert standard.main(["supports", "--onnx-operators"]) == 0
    out = capsys.readouterr().out
    assert out == "".join(op + "\n" for op in _registry_ops())
    assert {"Gemm", "Relu", "MatMul"} <= set(out.split())


def test_supports_opset_range_and_bad_capability():
    p = run("supports", "--onnx-opset-versions")
    lo, hi = (int(v) for v in p.stdout.split())
    assert p.returncode == 0 and re.fullmatch(r"\d+\n\d+\n", p.stdout) and lo <= 8 <= 13 <= hi
    p = run("supports", "--onnx-ops")
    assert p.returncode == 2 and p.stdout == "" and "unknown capability" in p.stderr
    p = run("supports")
    assert p.returncode == 2 and p.stdout == ""


# ---- verify -------------------------------------------------------------------------------------
def test_sat_assignment_bytes(tmp_path, lin):
    q = tmp_path / "q.vnnlib"
    q.write_text(query(["0.5", "0.25"], ["0.5", "0.25"], ["(>= Y[0,0] 0.75)"]))  # one point: one witness
    p = run("verify", q, "--network", f"f={lin}", "--timeout", 30, "--threads", 1)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "sat\nX float32 [1,2]\n0.5\n0.25\nY float32 [1,2]\n0.75\n0.25\n"


def test_unknown_and_exact_values(tmp_path, lin, capsys):
    q = tmp_path / "q.vnnlib"
    q.write_text(query(["0.0", "0.0"], ["1.0", "1.0"], ["(>= Y[0,0] 2.5)"]))  # max y0 = 2
    assert standard.main(["verify", str(q), "--network", f"f={lin}", "--mode", "falsify", "--threads", "1"]) == 0
    assert capsys.readouterr().out == "unknown\n"
    # values are printed exactly (positional, no exponent): float32(0.1) is not 0.1
    q.write_text(query(["0.1", "0.0"], ["0.1", "0.0"], ["(>= Y[0,0] 0.1)"]))
    assert standard.main(["verify", str(q), "--network", f"f={lin}", "--threads", "1"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[:4] == ["sat", "X float32 [1,2]", "0.10000000149011612", "0.0"]
    assert float(out[2]) == float(np.float32(0.1)) and "e" not in "".join(out)


def test_timed_out(tmp_path):
    model = slow_onnx(tmp_path / "slow.onnx")
    q = tmp_path / "q.vnnlib"
    q.write_text(query(["-1.0", "-1.0"], ["1.0", "1.0"], ["(>= Y[0,0] 1000000.0)"]))
    t0 = time.monotonic()
    p = run("verify", q, "--network", f"f={model}", "--timeout", 2, "--threads", 1)
    assert p.stdout == "timed-out\n" and p.returncode == 0
    assert time.monotonic() - t0 < 2 + 1.5


def test_serialise_assignments(tmp_path, lin, capsys):
    from onnx import TensorProto, numpy_helper

    q = tmp_path / "q.vnnlib"
    q.write_text(query(["0.5", "0.25"], ["0.5", "0.25"], ["(>= Y[0,0] 0.75)"]))
    out = tmp_path / "a" / "b"
    assert standard.main(["verify", str(q), "--network", f"f={lin}", "--serialise-assignments", str(out),
                              "--threads", "1"]) == 0
    assert capsys.readouterr().out == "sat\n"
    assert sorted(os.listdir(out)) == ["X.pb", "Y.pb"]
    t = TensorProto()
    t.ParseFromString((out / "X.pb").read_bytes())
    x = numpy_helper.to_array(t)
    assert t.name == "X" and x.dtype == np.float32 and x.shape == (1, 2) and x.tolist() == [[0.5, 0.25]]
    t.ParseFromString((out / "Y.pb").read_bytes())
    assert numpy_helper.to_array(t).tolist() == [[0.75, 0.25]]


def test_1_0_property_and_gz_through_the_standard_command(tmp_path, capsys):
    import gzip

    model = str(SPECS / "onnx" / "tiny_2in.onnx")
    prop = SPECS / "vnnlib" / "tiny_sat.vnnlib"
    assert standard.main(["verify", str(prop), "--network", f"anyname={model}", "--threads", "1"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0] == "sat" and out[1::2][:4] == ["X_0 Real []", "X_1 Real []", "Y_0 Real []", "Y_1 Real []"]
    gz = tmp_path / "q.vnnlib.gz"
    net = vnncert.load_network(model)
    spec = vnncert.load_spec(str(prop), network=net)
    gz.write_bytes(gzip.compress(spec_to_vnnlib2(spec, net.input_shape, net.output_shape).encode()))
    assert standard.main(["verify", str(gz), "--network", f"net={model}", "--threads", "1"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0] == "sat" and out[1] == "X float32 [1,2]" and out[4] == "Y float32 [1,2]"


def test_vnncomp_form_is_unchanged(tmp_path):
    p = run("verify", SPECS / "onnx" / "tiny_2in.onnx", SPECS / "vnnlib" / "tiny_sat.vnnlib", "--timeout", 30,
            "--result-file", tmp_path / "r.txt", "--threads", 1)
    assert p.returncode == 0 and p.stdout.splitlines()[0] == "sat"
    assert (tmp_path / "r.txt").read_text().startswith("sat\n((X_0 ")


def _two_networks():
    return ("(vnnlib-version <2.0>)\n(declare-network f (declare-input X float32 [1,2]) (declare-output Y float32 [1,2]))\n"
            "(declare-network g (equal-to f) (declare-input U float32 [1,2]) (declare-output W float32 [1,2]))\n"
            "(assert (<= X[0,0] 1.0))\n")


@pytest.mark.parametrize("case,needle", [
    ("no_network", "no model for network 'f'"),
    ("unknown_network", "declares no network 'g'"),
    ("equal_to_network", "takes no model of its own"),
    ("bad_pair", "NAME=FILE"),
    ("two_networks", "input X[0,0] has no lower bound"),  # two networks are fine; unbounded inputs are not
    ("element_type", "declared float64 but the input of lin.onnx is float32"),
    ("unsound_type", "cannot analyse soundly"),
    ("syntax", "q.vnnlib:8:21:"),
    ("missing_query", "cannot read property file"),
    ("missing_model", "cannot read ONNX file"),
])
def test_errors_go_to_stderr_with_exit_2(tmp_path, lin, half, capsys, case, needle):
    q = tmp_path / "q.vnnlib"
    q.write_text(query(["0.0", "0.0"], ["1.0", "1.0"], ["(>= Y[0,0] 0.5)"]))
    argv = ["verify", str(q), "--network", f"f={lin}", "--threads", "1"]
    if case == "no_network":
        argv = argv[:2]
    elif case == "unknown_network":
        argv += ["--network", f"g={lin}"]
    elif case == "equal_to_network":
        q.write_text(_two_networks())
        argv += ["--network", f"g={lin}"]
    elif case == "bad_pair":
        argv[3] = lin
    elif case == "two_networks":
        q.write_text(_two_networks())
    elif case == "element_type":
        q.write_text(query(["0.0", "0.0"], ["1.0", "1.0"], ["(>= Y[0,0] 0.5)"], "float64"))
    elif case == "unsound_type":
        q.write_text(query(["0.0", "0.0"], ["1.0", "1.0"], ["(>= Y[0,0] 0.5)"], "float16"))
        argv[3] = f"f={half}"
    elif case == "syntax":
        q.write_text(query(["0.0", "0.0"], ["1.0", "1e3"], ["(>= Y[0,0] 0.5)"]))
    elif case == "missing_query":
        argv[1] = str(tmp_path / "nope.vnnlib")
    elif case == "missing_model":
        argv[3] = f"f={tmp_path / 'nope.onnx'}"
    assert standard.main(argv) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert needle in out.err and out.err.startswith("vnncert: error: ") and out.err.count("\n") == 1, out.err


def test_real_query_is_the_consent_for_float16(tmp_path, half, capsys):
    q = tmp_path / "q.vnnlib"
    q.write_text(query(["0.5", "0.0"], ["1.0", "0.5"], ["(>= Y[0,1] Y[0,0])"], "real"))
    assert standard.main(["verify", str(q), "--network", f"f={half}", "--threads", "1"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0] == "sat" and out[1] == "X real [1,2]" and out[4] == "Y real [1,2]"


# ---- driving VNN-LIB 2.0 solvers ------------------------------------------------------------------
FAKE_CONFIG = """
[solver]
name = "Fake Solver"
version = "2.0.1"

[[rules]]
match = "sat*"
result = "sat"
[rules.assignments]
X = [0.5, 0.25]
Y = [0.75, 0.25]

[[rules]]
match = "badsat*"
result = "sat"
raw_stdout = "sat\\nX float32 [1,2]\\n0.5\\n"

[[rules]]
match = "unsat*"
result = "unsat"
stderr = "some log line"

[[rules]]
match = "unknown*"
result = "unknown"

[[rules]]
match = "garbage*"
result = "unsat"
raw_stdout = "maybe?\\n"

[[rules]]
match = "empty*"
result = "unsat"
raw_stdout = ""

[[rules]]
match = "exit*"
result = "unsat"
exit_code = 3

[[rules]]
match = "crash*"
result = "unsat"
crash = true

[[rules]]
match = "slow*"
result = "unsat"
delay_seconds = 30
"""


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    if not os.path.exists(FAKE):
        pytest.skip("vnnlibTestSolver (package vnnlib-test-solver) is not installed")
    d = tmp_path_factory.mktemp("fake")
    cfg = d / "fake.toml"
    cfg.write_text(FAKE_CONFIG)
    return f"{FAKE} --config {cfg}"


@pytest.mark.parametrize("stem,timeout,margin,result,detail", [
    ("sat_q", 10, 1.0, "sat", ""),
    ("badsat_q", 10, 1.0, "sat", "without a usable assignment"),
    ("unsat_q", 10, 1.0, "unsat", ""),
    ("unknown_q", 10, 1.0, "unknown", ""),
    ("garbage_q", 10, 1.0, "error", "'maybe?'"),
    ("empty_q", 10, 1.0, "error", "nothing on stdout"),
    ("exit_q", 10, 1.0, "error", "exit code 3 after printing 'unsat'"),
    ("crash_q", 10, 1.0, "error", "signal"),
    ("slow_q", 3, 1.0, "timeout", ""),  # answers timed-out itself at --timeout 2
    ("slow_q", 2, -10.0, "timeout", "killed"),  # told 12 s: hangs past the limit and is killed at 2 s
])
def test_fake_solver_results_and_misbehaviour(tmp_path, lin, fake, stem, timeout, margin, result, detail):
    q = tmp_path / f"{stem}.vnnlib"
    q.write_text(query(["0.0", "0.0"], ["1.0", "1.0"], ["(>= Y[0,0] 0.5)"]))
    solver = StandardCliSolver(fake, margin=margin)
    work = tmp_path / "work"
    work.mkdir()
    t0 = time.monotonic()
    ans = drive(solver, Instance("test", lin, str(q), float(timeout)), str(work))
    assert time.monotonic() - t0 < timeout + 3
    assert ans.result == result, ans.detail
    assert detail in ans.detail
    if stem == "sat_q":
        assert ans.witness == "sat\n((X_0 0.5)\n (X_1 0.25)\n (Y_0 0.75)\n (Y_1 0.25))\n"
    else:
        assert ans.witness is None


def test_fake_solver_gets_a_2_0_query_for_a_1_0_property(tmp_path, fake):
    model = str(SPECS / "onnx" / "tiny_2in.onnx")
    prop = tmp_path / "unsat_p.vnnlib"
    prop.write_text((SPECS / "vnnlib" / "tiny_unsat.vnnlib").read_text())
    work = tmp_path / "w"
    work.mkdir()
    solver = make_solver(solver_cmd=fake)
    assert isinstance(solver, StandardCliSolver)
    ans = drive(solver, Instance("t", model, str(prop), 10.0), str(work))
    assert ans.result == "unsat", ans.detail
    written = (work / "unsat_p.vnnlib").read_text()
    assert written.startswith("(vnnlib-version <2.0>)\n(declare-network net\n    (declare-input X float32 [1,2])")
    spec = vnncert.load_spec(str(work / "unsat_p.vnnlib"), network=vnncert.load_network(model))
    assert spec.version == "2.0"


def test_vnncert_standard_cli_as_a_driven_solver(tmp_path):
    from vnncert.results import parse_assignment, witness_input

    model = str(SPECS / "onnx" / "tiny_2in.onnx")
    prop = str(SPECS / "vnnlib" / "tiny_sat.vnnlib")
    solver = StandardCliSolver(" ".join(VNNCERT))
    assert solver.name == "vnncert"
    work = tmp_path / "w"
    work.mkdir()
    ans = drive(solver, Instance("t", model, prop, 30.0), str(work))
    assert ans.result == "sat", ans.detail
    net = vnncert.load_network(model)
    x = witness_input(parse_assignment(ans.witness), net.n_inputs)
    y = net.replay(x.astype(np.float32))
    spec = vnncert.load_spec(str(work / "tiny_sat.vnnlib"), network=net)
    assert spec.find_violation(x, y.astype(np.float64)) is not None


# ---- ACAS Xu: the 2.0 text of the properties through the standard command -------------------------
ACAS_CASES = [("ACASXU_run2a_1_7_batch_2000.onnx", "prop_3.vnnlib"),
              ("ACASXU_run2a_2_1_batch_2000.onnx", "prop_2.vnnlib"),
              ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_1.vnnlib"),
              ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_6.vnnlib")]


def test_acasxu_2_0_through_the_standard_command_agrees_with_1_0(tmp_path, capsys):
    from vnncert import cli

    acas = shared_benchmark("acasxu")
    truth = {}
    gt = acas.parent / "ground_truth.csv"
    if gt.is_file():
        for r in csv.DictReader(gt.open()):
            if r["benchmark"] == "acasxu":
                truth[(os.path.basename(r["onnx"]), os.path.basename(r["vnnlib"]))] = r["consensus"]
    seen = set()
    for onnx_name, prop_name in ACAS_CASES:
        model, prop = str(acas / "onnx" / onnx_name), str(acas / "vnnlib" / prop_name)
        net = vnncert.load_network(model)
        spec1 = vnncert.load_spec(prop, network=net)
        q = tmp_path / (prop_name[:-7] + "_2.vnnlib")
        q.write_text(spec_to_vnnlib2(spec1, net.input_shape, net.output_shape, net.input_type_name))
        # in this process --timeout would count from pytest's start: the falsifier ends on its own budget
        assert cli.main(["verify", model, prop, "--mode", "falsify", "--threads", "1"]) == 0
        first_1_0 = capsys.readouterr().out.split("\n")[0]
        assert standard.main(["verify", str(q), "--network", f"net={model}", "--mode", "falsify",
                              "--threads", "1"]) == 0
        out = capsys.readouterr().out.split("\n")
        assert out[0] == first_1_0 and out[0] in ("sat", "unknown"), (onnx_name, prop_name)
        expected = truth.get((onnx_name, prop_name))
        assert out[0] == "unknown" or expected in (None, out[0])
        seen.add(out[0])
        if out[0] == "sat":
            assert out[1] == "X float32 [1,1,1,5]" and out[7] == "Y float32 [1,5]"
            x = np.array([float(v) for v in out[2:7]], dtype=np.float32)
            y = net.replay(x)
            assert np.array_equal(y, np.array([float(v) for v in out[8:13]], dtype=np.float32))
            spec2 = vnncert.load_spec(str(q), network=net)
            assert spec2.find_violation(x.astype(np.float64), y.astype(np.float64)) is not None
    assert seen == {"sat", "unknown"}  # both kinds of answer were compared
