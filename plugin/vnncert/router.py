"""Mode -> sequence of engines under one deadline; stops at the first definite answer.

The router never upgrades `unknown`: the final outcome is the first `sat`/`unsat` an engine
returned, else `timeout` if the deadline passed, else the last `unknown` (with every engine's
detail kept).

Routing is a table (`MODES`): `--mode exact` is the falsifier in front of the exact engine, with
at most `AttackOptions.lead_seconds` / `lead_share` of the time (`LEADS`: a leading engine that
only helps, so it never counts as the mode's engine taking the network); `--relaxed-method lp`
puts the LP engine where the relaxed engine stands (`plan`).

The time plan (`SHARES`): an engine followed by another engine of the mode that can take the
network gets its share of the time left (the quick pass `QuickOptions.share`, the falsifier
`AttackOptions.share`, the relaxed engine `RelaxedOptions.share`), so that no engine's search uses
the whole deadline before the step that would have answered; an engine stopped by its share (not
by the deadline) counts as `unknown`, and the next one starts with everything that is left.

Unsupported operators, decided here and only here: each engine reads the network through one
converter of the op registry (`ENGINE_CONVERTER`: the layer graph `to_affine`, its piecewise-linear
part `to_milp` for the MILP and LP engines (no Sigmoid, Sin, Pow, ...: `OpHandler.
not_piecewise_linear`), the torch module `to_torch`, or none: ONNX Runtime, which loaded the model
already, runs every op it has).
An engine whose converter lacks an op of the network (the ops that depend on the input, after
constant folding: `network_ops`) is not run; nor is one that raises `UnsupportedOperator` while
converting (an op whose handler refuses this use of it; the MILP and LP engines meeting a product
of two variables in the layer graph). When no engine of the mode can take the
network: if every op it lacks has a converter elsewhere (Sigmoid in `--mode exact`: the MILP has no
encoding, the relaxed engine bounds it), the mode's leading falsifier still runs and the answer is
`unknown` (or its `sat`), saying which op kept the mode out and which modes take the network;
if some op has no converter at all (or the graph cannot be built), the answer is `error` naming
the op(s) and nothing runs. Otherwise the others run, and an answer that stays
`unknown`/`timeout` says in its detail, and in `stats["note"]` (printed on stderr without -v),
which op kept which engines out.
"""
from __future__ import annotations

import importlib
import time
from typing import Callable, Dict, List, Optional, Tuple

from .deadline import expired
from .errors import NetworkError, UnsupportedOperator
from .options import Options
from .results import Outcome, Verdict

# engine name -> (module, one-line description)
ENGINES: Dict[str, Tuple[str, str]] = {
    "quick_bounds": ("vnncert.engines.quick_bounds", "numpy CROWN on the layer graph, before any heavy import: unsat or unknown"),
    "attack": ("vnncert.engines.attack", "falsification: centre/corner/face/random sampling then PGD (Adam, restarts scaled to the net's cost), every hit replayed in ONNX Runtime"),
    "relaxed": ("vnncert.engines.relaxed", "linear bounds in float64 (crown: our CROWN over the layer graph; ibp / alpha-crown and graphs it cannot lower: auto_LiRPA), then input-split branch and bound (smooth activations and many inputs: splits of their input intervals); unsat, or sat only with a replayed witness"),
    "lp": ("vnncert.engines.lp", "the triangle LP relaxation of the MILP (HiGHS, safe weak-duality bounds): unsat, or sat only for an LP optimum that replays"),
    "exact": ("vnncert.engines.exact", "MILP in Pyomo solved by HiGHS over sound LP/CROWN bounds: sat with a replayed witness or unsat, complete given time"),
    "probabilistic": ("vnncert.engines.probabilistic", "randomized smoothing on ONNX Runtime: a claim about the smoothed classifier g (confidence 1-alpha), sat only for a replayed witness of f"),
}

# mode -> engines tried in order
MODES: Dict[str, List[str]] = {
    "auto": ["quick_bounds", "attack", "relaxed", "exact"],
    "exact": ["attack", "exact"],
    "falsify": ["attack"],
    "probabilistic": ["probabilistic"],
    "relaxed": ["relaxed"],
}

MODE_HELP: Dict[str, str] = {
    "auto": "what a competition run uses: a quick numpy CROWN pass (no torch import), the falsifier, then relaxed bounds with input-split branch and bound, then the exact MILP, under one deadline "
            "(each engine but the last stops at its share of the time left: a tenth, a quarter, a half) "
            "(an engine that does not support an operator of the network is skipped and the op named on stderr; "
            "in the other modes such an op is an error)",
    "falsify": "the falsifier alone: sat with a replayed witness, else unknown",
    "exact": "the falsifier (at most 10 s and a tenth of the time), then a complete MILP (Pyomo + HiGHS): sound IBP/CROWN/alpha-CROWN/LP bounds, one binary per unstable ReLU, one MILP per "
             "output disjunct (inputs with few free dims are split first, as in relaxed, boxes with few unstable ReLUs "
             "going to the MILP; networks with many unstable ReLUs go first to a branch and bound on ReLU splits "
             "over the layer graph with optimised alpha/beta bounds); sat with a witness replayed in ONNX Runtime, unsat from sound "
             "bounds or HiGHS's dual bound above a tolerance margin (docs/exact.md), else timeout",
    "relaxed": "linear bounds computed in float64 (--relaxed-method crown: our CROWN over the layer graph, auto_LiRPA's "
               "where the graph cannot be lowered; ibp|alpha-crown: auto_LiRPA's; or lp: the LP engine, the MILP's "
               "triangle LP relaxation, in its place); cases on which the network is affine go to the exact LP; for inputs "
               "with few free dims, input-split branch and bound (networks with smooth activations or products and more free dims: a "
               "branch and bound splitting the activations' input intervals): unsat when every box is refuted, sat only with a witness "
               "replayed in ONNX Runtime, else unknown",
    "probabilistic": "randomized smoothing (--sigma, --noise gaussian|laplace|uniform, --n0, --n, --alpha) on a local-robustness "
                     "property: certifies the smoothed classifier g at the box centre (a claim about g with confidence 1-alpha, "
                     "in the result file's comments and JSON); the verdict is sat only for a replayed witness of f, else unknown",
}


# mode -> engines that run in front of the mode's own engine to help it, with a time cap of their
# own (options -> seconds); they never count as the mode's engine taking the network
LEADS: Dict[str, Dict[str, Callable[[Options], Tuple[float, float]]]] = {
    "exact": {"attack": lambda o: (o.attack.lead_seconds, o.attack.lead_share)},
}

# engine -> the op-registry converter it reads the network through (every op of the network needs
# a handler implementing it), or None: the engine runs the model in ONNX Runtime only
ENGINE_CONVERTER: Dict[str, Optional[str]] = {
    "quick_bounds": "to_affine", "attack": None, "relaxed": "to_torch", "lp": "to_milp", "exact": "to_milp",
    "probabilistic": None,
}
CONVERTER_NAMES = {"to_affine": "the layer-graph lowering", "to_torch": "the torch converter",
                   "to_milp": "the MILP encoding: piecewise-linear ops only"}


# engine -> its share of the time left when a later engine of the mode can take the network
SHARES: Dict[str, Callable[[Options], float]] = {
    "quick_bounds": lambda o: o.quick.share,
    "attack": lambda o: o.attack.share,
    "relaxed": lambda o: o.relaxed.share,
}


def engine_check(name: str):
    module, _ = ENGINES[name]
    return importlib.import_module(module).check


def plan(options: Options) -> List[str]:
    """The engines to run, in order: the mode's row of MODES, with the LP engine in the relaxed
    engine's place under `--relaxed-method lp`."""
    lp = (options.relaxed.method or "").lower() == "lp"
    return ["lp" if (name == "relaxed" and lp) else name for name in MODES[options.mode]]


def network_ops(network) -> Tuple[List[str], Dict[str, str], Optional[str]]:
    """(op types of the nodes that depend on the input, after constant folding; op -> the name of
    its first node; why the graph could not be built, or None). An op outside the default domain
    makes the build fail with that op as the only one listed. (`run` asks once per query.)"""
    from .network.graph import graph_of

    try:
        g = graph_of(network)
    except UnsupportedOperator as e:
        return [e.op_type], {}, str(e)
    except NetworkError as e:
        return [], {}, str(e)
    first: Dict[str, str] = {}
    for n in g.nodes:
        first.setdefault(n.op_type, n.name)
    return g.op_types, first, None


def excluded_engines(ops, engines: List[str]) -> Dict[str, List[str]]:
    """engine of `engines` -> the ops of the network (`network_ops`) its converter lacks (only
    engines that lack some; an engine is listed with [] when the graph itself cannot be built)."""
    from .network.ops import supported_ops

    op_types, _, broken = ops
    out: Dict[str, List[str]] = {}
    for name in engines:
        conv = ENGINE_CONVERTER.get(name)
        if conv is None:
            continue
        have = set(supported_ops(conv))
        missing = [op for op in op_types if op not in have]
        if missing or broken:
            out[name] = missing
    return out


def converted_elsewhere(ops, excluded: Dict[str, List[str]], network=None) -> bool:
    """Every op that keeps an engine out has some converter of the registry (the graph was built),
    and an engine kept out by a handler refusing one use of its op (a product of two variables in
    the MILP lowering) leaves another converter that takes the network (tried on `network`)."""
    from .network.ops import supported_ops
    from .network.ops.base import CONVERTERS

    if ops[2]:
        return False
    have = set().union(*(supported_ops(c) for c in CONVERTERS))
    if not all(op in have for missing in excluded.values() for op in missing):
        return False
    refused = {ENGINE_CONVERTER.get(n) for n, missing in excluded.items() if not missing}
    if not refused:
        return True
    others = [c for c in CONVERTERS if c not in refused]
    return network is not None and any(_builds(network, c) for c in others)


def _builds(network, converter: str) -> bool:
    """The network goes through `converter` (the layer graph, or the torch module)."""
    try:
        if converter == "to_affine":
            network.layer_graph
        else:
            network.torch_module()
    except (UnsupportedOperator, NetworkError):
        return False
    return True


def modes_taking(ops, but: str) -> List[str]:
    """The modes (other than `but`) with an engine of their own whose converter has every op."""
    out = []
    for mode, names in MODES.items():
        if mode == but:
            continue
        own = [n for n in names if n not in LEADS.get(mode, {}) and ENGINE_CONVERTER.get(n)]
        if own and any(n not in excluded_engines(ops, [n]) for n in own):
            out.append(mode)
    return out


def _describe(ops, excluded: Dict[str, List[str]], reasons: Dict[str, str]) -> str:
    """`Erf (node 'n1'), Sin: not supported by quick_bounds, exact (the MILP layer-graph lowering)`,
    one clause per group of engines."""
    _, first, _ = ops
    groups: Dict[Tuple[Tuple[str, ...], str], List[str]] = {}
    for name, missing in excluded.items():
        groups.setdefault((tuple(missing), "" if missing else reasons.get(name, "")), []).append(name)
    parts = []
    for (missing, reason), names in groups.items():
        if not missing:  # the graph could not be built, or the engine raised while converting
            parts.append(f"{', '.join(names)}: {reason}")
            continue
        ops_text = ", ".join(f"{op} (node {first[op]!r})" if first.get(op) else op for op in missing)
        convs = sorted({CONVERTER_NAMES.get(ENGINE_CONVERTER.get(n) or "", "") for n in names} - {""})
        parts.append(f"unsupported ONNX operator{'s' if len(missing) > 1 else ''} {ops_text}: not supported by "
                     f"{', '.join(names)}" + (f" ({', '.join(convs)})" if convs else ""))
    return "; ".join(parts)


def run(network, spec, options: Options, deadline: float) -> Outcome:
    if options.mode not in MODES:
        raise ValueError(f"unknown mode {options.mode!r}")
    t0 = time.monotonic()
    if not spec.cases:
        return Outcome(Verdict.UNSAT, engine="spec", seconds=0.0,
                       detail="the property's unsafe set is empty: every disjunct contradicts itself")
    engines = plan(options)
    leads = LEADS.get(options.mode, {})
    details = []
    stats: dict = {}
    ops = network_ops(network) if any(ENGINE_CONVERTER.get(n) for n in engines) else ([], {}, None)
    excluded = excluded_engines(ops, engines)
    broken = ops[2]
    reasons: Dict[str, str] = {n: broken for n in excluded if broken and not excluded[n]}
    ran: List[str] = []  # the mode's own engines that ran (leads not counted)

    def refuse() -> Outcome:
        own = [n for n in engines if n not in leads]
        alone = f"the only engine of --mode {options.mode}" if len(own) == 1 else f"the engines of --mode {options.mode}"
        return Outcome(Verdict.ERROR, engine="router", seconds=time.monotonic() - t0,
                       detail=f"{_describe(ops, excluded, reasons)}, {alone}", stats={"excluded": excluded})

    def kept_out() -> Outcome:
        others = modes_taking(ops, options.mode)
        where = f" (--mode {' / '.join(others)} can)" if others else ""
        if any(ENGINE_CONVERTER.get(n) == "to_milp" and n == "exact" for n in excluded):
            where = f": no MILP encoding{where}"
        return Outcome(Verdict.UNKNOWN, engine="router", seconds=time.monotonic() - t0,
                       detail=f"{_describe(ops, excluded, reasons)}; no engine of --mode {options.mode} can take "
                              f"the network{where}", stats={"excluded": excluded})

    if all(n in excluded for n in engines if n not in leads) and not converted_elsewhere(ops, excluded, network):
        return refuse()  # an op no converter has: none runs, not even a lead
    last = Outcome(Verdict.UNKNOWN, engine="router", detail="no engine ran")
    for i, name in enumerate(engines):
        if name in excluded:
            continue
        if expired(deadline):
            last = Outcome(Verdict.TIMEOUT, engine=name, detail="deadline reached before this engine started")
            break
        until = deadline
        left = max(0.0, deadline - time.monotonic())
        if name in leads:
            cap, share = leads[name](options)
            until = min(deadline, time.monotonic() + min(cap, share * left))
        elif name in SHARES and any(n not in excluded and n not in leads for n in engines[i + 1:]):
            until = min(deadline, time.monotonic() + SHARES[name](options) * left)
        try:
            out = engine_check(name)(network, spec, until, options)
        except UnsupportedOperator as e:  # a handler that refuses this use of its op
            excluded[name] = []
            reasons[name] = str(e)
            continue
        if name not in leads:
            ran.append(name)
        if out.verdict == Verdict.TIMEOUT and until < deadline and not expired(deadline):
            out.verdict = Verdict.UNKNOWN  # the engine's own share (or a lead's cap), not the deadline
        details.append(f"{name}: {out.verdict.value}" + (f" ({out.detail})" if out.detail else ""))
        stats[name] = out.stats
        last = out
        if out.verdict in (Verdict.SAT, Verdict.UNSAT, Verdict.ERROR):
            break
    if excluded and not ran and last.verdict not in (Verdict.TIMEOUT, Verdict.SAT, Verdict.UNSAT, Verdict.ERROR):
        if not converted_elsewhere(ops, excluded, network):
            return refuse()
        out = kept_out()
        out.stats.update(stats)
        out.stats["note"] = out.detail
        if details:
            out.detail = f"{'; '.join(details)}; {out.detail}"
        return out
    if last.verdict == Verdict.UNKNOWN and expired(deadline):
        last = Outcome(Verdict.TIMEOUT, engine=last.engine, detail=last.detail,
                       certificate=last.certificate, stats=last.stats)
    last.seconds = time.monotonic() - t0
    last.stats = dict(stats)  # every engine's figures, by engine
    if len(details) > 1:
        last.detail = "; ".join(details)
    if excluded:
        last.stats["excluded"] = excluded
        if last.verdict in (Verdict.UNKNOWN, Verdict.TIMEOUT):
            ran_words = f"only {', '.join(ran + [n for n in engines if n in leads and n in stats])} ran" \
                if stats else "no other engine ran before the deadline"
            note = f"{_describe(ops, excluded, reasons)}; {ran_words}"
            last.stats["note"] = note
            last.detail = f"{last.detail}; {note}" if last.detail else note
    return last
