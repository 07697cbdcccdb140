"""Mode -> sequence of engines under one deadline; stops at the first definite answer.

The router never upgrades `unknown`: the final outcome is the first `sat`/`unsat` an engine
returned, else `timeout` if the deadline passed, else the last `unknown` (with every engine's
detail kept).
"""
from __future__ import annotations

import importlib
import time
from typing import Dict, List, Tuple

from .deadline import expired
from .options import Options
from .results import Outcome, Verdict

# engine name -> (module, one-line description)
ENGINES: Dict[str, Tuple[str, str]] = {
    "quick_bounds": ("vnncert.engines.quick_bounds", "numpy CROWN on the layer graph, before any heavy import: unsat or unknown"),
    "attack": ("vnncert.engines.attack", "falsification: corner/centre/random sampling then PGD, every hit replayed in ONNX Runtime"),
    "relaxed": ("vnncert.engines.relaxed", "auto_LiRPA bounds (ibp / crown / alpha-crown, float64) then input-split branch and bound; unsat, or sat only with a replayed witness"),
    "exact": ("vnncert.engines.exact", "MILP in Pyomo solved by HiGHS over sound LP/CROWN bounds: sat with a replayed witness or unsat, complete given time"),
    "probabilistic": ("vnncert.engines.probabilistic", "randomized smoothing on ONNX Runtime: a claim about the smoothed classifier g (confidence 1-alpha), sat only for a replayed witness of f"),
}

# mode -> engines tried in order
MODES: Dict[str, List[str]] = {
    "auto": ["quick_bounds", "attack", "relaxed", "exact"],
    "exact": ["exact"],
    "falsify": ["attack"],
    "probabilistic": ["probabilistic"],
    "relaxed": ["relaxed"],
}

MODE_HELP: Dict[str, str] = {
    "auto": "what a competition run uses: a quick numpy CROWN pass (no torch import), the falsifier, then relaxed bounds with input-split branch and bound, then the exact MILP, under one deadline",
    "falsify": "the falsifier alone: sat with a replayed witness, else unknown",
    "exact": "complete MILP (Pyomo + HiGHS): sound IBP/CROWN (alpha-CROWN on ReLU chains)/LP bounds, one binary per unstable ReLU, one MILP per "
             "output disjunct (ReLU chains with many unstable ReLUs go first to a branch and bound on ReLU splits "
             "with optimised alpha/beta bounds); sat with a witness replayed in ONNX Runtime, unsat from sound "
             "bounds or HiGHS's dual bound above a tolerance margin (docs/exact.md), else timeout",
    "relaxed": "auto_LiRPA bounds (--relaxed-method ibp|crown|alpha-crown, computed in float64; or lp: the exact "
               "engine's triangle LP relaxation) and, for inputs with few "
               "free dims, input-split branch and bound: unsat when every box is refuted, sat only with a witness "
               "replayed in ONNX Runtime, else unknown",
    "probabilistic": "randomized smoothing (--sigma, --noise gaussian|laplace|uniform, --n0, --n, --alpha) on a local-robustness "
                     "property: certifies the smoothed classifier g at the box centre (a claim about g with confidence 1-alpha, "
                     "in the result file's comments and JSON); the verdict is sat only for a replayed witness of f, else unknown",
}


def engine_check(name: str):
    module, _ = ENGINES[name]
    return importlib.import_module(module).check


def run(network, spec, options: Options, deadline: float) -> Outcome:
    if options.mode not in MODES:
        raise ValueError(f"unknown mode {options.mode!r}")
    t0 = time.monotonic()
    if not spec.cases:
        return Outcome(Verdict.UNSAT, engine="spec", seconds=0.0,
                       detail="the property's unsafe set is empty: every disjunct contradicts itself")
    details = []
    stats = {}
    last = Outcome(Verdict.UNKNOWN, engine="router", detail="no engine ran")
    for name in MODES[options.mode]:
        if expired(deadline):
            last = Outcome(Verdict.TIMEOUT, engine=name, detail="deadline reached before this engine started")
            break
        out = engine_check(name)(network, spec, deadline, options)
        details.append(f"{name}: {out.verdict.value}" + (f" ({out.detail})" if out.detail else ""))
        stats[name] = out.stats
        last = out
        if out.verdict in (Verdict.SAT, Verdict.UNSAT, Verdict.ERROR):
            break
    if last.verdict == Verdict.UNKNOWN and expired(deadline):
        last = Outcome(Verdict.TIMEOUT, engine=last.engine, detail=last.detail,
                       certificate=last.certificate, stats=last.stats)
    last.seconds = time.monotonic() - t0
    last.stats = {**stats, **({} if not isinstance(last.stats, dict) else {})}
    if len(details) > 1:
        last.detail = "; ".join(details)
    return last
