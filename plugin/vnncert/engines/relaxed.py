"""The relaxed engine (`--mode relaxed`): linear bounds, the LP where the network is affine, then
the input-split branch and bound (docs/relaxed.md).

1. For every case the rows of all its disjuncts `A y <= b` are one matrix C, and C f(x) is bounded
   from below over the input box, batched over cases (`bounds.compute`): `--relaxed-method crown`
   with our CROWN over the layer graph (torch, float64) when the graph lowers and fits
   `BoundsOptions.dense_max_elements`, else auto_LiRPA's; `ibp` and `alpha-crown` with auto_LiRPA.
   A disjunct is refuted on a box when one of its rows is (`bounds.margin.refutes`).
2. A case left open on whose region the network is affine (no ReLU or max at all; or, when the
   input has too many free dims to split, no ReLU unstable on its box) is a linear program: the
   LP of each disjunct decides it (`milp.case.lp_case`).
3. Cases with at most `InputSplitOptions.max_dims` free input dims go to the input-split branch
   and bound (`search.input_split`); on a graph with act / product layers (our CROWN) the cases
   with more free dims go to the smooth-activation split (`search.smooth_split`: act neurons'
   input intervals split).

`unsat` (every box refuted), `sat` (only with a replayed witness), else `unknown` / `timeout`.
The region's extra linear constraints `G x <= h`, when present, are over-approximated by the box,
which is sound for `unsat`.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from .. import bounds
from ..deadline import expired
from ..errors import UnsupportedOperator
from ..options import Options
from ..results import Outcome, Verdict, sat_outcome
from ..search.input_split import BoundRequest, CaseRows, InputSplit, InputSplitStats, split_cases

ENGINE = "relaxed"

# --relaxed-method -> the bounds method (crown: ours over the layer graph where it can, else auto_LiRPA's)
METHODS = {"ibp": "lirpa-ibp", "crown": "crown", "alpha-crown": "lirpa-alpha"}


@dataclass
class RelaxedStats:
    bounder: str = ""  # what bounded the first pass: our CROWN (torch) or auto_LiRPA (its conv mode)
    search_bounder: str = ""  # ... and the input splitting
    cases: int = 0
    cases_open_after_first_bound: int = 0
    lp_cases: int = 0  # open cases on whose region the network is affine, given to the LP
    lp_unsat_cases: int = 0
    forward_only: bool = False  # the input split bounded with forward-only intermediate bounds (`_forward_only_pays`)
    split: InputSplitStats = field(default_factory=InputSplitStats)
    smooth_split: "SmoothSplitStats" = field(default_factory=lambda: _smooth_stats())


def _smooth_stats():
    from ..search.smooth_split import SmoothSplitStats

    return SmoothSplitStats()


def ours(network, options: Options):
    """Our torch CROWN of the network's layer graph, or None (no layer graph, or too large a one)."""
    from ..bounds.graph import stored_size
    from ..errors import VnncertError

    try:
        lg = network.layer_graph
    except VnncertError:  # no affine lowering for an op: auto_LiRPA bounds it through the torch module
        return None
    if stored_size(lg) > options.bounds.dense_max_elements:
        return None
    return bounds.prepare(lg, "torch", options.bounds)


def check(network, spec, deadline: float, options: Options) -> Outcome:
    t0 = time.monotonic()
    stats = RelaxedStats()
    method = (options.relaxed.method or "crown").lower()
    if method not in METHODS:  # (lp is the router's: engines/lp.py)
        return Outcome(Verdict.ERROR, engine=ENGINE, detail=f"unknown relaxed method {method!r} ({', '.join(METHODS)})")

    def done(verdict, detail, out=None):
        o = out or Outcome(verdict, engine=ENGINE, detail=detail)
        o.seconds = time.monotonic() - t0
        o.stats = {**asdict(stats), **(o.stats or {})}
        return o

    graphs: dict = {}

    def graph_for(m: str):
        """(graph, bounds method) for a --relaxed-method, built once."""
        if m not in graphs:
            g = ours(network, options) if METHODS[m] == "crown" else None
            if g is not None:
                graphs[m] = (g, "crown", "CROWN (layer graph, torch)")
            else:
                if "lirpa" not in graphs:
                    lirpa = bounds.prepare_lirpa(network, options.bounds)
                    graphs["lirpa"] = (lirpa, None, f"auto_LiRPA ({lirpa.mode} mode)")
                lirpa, _, name = graphs["lirpa"]
                graphs[m] = (lirpa, "lirpa-" + m.replace("alpha-crown", "alpha"), name)
        return graphs[m]

    try:
        graph, bmethod, stats.bounder = graph_for(method)
    except UnsupportedOperator:  # the router records which op kept this engine out
        raise
    except Exception as e:  # an auto_LiRPA limitation: no proof, no answer
        return done(Verdict.UNKNOWN, f"cannot bound this network: {_first_line(e)}")
    if expired(deadline):
        return done(Verdict.TIMEOUT, "deadline reached while building the bounded module")

    # 1) one bound per case, batched over cases with the same row count (forward-only intermediate
    #    bounds when they pay: `_forward_only_pays`; the input split bounds the same way)
    all_rows = [CaseRows.of(c, spec.n_outputs) for c in spec.cases]
    try:
        known: dict = {}  # case -> (its rows' CROWN bound, its search's first result) from `_forward_only_pays`
        searcher = (lambda i: InputSplit(network, spec, i, graph, bmethod, options, deadline, stats.split, ENGINE)) \
            if method == "crown" else None
        stats.forward_only = bmethod == "crown" and _forward_only_pays(graph, spec, all_rows, options, deadline, known,
                                                                       searcher)
    except bounds.Expired:
        return done(Verdict.TIMEOUT, "deadline reached while bounding")
    open_cases: List[int] = []
    bounded = 0
    widest = graph.widest if isinstance(graph, bounds.Crown) else 1
    # with forward-only bounds (cheap scores and state), the first bounds are the searches' first ones
    seed = stats.forward_only and method == "crown"  # (forward_only implies bmethod "crown")
    first: dict = {}
    if stats.forward_only:
        known.clear()
    for i, (lb_i, seed_i) in known.items():  # (bounded once already: full CROWN, as below)
        bounded += 1
        if not all_rows[i].closed(all_rows[i].refuted(lb_i[None]))[0]:
            open_cases.append(i)
            if seed_i is not None:  # (its search's first request, answered)
                first[i] = seed_i
    for R, members in _group_by_rows(all_rows).items():
        members = [i for i in members if i not in known]
        # (boxes, 2 x width, width) back-substitution matrices: boxes per call capped (memory; 3000 cases of
        # a 128-wide net at once, as in nn4sys lindex_3000, would need 0.8 GB per matrix when all unstable);
        # with forward-only bounds, the (boxes, width, columns) forward functions instead
        per_box = widest * (options.bounds.forward_max_inputs + 2) if stats.forward_only else 2 * widest ** 2
        per_call = max(1, min(4096 // max(1, R), options.bounds.box_values // per_box))
        for chunk in _chunks(members, per_call):
            if expired(deadline):
                return done(Verdict.TIMEOUT, f"deadline reached after bounding {bounded} of {len(spec.cases)} cases")
            lo = np.stack([spec.cases[i].region.lower for i in chunk]).astype(np.float64)
            hi = np.stack([spec.cases[i].region.upper for i in chunk]).astype(np.float64)
            empty = (lo > hi).any(axis=1)
            C = np.stack([all_rows[i].C for i in chunk])
            try:
                if seed and not empty.any():  # each case's search's first request: its result kept for the search
                    reqs = [InputSplit(network, spec, i, graph, bmethod, options, deadline, stats.split, ENGINE,
                                       forward_only=True).root_request() for i in chunk]
                    results = BoundRequest.joint(reqs, graph, options.bounds, deadline)
                    lb = np.concatenate([r.lower for r in results])
                    first.update({i: (r, q.seconds) for i, r, q in zip(chunk, results, reqs)})
                else:
                    lb = bounds.compute(graph, np.minimum(lo, hi), np.maximum(lo, hi), C, bmethod, options=options.bounds,
                                        deadline=deadline, forward_only=stats.forward_only).lower
            except bounds.Expired:
                return done(Verdict.TIMEOUT, f"deadline reached while bounding (after {bounded} of {len(spec.cases)} cases)")
            except Exception as e:
                return done(Verdict.UNKNOWN, f"bounding failed ({method}): {_first_line(e)}")
            bounded += len(chunk)
            for j, i in enumerate(chunk):
                rows = all_rows[i]
                if not (empty[j] or rows.closed(rows.refuted(lb[j:j + 1]))[0]):
                    open_cases.append(i)
    stats.cases = len(spec.cases)
    stats.cases_open_after_first_bound = len(open_cases)
    if not open_cases:
        return done(Verdict.UNSAT, f"{method} bounds refute every disjunct of all {len(spec.cases)} case(s) (float64)")

    # 2) cases on whose region the network is affine (no ReLU or max at all, or none unstable there)
    #    are linear programs: the LP of each disjunct decides them, sat (replayed) or unsat
    free = max(_free_dims(spec.cases[i]) for i in open_cases)
    linear = _affine_cases(network, spec, open_cases, deadline, options,
                           everywhere_only=free <= options.input_split.max_dims)
    if linear:
        out, proven = _lp_cases(network, spec, linear, deadline, options, stats)
        if out is not None:
            return done(out.verdict, out.detail, out)
        open_cases = [i for i in open_cases if i not in set(proven)]
        if not open_cases:
            return done(Verdict.UNSAT, f"{method} bounds and, where the network is affine on the region, the exact LP "
                                       f"refute every disjunct of all {len(spec.cases)} case(s)")

    # 3) on a graph with act / product layers (our CROWN) and too many free input dims to split them:
    #    the smooth-activation split (search/smooth_split.py)
    if isinstance(graph, bounds.Crown) and graph.smooth and method == "crown" and \
            max(_free_dims(spec.cases[i]) for i in open_cases) > options.input_split.max_dims:
        return _smooth_split(network, spec, open_cases, graph, options, deadline, stats, done)

    # 3) input-split BaB on the cases left open, when the input has few free dims
    free = max(_free_dims(spec.cases[i]) for i in open_cases)
    if free > options.input_split.max_dims:
        return done(Verdict.UNKNOWN, f"{len(open_cases)} of {len(spec.cases)} case(s) not refuted by {method}; "
                                     f"{free} free input dims is too many for input splitting")
    bab = "crown" if method == "ibp" else method  # IBP alone hardly ever closes a box: CROWN splits
    try:
        graph, bmethod, stats.search_bounder = graph_for(bab)
    except UnsupportedOperator:
        raise
    except Exception as e:
        return done(Verdict.UNKNOWN, f"cannot bound this network: {_first_line(e)}")
    order = sorted(open_cases, key=lambda i: -np.prod(np.maximum(spec.cases[i].region.upper - spec.cases[i].region.lower, 0) + 1e-12))
    with _torch_threads(1):  # small batched matmuls: extra threads only add synchronisation
        out, status = split_cases(network, spec, order, graph, bmethod, options, deadline, stats.split, ENGINE,
                                  forward_only=stats.forward_only, first=first)
    if out is not None:
        return done(Verdict.SAT, "", out)
    if status == "timeout":
        return done(Verdict.TIMEOUT, f"deadline reached during input splitting ({stats.split.boxes} boxes bounded)")
    if status == "refuted":
        return done(Verdict.UNSAT, f"input splitting refuted every box ({stats.split.boxes} boxes bounded, "
                                   f"{bab}, float64)")
    return done(Verdict.UNKNOWN, "input splitting left boxes it could not refute or split further")


def _forward_only_pays(graph, spec, all_rows, options: Options, deadline: float, known: Optional[dict] = None,
                       searcher=None) -> bool:
    """Whether to bound with forward-only intermediate bounds (`bounds.compute(forward_only=True)`:
    no intermediate back-substitution where CROWN carries the forward pass, which runs either way,
    so never dearer): on a sample of the cases (`RelaxedOptions.forward_only_sample`, with the
    first case's row count) it must refute every row CROWN refutes, and leave the others in all
    at most `RelaxedOptions.forward_only_slack` further (b - lower) from refuted. nn4sys mscn: 6 %
    further, each box 5 times faster; cgan's generators: 3.4 times as far (so not there). `known`
    gets each sampled case's full CROWN bound, so it is not bounded again: case -> ((R,), None),
    or with `searcher` (case -> its `InputSplit`) and few enough free dims to split, the full bound
    is the search's first request (`InputSplit.root_request`) and its result (result, seconds) the
    second item (cgan 32_nCh_1 prop_3: the one case's box bounded twice, not four times)."""
    o = options.relaxed
    if o.forward_only_slack < 0 or not isinstance(graph, bounds.Crown) or not graph.forward_worthwhile or not spec.cases:
        return False
    R = all_rows[0].C.shape[0]
    sample = [i for i in range(len(spec.cases)) if all_rows[i].C.shape[0] == R][:max(1, o.forward_only_sample)]
    lo = np.stack([spec.cases[i].region.lower for i in sample]).astype(np.float64)
    hi = np.stack([spec.cases[i].region.upper for i in sample]).astype(np.float64)
    if (lo > hi).any():
        return False
    free = (hi - lo) > options.bounds.forward_narrow * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
    if not 0 < int(free.any(axis=0).sum()) <= options.bounds.forward_max_inputs:
        return False  # (no forward pass on these boxes)
    C = np.stack([all_rows[i].C for i in sample])
    b = np.stack([all_rows[i].b for i in sample])
    seeds = [None] * len(sample)
    if searcher is not None and known is not None and int(free.sum(axis=1).max()) <= options.input_split.max_dims:
        reqs = [searcher(i).root_request() for i in sample]
        results = BoundRequest.joint(reqs, graph, options.bounds, deadline)
        ld = np.concatenate([r.lower for r in results])
        seeds = [(r, q.seconds) for r, q in zip(results, reqs)]
    else:
        ld = bounds.compute(graph, lo, hi, C, "crown", options=options.bounds, deadline=deadline).lower
    if known is not None:
        known.update({i: (ld[j], seeds[j]) for j, i in enumerate(sample)})
    lf = bounds.compute(graph, lo, hi, C, "crown", options=options.bounds, deadline=deadline, forward_only=True).lower
    if (bounds.refutes(ld, b) & ~bounds.refutes(lf, b)).any():
        return False
    with np.errstate(invalid="ignore"):
        far_d = np.where(np.isfinite(b), np.maximum(b - ld, 0.0), 0.0).sum()
        far_f = np.where(np.isfinite(b), np.maximum(b - lf, 0.0), 0.0).sum()
    return bool(np.isfinite(far_f) and far_f <= (1.0 + o.forward_only_slack) * far_d)


def _smooth_split(network, spec, open_cases: List[int], graph, options: Options, deadline: float, stats, done) -> Outcome:
    """The smooth-activation split (`search.smooth_split`) on each open case, the largest box first."""
    from ..search.smooth_split import smooth_split_case

    st = stats.smooth_split
    verdicts = []
    with _torch_threads(1):
        for i in sorted(open_cases, key=lambda i: -np.prod(np.maximum(spec.cases[i].region.upper - spec.cases[i].region.lower, 0) + 1e-12)):
            out, status = smooth_split_case(network, spec, i, graph, options, deadline, st, ENGINE)
            if out is not None:
                return done(Verdict.SAT, "", out)
            if status == "timeout":
                return done(Verdict.TIMEOUT, f"deadline reached during the smooth-activation split ({st.domains} domains bounded)")
            if status != "refuted":
                return done(Verdict.UNKNOWN, f"the smooth-activation split left domains it could not refute or split further "
                                             f"({st.domains} domains bounded)")
            verdicts.append(status)
    return done(Verdict.UNSAT, f"the smooth-activation split refuted every domain ({st.domains} domains bounded: "
                               f"{st.act_splits} activation and {st.input_splits} input splits, float64)")


def _free_dims(case) -> int:
    return int((~case.region.fixed()).sum())


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _affine_cases(network, spec, cases: List[int], deadline: float, options: Options, everywhere_only: bool) -> List[int]:
    """The cases among `cases` on whose region the network is an affine map: all of them when its
    layer graph has no ReLU and no max; otherwise (unless `everywhere_only`) those on whose box
    numpy CROWN leaves no ReLU unstable, in a graph without max, act or product layers (at most
    `RelaxedOptions.max_affine_checks` cases are looked at, one CROWN pass each). [] when the
    network has no layer graph."""
    from ..errors import VnncertError

    try:
        lg = network.layer_graph
    except VnncertError:
        return []
    kinds = {L.kind for L in lg.layers}
    if kinds & {"max", "act", "product"}:  # (act, product: not piecewise linear, never affine)
        return []
    if "relu" not in kinds:
        return list(cases)
    if everywhere_only:
        return []
    crown = bounds.prepare(lg, "numpy", options.bounds)
    out = []
    for i in cases[:options.relaxed.max_affine_checks]:
        if expired(deadline):
            break
        reg = spec.cases[i].region
        res = crown.intermediate(reg.lower[None], reg.upper[None])
        if int(crown.unstable(res)[0]) == 0:
            out.append(i)
    return out


def _lp_cases(network, spec, cases: List[int], deadline: float, options: Options,
              stats: RelaxedStats) -> Tuple[Optional[Outcome], List[int]]:
    """Decide cases on whose region the network is affine with the LP (`milp.case.lp_case`: no
    binaries there, so the LP of each disjunct is the problem itself): (a sat Outcome, replayed,
    or None; the cases proven). A case the LP leaves open (optimum within the solver's margin of
    zero, or the deadline) is neither."""
    from ..milp.case import CaseStats, lp_case

    lg = network.layer_graph
    proven: List[int] = []
    for i in cases:
        if expired(deadline):
            break
        stats.lp_cases += 1
        r = lp_case(network, spec, i, lg, deadline, options, CaseStats(), ENGINE)
        if r.verdict == Verdict.SAT:
            out = sat_outcome(network, spec, r.outcome.counterexample[0], engine=ENGINE,
                              detail=f"the network is affine on case {i}'s region: {r.outcome.detail}")
            if out is not None:
                return out, proven
        elif r.verdict == Verdict.UNSAT:
            proven.append(i)
    stats.lp_unsat_cases = len(proven)
    return None, proven


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch

    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def _group_by_rows(all_rows: List[CaseRows]) -> dict:
    groups: dict = {}
    for i, r in enumerate(all_rows):
        groups.setdefault(r.C.shape[0], []).append(i)
    return groups


def _chunks(xs: list, n: int):
    for i in range(0, len(xs), n):
        yield xs[i:i + n]
