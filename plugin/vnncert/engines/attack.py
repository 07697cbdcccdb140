"""The falsifier: sampling (centre, corners, uniform) then PGD on each disjunct's violation margin.

A thin adapter over `search.falsify`: every candidate is replayed through `results.sat_outcome`
(ONNX Runtime on the original model, the property's exact constants, zero tolerance). `sat` with
that witness, else `unknown` (or `timeout`). Never `unsat`.
"""
from __future__ import annotations

import time

import numpy as np

from ..deadline import expired
from ..options import Options
from ..results import Outcome, Verdict, sat_outcome
from ..search.falsify import max_rows, padded_spec, pgd_search, random_search

ENGINE = "attack"


def check(network, spec, deadline: float, options: Options) -> Outcome:
    t0 = time.monotonic()
    o = options.attack
    rng = np.random.default_rng(options.seed)
    stats: dict = {}
    out, best = random_search(network, spec, deadline, o, rng, stats)
    if out is not None:
        out.seconds = time.monotonic() - t0
        out.stats = stats
        out.detail = "sampling witness, replayed with ONNX Runtime on the original model"
        return out
    detail = f"no witness in {stats.get('samples', 0)} samples"
    if not expired(deadline) and o.pgd_steps > 0:
        try:
            _ = network.torch_module()
        except Exception as e:  # converter missing or unsupported op: sampling only
            detail += f"; PGD skipped ({e})"
        else:
            order = list(np.argsort(best)[: max(1, min(len(spec.cases), o.pgd_cases))])
            # disjuncts padded to one row count for batching
            out = pgd_search(network, padded_spec(spec, max(1, max_rows(spec))), deadline, o, rng, order, stats)
            if out is not None:
                # the replay in pgd_search used the padded spec; confirm on the original one
                confirmed = sat_outcome(network, spec, out.counterexample[0], engine=ENGINE, detail=out.detail)
                if confirmed is not None:
                    confirmed.seconds = time.monotonic() - t0
                    confirmed.stats = stats
                    return confirmed
            detail += f"; no witness in {stats.get('pgd_steps', 0)} PGD steps"
    verdict = Verdict.TIMEOUT if expired(deadline) else Verdict.UNKNOWN
    return Outcome(verdict, engine=ENGINE, seconds=time.monotonic() - t0, detail=detail, stats=stats)
