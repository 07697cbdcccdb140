"""The small Python API: `verify`, `load_spec`, `load_network`, `Outcome`."""
from __future__ import annotations

import math
import time
from typing import Optional

from .deadline import remaining
from .errors import VnncertError
from .options import Options, apply_threads, check_options
from .results import Outcome, Verdict


def solve(model: str, prop: str, options: Options, deadline: float) -> Outcome:
    """Load, parse and route one query in this process. Bad input becomes Outcome(error)."""
    from . import router
    from .network import load_network
    from .spec import load_spec

    t0 = time.monotonic()
    try:
        apply_threads(options.threads)
        network = load_network(model, threads=options.threads)
        spec = load_spec(prop, network=network)
        if remaining(deadline) <= 0:
            return Outcome(Verdict.TIMEOUT, engine="load", seconds=time.monotonic() - t0, detail="deadline reached while loading")
        out = router.run(network, spec, options, deadline)
    except VnncertError as e:
        return Outcome(Verdict.ERROR, engine="load", seconds=time.monotonic() - t0, detail=str(e))
    out.stats = {**(out.stats or {}), "load_seconds": round(time.monotonic() - t0 - out.seconds, 6)}
    return out


def verify(model: str, prop: str, mode: str = "auto", timeout: Optional[float] = None, seed: int = 0,
           threads: int = 0, isolate: bool = False, **option_fields) -> Outcome:
    """Answer one VNN-LIB query on one ONNX model.

    `timeout` counts from this call. With isolate=True the work runs in a supervised child
    process that is killed at the deadline (what the CLI does; the child's stdout then goes to
    stderr); otherwise engines stop cooperatively at the deadline. Bad input, including arguments
    the command line would refuse (`options.check_arguments`), gives Outcome(verdict=error, detail=message).
    """
    try:
        options = Options(mode=mode, seed=seed, threads=threads, **option_fields)
        check_options(options, timeout)
    except (TypeError, ValueError) as e:  # the same checks as the command line's
        return Outcome(Verdict.ERROR, engine="api", detail=str(e))
    deadline = time.monotonic() + (timeout if timeout is not None else math.inf)
    if not isolate:
        return solve(model, prop, options, deadline)
    from .supervise import run_supervised

    engine_deadline = deadline - ENGINE_MARGIN if timeout is not None else deadline
    res = run_supervised(lambda: solve(model, prop, options, engine_deadline), deadline, child_stdout="stderr")
    return outcome_of(res, timeout)


ENGINE_MARGIN = 0.3  # seconds the engines stop before the hard deadline, to answer cleanly


def outcome_of(res, timeout) -> Outcome:
    from .supervise import ChildDied, ChildRaised, TimedOut

    if isinstance(res, Outcome):
        return res
    if isinstance(res, TimedOut):
        return Outcome(Verdict.TIMEOUT, engine="supervisor", seconds=res.seconds,
                       detail=f"killed at the {timeout} s deadline")
    if isinstance(res, ChildDied):
        return Outcome(Verdict.ERROR, engine="supervisor", detail=res.message)
    if isinstance(res, ChildRaised):
        e = res.exc
        return Outcome(Verdict.ERROR, engine="supervisor", detail=f"internal error: {type(e).__name__}: {e}",
                       stats={"traceback": res.trace})
    return Outcome(Verdict.ERROR, engine="supervisor", detail=f"unexpected result {res!r}")
