"""Command line: argument parsing and printing only.

Exit codes (docs/formats.md, "Our conventions"): 0 for any verdict, 2 for bad input or an internal
error (the result file then says `error` and stderr has one line).
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__

EXIT_OK = 0
EXIT_ERROR = 2


def _mode_help() -> str:
    from .router import MODE_HELP

    return "; ".join(f"{m}: {h}" for m, h in MODE_HELP.items())


def _add_verify(sub) -> None:
    from .router import MODES

    p = sub.add_parser(
        "verify", help="answer one query: MODEL.onnx PROP.vnnlib (VNN-COMP form)",
        description="Is there an input in the property's input region whose output lies in its (unsafe) output set? "
                    "Prints sat / unsat / unknown / timeout / error on stdout and writes a VNN-COMP result file. "
                    "Exit code 0 for any verdict, 2 for bad input or an internal error.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="MODEL.onnx[.gz] PROP.vnnlib[.gz]")
    p.add_argument("--mode", default="auto", choices=sorted(MODES), help=_mode_help())
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds counted from process start; the file holds the final word and the process has "
                        "exited by S + 0.5 s (engines stop 0.3 s early; a supervising parent kills them at S)")
    p.add_argument("--result-file", metavar="F", help="VNN-COMP result file (holds 'unknown' from the start)")
    p.add_argument("--json", metavar="F", help="JSON sidecar: verdict, engine, timings, detail, witness/certificate")
    p.add_argument("--seed", type=int, default=0, help="seed of every random engine (default 0)")
    p.add_argument("--threads", type=int, default=0, help="threads for torch / ONNX Runtime / HiGHS (default: all cores)")
    p.add_argument("--relaxed-method", default=None, help="bounding method of the relaxed engine")
    p.add_argument("--sigma", type=float, default=None, help="noise level of the probabilistic engine")
    p.add_argument("--noise", default=None, help="gaussian (L2), laplace or uniform (L1) for the probabilistic engine")
    p.add_argument("--n0", type=int, default=None, help="selection samples (probabilistic)")
    p.add_argument("--n", type=int, default=None, help="estimation samples (probabilistic)")
    p.add_argument("--alpha", type=float, default=None, help="failure probability (probabilistic)")
    p.add_argument("-v", "--verbose", action="store_true", help="engine and detail on stderr")


def _add_spec(sub) -> None:
    p = sub.add_parser("spec", help="write or inspect VNN-LIB properties")
    ss = p.add_subparsers(dest="spec_cmd", required=True)
    r = ss.add_parser("robustness", help="write a local-robustness property (box of half-width eps, unsafe if another class reaches the label's logit)")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FILE.npz", help="npz with x (examples) and y (labels); pick one with --index")
    src.add_argument("--point", metavar="V,V,...", help="the centre point, comma separated (flat C order)")
    r.add_argument("--index", type=int, default=0, help="row of --data (default 0)")
    r.add_argument("--label", type=int, help="label (required with --point; default: y[index] with --data)")
    r.add_argument("--eps", type=float, required=True, help="L-infinity half-width of the box")
    r.add_argument("--n-classes", type=int, help="number of outputs (default: from --model)")
    r.add_argument("--model", metavar="M.onnx", help="read the number of outputs (and inputs, checked) from this model")
    r.add_argument("--clip", type=float, nargs=2, metavar=("LO", "HI"), help="clip the box to [LO, HI]")
    r.add_argument("--out", required=True, metavar="F.vnnlib")
    s = ss.add_parser("show", help="parse a property and summarise its normal form")
    s.add_argument("prop")
    s.add_argument("--model", help="check the variable counts against this model")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="vnncert",
        description="VNN-COMP / VNN-LIB neural-network verification: falsification, relaxed bounds, exact MILP "
                    "and randomized smoothing behind one command line.")
    ap.add_argument("--version", action="version", version=__version__)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_verify(sub)
    _add_spec(sub)
    for name in ("cli_smooth", "cli_bench", "cli_standard"):
        mod = _optional(name)
        if mod is not None:
            mod.add_parser(sub)
    return ap


def _optional(name: str):
    import importlib

    try:
        return importlib.import_module(f"vnncert.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"vnncert.{name}":
            return None
        raise


def _fail(message: str) -> int:
    print(f"vnncert: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def cmd_verify(args) -> int:
    import math
    import time

    from .api import ENGINE_MARGIN, outcome_of, solve
    from .deadline import deadline_from_start
    from .options import Options
    from .results import Outcome, Verdict, write_json, write_result_file
    from .supervise import run_supervised

    hard = deadline_from_start(args.timeout) if args.timeout is not None else math.inf
    if args.result_file:
        try:
            write_result_file(args.result_file, Outcome(Verdict.UNKNOWN))
        except OSError as e:
            return _fail(f"cannot write result file {args.result_file}: {e.strerror}")
    if len(args.paths) != 2:
        out = Outcome(Verdict.ERROR, engine="cli", detail=f"verify takes MODEL.onnx PROP.vnnlib, got {len(args.paths)} path(s)")
    else:
        fields = {k: getattr(args, a) for k, a in (("relaxed_method", "relaxed_method"), ("sigma", "sigma"),
                                                   ("noise", "noise"), ("n0", "n0"), ("n", "n"), ("alpha", "alpha"))
                  if getattr(args, a) is not None}
        options = Options(mode=args.mode, seed=args.seed, threads=args.threads, **fields)
        model, prop = args.paths
        engine_deadline = hard - ENGINE_MARGIN
        t0 = time.monotonic()
        res = run_supervised(lambda: solve(model, prop, options, engine_deadline), hard)
        out = outcome_of(res, args.timeout)
        if not out.seconds:
            out.seconds = time.monotonic() - t0
    comments = _certificate_comments(out)
    if args.result_file:
        write_result_file(args.result_file, out, comments)
    if args.json:
        write_json(args.json, out, {"model": args.paths[0] if args.paths else None,
                                    "property": args.paths[1] if len(args.paths) > 1 else None,
                                    "mode": args.mode, "timeout": args.timeout})
    print(out.verdict.value)
    for c in comments:
        print("; " + c)
    if out.verdict == Verdict.ERROR:
        print(f"vnncert: error: {out.detail}", file=sys.stderr)
        return EXIT_ERROR
    if args.verbose:
        print(f"vnncert: {out.engine}: {out.detail} ({out.seconds:.3f} s)", file=sys.stderr)
    return EXIT_OK


def _certificate_comments(out) -> List[str]:
    c = out.certificate
    if c is None:
        return []
    lines = [f"{c.claim}",
             f"smoothed classifier g: sigma={c.sigma} noise={c.noise} n0={c.n0} n={c.n} alpha={c.alpha}",
             f"predicted class {c.predicted}, pA_lower={c.pA_lower:.6g}, certified {c.norm} radius={c.radius:.6g}"]
    if c.needed_radius is not None:
        lines.append(f"needed radius={c.needed_radius:.6g}: box {'covered' if c.covered else 'NOT covered'} for g (probability 1-alpha)")
    return lines


def cmd_spec(args) -> int:
    import numpy as np

    from .errors import VnncertError

    try:
        if args.spec_cmd == "show":
            from . import load_network, load_spec

            net = load_network(args.model) if args.model else None
            spec = load_spec(args.prop, network=net)
            print(f"{args.prop}: VNN-LIB {spec.version}, {spec.n_inputs} inputs, {spec.n_outputs} outputs, "
                  f"{len(spec.cases)} input region(s), {sum(len(c.output) for c in spec.cases)} output disjunct(s)")
            for i, c in enumerate(spec.cases[:10]):
                w = c.region.upper - c.region.lower
                extra = f", {c.region.G.shape[0]} extra input constraints" if c.region.G is not None else ""
                print(f"  case {i}: box widths min {w.min():.6g} max {w.max():.6g}{extra}; "
                      f"{len(c.output)} disjunct(s) of {', '.join(str(h.rows) for h in c.output[:8])}"
                      f"{'...' if len(c.output) > 8 else ''} rows")
            if len(spec.cases) > 10:
                print(f"  ... {len(spec.cases) - 10} more")
            return EXIT_OK
        from .spec.robustness import robustness_vnnlib
        from .results import atomic_write

        n_classes = args.n_classes
        if args.model:
            from . import load_network

            net = load_network(args.model)
            n_classes = n_classes or net.n_outputs
        if args.data:
            d = np.load(args.data)
            x = np.asarray(d["x"])[args.index].reshape(-1)
            label = args.label if args.label is not None else int(np.asarray(d["y"])[args.index])
        else:
            x = np.array([float(v) for v in args.point.split(",")])
            if args.label is None:
                return _fail("--label is required with --point")
            label = args.label
        if not n_classes:
            return _fail("give --n-classes or --model")
        if args.model and x.size != net.n_inputs:
            return _fail(f"point has {x.size} values but {args.model} has {net.n_inputs} inputs")
        if not 0 <= label < n_classes:
            return _fail(f"label {label} is not in 0..{n_classes - 1}")
        lo, hi = (args.clip if args.clip else (None, None))
        atomic_write(args.out, robustness_vnnlib(x, label, n_classes, args.eps, lo, hi))
        print(args.out)
        return EXIT_OK
    except VnncertError as e:
        return _fail(str(e))
    except (OSError, KeyError, ValueError, IndexError) as e:
        return _fail(f"{type(e).__name__}: {e}")


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    std = _optional("cli_standard")
    if std is not None and std.handles(argv):
        return std.main(argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command == "verify":
        return cmd_verify(args)
    if args.command == "spec":
        return cmd_spec(args)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
