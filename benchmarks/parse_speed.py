"""VNN-LIB parse speed: vnncert's 1.0 and 2.0 parsers, and the reference `read_vnnlib_simple`.

The reference is `read_vnnlib_simple` from nnenum (github.com/stanleybak/nnenum,
src/nnenum/vnnlib.py), the simple parser that the VNN-COMP 2021/2022 tool scripts and many
entrants copied. It is NOT part of this repository; fetch it yourself and pass its location:

    git clone --depth 1 https://github.com/stanleybak/nnenum /tmp/nnenum
    .venv/bin/python benchmarks/parse_speed.py --reference /tmp/nnenum

`--reference` (or the environment variable VNNCERT_REFERENCE_PARSER) may be the vnnlib.py file,
a directory holding it (directly or under src/nnenum/), or a bare git directory of that
repository (e.g. a mirror such as /work/.mirror/stanleybak+nnenum/repo), from which
src/nnenum/vnnlib.py is read with `git show` into a temporary directory.

Each round times both parsers on the same file, interleaved (ours: `vnncert.load_spec`, which
reads, decompresses if needed and parses; the reference: `read_vnnlib_simple(path, n_in, n_out)`,
which reads and parses), with the variable counts from our parse. Prints wall-clock and CPU-time
medians (CPU time is steadier on a busy machine), MB/s and the ratio. Without `--reference` only
vnncert is timed.

With `--vnnlib2` each file is also written as a VNN-LIB 2.0 query over `real` (the same property:
`vnncert.spec.vnnlib2.spec_to_vnnlib2` on the 1.0 parse, flat shapes [n_in] and [n_out], into a
temporary file, never kept) and the 2.0 parse of that file is timed the same way: vnncert's
(`load_spec`: its bulk front end for these shapes) and the reference `vnnlib` package's path
(`parse_vnnlib2(..., front_end="package")`: the package parses and type-checks, vnncert walks its
AST to the same normal form).

Usage: .venv/bin/python benchmarks/parse_speed.py [--reference DIR] [--vnnlib2] [--file F ...] [--repeat 5]
Default file: the largest .vnnlib under ../shared/benchmarks. Goal (issue 2): >= 10x the reference.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"
REF_PATH_IN_REPO = "src/nnenum/vnnlib.py"


def locate_reference(where: str, tmp: str) -> Path:
    p = Path(where)
    if p.is_file():
        return p
    for cand in (p / "vnnlib.py", p / REF_PATH_IN_REPO):
        if cand.is_file():
            return cand
    # a (bare) git directory: read the file out of HEAD
    try:
        text = subprocess.run(["git", "--git-dir", str(p), "show", f"HEAD:{REF_PATH_IN_REPO}"],
                              check=True, capture_output=True, text=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        sys.exit(f"no reference parser at {where}: expected vnnlib.py, {REF_PATH_IN_REPO} or a git directory of nnenum")
    out = Path(tmp) / "vnnlib.py"
    out.write_text(text)
    return out


def load_reference(path: Path):
    spec = importlib.util.spec_from_file_location("reference_vnnlib", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.read_vnnlib_simple


def largest_vnnlib() -> Path:
    files = sorted(SHARED.rglob("*.vnnlib"), key=lambda f: f.stat().st_size)
    if not files:
        sys.exit(f"no .vnnlib files under {SHARED}; pass --file")
    return files[-1]


def timed(fn):
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", default=os.environ.get("VNNCERT_REFERENCE_PARSER"),
                    help="nnenum's vnnlib.py, a directory holding it, or a git directory of nnenum")
    ap.add_argument("--file", action="append", help="property file(s); default: largest under ../shared/benchmarks")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--vnnlib2", action="store_true", help="also time the 2.0 parse of each property's 2.0 text")
    a = ap.parse_args()

    from vnncert import load_spec

    files = [Path(f) for f in a.file] if a.file else [largest_vnnlib()]
    with tempfile.TemporaryDirectory() as tmp:
        read_vnnlib_simple = None
        if a.reference:
            ref_file = locate_reference(a.reference, tmp)
            read_vnnlib_simple = load_reference(ref_file)
            print(f"reference: read_vnnlib_simple from {ref_file}")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, median of {a.repeat} rounds, interleaved")
        for f in files:
            size_mb = f.stat().st_size / 1e6
            spec = load_spec(str(f))
            n_in, n_out = spec.n_inputs, spec.n_outputs
            runs = {"vnncert": lambda: load_spec(str(f))}
            if a.vnnlib2:
                from vnncert.spec.vnnlib2 import spec_to_vnnlib2

                q = Path(tmp) / (f.stem + ".2.vnnlib")
                q.write_text(spec_to_vnnlib2(spec, [n_in], [n_out], "real"))
                runs["vnncert 2.0"] = lambda: load_spec(str(q))

                def package():
                    from vnncert.spec import read_text
                    from vnncert.spec.vnnlib2 import parse_vnnlib2

                    return parse_vnnlib2(read_text(str(q)), q.name, front_end="package")
                runs["package 2.0"] = package
            if read_vnnlib_simple is not None:
                runs["reference"] = lambda: read_vnnlib_simple(str(f), n_in, n_out)
            times = {k: [] for k in runs}
            for _ in range(a.repeat):
                for k, fn in runs.items():
                    times[k].append(timed(fn))
            med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}
            disjuncts = sum(len(c.output) for c in spec.cases)
            print(f"\n{f.name}: {size_mb:.2f} MB, {n_in} inputs, {n_out} outputs, "
                  f"{len(spec.cases)} input regions, {disjuncts} output disjuncts")
            for k, (w, c) in med.items():
                two = k.endswith("2.0")
                mb = size_mb if not two else q.stat().st_size / 1e6
                print(f"  {k:<11} : wall {w * 1e3:8.1f} ms = {mb / w:7.1f} MB/s   cpu {c * 1e3:8.1f} ms = {mb / c:7.1f} MB/s"
                      + (f"   ({mb:.2f} MB of 2.0 text)" if two else ""))
            if "reference" in med:
                (ow, oc), (rw, rc) = med["vnncert"], med["reference"]
                print(f"  speed-up  : wall {rw / ow:.1f}x   cpu {rc / oc:.1f}x   (goal >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
