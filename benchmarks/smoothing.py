"""Randomized smoothing figures: sampler speed against a PyTorch reference loop, CERTIFY against ORT alone,
and the certified-accuracy table of the shipped noise-trained digits models.

    .venv/bin/python benchmarks/smoothing.py speed [--reps 5] [--threads 1] [--batch 10000]
    .venv/bin/python benchmarks/smoothing.py table [--n 100000] [--skip 1]

speed, per model (the 64-input digits MLP of vnnlib_specs/ and ../shared/benchmarks/mnist_fc's
mnist-net_256x2, whose fixed batch dim of 1 is rewritten), all in one process, same batch size,
same thread count (torch, ONNX Runtime and the noise threads all get --threads), medians of --reps:
  reference   CERTIFY written like the paper's code (locuslab/smoothing core.py: x.repeat, torch.randn_like
              * sigma, model(batch + noise).argmax(1), a Python loop counting predictions), on the same
              model converted to torch (onnx2torch), n0=100, n=100000
  fresh       our CERTIFY, fresh noise per certification (the `vnncert verify --mode probabilistic` path)
  bank        our CERTIFY with a noise bank (the `vnncert smooth certify` default; bank drawn once, not timed)
  unproj.     the bank path with the Gaussian noise drawn in input space (project=False), for comparison:
              by default the noise is drawn already pushed through the first linear layer when that
              layer is narrower than the input (784 -> 256 on mnist, 64 -> 32 on digits; same law,
              see docs/probabilistic.md)
  ORT alone   the same ONNX Runtime batched session classifying n0 + n ready-made inputs, same batches
Reported: samples/s of each, speed-up over the reference, and CERTIFY time / ORT-alone time.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "vnnlib_specs"
SHARED = ROOT.parent / "shared" / "benchmarks"
N0, N, ALPHA = 100, 100_000, 0.001


def reference_certify(model, x, n0, n, alpha, batch, sigma, num_classes):
    """CERTIFY as in the reference implementation (PyTorch, on the CPU here)."""
    import torch
    from scipy.stats import beta, norm

    def count_arr(arr, length):
        counts = np.zeros(length, dtype=int)
        for idx in arr:
            counts[idx] += 1
        return counts

    def sample_noise(num):
        with torch.no_grad():
            counts = np.zeros(num_classes, dtype=int)
            for _ in range(math.ceil(num / batch)):
                this_batch_size = min(batch, num)
                num -= this_batch_size
                reps = (this_batch_size,) + (1,) * (x.dim() - 1)
                b = x.repeat(reps)
                noise = torch.randn_like(b) * sigma
                predictions = model(b + noise).reshape(this_batch_size, -1).argmax(1)
                counts += count_arr(predictions.cpu().numpy(), num_classes)
            return counts

    c0 = sample_noise(n0)
    cA = int(c0.argmax())
    c = sample_noise(n)
    nA = int(c[cA])
    pA = beta.ppf(alpha, nA, n - nA + 1) if nA > 0 else 0.0
    return (-1, 0.0) if pA < 0.5 else (cA, sigma * norm.ppf(pA))


def _median_time(fn, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def speed(path: Path, x: np.ndarray, sigma: float, reps: int, threads: int, batch: int) -> dict:
    import onnx2torch
    import torch

    from vnncert import load_network
    from vnncert.smoothing import SmoothedClassifier

    torch.set_num_threads(threads)
    net = load_network(str(path), threads=threads)
    k = net.n_outputs
    tmodel = onnx2torch.convert(net.normalised_model()).eval()
    x_t = torch.tensor(np.asarray(x, np.float32).reshape((1,) + tuple(net.input_shape[1:])))
    with torch.no_grad():  # the conversion computes what ONNX Runtime computes
        assert np.allclose(tmodel(x_t).numpy().ravel(), net.replay(x), atol=1e-4)
    fresh = SmoothedClassifier(net, "gaussian", sigma, batch=batch, seed=0, threads=threads)
    t0 = time.perf_counter()
    bank = SmoothedClassifier(net, "gaussian", sigma, batch=batch, seed=0, threads=threads, bank_rows=N0 + N)
    bank_setup = time.perf_counter() - t0
    raw = SmoothedClassifier(net, "gaussian", sigma, batch=batch, seed=0, threads=threads, bank_rows=N0 + N, project=False)
    sess = net.batched_session
    rng = np.random.default_rng(0)
    ready = (x + sigma * rng.standard_normal((min(batch, N0 + N), net.n_inputs))).astype(np.float32)
    ready = ready.reshape((ready.shape[0],) + tuple(net.input_shape[1:]))

    def ort_alone():
        done = 0
        for m in (N0, N):
            left = m
            while left > 0:
                b = min(batch, left)
                sess.run([net.output_name], {net.input_name: ready[:b]})[0].argmax(axis=1)
                left -= b
                done += b

    key = iter(range(10 ** 6))
    # warm-up (sessions, scipy imports, torch kernels), then interleaved timings
    reference_certify(tmodel, x_t, 10, 1000, ALPHA, batch, sigma, k)
    fresh.certify(x, N0, 1000, ALPHA)
    bank.certify(x, N0, 1000, ALPHA)
    raw.certify(x, N0, 1000, ALPHA)
    ort_alone()
    t = {"reference": [], "fresh": [], "bank": [], "raw": [], "ort": []}
    for _ in range(reps):
        t["ort"].append(_median_time(ort_alone, 1))
        t["reference"].append(_median_time(lambda: reference_certify(tmodel, x_t, N0, N, ALPHA, batch, sigma, k), 1))
        t["fresh"].append(_median_time(lambda: fresh.certify(x, N0, N, ALPHA, key=(next(key),)), 1))
        t["bank"].append(_median_time(lambda: bank.certify(x, N0, N, ALPHA, key=(next(key),)), 1))
        t["raw"].append(_median_time(lambda: raw.certify(x, N0, N, ALPHA, key=(next(key),)), 1))
    med = {name: statistics.median(v) for name, v in t.items()}
    fresh.close()
    bank.close()
    raw.close()
    return {"model": path.name, "inputs": net.n_inputs, "path": fresh.path, "bank_setup": bank_setup, **med}


def cmd_speed(a) -> int:
    digits = np.load(SPECS / "data" / "digits_test.npz")
    cases = [(SPECS / "onnx" / "digits_mlp_noise025.onnx", digits["x"][0].astype(np.float64), 0.25)]
    mnist = SHARED / "mnist_fc" / "onnx" / "mnist-net_256x2.onnx"
    if mnist.exists():
        # a centre point from the benchmark's own first property (the image it was made for)
        from vnncert import load_network, load_spec

        net = load_network(str(mnist))
        first = sorted((SHARED / "mnist_fc" / "vnnlib").glob("*.vnnlib*"))[0]
        centre = load_spec(str(first), network=net).cases[0].region.center
        cases.append((mnist, centre, 0.25))
    else:
        print(f"(skipping mnist-net_256x2: {mnist} not present)")
    print(f"CERTIFY n0={N0} n={N} alpha={ALPHA}, batch {a.batch}, threads {a.threads}, median of {a.reps}")
    print(f"{'model':<26}{'inputs':>7}{'reference':>11}{'fresh':>9}{'bank':>9}{'unproj.':>9}{'ORT alone':>11}"
          f"{'ref samp/s':>12}{'bank samp/s':>13}{'fresh x':>9}{'bank x':>8}{'unproj. x':>10}{'fresh/ORT':>11}{'bank/ORT':>10}")
    for path, x, sigma in cases:
        r = speed(path, x, sigma, a.reps, a.threads, a.batch)
        s = N0 + N
        print(f"{r['model']:<26}{r['inputs']:>7}{r['reference']:>10.3f}s{r['fresh']:>8.3f}s{r['bank']:>8.3f}s{r['raw']:>8.3f}s"
              f"{r['ort']:>10.3f}s{s / r['reference']:>12.0f}{s / r['bank']:>13.0f}{r['reference'] / r['fresh']:>8.1f}x"
              f"{r['reference'] / r['bank']:>7.1f}x{r['reference'] / r['raw']:>9.1f}x"
              f"{r['fresh'] / r['ort']:>10.2f}x{r['bank'] / r['ort']:>9.2f}x")
        print(f"{'':<26}(sampling path: {r['path']}; bank of {s} rows drawn once in {r['bank_setup']:.3f} s, not in the CERTIFY times)")
    return 0


def cmd_table(a) -> int:
    import tempfile

    from vnncert import load_network
    from vnncert.smoothing.report import certify_dataset, load_dataset, report

    data = SPECS / "data" / "digits_test.npz"
    with tempfile.TemporaryDirectory() as d:
        files = []
        for tag, sigma in (("025", 0.25), ("050", 0.5), ("100", 1.0)):
            net = load_network(str(SPECS / "onnx" / f"digits_mlp_noise{tag}.onnx"), threads=a.threads)
            x, y = load_dataset(str(data), net.n_inputs)
            out = str(Path(d) / f"sigma{tag}.tsv")
            t0 = time.perf_counter()
            rows = certify_dataset(net, x, y, sigma, n0=N0, n=a.n, alpha=ALPHA, batch=a.batch, skip=a.skip, seed=0,
                                   progress=False, out=out, threads=a.threads)
            dt = time.perf_counter() - t0
            print(f"digits_mlp_noise{tag}.onnx sigma={sigma}: {len(rows)} examples in {dt:.1f} s "
                  f"(median CERTIFY {statistics.median(r.seconds for r in rows) * 1000:.1f} ms)")
            files.append(out)
        print()
        print(report(files))
        print()
        print(report(files, radii=[0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5], plot=a.plot))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("speed", "table"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=N, help="estimation samples for the table (default 100000)")
    ap.add_argument("--skip", type=int, default=1)
    ap.add_argument("--plot", default=None, help="PNG of the table's curves")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "plugin"))
    return cmd_speed(a) if a.what == "speed" else cmd_table(a)


if __name__ == "__main__":
    sys.exit(main())
