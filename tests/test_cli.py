"""The verify command: verdicts, exit codes, result files, hard deadline, VNN-COMP scripts."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SPECS, shared_benchmark
from helpers import box_spec, mlp_onnx, random_mlp, slow_onnx

VNNCERT = [sys.executable, "-m", "vnncert.cli"]


def run(*args, timeout=120):
    return subprocess.run(VNNCERT + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def linear_net(tmp_path_factory):
    """y = [x0 + x1, x0 - x1] (exact, no ReLU effects on the box used)."""
    d = tmp_path_factory.mktemp("lin")
    W = [(np.array([[1.0, 1.0], [1.0, -1.0]]), np.zeros(2))]
    return mlp_onnx(d / "lin.onnx", W)


def test_sat_with_replayed_witness(tmp_path, linear_net):
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 1.9)"]], 2))
    res = tmp_path / "r.txt"
    js = tmp_path / "r.json"
    p = run("verify", linear_net, prop, "--timeout", 30, "--result-file", res, "--json", js, "--threads", 1)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "sat"
    from vnncert import load_network, load_spec
    from vnncert.results import read_result_file, witness_input

    verdict, a = read_result_file(str(res))
    assert verdict.value == "sat"
    x = witness_input(a, 2).astype(np.float32)
    net = load_network(linear_net)
    y = net.replay(x)
    assert y[0] >= 1.9 and np.all(x >= 0) and np.all(x <= 1)
    assert load_spec(str(prop), network=net).find_violation(x.astype(np.float64), y.astype(np.float64)) == 0
    import json

    j = json.loads(js.read_text())
    assert j["verdict"] == "sat" and j["counterexample"]["replay_checked"] is True


def test_no_witness_gives_unknown_not_unsat(tmp_path, linear_net):
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 2.5)"]], 2))  # impossible: max y0 = 2
    res = tmp_path / "r.txt"
    p = run("verify", linear_net, prop, "--mode", "falsify", "--timeout", 30, "--result-file", res, "--threads", 1)
    assert p.returncode == 0
    assert p.stdout.splitlines()[0] == "unknown"
    assert res.read_text() == "unknown\n"


def test_strict_relation_needs_strict_witness(tmp_path, linear_net):
    # y0 = x0 + x1 <= 2 on the box; "y0 > 2" has no witness even though y0 = 2 is reachable
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec([0, 0], [1, 1], [["(> Y_0 2.0)"]], 2))
    p = run("verify", linear_net, prop, "--mode", "falsify", "--timeout", 30, "--threads", 1)
    assert p.stdout.splitlines()[0] == "unknown"
    prop.write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 2.0)"]], 2))
    p = run("verify", linear_net, prop, "--mode", "falsify", "--timeout", 30, "--threads", 1)
    assert p.stdout.splitlines()[0] == "sat"


@pytest.mark.parametrize("case,needle", [
    ("missing_model", "cannot read ONNX file"),
    ("garbage_model", "not a valid ONNX file"),
    ("bad_prop", ":3:"),
    ("count_mismatch", "network has 2"),
])
def test_bad_input_is_error_exit_2(tmp_path, linear_net, case, needle):
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 1)"]], 2))
    model = linear_net
    if case == "missing_model":
        model = tmp_path / "nope.onnx"
    elif case == "garbage_model":
        model = tmp_path / "g.onnx"
        model.write_bytes(os.urandom(300))
    elif case == "bad_prop":
        prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1)\n")
    elif case == "count_mismatch":
        prop.write_text(box_spec([0, 0, 0], [1, 1, 1], [["(>= Y_0 1)"]], 2))
    res = tmp_path / "r.txt"
    p = run("verify", model, prop, "--timeout", 30, "--result-file", res)
    assert p.returncode == 2
    assert res.read_text() == "error\n"
    assert p.stdout.splitlines()[0] == "error"
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0], p.stderr


def test_unsupported_operator_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    g = helper.make_graph([helper.make_node("Atan", ["x"], ["y"])], "g", [inp], [out])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "atan.onnx"))
    from vnncert import load_network
    from vnncert.errors import UnsupportedOperator

    net = load_network(str(tmp_path / "atan.onnx"))
    assert "Atan" in net.ops
    with pytest.raises(UnsupportedOperator, match="Atan"):
        net.torch_module()


def test_two_real_inputs_is_a_clear_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 2])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", [a, b], [out])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "two.onnx"))
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 1)"]], 2))
    p = run("verify", tmp_path / "two.onnx", prop, "--timeout", 30)
    assert p.returncode == 2 and "2 real inputs" in p.stderr


def test_hard_deadline_kills_native_code(tmp_path):
    """ORT busy for minutes in native code: the file says timeout and the process is gone by T + 0.5 s."""
    model = slow_onnx(tmp_path / "slow.onnx")
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 1e30)"]], 2))
    res = tmp_path / "r.txt"
    T = 6.0
    t0 = time.monotonic()
    proc = subprocess.Popen(VNNCERT + ["verify", str(model), str(prop), "--timeout", str(T), "--result-file", str(res),
                                       "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    assert res.read_text() == "unknown\n"  # holds unknown from the start
    out, _ = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0
    assert out.splitlines()[0] == "timeout"
    assert res.read_text() == "timeout\n"
    assert elapsed < T + 1.5  # T + 0.5 s from process start, plus generous room for this test's own overhead


def test_help_and_version():
    p = run("--help")
    assert p.returncode == 0 and "verify" in p.stdout
    p = run("verify", "--help")
    assert p.returncode == 0 and "--timeout" in p.stdout and "auto" in p.stdout
    p = run("--version")
    import vnncert

    assert p.returncode == 0 and p.stdout == vnncert.__version__ + "\n"  # VNN-LIB 2.0 §5.2: a bare version string


def test_spec_robustness_writes_a_parsable_property(tmp_path, linear_net):
    out = tmp_path / "r.vnnlib"
    p = run("spec", "robustness", "--point", "0.5,0.25", "--label", "0", "--eps", "0.1", "--model", linear_net,
            "--clip", "0", "1", "--out", out)
    assert p.returncode == 0, p.stderr
    from vnncert import load_network, load_spec

    spec = load_spec(str(out), network=load_network(linear_net))
    (case,) = spec.cases
    assert np.allclose(case.region.lower, [0.4, 0.15]) and np.allclose(case.region.upper, [0.6, 0.35])
    assert len(case.output) == 1 and case.output[0].A.tolist() == [[1.0, -1.0]]


def test_shipped_instances_parse_and_load():
    import csv

    from vnncert import load_network, load_spec

    rows = list(csv.reader((SPECS / "instances.csv").read_text().splitlines()))
    assert rows
    for onnx_rel, prop_rel, timeout in rows:
        net = load_network(str(SPECS / onnx_rel))
        spec = load_spec(str(SPECS / prop_rel), network=net)
        assert spec.n_inputs == net.n_inputs and float(timeout) > 0


def _run_instance(bench, onnx_rel, prop_rel, timeout, tmp_path):
    res = tmp_path / "res.txt"
    script = ROOT / "vnncomp_scripts"
    p = subprocess.run(["bash", str(script / "prepare_instance.sh"), "v1", "test", str(bench / onnx_rel), str(bench / prop_rel)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(script / "run_instance.sh"), "v1", "test", str(bench / onnx_rel), str(bench / prop_rel),
                        str(res), str(timeout)], capture_output=True, text=True, timeout=timeout + 30)
    return p, res, time.monotonic() - t0


def test_vnncomp_scripts_on_test_benchmark(tmp_path):
    bench = shared_benchmark("test")
    if not (ROOT / ".venv" / "bin" / "vnncert").exists():
        pytest.skip("vnncomp_scripts need the project's .venv (make install)")
    truth = {"test_sat.onnx": "sat"}
    for line in (bench / "instances.csv").read_text().splitlines():
        if not line.strip():
            continue
        onnx_rel, prop_rel, _ = line.split(",")
        p, res, elapsed = _run_instance(bench, onnx_rel, prop_rel, 10, tmp_path)
        assert p.returncode == 0, p.stderr
        word = res.read_text().splitlines()[0]
        # the core suite runs the falsifier at least: the sat instance is found, nothing is claimed sat wrongly
        if truth.get(onnx_rel) == "sat":
            assert word == "sat"
        else:
            assert word in ("unsat", "unknown"), (onnx_rel, word)
        assert elapsed < 10


def test_run_instance_rejects_wrong_version(tmp_path):
    p = subprocess.run(["bash", str(ROOT / "vnncomp_scripts" / "run_instance.sh"), "v2", "c", "a", "b", "r", "5"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "v1" in p.stderr


def test_empty_unsafe_set_is_unsat(tmp_path, linear_net):
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 1)"]], 2) + "(assert (<= 1.0 0.0))\n")
    p = run("verify", linear_net, prop, "--mode", "falsify", "--timeout", 30)
    assert p.returncode == 0 and p.stdout.splitlines()[0] == "unsat"


# ---- which form of verify: the rule of vnncert/cli/__init__.py, one case per branch ----------------
@pytest.mark.parametrize("args,form", [
    # 1. an option only the VNN-LIB 2.0 form has: that form, whatever else is on the line
    (["q.vnnlib", "--network", "f=m.onnx"], "standard"),
    (["--network=f=m.onnx", "q.vnnlib"], "standard"),
    (["q.vnnlib", "--serialise-assignments", "out"], "standard"),
    (["m.onnx", "p.vnnlib", "--network", "f=m.onnx"], "standard"),  # its parser then refuses the extra path
    (["q.vnnlib", "--netw", "f=m.onnx"], "standard"),  # a prefix, as argparse reads one
    # 2. an option only the VNN-COMP form has: that form, whatever else is on the line
    (["p.vnnlib", "--result-file", "r.txt"], "vnncomp"),  # its run then says it takes two paths
    (["--result", "r.txt"], "vnncomp"),
    (["m.onnx", "p.vnnlib", "--json", "r.json"], "vnncomp"),
    (["m.onnx", "p.vnnlib", "--n", "5"], "vnncomp"),
    (["m.onnx", "p.vnnlib", "--relaxed-method=lp"], "vnncomp"),
    # 3. neither: one positional argument is the VNN-LIB 2.0 form, two the VNN-COMP form
    (["q.vnnlib"], "standard"),
    (["q.vnnlib", "--timeout", "5", "--mode", "falsify"], "standard"),
    (["m.onnx", "p.vnnlib"], "vnncomp"),
    (["m.onnx", "p.vnnlib", "--timeout", "5", "-v"], "vnncomp"),
    (["--seed", "-5", "m.onnx", "p.vnnlib"], "vnncomp"),  # -5 is --seed's value
    (["--", "-net.onnx", "p.vnnlib"], "vnncomp"),  # after --, every argument is positional
    # 4. anything else: an error naming both forms
    ([], None),
    (["a", "b", "c"], None),
    (["--timeout", "5"], None),
    (["q.vnnlib", "--network", "f=m.onnx", "--result-file", "r.txt"], None),
])
def test_the_verify_form_rule(args, form):
    from vnncert.cli import verify_form

    got, why = verify_form(args)
    assert got == form, (args, got, why)
    if form is None:
        assert "VNN-COMP form" in why and "VNN-LIB 2.0 form" in why


def test_verify_lines_of_neither_form_are_one_error_naming_both(tmp_path, linear_net):
    p = run("verify", linear_net, "a.vnnlib", "b.vnnlib")
    assert p.returncode == 2 and p.stdout == ""
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "MODEL.onnx PROP.vnnlib (VNN-COMP form)" in err[0] and "(VNN-LIB 2.0 form)" in err[0]
    assert "got 3 positional argument(s)" in err[0]
    q, res = tmp_path / "q.vnnlib", tmp_path / "r.txt"
    q.write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 1.9)"]], 2))
    p = run("verify", q, "--network", f"f={linear_net}", "--result-file", res)
    assert p.returncode == 2 and "--network is an option of the VNN-LIB 2.0 form" in p.stderr
    assert p.stdout == "error\n" and res.read_text() == "error\n"  # a named result file says so
    res.unlink()
    # an option of the VNN-COMP form picks that form: a missing model is its error, in its result file too
    p = run("verify", q, "--result-file", res)
    assert p.returncode == 2 and p.stdout == "error\n" and res.read_text() == "error\n"
    assert "got 1 path(s)" in p.stderr and "(VNN-LIB 2.0 form)" in p.stderr
    # one positional argument and no option of either form: the VNN-LIB 2.0 form, which needs --network
    p = run("verify", q)
    assert p.returncode == 2 and p.stdout == "" and "--network" in p.stderr


def test_verify_help_states_the_rule_and_each_form_has_its_help(linear_net):
    p = run("verify", "--help")
    assert p.returncode == 0 and p.stderr == ""
    assert "MODEL.onnx PROP.vnnlib" in p.stdout and "QUERY.vnnlib --network" in p.stdout
    assert "The two forms of verify" in p.stdout and "--result-file" in p.stdout
    p = run("verify", "q.vnnlib", "--network", f"f={linear_net}", "--help")
    assert p.returncode == 0 and "VNN-LIB 2.0 verify" in p.stdout and "--serialise-assignments" in p.stdout
    p = run("verify", "m.onnx", "p.vnnlib", "--help")
    assert p.returncode == 0 and "--result-file" in p.stdout
    assert "verify" in run("--help").stdout


def test_result_file_carries_the_routers_note(tmp_path):
    """An op that keeps engines out leaves a note; on an answer that is not sat the result file has
    it as a comment line after the verdict (readers ignore comments; results.read_result_file)."""
    import onnx
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    m = helper.make_model(helper.make_graph([helper.make_node("Atan", ["x"], ["y"])], "g", [inp], [out]),
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "atan.onnx"))
    prop, res = tmp_path / "p.vnnlib", tmp_path / "r.txt"
    prop.write_text(box_spec([0, 0], [1, 1], [["(>= Y_0 2.0)"]], 2))  # atan < pi / 2: unsat (no converter has Atan)
    p = run("verify", tmp_path / "atan.onnx", prop, "--mode", "auto", "--timeout", 30, "--threads", 1,
            "--result-file", res)
    assert p.returncode == 0 and p.stdout == "unknown\n", p.stderr
    lines = res.read_text().splitlines()
    assert lines[0] == "unknown" and len(lines) == 2
    assert lines[1].startswith("; note: unsupported ONNX operator Atan: not supported by ")
    assert p.stderr.strip() == "vnncert: " + lines[1][2:]
    from vnncert.results import read_result_file

    assert read_result_file(str(res))[0].value == "unknown"
