"""Quick proof before any heavy import: CROWN in numpy on the network's layer graph.

One bound pass per case (`bounds.compute` with the numpy backend: interval and CROWN bounds of
every layer, the output layer's too, float64, widened by the margin rule). `unsat` when every
disjunct of every case is refuted by some row's bound (`bounds.margin.refutes`); otherwise
`unknown`, and the router goes on to the falsifier and the torch-based engines. It never answers
`sat`. It spares easy instances the ~1.5 s of importing torch. The sparse-row back-substitution
(`BoundsOptions.sparse_rows`) is left to the relaxed engine.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from .. import bounds
from ..deadline import expired
from ..errors import UnsupportedOperator, VnncertError
from ..options import Options
from ..results import Outcome, Verdict

ENGINE = "quick_bounds"


def check(network, spec, deadline: float, options: Options) -> Outcome:
    t0 = time.monotonic()

    def done(verdict, detail):
        return Outcome(verdict, engine=ENGINE, seconds=time.monotonic() - t0, detail=detail)

    if len(spec.cases) > options.quick.max_cases:
        return done(Verdict.UNKNOWN, f"skipped: {len(spec.cases)} cases")
    try:
        lg = network.layer_graph
    except UnsupportedOperator:  # the router records which op kept this engine out
        raise
    except VnncertError as e:  # a graph the lowering cannot take: the other engines may still manage
        return done(Verdict.UNKNOWN, f"no layer graph ({e})")
    # (the quick pass stays quick: no sparse-row back-substitution, which the relaxed engine does;
    # cgan 32_nCh_1 prop_3's box 2.2 s without it, 6.0 s with it)
    quick = dataclasses.replace(options.bounds, sparse_rows=0.0)
    crown = bounds.prepare(lg, "numpy", quick)
    for case in spec.cases:
        if expired(deadline):
            return done(Verdict.TIMEOUT, "deadline reached")
        reg = case.region
        if any(hs.rows == 0 for hs in case.output):  # a disjunct every output meets: only a witness decides
            return done(Verdict.UNKNOWN, "numpy CROWN does not refute every disjunct")
        if np.any(reg.lower > reg.upper):
            continue  # an empty box
        if not case.output:
            continue
        C = np.concatenate([hs.A for hs in case.output])
        b = np.concatenate([hs.b for hs in case.output])
        owner = np.concatenate([np.full(hs.rows, d) for d, hs in enumerate(case.output)])
        try:
            r = bounds.compute(crown, reg.lower[None], reg.upper[None], C[None], "crown", output_box=True,
                               options=quick, deadline=deadline)
        except bounds.Expired:
            return done(Verdict.TIMEOUT, "deadline reached during the numpy CROWN pass")
        refuted = bounds.refutes(r.lower[0], b)
        if not all(refuted[owner == d].any() for d in range(len(case.output))):
            return done(Verdict.UNKNOWN, "numpy CROWN does not refute every disjunct")
    return done(Verdict.UNSAT, f"numpy CROWN bounds refute every disjunct of all {len(spec.cases)} case(s) (float64, widened)")
