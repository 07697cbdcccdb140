"""Mode -> sequence of engines under one deadline; stops at the first definite answer.

The router never upgrades `unknown`: the final outcome is the first `sat`/`unsat` an engine
returned, else `timeout` if the deadline passed, else the last `unknown` (with every engine's
detail kept).

Unsupported operators, decided here and only here: each engine reads the network through one
converter of the op registry (`ENGINE_CONVERTER`: the MILP's layer graph `to_affine`, the torch
module `to_torch`, or none: ONNX Runtime, which loaded the model already, runs every op it has).
An engine whose converter lacks an op of the network (the ops that depend on the input, after
constant folding: `network_ops`) is not run; nor is one that raises `UnsupportedOperator` while
converting (an op whose handler refuses this use of it). When no engine of the mode can take the
network the answer is `error` naming the op(s); otherwise the others run, and an answer that
stays `unknown`/`timeout` says in its detail, and in `stats["note"]` (printed on stderr without
-v), which op kept which engines out.
"""
from __future__ import annotations

import importlib
import time
from typing import Dict, List, Optional, Tuple

from .deadline import expired
from .errors import NetworkError, UnsupportedOperator
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
    "auto": "what a competition run uses: a quick numpy CROWN pass (no torch import), the falsifier, then relaxed bounds with input-split branch and bound, then the exact MILP, under one deadline "
            "(an engine that does not support an operator of the network is skipped and the op named on stderr; "
            "in the other modes such an op is an error)",
    "falsify": "the falsifier alone: sat with a replayed witness, else unknown",
    "exact": "complete MILP (Pyomo + HiGHS): sound IBP/CROWN (alpha-CROWN on ReLU chains)/LP bounds, one binary per unstable ReLU, one MILP per "
             "output disjunct (ReLU chains with many unstable ReLUs go first to a branch and bound on ReLU splits "
             "with optimised alpha/beta bounds); sat with a witness replayed in ONNX Runtime, unsat from sound "
             "bounds or HiGHS's dual bound above a tolerance margin (docs/exact.md), else timeout",
    "relaxed": "auto_LiRPA bounds (--relaxed-method ibp|crown|alpha-crown, computed in float64; or lp: the exact "
               "engine's triangle LP relaxation); cases on which the network is affine go to the exact LP; for inputs "
               "with few free dims, input-split branch and bound: unsat when every box is refuted, sat only with a witness "
               "replayed in ONNX Runtime, else unknown",
    "probabilistic": "randomized smoothing (--sigma, --noise gaussian|laplace|uniform, --n0, --n, --alpha) on a local-robustness "
                     "property: certifies the smoothed classifier g at the box centre (a claim about g with confidence 1-alpha, "
                     "in the result file's comments and JSON); the verdict is sat only for a replayed witness of f, else unknown",
}


# engine -> the op-registry converter it reads the network through (every op of the network needs
# a handler implementing it), or None: the engine runs the model in ONNX Runtime only
ENGINE_CONVERTER: Dict[str, Optional[str]] = {
    "quick_bounds": "to_affine", "attack": None, "relaxed": "to_torch", "exact": "to_affine", "probabilistic": None,
}
CONVERTER_NAMES = {"to_affine": "the MILP layer-graph lowering", "to_torch": "the torch converter"}


def engine_check(name: str):
    module, _ = ENGINES[name]
    return importlib.import_module(module).check


def engine_converter(name: str, options: Options) -> Optional[str]:
    """The converter engine `name` needs under these options (see ENGINE_CONVERTER)."""
    if name == "relaxed" and (options.relaxed.method or "").lower() == "lp":
        return "to_affine"  # the exact engine's LP relaxation
    return ENGINE_CONVERTER.get(name)


def network_ops(network) -> Tuple[List[str], Dict[str, str], Optional[str]]:
    """(op types of the nodes that depend on the input, after constant folding; op -> the name of
    its first node; why the graph could not be built, or None). An op outside the default domain
    makes the build fail with that op as the only one listed."""
    from .network.graph import graph_of

    cached = network.__dict__.get("_router_ops")
    if cached is not None:
        return cached
    try:
        g = graph_of(network)
    except UnsupportedOperator as e:
        res: Tuple[List[str], Dict[str, str], Optional[str]] = ([e.op_type], {}, str(e))
    except NetworkError as e:
        res = ([], {}, str(e))
    else:
        first: Dict[str, str] = {}
        for n in g.nodes:
            first.setdefault(n.op_type, n.name)
        res = (g.op_types, first, None)
    network.__dict__["_router_ops"] = res
    return res


def excluded_engines(network, options: Options) -> Dict[str, List[str]]:
    """engine of the mode -> the ops of the network its converter lacks (only engines that lack
    some; an engine is listed with [] when the graph itself cannot be built)."""
    from .network.ops import supported_ops

    need = {n: engine_converter(n, options) for n in MODES[options.mode]}
    if not any(need.values()):
        return {}  # every engine runs on ONNX Runtime: no graph to build (falsify, probabilistic)
    ops, _, broken = network_ops(network)
    out: Dict[str, List[str]] = {}
    for name, conv in need.items():
        if conv is None:
            continue
        have = set(supported_ops(conv))
        missing = [op for op in ops if op not in have]
        if missing or broken:
            out[name] = missing
    return out


def _describe(network, excluded: Dict[str, List[str]], reasons: Dict[str, str], options: Options) -> str:
    """`Erf (node 'n1'), Sin: not supported by quick_bounds, exact (the MILP layer-graph lowering)`,
    one clause per group of engines."""
    _, first, _ = network_ops(network)
    groups: Dict[Tuple[Tuple[str, ...], str], List[str]] = {}
    for name, missing in excluded.items():
        groups.setdefault((tuple(missing), "" if missing else reasons.get(name, "")), []).append(name)
    parts = []
    for (missing, reason), names in groups.items():
        if not missing:  # the graph could not be built, or the engine raised while converting
            parts.append(f"{', '.join(names)}: {reason}")
            continue
        ops = ", ".join(f"{op} (node {first[op]!r})" if first.get(op) else op for op in missing)
        convs = sorted({CONVERTER_NAMES.get(engine_converter(n, options) or "", "") for n in names} - {""})
        parts.append(f"unsupported ONNX operator{'s' if len(missing) > 1 else ''} {ops}: not supported by "
                     f"{', '.join(names)}" + (f" ({', '.join(convs)})" if convs else ""))
    return "; ".join(parts)


def run(network, spec, options: Options, deadline: float) -> Outcome:
    if options.mode not in MODES:
        raise ValueError(f"unknown mode {options.mode!r}")
    t0 = time.monotonic()
    if not spec.cases:
        return Outcome(Verdict.UNSAT, engine="spec", seconds=0.0,
                       detail="the property's unsafe set is empty: every disjunct contradicts itself")
    details = []
    stats: dict = {}
    excluded = excluded_engines(network, options)
    _, _, broken = network_ops(network) if excluded else ([], {}, None)
    reasons: Dict[str, str] = {n: broken for n in excluded if broken and not excluded[n]}
    ran: List[str] = []
    last = Outcome(Verdict.UNKNOWN, engine="router", detail="no engine ran")
    for name in MODES[options.mode]:
        if name in excluded:
            continue
        if expired(deadline):
            last = Outcome(Verdict.TIMEOUT, engine=name, detail="deadline reached before this engine started")
            break
        try:
            out = engine_check(name)(network, spec, deadline, options)
        except UnsupportedOperator as e:  # a handler that refuses this use of its op
            excluded[name] = []
            reasons[name] = str(e)
            continue
        ran.append(name)
        details.append(f"{name}: {out.verdict.value}" + (f" ({out.detail})" if out.detail else ""))
        stats[name] = out.stats
        last = out
        if out.verdict in (Verdict.SAT, Verdict.UNSAT, Verdict.ERROR):
            break
    if excluded and not ran and last.verdict != Verdict.TIMEOUT:
        which = MODES[options.mode]
        alone = f"the only engine of --mode {options.mode}" if len(which) == 1 else f"the engines of --mode {options.mode}"
        return Outcome(Verdict.ERROR, engine="router", seconds=time.monotonic() - t0,
                       detail=f"{_describe(network, excluded, reasons, options)}, {alone}",
                       stats={"excluded": excluded})
    if last.verdict == Verdict.UNKNOWN and expired(deadline):
        last = Outcome(Verdict.TIMEOUT, engine=last.engine, detail=last.detail,
                       certificate=last.certificate, stats=last.stats)
    last.seconds = time.monotonic() - t0
    last.stats = {**stats, **({} if not isinstance(last.stats, dict) else {})}
    if len(details) > 1:
        last.detail = "; ".join(details)
    if excluded:
        last.stats["excluded"] = excluded
        if last.verdict in (Verdict.UNKNOWN, Verdict.TIMEOUT):
            ran_words = f"only {', '.join(ran)} ran" if ran else "no other engine ran before the deadline"
            note = f"{_describe(network, excluded, reasons, options)}; {ran_words}"
            last.stats["note"] = note
            last.detail = f"{last.detail}; {note}" if last.detail else note
    return last
