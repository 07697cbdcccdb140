"""The LP engine (`--relaxed-method lp`): the triangle LP relaxation of the MILP, case by case.

Per case (`milp.case.lp_case`): LP-tightened intermediate bounds (every LP value made safe by
weak duality), sound lower bounds of the output rows, the LP optima replayed as candidate
witnesses, then one LP per disjunct no row rules out (the MILP with its binaries relaxed, the
MILP's margin rule). `unsat` when every disjunct of every case is ruled out, `sat` only for an LP
optimum that replays in ONNX Runtime, else `unknown` (docs/exact.md §5). Where the network is
affine on the region the LP is the problem itself, so it decides.
"""
from __future__ import annotations

import time

from ..deadline import expired
from .. import bounds
from ..milp.case import CaseStats, lp_case
from ..options import Options
from ..results import Outcome, Verdict

ENGINE = "lp"


def check(network, spec, deadline: float, options: Options) -> Outcome:
    t0 = time.monotonic()
    # UnsupportedOperator (an op without a lowering, or one that is not piecewise linear: no MILP
    # encoding) goes to the router, which names the op
    lg = network.layer_graph.require_piecewise_linear()
    crown = bounds.prepare(lg, "numpy", options.bounds)
    total = CaseStats()

    def stats() -> dict:
        return {"relus": lg.n_relus, "cases": len(spec.cases), **total.summary()}

    details = []
    proven = 0
    timed_out = False
    for ci in range(len(spec.cases)):
        if expired(deadline):
            timed_out = True
            break
        cs = CaseStats()
        r = lp_case(network, spec, ci, lg, deadline, options, cs, ENGINE, crown)
        total.add(cs)
        if r.verdict == Verdict.SAT:
            out = r.outcome
            out.seconds = time.monotonic() - t0
            out.detail = "lp: " + out.detail
            out.stats = stats()
            return out
        if r.verdict == Verdict.UNSAT:
            proven += 1
        else:
            timed_out = timed_out or r.verdict == Verdict.TIMEOUT
            details.append(f"case {ci}: {r.detail}")
    seconds = time.monotonic() - t0
    if proven == len(spec.cases):
        return Outcome(Verdict.UNSAT, engine=ENGINE, seconds=seconds, stats=stats(),
                       detail=f"lp: all {len(spec.cases)} case(s) proven by sound bounds / LP relaxation")
    verdict = Verdict.TIMEOUT if (timed_out or expired(deadline)) else Verdict.UNKNOWN
    return Outcome(verdict, engine=ENGINE, seconds=seconds, stats=stats(), detail=("lp: " + "; ".join(details))[:2000])
