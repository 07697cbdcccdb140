"""The exact engine: a mixed-integer program per input region, modelled in Pyomo, solved by HiGHS.

Pipeline for one case (input region + output disjunction), see docs/exact.md:

0. a case with few free input dims (at most `InputSplitOptions.max_dims`) is first split into
   boxes (`search.input_split`, the relaxed engine's search): a box with few unstable ReLUs
   left becomes a leaf, decided by steps 1-5 on that box;
1. bounds (`bounds.region.compute_bounds`): IBP, CROWN, alpha-CROWN
   (`bounds.alpha_beta.optimised_rows`), then LP tightening of unstable ReLUs; every bound is
   sound (LP values are turned into weak-duality bounds, never taken on trust). A case without
   extra input constraints gets IBP, CROWN and alpha-CROWN on every layer first, and when that
   leaves at least `ExactOptions.bab_min_unstable` unstable ReLUs (step 3's branch and bound) no
   LPs;
2. each disjunct's rows get sound lower bounds (CROWN and the LP); a disjunct one of whose rows is
   refuted (`bounds.margin.refutes`) is impossible (with binaries relaxed this is the LP engine,
   engines/lp.py);
3. with at least `bab_min_unstable` unstable ReLUs left, on a graph where some ReLU reads a layer
   after another nonlinear layer (`GraphView.deep`; one layer of ReLUs over the input's affine maps
   has exact pre-activation bounds, so the MILP's root LP is the triangle relaxation the branch and
   bound would repeat node by node: such graphs go to step 4 unless `bab_shallow`), the remaining
   disjuncts first go to the ReLU-split branch and bound over the layer graph (`search.activation_split.SplitBaB`, on the
   same bounds); where some ReLU reads a layer after another ReLU that first search is short
   (`bab_quick_share`), then it goes on (`bab_continue_progress`) or the intermediate bounds are
   tightened by branch and bound over the earlier layers' ReLUs
   (`search.activation_split.tighten_graph`) and the open disjuncts are searched again with the
   rest of the time; with `bab_cuts` that search gets `cut_after_share` of it, then SCIP's root
   cuts of each open disjunct's MILP over the same bounds (`milp.cuts`) enter a new search; a
   disjunct it gives up on (a fully split domain it cannot close) goes on to step 4's MILP with
   the time left;
4. the remaining disjuncts, most promising first, each become one MILP in the same Pyomo model
   (`milp.case.milp_disjuncts`): min t s.t. t >= a_i . y - b_i for the disjunct's rows, over the
   network's encoding with one binary per unstable ReLU, solved by HiGHS with the time limit of
   the shared deadline and a cutoff, stopping at the first incumbent below zero;
5. an incumbent below zero gives x; `results.sat_outcome` replays it with ONNX Runtime (zero
   tolerance). A candidate that does not replay is never reported: the disjunct is re-solved
   asking for a deeper violation, then given up as unknown;
6. `unsat` only when every disjunct of every case is proven: by a sound bound (step 2), by the
   branch and bound (every domain closed by a sound bound), or by HiGHS's dual bound (or its
   cutoff-infeasibility) above `milp.solver.unsat_margin`, which covers the solver's tolerances.

`--mode exact` runs the falsifier in front of this engine (the router's table), not this engine.
"""
from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import bounds
from ..bounds.graph import GraphView, stored_size
from ..deadline import expired
from ..milp.case import CaseResult, CaseStats, bound_case, milp_disjuncts, record_bounds, region_empty, try_points
from ..options import Options
from ..results import Outcome, Verdict, sat_outcome
from ..search.input_split import InputSplitStats, split_case

ENGINE = "exact"


@dataclass
class ExactStats:
    relus: int = 0
    cases: int = 0  # cases (and input-split leaves) decided by bounds + BaB + MILP
    case: CaseStats = field(default_factory=CaseStats)  # their sum
    bab: "ActivationSplitStats" = None  # made when a ReLU-split search runs (it imports torch)
    split: InputSplitStats = field(default_factory=InputSplitStats)

    def summary(self) -> dict:
        return {"relus": self.relus, "cases": self.cases, **self.case.summary(),
                **(self.bab.summary() if self.bab is not None else {}), "split": asdict(self.split)}


class _Graph:
    """What the engine reads of the network's layer graph: the numpy CROWN (bounds of one region),
    the graph view (alpha-CROWN and the ReLU-split search; None beyond the size limit), and for
    input splitting the torch CROWN when its copy fits (else the numpy one)."""

    def __init__(self, lg, options: Options):
        self.lg = lg
        self.options = options
        self.crown = bounds.prepare(lg, "numpy", options.bounds)
        self.view = GraphView.of(lg, options.bounds.dense_max_elements)

    def pre(self, bnd) -> dict:
        """The bounds (l, u) of the affine layers a ReLU or max node reads, from `bounds.region.Bounds`."""
        return {L.source: bnd.layers[L.source] for L in self.lg.layers if L.kind in ("relu", "max")}

    @functools.cached_property
    def split(self):
        fits = stored_size(self.lg) <= self.options.bounds.dense_max_elements
        return bounds.prepare(self.lg, "torch", self.options.bounds) if fits else self.crown


def check(network, spec, deadline: float, options: Options) -> Outcome:
    """Complete: sat (replayed witness) or unsat (every disjunct proven), else timeout/unknown."""
    t0 = time.monotonic()
    stats = ExactStats()
    # UnsupportedOperator (an op without a lowering, or one that is not piecewise linear: no MILP
    # encoding) goes to the router, which names the op
    lg = network.layer_graph.require_piecewise_linear()
    stats.relus = lg.n_relus
    g = _Graph(lg, options)
    verdicts = []
    details = []
    for ci in range(len(spec.cases)):
        if expired(deadline):
            verdicts.append(Verdict.TIMEOUT)
            break
        reg = spec.cases[ci].region
        free = int((~reg.fixed()).sum())
        if 0 < free <= options.input_split.max_dims and not region_empty(reg):
            r = _split(network, spec, ci, g, deadline, options, stats)
        else:
            r = check_case(network, spec, ci, g, deadline, options, stats)
        if r.verdict == Verdict.SAT:
            out = r.outcome
            out.engine = ENGINE
            out.seconds = time.monotonic() - t0
            out.stats = stats.summary()
            return out
        verdicts.append(r.verdict)
        if r.verdict != Verdict.UNSAT:
            details.append(f"case {ci}: {r.detail}")
    seconds = time.monotonic() - t0
    summary = stats.summary()
    if len(verdicts) == len(spec.cases) and all(v == Verdict.UNSAT for v in verdicts):
        how = "ReLU-split BaB / MILP" if summary.get("bab_runs") else "MILP"
        return Outcome(Verdict.UNSAT, engine=ENGINE, seconds=seconds, stats=summary,
                       detail=f"all {len(spec.cases)} case(s) proven by sound bounds / {how}")
    verdict = Verdict.TIMEOUT if (expired(deadline) or Verdict.TIMEOUT in verdicts) else Verdict.UNKNOWN
    return Outcome(verdict, engine=ENGINE, seconds=seconds, stats=summary, detail="; ".join(details)[:2000])


def _split(network, spec, ci: int, g: _Graph, deadline: float, options: Options, stats: ExactStats) -> CaseResult:
    """Input splitting in front of the MILP (`search.input_split`), a box with few unstable ReLUs
    left (or too thin to split) decided by `check_case` on that box with a share of the time."""
    case = spec.cases[ci]
    if not case.output or any(hs.rows == 0 for hs in case.output):  # only a witness decides those: the MILP finds one
        return check_case(network, spec, ci, g, deadline, options, stats)

    def leaf(lo, hi, disjuncts, until):
        sub = _sub_spec(spec, case, lo, hi, disjuncts)
        r = check_case(network, sub, 0, g, until, options, stats)
        if r.verdict == Verdict.SAT:  # a witness of the sub-box: replayed against the whole property
            return Verdict.SAT, sat_outcome(network, spec, r.outcome.counterexample[0], ENGINE, detail=r.outcome.detail)
        return r.verdict, None

    out, status = split_case(network, spec, ci, g.split, "crown", options, deadline, stats.split, ENGINE, leaf)
    s = stats.split
    if out is not None:
        return CaseResult(Verdict.SAT, outcome=out)
    if status == "timeout":
        return CaseResult(Verdict.TIMEOUT, detail=f"deadline reached during input splitting ({s.boxes} boxes)")
    if status == "unknown":
        return CaseResult(Verdict.UNKNOWN, detail=f"{s.unresolved} boxes too thin to split that the MILP did not decide"
                          if s.unresolved else f"input splitting gave up ({s.gave_up_open} open boxes)")
    return CaseResult(Verdict.UNSAT, detail=f"input splitting and MILP leaves ruled out every box ({s.boxes} boxes, "
                                            f"{s.leaves} MILP leaves)")


def _root_cuts(g: _Graph, region, pre, disjuncts, open_d, deadline: float, o, stats: ExactStats, threads: int = 1):
    """SCIP's root cuts of each open disjunct's MILP over the bounds `pre` (`ExactOptions.bab_cuts`),
    as the `cuts` hook of `search_disjuncts` (it gives a new search its disjunct's cuts; its
    `disjuncts`: those it has cuts for); None when there are none. Together the roots get
    `o.cut_share` of the time left; least-proven disjunct first, each runs until its cut loop ends
    or that time does (a root stopped by it still gives what it separated: an equal split could
    leave each less than its first LP), `threads` of them at once."""
    from concurrent.futures import ThreadPoolExecutor

    from ..bounds.region import compute_bounds
    from ..milp.cuts import root_cuts, to_bound_cuts
    from ..milp.encoding import add_binaries

    t0 = time.monotonic()
    stop = t0 + o.cut_share * max(0.0, deadline - t0)
    try:  # the encoding of the MILP over the tightened bounds
        enc = compute_bounds(g.lg, region, stop, method="crown", crown=g.crown,
                             refine=lambda k, rows, layers: (pre[k][0][rows], pre[k][1][rows]) if k in pre else None).enc
    except bounds.Expired:
        return None
    add_binaries(enc)  # before the roots, which only read the encoding
    workers = max(1, min(threads, len(open_d)))

    def one(di):
        A, b = disjuncts[di]
        return root_cuts(enc, A, b, stop, o.cut_rounds, nogil=workers > 1)

    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            found = list(ex.map(one, open_d))
    else:
        found = [one(di) for di in open_d]
    pools = {di: pool for di, pool in zip(open_d, found) if pool is not None}
    stats.bab.cut_s += time.monotonic() - t0
    stats.bab.cut_pools += len(pools)
    if not pools:
        return None

    def give(di, search):
        if di in pools:
            search.stats["cuts"] = search.set_cuts(*to_bound_cuts(pools[di], enc, search))

    give.disjuncts = frozenset(pools)  # the disjuncts it has cuts for
    return give


def check_case(network, spec, ci: int, g: _Graph, deadline: float, options: Options, stats: ExactStats) -> CaseResult:
    """Decide case `ci`: sound bounds, then (many unstable ReLUs) the ReLU-split branch and bound, then one
    MILP per disjunct still open (module docstring)."""
    from ..bounds.region import compute_bounds

    o = options.exact
    case = spec.cases[ci]
    region = case.region
    lg = g.lg
    cs = CaseStats()
    try:
        if region_empty(region):
            return CaseResult(Verdict.UNSAT, detail="empty input box")
        t0 = now = time.monotonic()
        lp_deadline = now + o.lp_tighten_share * max(0.0, deadline - now)
        threads = options.threads or 1
        bounds_ = fast = None
        has_G = region.G is not None and region.G.shape[0] > 0
        bab = g.view is not None and (o.bab_shallow or g.view.deep())  # (ExactOptions.bab_shallow)
        if not has_G and bab and \
                sum(compute_bounds(lg, region, deadline, method="crown", encode=False, crown=g.crown).unstable) >= o.bab_min_unstable:
            # a network that CROWN leaves to the branch and bound (milliseconds; alpha-CROWN
            # only stabilises more): alpha-CROWN on every layer (seconds). When the BaB still takes the
            # case, the LPs are skipped: with fixed earlier bounds, converged alpha-CROWN reaches the
            # triangle LP's optimum (docs/exact.md §2)
            fast = compute_bounds(lg, region, deadline, method="crown", threads=threads, crown=g.crown,
                                  refine=_refiner(g, region, deadline, now, options))
            if sum(fast.unstable) >= o.bab_min_unstable:
                bounds_ = fast
                cs.bounds_method = "alpha-crown"
        if bounds_ is None:
            bounds_ = compute_bounds(lg, region, deadline, method="lp", lp_deadline=lp_deadline, threads=threads,
                                     crown=g.crown, refine=_refiner(g, region, deadline, lp_deadline, options))
            cs.bounds_method = "lp"
        # the LPs over the output rows are part of the LP share (on a deep net each takes seconds,
        # and the branch and bound's root bounds the same rows nearly as tightly)
        done, lbs, open_d = bound_case(network, spec, ci, lg, bounds_, lp_deadline, cs, ENGINE, o.row_bounds)
        # an alpha pass the LP route replaced counts too
        record_bounds(cs, [bounds_] if fast is None or fast is bounds_ else [bounds_, fast], time.monotonic() - t0)
        if done is not None:
            return done
        if expired(deadline):
            return CaseResult(Verdict.TIMEOUT, detail="deadline reached during bounds")
        open_d.sort(key=lambda i: lbs[i])
        # ---- branch and bound on ReLU splits, when the MILP would be large ----
        if sum(bounds_.unstable) >= o.bab_min_unstable and bab:
            from ..search.activation_split import (ActivationSplitStats, Trees, cut_trees, race_trees, search_disjuncts,
                                                   tighten_graph)

            if stats.bab is None:
                stats.bab = ActivationSplitStats()
            pre = g.pre(bounds_)
            deep = g.view.deep()
            disjuncts = [(hs.A, hs.b) for hs in case.output]
            so = options.activation_split

            def replay(xs):
                return try_points(network, spec, case, xs, ci, ENGINE, source="the minimiser of a ReLU-split domain's bound")

            # a first, short search on alpha-CROWN's bounds (most cases close here); then the
            # intermediate bounds are tightened by branch and bound and the search starts again
            now = time.monotonic()
            first = now + o.bab_quick_share * max(0.0, deadline - now) if deep else deadline
            bo = options.bounds
            trees = Trees()
            out = search_disjuncts(g.view, region.lower, region.upper, pre, disjuncts, open_d, first, replay, so, stats.bab,
                                   bounds_options=bo, trees=trees)

            def go_on(pre, trees, search):
                """Search on the bounds `pre` (going on with `trees`) with the time left; with
                `bab_cuts`, for `cut_after_share` of it, then SCIP's cuts over `pre` and the search
                with them for the rest: a new search with them for each disjunct they cover, racing
                its tree under way with `cut_race_share` < 1 (`race_trees`; where SCIP finds none,
                the tree goes on), or with `cut_probe_share` < 1, `cut_trees`: each tree takes its
                disjunct's cuts and goes on, unless a new search with them proves the disjunct (or
                closes domains faster than it splits them) in its part of that share of the time."""
                now = time.monotonic()
                until = now + o.cut_after_share * max(0.0, deadline - now) if o.bab_cuts else deadline
                out = search_disjuncts(g.view, region.lower, region.upper, pre, disjuncts, open_d, until, replay, so,
                                       stats.bab, search=search, bounds_options=bo, trees=trees)
                if out is not None or not open_d or expired(deadline) or not o.bab_cuts:
                    return out
                cuts = _root_cuts(g, region, pre, disjuncts, open_d, deadline, o, stats, threads)
                if cuts is not None and o.cut_probe_share >= 1.0:
                    # the disjuncts with cuts: a new search with them (the default), or one that races
                    # the tree under way (`cut_race_share` < 1); the others' trees go on
                    race_trees(g.view, region.lower, region.upper, pre, disjuncts, trees, cuts, o.cut_race_share,
                               o.cut_race_period, so, bo)
                elif cuts is not None:
                    now = time.monotonic()
                    out = cut_trees(g.view, region.lower, region.upper, pre, disjuncts, open_d, trees, cuts,
                                    now + o.cut_probe_share * max(0.0, deadline - now), replay, so, stats.bab, bo,
                                    search + 1)
                    if out is not None or not open_d:
                        return out
                return search_disjuncts(g.view, region.lower, region.upper, pre, disjuncts, open_d, deadline, replay, so,
                                        stats.bab, search=search + (cuts is not None), bounds_options=bo,
                                        trees=trees, cuts=cuts)

            if out is None and deep and open_d and not expired(deadline) and trees.progress(open_d) >= o.bab_continue_progress:
                # the first search has closed most of the gap between its root bounds and zero:
                # it goes on with the time left (tightening would restart it from scratch)
                stats.bab.continued += 1
                out = go_on(pre, trees, 1)
            elif out is None and deep and open_d and not expired(deadline):
                now = time.monotonic()
                pre = tighten_graph(g.view, region.lower, region.upper, pre, now + o.tighten_share * max(0.0, deadline - now),
                                    o.refine_iters, so, bo, stats.bab, out_A=np.vstack([case.output[d].A for d in open_d]))
                out = go_on(pre, Trees(), 2)
            if out is not None:
                cs.witness_from = "bab"
                return CaseResult(Verdict.SAT, outcome=out)
            if not open_d:
                return CaseResult(Verdict.UNSAT, detail="every disjunct ruled out (bounds or ReLU-split branch and bound)")
            if expired(deadline):
                return CaseResult(Verdict.TIMEOUT, detail=f"{len(open_d)} disjunct(s) open when the ReLU-split branch and bound ran out of time")
        # ---- the MILP ----
        return milp_disjuncts(network, spec, case, ci, bounds_.enc, open_d, lbs, deadline, options, cs, ENGINE)
    except bounds.Expired:  # a CROWN pass stopped at the deadline
        return CaseResult(Verdict.TIMEOUT, detail="deadline reached during bounds")
    finally:
        stats.cases += 1
        stats.case.add(cs)


def _sub_spec(spec, case, lower, upper, disjuncts=None):
    from ..spec.model import Case, InputRegion

    reg = case.region
    sub = InputRegion(np.maximum(np.asarray(lower, np.float64), reg.lower), np.minimum(np.asarray(upper, np.float64), reg.upper),
                      reg.G, reg.h, reg.lower_strict, reg.upper_strict, reg.G_strict)
    out = case.output if disjuncts is None else [case.output[i] for i in disjuncts]
    return type(spec)(spec.n_inputs, spec.n_outputs, [Case(sub, out)], spec.source, spec.version)


def _refiner(g: _Graph, region, deadline: float, lp_deadline: float, options: Options):
    """alpha-CROWN of a layer's unstable rows (`bounds.alpha_beta.row_refiner`) with
    `ExactOptions.refine_iters` steps, on layers with `refine_min_rows` of them or past the LP share."""
    from ..bounds.alpha_beta import row_refiner

    o = options.exact
    return row_refiner(g.view, g.lg, region, deadline, lp_deadline, o.refine_iters, o.refine_min_rows, options.bounds,
                       options.activation_split)
