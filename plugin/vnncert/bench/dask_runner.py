"""`vnncert bench --scheduler tcp://HOST:PORT`: the same rows, computed on a Dask distributed cluster.

Each instance is one Dask task. The task runs the solver's plan on the worker exactly as the
local runner does (`solvers.drive`: one OS process per step under the instance's limit, the
process tree killed at the limit), in a temporary folder on the worker, and sends back only the
`Answer` (result word, times, witness text). The client, i.e. this `vnncert bench`, writes each
answer as it arrives: witness file, log record, CSV row (fsync). Rows therefore land in
completion order, and resuming works as for local runs: finished rows are skipped.

Requirements on the cluster: vnncert installed in the workers' Python (the same version), and
the benchmark files readable on every worker under the same absolute paths (a shared file
system), since tasks carry paths, not file contents. Start workers with one thread each per
instance you want them to run at once (`dask worker tcp://HOST:PORT --nthreads 1 --nworkers K`);
each instance uses `--threads` cores.

A worker that dies while running a task (the machine's OOM killer, say) makes Dask retry the
task elsewhere (`allowed_failures`); when Dask gives up, the row is `error`.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Dict, List, Optional

from .instances import Instance
from .solvers import Answer, Solver, drive


class DaskUnavailable(RuntimeError):
    pass


def run_instance_task(solver: Solver, inst: Instance, memory_limit_mb: Optional[float]) -> Answer:
    """What a worker runs for one instance."""
    workdir = tempfile.mkdtemp(prefix="vnncert-bench-")
    try:
        ans = drive(solver, inst, workdir, memory_limit_mb)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ans.extra = {**(ans.extra or {}), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    return ans


def run_on_dask(todo: List[Instance], solver: Solver, recorder, scheduler: str,
                memory_limit_mb: Optional[float]) -> None:
    """Submit every instance, record answers as they complete. The connect timeout is Dask's
    `distributed.comm.timeouts.connect` (30 s; env DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT)."""
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover - dask[distributed] is a dependency
        raise DaskUnavailable("--scheduler needs the 'distributed' package (pip install 'dask[distributed]')") from None
    try:
        client = Client(scheduler)
    except (OSError, TimeoutError, ValueError) as e:
        raise DaskUnavailable(f"cannot connect to the Dask scheduler {scheduler}: {e}") from None
    futures: Dict[object, Instance] = {}
    try:
        for n, inst in enumerate(todo):
            f = client.submit(run_instance_task, solver, inst, memory_limit_mb, pure=False,
                              key=f"vnncert-bench-{n}-{os.getpid()}-{abs(hash(inst.key))}")
            futures[f] = inst
        for f in as_completed(list(futures)):
            inst = futures.pop(f)
            try:
                ans = f.result()
            except Exception as e:  # KilledWorker, a worker without vnncert, ...
                ans = Answer("error", detail=f"dask: {type(e).__name__}: {e}"[:400])
            if not isinstance(ans, Answer):
                ans = Answer("error", detail=f"dask: task returned {type(ans).__name__}")
            recorder.record(inst, ans)
    finally:
        if futures:
            try:
                client.cancel(list(futures), force=True)
            except Exception:
                pass
        client.close()
