"""--mode probabilistic: randomized smoothing answers a local-robustness query (an adapter over `vnncert.smoothing`).

The query is recognised off the normal form (`robustness_query`: one input box, every disjunct
"Y_j >= Y_label"), the smoothed classifier g certifies its prediction at the box centre
(`smoothing.SmoothedClassifier`), and the answer is an Outcome with a `Certificate`: a claim
about g with confidence 1 - alpha, never a proof about f, so the verdict stays `unknown`. A
`sat` only ever comes from a real witness of f seen while sampling, replayed on the original
model by `results.sat_outcome`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import SpecError
from ..results import Certificate, Outcome, Verdict, sat_outcome
from ..smoothing import ABSTAIN, NOISES, DeadlineReached, SmoothedClassifier, StopSampling

ENGINE = "probabilistic"


@dataclass
class SmoothingStats:
    """The figures of one --mode probabilistic run (Outcome.stats gets `as_dict()`): the settings,
    then, after a full certification, the sampling's size and speed and the classes involved."""

    noise: str
    scale: float
    n0: int
    n: int
    alpha: float
    samples: Optional[int] = None  # n0 + n
    sampling_seconds: Optional[float] = None
    samples_per_second: Optional[float] = None
    label: Optional[int] = None  # the property's label
    selected: Optional[int] = None  # the class the n0 selection samples picked

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


# ---- VNN-LIB queries -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RobustnessQuery:
    label: int
    others: Tuple[int, ...]  # classes j with a disjunct "Y_j >= Y_label" (or >)
    lower: np.ndarray
    upper: np.ndarray


def robustness_query(spec) -> RobustnessQuery:
    """Read a local-robustness property off the normal form, or raise SpecError saying why not.

    Required: one input box (every case has the same box, no extra linear input constraints),
    and every output disjunct a single row "Y_j >= Y_label" (or ">") with one common label.
    """
    why = "the probabilistic mode answers local-robustness properties only (one input box; every disjunct 'Y_j >= Y_label' for one label)"
    if not spec.cases:
        raise SpecError(f"{why}: the property has no cases")
    box = spec.cases[0].region
    label: Optional[int] = None
    others = set()
    for ci, case in enumerate(spec.cases):
        r = case.region
        if r.G is not None and r.G.shape[0]:
            raise SpecError(f"{why}: case {ci} has {r.G.shape[0]} linear input constraints besides the box")
        if not (np.array_equal(r.lower, box.lower) and np.array_equal(r.upper, box.upper)):
            raise SpecError(f"{why}: the property has {len(spec.cases)} different input boxes")
        for di, hs in enumerate(case.output):
            if hs.rows != 1:
                raise SpecError(f"{why}: disjunct {di} of case {ci} has {hs.rows} output constraints")
            a, b = hs.A[0], hs.b[0]
            nz = np.flatnonzero(a)
            if b != 0 or nz.size != 2 or a[nz[0]] != -a[nz[1]]:
                raise SpecError(f"{why}: disjunct {di} of case {ci} is not a comparison of two outputs")
            lab = int(nz[0] if a[nz[0]] > 0 else nz[1])  # A y <= 0 with +c at the label: Y_j >= Y_label
            j = int(nz[1] if lab == nz[0] else nz[0])
            if label is not None and lab != label:
                raise SpecError(f"{why}: disjuncts compare against two labels ({label} and {lab})")
            label = lab
            others.add(j)
    if label is None:
        raise SpecError(f"{why}: the property has no output disjuncts")
    if not (np.all(np.isfinite(box.lower)) and np.all(np.isfinite(box.upper))):
        raise SpecError("the probabilistic mode needs a bounded input box (every X_i with a finite lower and upper bound)")
    if np.any(box.lower > box.upper):
        raise SpecError("the input box is empty (some lower bound exceeds its upper bound)")
    return RobustnessQuery(label, tuple(sorted(others)), box.lower.astype(np.float64), box.upper.astype(np.float64))


def needed_radius(query: RobustnessQuery, norm: str) -> float:
    """Distance from the box centre to its farthest corner in the certificate's norm."""
    half = (query.upper - query.lower) / 2.0
    return float(np.linalg.norm(half, 2)) if norm == "l2" else float(np.abs(half).sum())


class WitnessWatch:
    """Looks at every classified noise batch for a real witness of f inside the box."""

    def __init__(self, network, spec, query: RobustnessQuery, limit: int):
        self.network = network
        self.spec = spec
        self.q = query
        self.others = np.array(query.others, dtype=np.int64)
        self.limit = limit  # replays tried at most (each is one ORT call on the original model)
        self.tried = 0
        self.outcome: Optional[Outcome] = None

    def __call__(self, logits: np.ndarray, inputs_of) -> None:
        if self.outcome is not None or self.tried >= self.limit:
            return
        # prefilter (superset of the unsafe rows): some other class reaches the label's logit
        cand = np.flatnonzero((logits[:, self.others] >= logits[:, [self.q.label]]).any(axis=1))
        if cand.size == 0:
            return
        xs = inputs_of(cand)
        inside = np.flatnonzero(np.all((xs >= self.q.lower) & (xs <= self.q.upper), axis=1))
        for i in inside[: self.limit - self.tried]:
            self.tried += 1
            out = sat_outcome(self.network, self.spec, xs[i].copy(), ENGINE,
                              detail="witness of f found among the smoothing samples, replayed with ONNX Runtime on the original model")
            if out is not None:
                self.outcome = out
                raise StopSampling()


def check(network, spec, deadline: float, options) -> Outcome:
    """--mode probabilistic: certify g at the box centre; `sat` only for a replayed witness of f, else `unknown`."""
    t0 = time.monotonic()
    query = robustness_query(spec)
    sm = options.smoothing
    noise, scale = sm.noise, float(sm.sigma)
    if noise not in NOISES:
        raise SpecError(f"unknown noise {noise!r}; choose one of {', '.join(NOISES)}")
    norm = NOISES[noise]
    centre = (query.lower + query.upper) / 2.0
    need = needed_radius(query, norm)
    stats = SmoothingStats(noise=noise, scale=scale, n0=sm.n0, n=sm.n, alpha=sm.alpha)

    # the centre is a point of the box: if f is already unsafe there, that is a witness
    hit = sat_outcome(network, spec, centre, ENGINE, detail="the box centre is a witness of f (replayed with ONNX Runtime)")
    if hit is not None:
        hit.seconds = time.monotonic() - t0
        return hit

    g = SmoothedClassifier(network, noise=noise, scale=scale, batch=sm.batch, seed=options.seed, threads=options.threads,
                           max_batch_values=sm.max_batch_values)
    watch = WitnessWatch(network, spec, query, limit=sm.witness_replays)
    try:
        res = g.certify(centre, sm.n0, sm.n, sm.alpha, key=(0,), watch=watch, deadline=deadline)
    except StopSampling:
        out = watch.outcome
        out.seconds = time.monotonic() - t0
        out.stats = stats.as_dict()
        return out
    except DeadlineReached as e:
        return Outcome(Verdict.TIMEOUT, engine=ENGINE, seconds=time.monotonic() - t0,
                       detail=f"smoothing stopped at the deadline after {e.samples} samples of one pass",
                       stats=stats.as_dict())
    finally:
        g.close()

    covered = bool(res.prediction == query.label and res.radius > need)
    what = {"l2": "L2", "l1": "L1"}[norm]
    scale_name = "sigma" if noise == "gaussian" else "lambda"
    if res.prediction == ABSTAIN:
        claim = (f"smoothed classifier g ({noise} noise, {scale_name}={scale:g}) abstains at the box centre: "
                 f"lower bound pA={res.pA_lower:.6g} < 1/2 for its top class {res.selected}; nothing is certified")
    else:
        claim = (f"claim about the smoothed classifier g ({noise} noise, {scale_name}={scale:g}), not the network f: "
                 f"g(x') = {res.prediction} for every x' with ||x' - centre||_{what[1]} < {res.radius:.6g}, "
                 f"with confidence 1-alpha = {1 - sm.alpha:g}; the box needs {need:.6g}: "
                 f"{'covered' if covered else 'not covered'}")
    cert = Certificate(sigma=scale, noise=noise, n0=int(sm.n0), n=int(sm.n), alpha=float(sm.alpha),
                       predicted=int(res.prediction), count=int(res.count), pA_lower=float(res.pA_lower),
                       radius=float(res.radius), norm=norm, needed_radius=need, covered=covered, claim=claim)
    samples = int(sm.n0) + int(sm.n)
    stats.samples, stats.sampling_seconds = samples, res.seconds
    stats.samples_per_second = samples / max(res.seconds, 1e-9)
    stats.label, stats.selected = query.label, res.selected
    if covered:
        detail = (f"g certified robust on the box ({what} radius {res.radius:.4g} > needed {need:.4g}, confidence "
                  f"1-alpha); a probabilistic claim about g, not a proof about f, so the verdict stays unknown")
    elif res.prediction == ABSTAIN:
        detail = f"g abstains at the box centre (pA lower bound {res.pA_lower:.4g} < 1/2); no witness of f among {samples} samples"
    elif res.prediction != query.label:
        detail = f"g predicts class {res.prediction}, not the label {query.label}, at the box centre; no witness of f among the samples"
    else:
        detail = f"g certified only up to {what} radius {res.radius:.4g} < needed {need:.4g}; no witness of f among {samples} samples"
    return Outcome(Verdict.UNKNOWN, engine=ENGINE, seconds=time.monotonic() - t0, certificate=cert,
                   detail=detail, stats=stats.as_dict())
