"""The router's rule for unsupported operators (docs/usage.md, "Unsupported operators").

Each engine reads the network through one converter of the op registry (the MILP layer graph
for quick_bounds / exact / lp, the torch module for relaxed, ONNX Runtime alone for the
falsifier and the probabilistic engine). No engine of the mode can take the network: `error`
naming the op(s). Some can: they run, and an answer left `unknown` says which op kept which
engines out (detail, and stats["note"], which the CLI prints on stderr without -v).
"""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from helpers import box_spec, gemm_then, graph_onnx, if_onnx

pytest.importorskip("torch")

from vnncert.api import verify  # noqa: E402

# y = op(W x), W = [[1, 1], [1, -1]], x in [0, 1]^2: y0 = op(x0 + x1) with x0 + x1 in [0, 2]
UNIT = ([0.0, 0.0], [1.0, 1.0])
MODELS = {
    # ops no converter has: atan(s) for s in [0, 2]: [0, 1.1071]; asinh(s): [0, 1.4436]; the If takes its
    # then-branch (sum Wx = 2 x0 >= 0): y = W x
    "atan": (lambda d: gemm_then(d / "atan.onnx", "Atan"), ["Atan"], "(>= Y_0 0.5)", "(>= Y_0 1.5)"),
    "asinh": (lambda d: gemm_then(d / "asinh.onnx", "Asinh"), ["Asinh"], "(>= Y_0 0.5)", "(>= Y_0 1.5)"),
    "if": (lambda d: if_onnx(d / "if.onnx"), ["Greater", "If"], "(>= Y_0 1.5)", "(>= Y_0 2.5)"),
}


def _ops_re(ops):
    """`Atan` / `Greater (node 'cond'), If (node 'branch')` as the router names them."""
    node = r"(?: \(node '[^']*'\))?"
    return r"unsupported ONNX operators? " + ", ".join(re.escape(op) + node for op in ops)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("router")
    out = {}
    for name, (make, ops, sat_row, unsat_row) in MODELS.items():
        sat = d / f"{name}_sat.vnnlib"
        sat.write_text(box_spec(*UNIT, [[sat_row]], 2))
        unsat = d / f"{name}_unsat.vnnlib"
        unsat.write_text(box_spec(*UNIT, [[unsat_row]], 2))
        out[name] = (make(d), ops, str(sat), str(unsat))
    return out


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("mode,kw", [("exact", {}), ("relaxed", {}), ("relaxed", {"relaxed_method": "lp"}),
                                     ("relaxed", {"relaxed_method": "alpha-crown"})],
                         ids=["exact", "relaxed", "relaxed-lp", "relaxed-alpha"])
def test_no_engine_of_the_mode_takes_it_error_names_the_op(world, name, mode, kw):
    model, ops, sat, unsat = world[name]
    engine = "lp" if kw.get("relaxed_method") == "lp" else mode  # the LP engine stands in for relaxed
    for prop in (sat, unsat):
        out = verify(model, prop, mode=mode, timeout=30, threads=1, **kw)
        assert out.verdict.value == "error", out.detail
        assert re.search(_ops_re(ops) + rf": not supported by {engine}\b", out.detail), out.detail
        assert f"the only engine of --mode {mode}" in out.detail and "\n" not in out.detail


@pytest.mark.parametrize("name", list(MODELS))
def test_auto_runs_the_falsifier_and_says_which_op_kept_the_others_out(world, name):
    model, ops, sat, unsat = world[name]
    out = verify(model, sat, mode="auto", timeout=30, threads=1)
    assert out.verdict.value == "sat" and out.witness_checked, out.detail
    out = verify(model, unsat, mode="auto", timeout=30, threads=1)
    assert out.verdict.value == "unknown", out.detail
    note = out.stats["note"]
    assert note in out.detail and "\n" not in note
    assert re.search(_ops_re(ops) + ": not supported by quick_bounds, relaxed, exact", note), note
    assert note.endswith("only attack ran")
    assert set(out.stats["excluded"]) == {"quick_bounds", "relaxed", "exact"}


@pytest.mark.parametrize("name", list(MODELS))
def test_falsify_mode_takes_any_model_onnx_runtime_runs(world, name):
    model, ops, sat, unsat = world[name]
    assert verify(model, sat, mode="falsify", timeout=30, threads=1).verdict.value == "sat"
    out = verify(model, unsat, mode="falsify", timeout=30, threads=1)
    assert out.verdict.value == "unknown" and "note" not in out.stats, out.detail


def test_only_the_engines_lacking_the_op_stay_out(tmp_path):
    """Sigmoid: the layer graph has it (an act layer), the MILP encoding does not (not piecewise
    linear). auto: the quick pass proves it (our numpy CROWN with the sigmoid's relaxation);
    relaxed too (our torch CROWN); exact alone: unknown, saying that no MILP encoding exists and
    which modes take the network."""
    model = gemm_then(tmp_path / "sig.onnx", "Sigmoid")
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec(*UNIT, [["(>= Y_0 0.95)"]], 2))  # sigmoid(2) = 0.8808
    out = verify(model, str(prop), mode="auto", timeout=60, threads=1)
    assert out.verdict.value == "unsat" and out.engine == "quick_bounds", out.detail
    assert set(out.stats["excluded"]) == {"exact"}
    out = verify(model, str(prop), mode="relaxed", timeout=60, threads=1)
    assert out.verdict.value == "unsat" and out.stats["relaxed"]["bounder"] == "CROWN (layer graph, torch)", out.detail
    out = verify(model, str(prop), mode="exact", timeout=60, threads=1)
    assert out.verdict.value == "unknown" and "Sigmoid" in out.detail and "not supported by exact" in out.detail
    assert "(the MILP encoding: piecewise-linear ops only)" in out.detail
    assert out.detail.endswith("no engine of --mode exact can take the network: no MILP encoding (--mode auto / relaxed can)")
    assert out.stats["note"] in out.detail and "attack" in out.stats  # the leading falsifier ran


def test_a_handler_refusing_one_use_of_its_op_counts_the_same(tmp_path):
    """Mul is in the MILP encoding, but not of two variable tensors (the layer graph's product
    layer): the exact engine raises on meeting it, and the router treats that like a missing op."""
    from onnx import helper

    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=1), helper.make_node("Mul", ["z", "z"], ["y"], name="sq")]
    model = graph_onnx(tmp_path / "sq.onnx", nodes, {"W": np.eye(2, dtype=np.float32), "b": np.zeros(2, np.float32)})
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec(*UNIT, [["(>= Y_0 1.5)"]], 2))  # x0^2 <= 1
    out = verify(model, str(prop), mode="exact", timeout=60, threads=1)
    assert out.verdict.value == "unknown", out.detail  # the torch converter takes the product
    assert "exact: unsupported ONNX operator Mul (node 'sq')" in out.detail and "product of two variable tensors" in out.detail
    assert "no MILP encoding (--mode auto / relaxed can)" in out.detail and "attack" in out.stats
    out = verify(model, str(prop), mode="auto", timeout=60, threads=1)
    assert out.verdict.value == "unsat" and out.engine == "quick_bounds", out.detail  # McCormick: x0 x0 <= x0 <= 1
    assert "excluded" not in out.stats
    out = verify(model, str(prop), mode="relaxed", timeout=60, threads=1)
    assert out.verdict.value == "unsat" and out.stats["relaxed"]["bounder"] == "CROWN (layer graph, torch)", out.detail


def test_the_op_sets_come_from_the_registry(world, monkeypatch):
    """A handler registered for an op (here a to_torch for Asinh) lets the engines that use that
    converter run: the rule has no list of its own."""
    from vnncert.network.ops import base

    class AsinhOp(base.OpHandler):
        def to_torch(self, node, ctx):
            from torch import nn

            class Asinh(nn.Module):
                def forward(self, x):
                    return x.asinh()

            x = node.inputs[0]
            ctx.emit(Asinh(), [x], [node.outputs[0]], ctx.view(x).merged)

    h = AsinhOp()
    h.op_type = "Asinh"
    monkeypatch.setitem(base._REGISTRY, "Asinh", h)
    model, _, _, unsat = world["asinh"]
    out = verify(model, unsat, mode="relaxed", timeout=30, threads=1)
    assert out.verdict.value != "error", out.detail  # relaxed ran (auto_LiRPA may or may not bound asinh)
    out = verify(model, unsat, mode="exact", timeout=30, threads=1)  # the torch converter has it now: unknown
    assert out.verdict.value == "unknown" and "not supported by exact" in out.detail and "(--mode auto / relaxed can)" in out.detail


def test_cli_prints_the_note_on_stderr_without_verbose(world, tmp_path):
    model, _, _, unsat = world["atan"]
    res = tmp_path / "r.txt"
    p = subprocess.run([sys.executable, "-m", "vnncert.cli", "verify", model, unsat, "--threads", "1", "--timeout", "30",
                        "--result-file", str(res)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.splitlines()[0] == "unknown", p.stderr
    assert res.read_text().splitlines()[0] == "unknown"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vnncert: note: unsupported ONNX operator Atan: not supported by "), p.stderr


def test_exact_mode_is_the_falsifier_then_the_exact_engine(tmp_path):
    """--mode exact is a row of the router's table: the falsifier first, with at most
    AttackOptions.lead_seconds / lead_share of the time, then the exact engine (which runs no
    falsifier of its own). Without time for the lead, the exact engine finds the witness itself."""
    from vnncert import router
    from vnncert.options import AttackOptions, Options

    assert router.plan(Options(mode="exact")) == ["attack", "exact"]
    assert router.plan(Options.make(mode="auto", relaxed_method="lp")) == ["quick_bounds", "attack", "lp", "exact"]
    model = gemm_then(tmp_path / "relu.onnx", "Relu")
    prop = tmp_path / "p.vnnlib"
    prop.write_text(box_spec(*UNIT, [["(>= Y_0 1.5)"]], 2))  # relu(x0 + x1) >= 1.5: sat
    out = verify(model, str(prop), mode="exact", timeout=30, threads=1)
    assert out.verdict.value == "sat" and out.engine == "attack" and out.witness_checked, out.detail
    out = verify(model, str(prop), mode="exact", timeout=30, threads=1, attack=AttackOptions(lead_seconds=0.0))
    assert out.verdict.value == "sat" and out.engine == "exact" and out.witness_checked, out.detail
    assert out.detail.startswith("attack: unknown"), out.detail  # the lead ran (no time) and said so
