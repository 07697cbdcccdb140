"""The falsifier: sampling (centre, corners, faces, uniform) then PGD on each disjunct's rows.

PGD (`search.falsify.pgd_search`) gets `AttackOptions.pgd_seconds`, at most `pgd_time_share` of
the time left, over the cases whose samples came closest; its restarts scale to that time (tiny
nets get thousands). A thin adapter over `search.falsify`: every candidate is replayed through `results.sat_outcome`
(ONNX Runtime on the original model, the property's exact constants, zero tolerance). `sat` with
that witness, else `unknown` (or `timeout`). Never `unsat`.
"""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from ..deadline import expired, remaining
from ..errors import VnncertError
from ..options import Options
from ..results import Outcome, Verdict, sat_outcome
from ..search.falsify import FalsifyStats, max_rows, padded_spec, pgd_search, random_search

ENGINE = "attack"


def check(network, spec, deadline: float, options: Options) -> Outcome:
    t0 = time.monotonic()
    o = options.attack
    rng = np.random.default_rng(options.seed)
    stats = FalsifyStats()
    out, best, seeds = random_search(network, spec, deadline, o, rng, stats)
    if out is not None:
        out.seconds = time.monotonic() - t0
        out.stats = asdict(stats)
        out.detail = "sampling witness, replayed with ONNX Runtime on the original model"
        return out
    detail = f"no witness in {stats.samples} samples"
    if not expired(deadline) and o.pgd_steps > 0:
        try:
            _ = network.torch_module()
        except VnncertError as e:  # no torch conversion of an op of the network: sampling only
            detail += f"; PGD skipped ({e})"
        else:
            order = list(np.argsort(best)[: max(1, min(len(spec.cases), o.pgd_cases))])
            # disjuncts padded to one row count for batching
            out = pgd_search(network, padded_spec(spec, max(1, max_rows(spec))), deadline, o, rng, order, stats,
                             seconds=min(o.pgd_seconds, o.pgd_time_share * remaining(deadline)), seeds=seeds)
            if out is not None:
                # the replay in pgd_search used the padded spec; confirm on the original one
                confirmed = sat_outcome(network, spec, out.counterexample[0], engine=ENGINE, detail=out.detail)
                if confirmed is not None:
                    confirmed.seconds = time.monotonic() - t0
                    confirmed.stats = asdict(stats)
                    return confirmed
            detail += f"; no witness in {stats.pgd_steps} PGD steps"
    verdict = Verdict.TIMEOUT if expired(deadline) else Verdict.UNKNOWN
    return Outcome(verdict, engine=ENGINE, seconds=time.monotonic() - t0, detail=detail, stats=asdict(stats))
