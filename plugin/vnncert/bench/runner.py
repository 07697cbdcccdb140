"""`vnncert bench`: run a suite, one process per instance, into a resumable VNN-COMP results CSV.

- Each instance runs as its solver's steps (`solvers.py`), each step one OS process under its
  limit (`procs.py`); a crash, hang or out-of-memory costs that row only (`error` / `timeout`).
- Up to `jobs` instances run at once; one thread drives them all (no threads, no fork hazards).
- Rows are appended whole, with fsync, in completion order; witnesses are written first (atomic
  rename) to `<results dir>/<category>/<onnx stem>_<vnnlib stem>.counterexample`.
- Resume: rows already in the CSV are skipped (a torn last line from a kill is dropped first).
- A JSON-lines log beside the CSV (`<out stem>.log.jsonl`) keeps per-row detail (engine, the
  tool's own time, error messages) and one `session` record per run (machine, wall time).
"""
from __future__ import annotations

import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .instances import Instance
from .procs import Running, kill_tree, poll, start, wait_any
from .resultscsv import RESULTS, Appender, Row, remaining, repair
from .solvers import Answer, Solver


def log_path(out: str) -> str:
    root, ext = os.path.splitext(out)
    return (root if ext.lower() == ".csv" else out) + ".log.jsonl"


def witness_path(results_dir: str, inst: Instance) -> str:
    """`<results dir>/<category>/<witness name>`: both parts are made single names (`safe_component`),
    so no category or instance path (`../../x`, an absolute path, NUL) can lead outside results_dir."""
    from .instances import safe_component

    return os.path.join(results_dir, safe_component(inst.category), safe_component(inst.witness_name))


def machine() -> Dict[str, object]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


@dataclass
class BenchSummary:
    total: int = 0  # instances in the suite
    skipped: int = 0  # already in the CSV (resume)
    ran: int = 0  # rows written by this run
    counts: Counter = field(default_factory=Counter)  # over all rows of the suite in the CSV
    wall: float = 0.0
    run_time: float = 0.0  # sum over this run's rows
    prepare_time: float = 0.0
    verifier_seconds: float = 0.0
    verifier_rows: int = 0
    interrupted: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    def overhead_per_instance(self, jobs: int = 1) -> Optional[float]:
        """(wall x jobs - sum of the instances' process times) / rows: the runner's own cost."""
        if not self.ran:
            return None
        return (self.wall * max(1, jobs) - self.run_time - self.prepare_time) / self.ran

    def line(self) -> str:
        c = self.counts
        return (f"{self.ran} run, {self.skipped} already done; sat {c['sat']}, unsat {c['unsat']}, "
                f"unknown {c['unknown']}, timeout {c['timeout']}, error {c['error']}; wall {self.wall:.1f} s")


class Recorder:
    """Writes one finished instance: witness (atomic), log record, then the CSV row (fsync)."""

    def __init__(self, out: str, solver: Solver, summary: BenchSummary, progress=None, guard=None):
        self.out = out
        self.guard = guard
        self.results_dir = os.path.dirname(os.path.abspath(out))
        self.solver = solver
        self.summary = summary
        self.progress = progress
        self.appender = Appender(out, log_path(out))
        self.progress_live = bool(progress is not None and sys.stderr.isatty())

    def record(self, inst: Instance, ans: Answer) -> None:
        if self.guard is None:
            return self._record(inst, ans)
        with self.guard.critical():
            self._record(inst, ans)

    def _record(self, inst: Instance, ans: Answer) -> None:
        from ..results import atomic_write

        result = ans.result if ans.result in RESULTS else "error"
        wpath = witness_path(self.results_dir, inst)
        wrote = None
        if result == "sat" and ans.witness:
            os.makedirs(os.path.dirname(wpath), exist_ok=True)
            atomic_write(wpath, ans.witness if ans.witness.endswith("\n") else ans.witness + "\n")
            wrote = wpath
        elif os.path.exists(wpath):  # a stale witness from an earlier run of this instance
            try:
                os.unlink(wpath)
            except OSError:
                pass
        row = Row(inst.category, inst.onnx, inst.vnnlib, ans.prepare_time, result, ans.run_time)
        self.appender.log({"type": "row", "category": inst.category, "onnx": inst.onnx, "vnnlib": inst.vnnlib,
                           "timeout": inst.timeout, "result": result, "prepare_time": round(ans.prepare_time, 6),
                           "run_time": round(ans.run_time, 6), "verifier_seconds": ans.verifier_seconds,
                           "engine": ans.engine, "detail": ans.detail, "witness": wrote, "solver": self.solver.name,
                           **({"extra": ans.extra} if ans.extra else {})})
        self.appender.append(row)
        s = self.summary
        s.ran += 1
        s.counts[result] += 1
        s.run_time += ans.run_time
        s.prepare_time += ans.prepare_time
        if ans.verifier_seconds is not None:
            s.verifier_seconds += ans.verifier_seconds
            s.verifier_rows += 1
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix_str(postfix(s.counts), refresh=True)

    def session(self, argv: Optional[List[str]], jobs: int, scheduler: Optional[str]) -> None:
        s = self.summary
        self.appender.log({"type": "session", "argv": argv, "solver": self.solver.describe(), "jobs": jobs,
                           "scheduler": scheduler, "machine": machine(), "wall": round(s.wall, 6), "ran": s.ran,
                           "skipped": s.skipped, "run_time": round(s.run_time, 6),
                           "prepare_time": round(s.prepare_time, 6), "verifier_seconds": round(s.verifier_seconds, 6),
                           "interrupted": s.interrupted, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def close(self) -> None:
        self.appender.close()


def postfix(c: Counter) -> str:
    return f"sat={c['sat']} unsat={c['unsat']} unknown={c['unknown']} timeout={c['timeout']} error={c['error']}"


@dataclass
class _Task:
    inst: Instance
    gen: object
    workdir: str
    run: Optional[Running] = None


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _SignalGuard:
    """SIGINT/SIGTERM raise `Interrupted`, but never inside `critical()` (writing a row): there the
    signal is held and raised right after, so files are never left half-written by us."""

    def __init__(self):
        self.depth = 0
        self.pending: Optional[int] = None
        self.old = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self.old[s] = signal.signal(s, self._handler)
            except ValueError:  # not the main thread: leave the signals alone
                pass
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)
        self.old = {}

    def _handler(self, signum, frame):
        if self.depth:
            self.pending = signum
        else:
            raise Interrupted(signum)

    def critical(self):
        guard = self

        class _C:
            def __enter__(self_inner):
                guard.depth += 1

            def __exit__(self_inner, *exc):
                guard.depth -= 1
                if not guard.depth and guard.pending is not None and exc[0] is None:
                    signum, guard.pending = guard.pending, None
                    raise Interrupted(signum)

        return _C()


def run_bench(instances: List[Instance], solver: Solver, out: str, jobs: int = 1,
              memory_limit_mb: Optional[float] = None, progress: bool = True, scheduler: Optional[str] = None,
              argv: Optional[List[str]] = None, keep_workdirs: bool = False) -> BenchSummary:
    """Run every instance not yet in `out`; returns the summary (also logged as a session record)."""
    summary = BenchSummary(total=len(instances))
    done, notes = repair(out)
    summary.notes.extend(notes)
    todo = remaining(instances, done)
    summary.skipped = len(instances) - len(todo)
    wanted = Counter(i.key for i in instances)
    for r in done:
        if wanted[r.key] > 0:
            wanted[r.key] -= 1
            summary.counts[r.verdict] += 1
    bar = _progress_bar(len(instances), summary.skipped, summary.counts, progress)
    guard = _SignalGuard()
    rec = Recorder(out, solver, summary, bar, guard)
    t0 = time.monotonic()
    try:
        with guard:
            if scheduler:
                from .dask_runner import run_on_dask

                run_on_dask(todo, solver, rec, scheduler, memory_limit_mb)
            else:
                _run_local(todo, solver, rec, max(1, int(jobs)), memory_limit_mb, keep_workdirs)
    except Interrupted as e:
        summary.interrupted = str(e)
    except KeyboardInterrupt:
        summary.interrupted = "SIGINT"
    finally:
        summary.wall = time.monotonic() - t0
        if bar is not None:
            bar.close()
        try:
            rec.session(argv, jobs, scheduler)
        finally:
            rec.close()
    return summary


def _progress_bar(total: int, initial: int, counts: Counter, enabled: bool):
    if not enabled:
        return None
    try:
        import tqdm
    except ImportError:
        return None
    tqdm.tqdm.monitor_interval = 0  # no monitor thread
    bar = tqdm.tqdm(total=total, initial=initial, unit="inst", file=sys.stderr, dynamic_ncols=True,
                    desc="bench", leave=True)
    bar.set_postfix_str(postfix(counts), refresh=True)
    return bar


def _run_local(todo: List[Instance], solver: Solver, rec: Recorder, jobs: int,
               memory_limit_mb: Optional[float], keep_workdirs: bool) -> None:
    pending = deque(todo)
    active: List[_Task] = []
    skip_categories: Dict[str, str] = {}

    def finish(task: _Task, ans: Answer) -> None:
        if task in active:
            active.remove(task)
        if ans.skip_category:
            skip_categories.setdefault(task.inst.category, ans.detail)
        rec.record(task.inst, ans)
        if not keep_workdirs:
            shutil.rmtree(task.workdir, ignore_errors=True)

    def advance(task: _Task, result) -> None:
        """Send the last step's result into the plan; start its next step or record its answer."""
        while True:
            try:
                step = next(task.gen) if result is None else task.gen.send(result)
            except StopIteration as stop:
                ans = stop.value if isinstance(stop.value, Answer) else Answer("error", detail="solver returned no answer")
                finish(task, ans)
                return
            except Exception as e:  # a bug in a solver costs its row only
                finish(task, Answer("error", detail=f"runner: {type(e).__name__}: {e}"))
                return
            task.run = start(step, memory_limit_mb)
            if task.run.result is None:
                return
            result = task.run.result  # could not even start: hand the failure to the plan

    try:
        while pending or active:
            while pending and len(active) < jobs:
                inst = pending.popleft()
                if inst.category in skip_categories:
                    rec.record(inst, Answer("error", detail="skipped: prepare_instance.sh failed earlier in this "
                                                           f"category ({skip_categories[inst.category]})"))
                    continue
                workdir = tempfile.mkdtemp(prefix="vnncert-bench-")
                task = _Task(inst, solver.plan(inst, workdir), workdir)
                active.append(task)
                advance(task, None)
            if not active:
                continue
            wait_any([t.run for t in active], 1.0)
            for task in list(active):
                res = poll(task.run)
                if res is not None:
                    advance(task, res)
            if rec.progress is not None and rec.progress_live:
                rec.progress.refresh()  # keep the elapsed time moving between rows
    finally:
        for task in active:  # interrupted: stop what runs; those rows are simply not written
            if task.run is not None and task.run.popen is not None and task.run.result is None:
                kill_tree(task.run.popen.pid)
                try:
                    task.run.popen.wait(timeout=5)
                except Exception:
                    pass
            if not keep_workdirs:
                shutil.rmtree(task.workdir, ignore_errors=True)
