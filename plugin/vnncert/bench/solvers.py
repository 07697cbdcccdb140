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


def read_result_text(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if data[:2] == b"\x1f\x8b":
        import gzip

        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
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
        cls = globals().get("StandardCliSolver")
        if cls is None:
            try:
                from .standard_cli import StandardCliSolver as cls  # noqa: N813
            except ImportError as e:
                if getattr(e, "name", "") not in ("vnncert.bench.standard_cli", None) and "standard_cli" not in str(e):
                    raise
                raise SolverUnavailable("--solver-cmd (VNN-LIB 2.0 command-line solvers) is not available in this build") from None
        return cls(solver_cmd, name=name)
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
