"""Quick proof before any heavy import: CROWN in numpy on the network's layer graph.

One bound pass per case (bounds/region.py: interval and CROWN bounds with outward
widening and a relative slack, float64). `unsat` when every disjunct of every case is ruled out
by some row's sound lower bound (> 0, or >= 0 for a strict row); otherwise `unknown`, and the
router goes on to the falsifier and the torch-based engines. It never answers `sat`. It spares
easy instances the ~1.5 s of importing torch.
"""
from __future__ import annotations

import time

from ..deadline import expired
from ..errors import UnsupportedOperator, VnncertError
from ..options import Options
from ..results import Outcome, Verdict

MAX_CASES = 64  # beyond this the batched engines are faster than one numpy pass per case


def check(network, spec, deadline: float, options: Options) -> Outcome:
    from ..bounds.region import compute_bounds, disjunct_bounds
    from ..network.layers import layer_graph

    t0 = time.monotonic()

    def done(verdict, detail):
        return Outcome(verdict, engine="quick_bounds", seconds=time.monotonic() - t0, detail=detail)

    if len(spec.cases) > MAX_CASES:
        return done(Verdict.UNKNOWN, f"skipped: {len(spec.cases)} cases")
    try:
        lg = layer_graph(network)
    except UnsupportedOperator:  # the router records which op kept this engine out
        raise
    except VnncertError as e:  # a graph the lowering cannot take: the other engines may still manage
        return done(Verdict.UNKNOWN, f"no layer graph ({e})")
    for case in spec.cases:
        if expired(deadline):
            return done(Verdict.TIMEOUT, "deadline reached")
        bounds = compute_bounds(lg, case.region, deadline, method="crown", encode=False)
        _, proven = disjunct_bounds(lg, case, bounds, deadline)
        if not all(proven):
            return done(Verdict.UNKNOWN, "numpy CROWN does not refute every disjunct")
    return done(Verdict.UNSAT, f"numpy CROWN bounds refute every disjunct of all {len(spec.cases)} case(s) (float64, widened)")
