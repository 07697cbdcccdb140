"""The smoothed classifier g(x) = argmax_c P(f(x + e) = c): CERTIFY and PREDICT (Cohen, Rosenfeld, Kolter 2019).

f(x) is the argmax of the network's outputs (first index on ties) and e is noise of scale `scale`
(sigma for Gaussian, lambda for Laplace / uniform). Every claim made here is about g, with
confidence 1 - alpha; none is a proof about f.

Speed: one batched ONNX Runtime call per batch through the sampling graph (`sampling.Sampler`),
float32 noise drawn in parallel parts by independent numpy Generators into a reused buffer
(`noise`), large batches, counts by np.bincount. For many certifications in a row (data sets) a
noise bank can be used instead: see `noise.NoiseBank` and docs/probabilistic.md for why its
certificates keep the 1 - alpha guarantee.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..options import SmoothingOptions
from .noise import NOISES, PARTS, FreshNoise, NoiseBank, NoisePool, check_noise
from .sampling import Projection, Sampler
from .stats import binomial_pvalue, certified_radius, lower_confidence_bound

ABSTAIN = -1  # the class g answers when it abstains (the reference implementation's -1)


class DeadlineReached(Exception):
    def __init__(self, samples: int):
        super().__init__(f"deadline reached after {samples} samples")
        self.samples = samples


class StopSampling(Exception):
    """Raised by a watch to end sampling early (a witness of f was found)."""


@dataclass
class CertifyResult:
    prediction: int  # ABSTAIN (-1) or a class
    radius: float
    pA_lower: float
    count: int  # nA: estimation samples of the selected class
    selected: int  # the class the n0 selection samples picked
    counts0: np.ndarray
    counts: np.ndarray
    seconds: float = 0.0


@dataclass
class PredictResult:
    prediction: int  # ABSTAIN (-1) or a class
    pvalue: float
    counts: np.ndarray
    seconds: float = 0.0


class SmoothedClassifier:
    """g for one network and noise; `certify` and `predict` follow Cohen et al. (2019) exactly.

    scale: sigma (gaussian) or lambda (laplace, uniform). threads: noise threads (0 = all cores).
    batch: noisy inputs per ONNX Runtime call, capped so that one batch holds at most
    `max_batch_values` input values (`SmoothingOptions.max_batch_values`).
    bank_rows > 0 draws a NoiseBank of that many rows up front, which must be at least the samples
    of one certification (n0 + n, or n for predict). in_graph: add the noise inside the ONNX graph
    (one ORT call per batch, no numpy pass over the noisy inputs); falls back to numpy + the
    batched session, or to one-at-a-time evaluation, when the model does not allow it.
    project: with Gaussian noise and a first linear layer narrower than the input, draw the
    noise already pushed through that layer (`Projection`: same law, fewer numbers and flops).
    """

    def __init__(self, network, noise: str = "gaussian", scale: float = 0.25, batch: int = 10_000,
                 seed: int = 0, threads: int = 0, bank_rows: int = 0, in_graph: bool = True, project: bool = True,
                 max_batch_values: int = SmoothingOptions.max_batch_values):
        check_noise(noise)
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"the noise scale must be a positive number, got {scale!r}")
        if int(batch) < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.network = network
        self.noise = noise
        self.scale = scale
        self.batch = max(1, min(int(batch), int(max_batch_values) // max(1, int(network.n_inputs))))
        self.seed = int(seed)
        self.n_classes = int(network.n_outputs)
        self.dim = int(network.n_inputs)
        self.threads = int(threads) if threads and threads > 0 else (os.cpu_count() or 1)
        in_dtype = np.dtype(network.input_dtype)
        self.dtype = in_dtype if in_dtype in (np.dtype(np.float32), np.dtype(np.float64)) else np.dtype(np.float32)
        self._pool = NoisePool(min(self.threads, PARTS))
        self._zbuf: Optional[np.ndarray] = None
        self._xbuf: Optional[np.ndarray] = None
        self.sampler = Sampler(network, self.dtype, noise, in_graph=in_graph, project=project)
        self.bank: Optional[NoiseBank] = None
        if bank_rows:
            self.use_bank(bank_rows)

    @property
    def projection(self) -> Optional[Projection]:
        return self.sampler.projection

    @property
    def noise_dim(self) -> int:
        """Numbers of noise per sample: the input size, or the first layer's rank when projected."""
        return self.sampler.noise_dim

    @property
    def path(self) -> str:
        return self.sampler.path

    def use_bank(self, rows: int) -> None:
        """Draw a NoiseBank of `rows` standard noise rows (of noise_dim values) for the certifications to come."""
        self.bank = NoiseBank(self.noise, int(rows), self.noise_dim, self.dtype, self.seed, self._pool)

    @property
    def norm(self) -> str:
        return NOISES[self.noise]

    def close(self) -> None:
        self._pool.close()

    # -- sampling --
    def stream(self, key: Sequence[int] = (0,)):
        """The noise source of one certification; `key` (e.g. the example index) makes it reproducible."""
        if self.bank is not None:
            return self.bank.stream(self.seed, key, self.scale)
        return FreshNoise(self.noise, self.seed, key, self._pool, self.scale, self.noise_dim, self.dtype)

    def _pieces(self, num: int, stream):
        """(z, mult) pieces of at most `batch` rows, num rows in all."""
        done = 0
        while done < num:
            m = min(self.batch, num - done)
            if self._zbuf is None or self._zbuf.shape[0] < m:
                self._zbuf = np.empty((m, self.noise_dim), dtype=self.dtype)
            for z, mult in stream.draw(m, self._zbuf):
                yield z, mult
            done += m

    def _centre(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size != self.dim:
            raise ValueError(f"input has {x.size} values, the network takes {self.dim}")
        return x.astype(self.dtype)

    def noisy_inputs(self, x: np.ndarray, num: int, stream) -> np.ndarray:
        """The noisy inputs x + mult * z (numpy) that `counts` classifies with an identical stream."""
        xc = self._centre(x)
        if self.projection is not None:
            rows = [self.projection.inputs(xc, z * mult).astype(self.dtype) for z, mult in self._pieces(num, stream)]
        else:
            rows = [z * mult + xc for z, mult in self._pieces(num, stream)]
        return np.concatenate(rows, axis=0) if rows else np.zeros((0, self.dim), self.dtype)

    def counts(self, x: np.ndarray, num: int, stream, watch=None, deadline: Optional[float] = None) -> np.ndarray:
        """How often f(x + e) = c for each class c over `num` noise draws (int64, length n_classes).

        watch(logits, inputs_of) is called per batch when given; inputs_of(rows) returns those
        rows' noisy inputs (computed as the graph computes them).
        """
        xc = self._centre(x)
        projection = self.projection
        shift = xc if projection is None else projection.shift(xc).astype(self.dtype)
        counts = np.zeros(self.n_classes, dtype=np.int64)
        done = 0
        for z, mult in self._pieces(num, stream):
            m = z.shape[0]
            if self.sampler.graph_session is not None:
                am, logits = self.sampler.run_graph(z, mult, shift, logits=watch is not None)

                if projection is not None:
                    def inputs_of(rows, z=z, mult=mult):
                        return projection.inputs(xc, z[rows] * mult).astype(self.dtype)
                else:
                    def inputs_of(rows, z=z, mult=mult):
                        return z[rows] * mult + xc
            else:
                if self._xbuf is None or self._xbuf.shape[0] < m:
                    self._xbuf = np.empty((m, self.dim), dtype=self.dtype)
                xs = self._xbuf[:m]
                np.multiply(z, mult, out=xs)
                np.add(xs, xc, out=xs)
                logits = self.sampler.run_plain(xs)
                am = logits.argmax(axis=1)

                def inputs_of(rows, xs=xs):
                    return xs[rows]
            counts += np.bincount(am, minlength=self.n_classes)[:self.n_classes]
            done += m
            if watch is not None:
                watch(logits, inputs_of)
            if deadline is not None and done < num and time.monotonic() >= deadline:
                raise DeadlineReached(done)
        return counts

    # -- Cohen et al. (2019) --
    def certify(self, x: np.ndarray, n0: int, n: int, alpha: float, key: Sequence[int] = (0,),
                watch=None, deadline: Optional[float] = None) -> CertifyResult:
        """CERTIFY: n0 samples select cA, n fresh samples bound pA from below; abstain if pA < 1/2."""
        _check_counts(n0=n0, n=n, alpha=alpha)
        t0 = time.perf_counter()
        stream = self.stream(key)
        counts0 = self.counts(x, n0, stream, watch, deadline)
        cA = int(counts0.argmax())
        counts = self.counts(x, n, stream, watch, deadline)
        nA = int(counts[cA])
        pA = lower_confidence_bound(nA, n, alpha)
        if pA < 0.5:
            pred, radius = ABSTAIN, 0.0
        else:
            pred, radius = cA, certified_radius(self.noise, self.scale, pA)
        return CertifyResult(pred, radius, pA, nA, cA, counts0, counts, time.perf_counter() - t0)

    def predict(self, x: np.ndarray, n: int, alpha: float, key: Sequence[int] = (0,),
                watch=None, deadline: Optional[float] = None) -> PredictResult:
        """PREDICT: top two counts of n samples; abstain if the two-sided binomial test p-value > alpha."""
        _check_counts(n0=1, n=n, alpha=alpha)
        t0 = time.perf_counter()
        counts = self.counts(x, n, self.stream(key), watch, deadline)
        order = np.argsort(-counts, kind="stable")
        c1 = int(counts[order[0]])
        c2 = int(counts[order[1]]) if counts.size > 1 else 0
        p = binomial_pvalue(c1, c1 + c2)
        pred = ABSTAIN if p > alpha else int(order[0])
        return PredictResult(pred, p, counts, time.perf_counter() - t0)


def _check_counts(n0: int, n: int, alpha: float) -> None:
    if int(n0) < 1 or int(n) < 1:
        raise ValueError(f"n0 and n must be >= 1 (got n0={n0}, n={n})")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
