"""How a tool is started on one instance and how its answer is read: one `Solver` class per kind.

A solver's `plan(instance, workdir)` is a generator: it yields the `procs.Step`s to run (each one
OS process under a wall-clock limit, run by whoever drives the plan: the local scheduler in
`runner.py`, or a Dask worker in `dask_runner.py`), receives each step's `StepResult`, and returns
an `Answer` (the results-CSV word, times, the witness text for `sat`). So every kind of tool gets
the same per-instance process, deadline, crash handling and result handling.

Kinds:
- `VnncertSolver`: `python -m vnncert.cli verify ONNX VNNLIB --timeout T-margin --result-file ...`.
- `VnncompScriptsSolver`: a VNN-COMP tool folder: `prepare_instance.sh v1 CAT ONNX VNNLIB` then
  `run_instance.sh v1 CAT ONNX VNNLIB RESULT_FILE TIMEOUT`, read like the competition harness.
- `StandardCliSolver` (VNN-LIB 2.0 command line, `--solver-cmd`): provided by
  `vnncert.bench.standard_cli` (or a class of that name added here); `make_solver` finds it.
  Contract: `StandardCliSolver(cmd: str, name: Optional[str] = None, **options)` with the `plan`
  generator below; for `sat` the Answer's `witness` is the VNN-COMP result-file text
  (`sat` + `((X_0 v) ... (Y_0 v))`), so score/compare read it like any other tool's.

Time rule (VNN-COMP 2026): the run step is killed at the instance TIMEOUT itself; a killed run is
`timeout`. The harness's conventions are kept: exit code 124 of run_instance.sh is `timeout`, any
other non-zero exit is `error`, a missing result file is `unknown` (the harness's
`no_result_in_file`), and a non-zero prepare_instance.sh skips the rest of its category.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Generator, Optional, Tuple

from .instances import Instance
from .procs import Step, StepResult, tail
from .resultscsv import normalise_result


@dataclass
class Answer:
    result: str  # sat / unsat / unknown / timeout / error (the results-CSV word)
    prepare_time: float = 0.0
    run_time: float = 0.0
    witness: Optional[str] = None  # result-file text (sat + assignment) for sat
    detail: str = ""
    verifier_seconds: Optional[float] = None  # time the tool itself reports (vnncert: load + engines)
    engine: str = ""
    skip_category: bool = False  # prepare failed: the harness skips the rest of the category
    extra: Dict[str, Any] = field(default_factory=dict)


Plan = Generator[Step, StepResult, Answer]


class Solver:
    """Base class: `name` (tool name in reports) and `plan`."""

    name = "solver"
    kind = "solver"

    def plan(self, inst: Instance, workdir: str) -> Plan:  # pragma: no cover - interface
        raise NotImplementedError
        yield

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind, "name": self.name}


def format_timeout(t: float) -> str:
    """'116' for whole seconds (what instances.csv says), else up to millisecond precision."""
    return str(int(t)) if float(t).is_integer() else f"{t:.3f}".rstrip("0").rstrip(".")


# a result file or witness larger than this (after gunzip) is not read: a witness of the largest
# VNN-COMP inputs (3x224x224 values, 17 digits each) is about 5 MB
MAX_RESULT_BYTES = 256 << 20


def read_result_text(path: str, limit: int = MAX_RESULT_BYTES) -> Optional[str]:
    """A result file's text (gzip or not), or None when unreadable or larger than `limit` bytes."""
    import gzip

    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            if gz:
                with gzip.GzipFile(fileobj=f) as g:
                    data = g.read(limit + 1)
            else:
                data = f.read(limit + 1)
    except (OSError, EOFError):
        return None
    if len(data) > limit:
        return None
    return data.decode("utf-8", errors="replace")


def answer_from_result_file(path: str, run: StepResult, prepare_time: float = 0.0) -> Answer:
    """The harness's reading of a finished run: first line of the file, whitespace removed."""
    text = read_result_text(path)
    if text is None or not text.strip():
        return Answer("unknown", prepare_time, run.seconds, detail="no result in file")
    first = "".join(text.strip().splitlines()[0].split())
    word = normalise_result(first)
    return Answer(word, prepare_time, run.seconds, witness=text if word == "sat" else None,
                  detail="" if word == first.lower() else f"result file said {first[:60]!r}")


def failed_run(run: StepResult, what: str, prepare_time: float = 0.0, log: Optional[str] = None) -> Answer:
    """A run that did not end with exit 0: killed at the limit -> timeout, else error."""
    if run.timed_out:
        return Answer("timeout", prepare_time, run.seconds, detail=f"{what} {run.describe()}")
    msg = tail(log)
    return Answer("error", prepare_time, run.seconds, detail=f"{what} {run.describe()}" + (f": {msg}" if msg else ""))


class VnncertSolver(Solver):
    """vnncert itself, one `vnncert verify` process per instance (the JSON sidecar gives its own times)."""

    kind = "vnncert"

    def __init__(self, mode: str = "auto", seed: int = 0, threads: int = 1, margin: float = 1.0,
                 extra_args: Tuple[str, ...] = (), python: Optional[str] = None, name: str = "vnncert"):
        self.mode = mode
        self.seed = int(seed)
        self.threads = int(threads)
        self.margin = float(margin)
        self.extra_args = tuple(extra_args)
        self.python = python
        self.name = name

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "mode": self.mode, "seed": self.seed,
                "threads": self.threads, "margin": self.margin, "extra_args": list(self.extra_args)}

    def verify_timeout(self, t: float) -> float:
        """What vnncert is told: TIMEOUT minus the margin (half of TIMEOUT when it is below 2 margins),
        so vnncert (final word by its timeout + 0.5 s) has exited before the runner's kill at TIMEOUT."""
        return t - self.margin if t >= 2 * self.margin else t / 2

    def plan(self, inst: Instance, workdir: str) -> Plan:
        res = os.path.join(workdir, "result.txt")
        js = os.path.join(workdir, "result.json")
        err = os.path.join(workdir, "stderr.txt")
        argv = [self.python or sys.executable, "-m", "vnncert.cli", "verify",
                os.path.abspath(inst.onnx), os.path.abspath(inst.vnnlib),
                "--timeout", f"{self.verify_timeout(inst.timeout):.3f}", "--result-file", res, "--json", js,
                "--mode", self.mode, "--seed", str(self.seed), "--threads", str(self.threads), *self.extra_args]
        run = yield Step(argv, inst.timeout, stderr_path=err, label="verify")
        side = _read_json(js)
        if run.ok or run.returncode == 2:  # 2: bad input / internal error, the file says `error`
            ans = answer_from_result_file(res, run)
            if run.returncode == 2 and ans.result != "error":
                ans = Answer("error", 0.0, run.seconds, detail="exit code 2")
        else:
            ans = failed_run(run, "vnncert verify", log=err)
        if side:
            ans.engine = str(side.get("engine", ""))
            stats = side.get("stats") or {}
            secs = side.get("seconds")
            load = stats.get("load_seconds") if isinstance(stats, dict) else None
            if isinstance(secs, (int, float)):
                ans.verifier_seconds = float(secs) + (float(load) if isinstance(load, (int, float)) else 0.0)
            if side.get("detail") and ans.result in ("error", "unknown", "timeout") and not run.timed_out:
                ans.detail = str(side["detail"])[:400]
        if ans.result == "error" and not ans.detail:
            ans.detail = tail(err) or run.describe()
        return ans


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


class VnncompScriptsSolver(Solver):
    """A VNN-COMP tool folder (prepare_instance.sh, run_instance.sh), run like the competition harness."""

    kind = "vnncomp-scripts"

    def __init__(self, scripts_dir: str, prepare_timeout: float = 60.0, name: Optional[str] = None):
        self.scripts_dir = os.path.abspath(scripts_dir)
        self.prepare_timeout = float(prepare_timeout)
        for script in ("prepare_instance.sh", "run_instance.sh"):
            p = os.path.join(self.scripts_dir, script)
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{scripts_dir}: no {script} (not a VNN-COMP scripts folder)")
        base = os.path.basename(self.scripts_dir)
        self.name = name or (os.path.basename(os.path.dirname(self.scripts_dir)) if base == "vnncomp_scripts" else base)

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "scripts_dir": self.scripts_dir,
                "prepare_timeout": self.prepare_timeout}

    def _script(self, name: str):
        p = os.path.join(self.scripts_dir, name)
        return [p] if os.access(p, os.X_OK) else ["/bin/bash", p]

    def plan(self, inst: Instance, workdir: str) -> Plan:
        onnx, vnnlib = os.path.abspath(inst.onnx), os.path.abspath(inst.vnnlib)
        plog = os.path.join(workdir, "prepare.log")
        prep = yield Step(self._script("prepare_instance.sh") + ["v1", inst.category, onnx, vnnlib],
                          self.prepare_timeout, stdout_path=plog, stderr_path=plog, label="prepare")
        if not prep.ok:
            ans = failed_run(prep, "prepare_instance.sh", log=plog)
            ans.prepare_time, ans.run_time = prep.seconds, 0.0
            ans.skip_category = True
            return ans
        res = os.path.join(workdir, "out.txt")
        rlog = os.path.join(workdir, "run.log")
        run = yield Step(self._script("run_instance.sh") + ["v1", inst.category, onnx, vnnlib, res,
                                                            format_timeout(inst.timeout)],
                         inst.timeout, stdout_path=rlog, stderr_path=rlog, label="run")
        if run.ok:
            return answer_from_result_file(res, run, prep.seconds)
        if run.returncode == 124:
            return Answer("timeout", prep.seconds, run.seconds, detail="run_instance.sh exit code 124")
        return failed_run(run, "run_instance.sh", prep.seconds, log=rlog)


class StandardCliSolver(Solver):
    """A VNN-LIB 2.0 command-line solver (`--solver-cmd "CMD"`), run as `CMD verify QUERY --network NAME=ONNX
    --timeout S` (standard chapter 5) under the instance's wall-clock limit.

    - QUERY: a 2.0 property is passed as it is (decompressed into the work folder when `.gz`); a 1.0
      property is written as 2.0 text in the work folder first (same file name), typed with the model's element type
      (`query_type="model"`; `real` when a row is not a comparison a float type states exactly, or
      when the model's input and output types differ) or over `real` (`query_type="real"`, the 1.0
      text's own real-valued reading). The network is called `net`, its tensors `X` and `Y`.
    - S: whole seconds (the standard's unit), TIMEOUT minus `margin` rounded down, at least 1; the
      process is killed at TIMEOUT itself (a kill is `timeout`).
    - Reading: the first stdout line `sat` / `unsat` / `unknown` / `timed-out` (-> `timeout`) with
      exit code 0. Anything else is `error`: another first line (garbage, empty output), a non-zero
      exit code (whatever stdout said), death by a signal. For `sat` the command-line assignment is
      checked against the query's declarations (order, names, types, shapes, value counts, finite
      values) and becomes the witness (`sat` + `((X_0 v) ... (Y_0 v))`); a `sat` without a
      well-formed assignment stays `sat` with no witness (scoring then treats it as unproven).
    """

    kind = "vnnlib2-cli"

    def __init__(self, cmd: str, name: Optional[str] = None, margin: float = 1.0, query_type: str = "model"):
        import shlex

        self.cmd = cmd
        self.argv = shlex.split(cmd)
        if not self.argv:
            raise SolverUnavailable("--solver-cmd is empty")
        if query_type not in ("model", "real"):
            raise ValueError(f"query_type must be 'model' or 'real', not {query_type!r}")
        self.margin = float(margin)
        self.query_type = query_type
        self.name = name or self._default_name(self.argv)

    @staticmethod
    def _default_name(argv) -> str:
        base = os.path.basename(argv[0])
        if base.startswith("python") and "-m" in argv[1:-1]:
            return argv[argv.index("-m") + 1].split(".")[0]
        return base

    def describe(self) -> Dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "cmd": self.cmd, "margin": self.margin,
                "query_type": self.query_type}

    def solver_timeout(self, t: float) -> int:
        import math

        return max(1, int(math.floor(t - self.margin)))

    def prepare_query(self, inst: Instance, workdir: str):
        """(query path, network name, declarations) for one instance; raises ValueError / VnncertError."""
        from ..spec import detect_version, read_text
        from ..spec.vnnlib2 import Declaration, read_query, spec_float_exact, spec_to_vnnlib2
        from .instances import file_stem, safe_component

        text = read_text(inst.vnnlib)
        if detect_version(text) == "2.0":
            q = read_query(text, os.path.basename(inst.vnnlib))
            need = q.networks_needing_models()
            if len(need) != 1:
                raise ValueError(f"the query needs {len(need)} models ({', '.join(need)}); an instance has one ONNX file")
            path = os.path.abspath(inst.vnnlib)
            if path.endswith(".gz"):
                path = os.path.join(workdir, safe_component(file_stem(inst.vnnlib) + ".vnnlib"))
                with open(path, "w") as f:
                    f.write(text)
            return path, need[0], q.declarations
        from ..network import load_network
        from ..spec import load_spec

        network = load_network(inst.onnx)
        spec = load_spec(inst.vnnlib, signature=network.signature)
        etype = network.input_type_name
        if self.query_type == "real" or network.output_type_name != etype or not spec_float_exact(spec):
            etype = "real"
        path = os.path.join(workdir, safe_component(file_stem(inst.vnnlib) + ".vnnlib"))  # the property's name, 2.0 text
        with open(path, "w") as f:
            f.write(spec_to_vnnlib2(spec, network.input_shape, network.output_shape, etype, "net", "X", "Y"))
        decls = [Declaration("X", "input", etype, tuple(network.input_shape), "net"),
                 Declaration("Y", "output", etype, tuple(network.output_shape), "net")]
        return path, "net", decls

    def plan(self, inst: Instance, workdir: str) -> Plan:
        from ..errors import VnncertError

        try:
            query, network_name, decls = self.prepare_query(inst, workdir)
        except (VnncertError, ValueError, OSError) as e:
            return Answer("error", detail=f"cannot prepare a VNN-LIB 2.0 query: {e}")
        out = os.path.join(workdir, "stdout.txt")
        err = os.path.join(workdir, "stderr.txt")
        argv = self.argv + ["verify", query, "--network", f"{network_name}={os.path.abspath(inst.onnx)}",
                            "--timeout", str(self.solver_timeout(inst.timeout))]
        run = yield Step(argv, inst.timeout, stdout_path=out, stderr_path=err, label="verify")
        return self.read_answer(run, out, err, decls)

    def read_answer(self, run: StepResult, out_path: str, err_path: str, decls) -> Answer:
        if run.timed_out:
            return Answer("timeout", 0.0, run.seconds, detail=f"verify {run.describe()}")
        if run.returncode is None or run.spawn_error:
            return failed_run(run, "verify", log=err_path)
        text = read_result_text(out_path) or ""
        lines = text.split("\n")
        first = lines[0].strip() if lines else ""
        word = {"sat": "sat", "unsat": "unsat", "unknown": "unknown", "timed-out": "timeout"}.get(first)
        if run.returncode != 0:
            said = f" after printing {first[:40]!r}" if first else ""
            msg = tail(err_path)
            return Answer("error", 0.0, run.seconds,
                          detail=f"verify exit code {run.returncode}{said}" + (f": {msg}" if msg else ""))
        if word is None:
            return Answer("error", 0.0, run.seconds,
                          detail=f"verify printed {first[:60]!r}, not sat/unsat/unknown/timed-out" if first
                          else "verify printed nothing on stdout")
        if word != "sat":
            return Answer(word, 0.0, run.seconds)
        try:
            witness = assignment_witness(lines[1:], decls)
        except ValueError as e:
            return Answer("sat", 0.0, run.seconds, detail=f"sat without a usable assignment: {e}")
        return Answer("sat", 0.0, run.seconds, witness=witness)


def assignment_witness(lines, decls) -> str:
    """The standard's command-line assignment (lines after `sat`) -> VNN-COMP result-file text.

    Every declared variable must appear once, in declaration order, with its declared type and shape
    and one finite value per element; the input tensor's values become X_i, the output's Y_j.
    """
    import math
    import re

    import numpy as np

    from ..results import format_witness

    body = [ln.strip() for ln in lines if ln.strip()]
    values = {}
    k = 0
    for d in decls:
        if k >= len(body):
            raise ValueError(f"no values for {d.name}")
        m = re.fullmatch(r"(\S+)\s+(\S+)\s+\[([0-9,\s]*)\]", body[k])
        if not m:
            raise ValueError(f"expected the header of {d.name}, got {body[k][:60]!r}")
        name, etype, dims = m.group(1), m.group(2), m.group(3)
        shape = tuple(int(x) for x in dims.replace(" ", "").split(",") if x)
        if name != d.name or etype.lower() != d.element_type.lower() or shape != tuple(d.shape):
            raise ValueError(f"header {body[k]!r} does not match the declaration {d.header()!r}")
        n = d.size
        try:
            vals = [float(v) for v in body[k + 1:k + 1 + n]]
        except ValueError as e:
            raise ValueError(f"{d.name}: {e}") from None
        if len(vals) != n or not all(math.isfinite(v) for v in vals):
            raise ValueError(f"{d.name} needs {n} finite values")
        values[d.kind] = np.array(vals, dtype=np.float64)
        k += 1 + n
    if k != len(body):
        raise ValueError(f"unexpected text after the assignment: {body[k][:60]!r}")
    if "input" not in values or "output" not in values:
        raise ValueError("the assignment has no input or no output tensor")
    return "sat\n" + format_witness(values["input"], values["output"]) + "\n"


class SolverUnavailable(RuntimeError):
    pass


def make_solver(solver_cmd: Optional[str] = None, vnncomp_scripts: Optional[str] = None,
                name: Optional[str] = None, **vnncert_options) -> Solver:
    """The solver the bench command line asks for (vnncert itself unless told otherwise)."""
    if solver_cmd and vnncomp_scripts:
        raise SolverUnavailable("give --solver-cmd or --vnncomp-scripts, not both")
    if vnncomp_scripts:
        return VnncompScriptsSolver(vnncomp_scripts, prepare_timeout=vnncert_options.get("prepare_timeout", 60.0),
                                    name=name)
    if solver_cmd:
        return StandardCliSolver(solver_cmd, name=name)
    opts = {k: v for k, v in vnncert_options.items() if k in ("mode", "seed", "threads", "margin", "extra_args")}
    return VnncertSolver(name=name or "vnncert", **opts)


def drive(solver: Solver, inst: Instance, workdir: str, memory_limit_mb: Optional[float] = None) -> Answer:
    """Run a plan to its end here, blocking (what a Dask task does)."""
    from .procs import run_step

    gen = solver.plan(inst, workdir)
    try:
        step = next(gen)
        while True:
            step = gen.send(run_step(step, memory_limit_mb))
    except StopIteration as stop:
        return stop.value if isinstance(stop.value, Answer) else Answer("error", detail="solver returned no answer")
    except Exception as e:  # a bug in a solver costs its row only
        return Answer("error", detail=f"runner: {type(e).__name__}: {e}")
