"""Noise laws and noise sources of randomized smoothing: fresh noise per certification, or a noise bank.

Every source yields *standard* noise z (N(0, 1), Laplace(0, 1) or U(-1, 1), in the model's input
dtype) and a per-coordinate multiplier: a noisy input is x + mult * z. Noise is drawn in PARTS
parts by independent numpy Generators spawned from (seed, key), so a result depends on the seed
and the key (e.g. the example's index), never on the number of threads.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

# noise law -> the norm of its certified radius (docs/probabilistic.md)
NOISES = {"gaussian": "l2", "laplace": "l1", "uniform": "l1"}
# generator streams per draw: part of the seeded noise's definition (changing it changes every
# seeded result), not a speed knob; the parts run on up to PARTS threads
PARTS = 8
# numpy's uniforms are k * 2^-24 (float32) or k * 2^-53 (float64); 2u - 1 + step makes them symmetric
_HALF_STEP = {np.dtype(np.float32): 2.0 ** -24, np.dtype(np.float64): 2.0 ** -53}


def check_noise(noise: str) -> str:
    """The norm of `noise`'s certificates; ValueError naming the noises for anything else."""
    if noise not in NOISES:
        raise ValueError(f"unknown noise {noise!r}; choose one of {', '.join(NOISES)}")
    return NOISES[noise]


def standard_fill(gen: np.random.Generator, noise: str, out: np.ndarray, tmp: Optional[np.ndarray]) -> None:
    """Fill `out` with standard noise: N(0, 1), Laplace(0, 1) or U(-1, 1), in out's dtype.

    Laplace and uniform come from one uniform draw u = k 2^-24 (float32; 2^-53 for float64) on the
    symmetric grid v = 2u - 1 + 2^-24 in (-1, 1) (exact in float32), so the noise is symmetric and
    finite: uniform = v, Laplace = -sign(v) ln(1 - |v|) (inverse CDF). `tmp` (out's shape) is
    scratch space for Laplace.
    """
    if noise == "gaussian":
        gen.standard_normal(out=out, dtype=out.dtype)
        return
    gen.random(out=out, dtype=out.dtype)
    np.multiply(out, out.dtype.type(2.0), out=out)
    np.subtract(out, out.dtype.type(1.0 - _HALF_STEP[out.dtype]), out=out)
    if noise == "uniform":
        return
    np.abs(out, out=tmp)
    np.subtract(out.dtype.type(1.0), tmp, out=tmp)
    np.log(tmp, out=tmp)
    np.negative(tmp, out=tmp)
    np.copysign(tmp, out, out=out)


class NoisePool:
    """A small thread pool for the noise parts (numpy releases the GIL while filling arrays)."""

    def __init__(self, threads: int):
        self.threads = max(1, int(threads))
        self._ex = None
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._ex = ThreadPoolExecutor(self.threads, thread_name_prefix="vnncert-noise")

    def run(self, fn: Callable[[int], None], parts: int) -> None:
        if self._ex is None:
            for k in range(parts):
                fn(k)
        else:
            for f in [self._ex.submit(fn, k) for k in range(parts)]:
                f.result()

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True)
            self._ex = None


def part_bounds(rows: int, parts: int) -> List[Tuple[int, int]]:
    edges = [rows * k // parts for k in range(parts + 1)]
    return [(edges[k], edges[k + 1]) for k in range(parts)]


class FreshNoise:
    """Fresh standard noise for one certification: PARTS independent Generators spawned from (seed, key)."""

    def __init__(self, noise: str, seed: int, key: Sequence[int], pool: NoisePool, scale: float, dim: int, dtype):
        ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
        self.noise = noise
        self.gens = [np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(PARTS)]
        self.pool = pool
        self.mult = np.full(dim, scale, dtype=dtype)
        self.tmp: Optional[np.ndarray] = None

    def draw(self, m: int, buf: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
        """m new standard noise rows (in buf) and the per-coordinate multiplier: noisy = x + mult * z."""
        out = buf[:m]
        if self.noise == "laplace" and (self.tmp is None or self.tmp.shape[0] < m):
            self.tmp = np.empty(out.shape, out.dtype)
        bounds = part_bounds(m, PARTS)

        def part(k: int) -> None:
            a, b = bounds[k]
            if a < b:
                standard_fill(self.gens[k], self.noise, out[a:b], self.tmp[a:b] if self.tmp is not None else None)

        self.pool.run(part, PARTS)
        return [(out, self.mult)]


class NoiseBank:
    """Standard noise rows drawn once (seeded), reused across certifications, never within one.

    Each certification (`stream`) takes its own random sign vector s in {-1, 1}^d and a random
    cyclic offset o, and uses the rows (o + t) mod M, t = 0, 1, ..., as s * bank[row], each row at
    most once. Given s and o, distinct iid rows multiplied coordinate-wise by a fixed sign vector
    are again iid from the same (coordinate-wise symmetric) distribution, so within one
    certification the noise has exactly the distribution of fresh noise. See docs/probabilistic.md.
    """

    def __init__(self, noise: str, rows: int, dim: int, dtype, seed: int, pool: NoisePool):
        self.noise = noise
        self.rows = int(rows)
        self.dim = int(dim)
        self.data = np.empty((self.rows, self.dim), dtype=dtype)
        tmp = np.empty_like(self.data) if noise == "laplace" else None
        ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(0xBA4C,))
        gens = [np.random.Generator(np.random.PCG64(s)) for s in ss.spawn(PARTS)]
        bounds = part_bounds(self.rows, PARTS)

        def part(k: int) -> None:
            a, b = bounds[k]
            if a < b:
                standard_fill(gens[k], noise, self.data[a:b], tmp[a:b] if tmp is not None else None)

        pool.run(part, PARTS)

    def stream(self, seed: int, key: Sequence[int], scale: float) -> "BankStream":
        ss = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key) + (0x5164,))
        g = np.random.Generator(np.random.PCG64(ss))
        signs = np.where(g.random(self.dim) < 0.5, -1.0, 1.0)
        offset = int(g.integers(0, self.rows))
        return BankStream(self, (signs * scale).astype(self.data.dtype), offset)


class BankStream:
    """The rows of a NoiseBank one certification uses (each at most once: more is an error)."""

    def __init__(self, bank: NoiseBank, mult: np.ndarray, offset: int):
        self.bank = bank
        self.mult = mult
        self.offset = offset
        self.used = 0

    def draw(self, m: int, buf: Optional[np.ndarray] = None) -> List[Tuple[np.ndarray, np.ndarray]]:
        if self.used + m > self.bank.rows:
            raise RuntimeError(f"noise bank of {self.bank.rows} rows exhausted: one certification needs "
                               f"{self.used + m} (rows are never reused within a certification)")
        start = (self.offset + self.used) % self.bank.rows
        self.used += m
        first = min(m, self.bank.rows - start)
        pieces = [(self.bank.data[start:start + first], self.mult)]
        if first < m:
            pieces.append((self.bank.data[:m - first], self.mult))
        return pieces
