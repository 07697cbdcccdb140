"""`vnncert verify MODEL.onnx PROP.vnnlib`: the VNN-COMP form of verify.

stdout's first line is the verdict (`sat`, `unsat`, `unknown`, `timeout`, `error`), then the
certificate's comment lines (`; ...`) of a probabilistic answer. `--result-file` holds `unknown`
from the start and the final word at the end; after the verdict it may carry comment lines (the
certificate, and `; note: ...` when the router says why engines were kept out of an answer that
is not sat). An argument error is one line on stderr, `error` on stdout and, when a result file
was named and it is safe to write, `error` in it; exit code 2. The work itself is `api.run_query`.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

from .common import EXIT_ERROR, EXIT_OK, Parser, UsageError, fail, one_line

FORMS = "MODEL.onnx PROP.vnnlib (VNN-COMP form) or QUERY.vnnlib --network NAME=MODEL.onnx (VNN-LIB 2.0 form)"

EPILOG = """\
The two forms of verify (the arguments alone decide, no file is opened):
  1. --network or --serialise-assignments (options only the VNN-LIB 2.0 form has):
     the VNN-LIB 2.0 form, `vnncert verify QUERY --network NAME=MODEL.onnx --help`
  2. --result-file, --json, --relaxed-method, --sigma, --noise, --n0, --n or --alpha
     (options only the VNN-COMP form has): the VNN-COMP form, described here
  3. neither: one positional argument is the VNN-LIB 2.0 form (QUERY), two are the
     VNN-COMP form (MODEL PROP)
  4. anything else (options of both forms; no positional argument, or three or more,
     and no option of one form) is an error naming both forms."""


def _mode_help() -> str:
    from ..router import MODE_HELP

    return "; ".join(f"{m}: {h}" for m, h in MODE_HELP.items())


def parser() -> argparse.ArgumentParser:
    """The VNN-COMP form's parser (`vnncert verify --help` shows it)."""
    from ..router import MODES

    p = Parser(prog="vnncert verify", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
               usage="vnncert verify MODEL.onnx PROP.vnnlib [options]\n"
                     "       vnncert verify QUERY.vnnlib --network NAME=MODEL.onnx [options]  (VNN-LIB 2.0 form)",
               description="Is there an input in the property's input region whose output lies in its (unsafe) output\n"
                           "set? Prints sat / unsat / unknown / timeout / error on stdout and writes a VNN-COMP result\n"
                           "file. Exit code 0 for any verdict, 2 for bad input or an internal error.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="MODEL.onnx[.gz] PROP.vnnlib[.gz]")
    p.add_argument("--mode", default="auto", choices=sorted(MODES), help=_mode_help())
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds >= 0 counted from process start (inf: no limit); the file holds the final word and "
                        "the process has exited by S + 0.5 s (engines stop 0.3 s early; a supervising parent kills "
                        "them at S)")
    p.add_argument("--result-file", metavar="F",
                   help="VNN-COMP result file (holds 'unknown' from the start; never one of the inputs; a symlink is "
                        "written through)")
    p.add_argument("--json", metavar="F", help="JSON sidecar: verdict, engine, timings, detail, witness/certificate "
                                               "(checked writable before any work)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random engine, 0..2**64-1 (default 0)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads for torch / ONNX Runtime / HiGHS, 0..1024 (default 0: all cores)")
    p.add_argument("--relaxed-method", default=None, help="bounding method of the relaxed engine: ibp, crown "
                                                          "(default), alpha-crown or lp")
    p.add_argument("--sigma", type=float, default=None, help="noise level of the probabilistic engine (> 0)")
    p.add_argument("--noise", default=None, help="gaussian (L2), laplace or uniform (L1) for the probabilistic engine")
    p.add_argument("--n0", type=int, default=None, help="selection samples (probabilistic, >= 1)")
    p.add_argument("--n", type=int, default=None, help="estimation samples (probabilistic, >= 1)")
    p.add_argument("--alpha", type=float, default=None, help="failure probability (probabilistic, in (0, 1))")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="engine and detail on stderr; also what the libraries print (warnings, and their stdout "
                        "chatter, sent to stderr)")
    return p


def main(argv: Sequence[str]) -> int:
    """`vnncert verify ARGV...` in the VNN-COMP form."""
    try:
        args = parser().parse_args(list(argv))
    except UsageError:  # its line is on stderr already
        return refused(argv)
    return run(args)


def refused(argv: Sequence[str]) -> int:
    """After a line refused before it could run (its one line is on stderr already): `error` into the
    result file, if one was named and it is safe to write, and `error` on stdout; exit code 2."""
    known = [o for o in parser()._option_string_actions if o.startswith("--")]  # noqa: SLF001
    error_into_result_file(argv, known)
    print("error")
    return EXIT_ERROR


def names_result_file(argv: Sequence[str]) -> bool:
    known = [o for o in parser()._option_string_actions if o.startswith("--")]  # noqa: SLF001
    return _option_value(argv, "--result-file", known) is not None


def _option_value(argv: Sequence[str], option: str, known: Sequence[str]) -> Optional[str]:
    """The value argparse would give `option` in argv (last one wins; `--opt V`, `--opt=V`, unique
    prefixes as argparse allows), read without parsing the rest: used when parsing failed."""
    value = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            break
        if a.startswith("--"):
            name, eq, rest = a.partition("=")
            hits = [name] if name in known else [o for o in known if o.startswith(name)]
            if hits == [option]:
                if eq:
                    value = rest
                elif i + 1 < len(argv):
                    value = argv[i + 1]
                    i += 1
        i += 1
    return value


def error_into_result_file(argv: Sequence[str], known: Sequence[str]) -> None:
    """After an argument error: `error` into the result file, if one was named and that file is none
    of the other files on the command line (and can be written). Says nothing itself."""
    from ..outputs import check_distinct, check_writable
    from ..results import Outcome, Verdict, write_result_file

    res = _option_value(argv, "--result-file", known)
    if not res:
        return
    tokens = list(argv) + [a.partition("=")[2] for a in argv if a.startswith("--") and "=" in a]
    if res in tokens:
        tokens.remove(res)  # the value itself; any other mention of the same file forbids writing it
    others = [("file", t) for t in tokens if t and os.path.exists(t)]
    js = _option_value(argv, "--json", known)
    try:
        check_distinct([("--result-file", res)], others + ([("--json", js)] if js else []))
        check_writable("--result-file", res)
        write_result_file(res, Outcome(Verdict.ERROR))
    except (OSError, ValueError):
        pass


def run(args) -> int:
    from ..api import check_options, run_query
    from ..options import Options
    from ..outputs import OutputError, check_distinct, check_writable
    from ..results import Outcome, Verdict, write_json, write_result_file

    inputs = [("model" if i == 0 else "property" if i == 1 else "input", p) for i, p in enumerate(args.paths)]
    # 1) the result file: never one of the inputs, writable; it holds `unknown` from here on
    if args.result_file:
        try:
            check_distinct([("--result-file", args.result_file)], inputs)
            check_writable("--result-file", args.result_file)
            write_result_file(args.result_file, Outcome(Verdict.UNKNOWN))
        except OutputError as e:
            print("error")
            return fail(e)
        except OSError as e:
            print("error")
            return fail(f"cannot write result file {args.result_file}: {e.strerror}")
    # 2) the arguments and the sidecar, before any work
    problem = None
    json_ok = False
    fields = {k: getattr(args, k) for k in ("relaxed_method", "sigma", "noise", "n0", "n", "alpha")
              if getattr(args, k) is not None}
    options = Options.make(mode=args.mode, seed=args.seed, threads=args.threads, **fields)
    try:
        check_options(options, args.timeout)
        if args.json:
            check_distinct([("--result-file", args.result_file), ("--json", args.json)], inputs)
            check_writable("--json", args.json)
            json_ok = True
        if len(args.paths) != 2:
            raise ValueError(f"verify takes {FORMS}; got {len(args.paths)} path(s)")
    except ValueError as e:
        problem = str(e)
    if problem is not None:
        out = Outcome(Verdict.ERROR, engine="cli", detail=problem)
    else:
        model, prop = args.paths
        out = run_query(model, prop, options, args.timeout, child_stdout="stderr" if args.verbose else "null",
                        quiet_warnings=not args.verbose)
    comments = certificate_lines(out)
    if args.json and json_ok:
        try:
            write_json(args.json, out, {"model": args.paths[0] if args.paths else None,
                                        "property": args.paths[1] if len(args.paths) > 1 else None,
                                        "mode": args.mode, "timeout": args.timeout})
        except (OSError, ValueError) as e:
            out = Outcome(Verdict.ERROR, engine="cli", detail=f"cannot write --json {args.json}: "
                                                                f"{getattr(e, 'strerror', None) or e}")
            comments = []
    if args.result_file:
        try:
            write_result_file(args.result_file, out, comments + note_lines(out))
        except (OSError, ValueError) as e:
            out = Outcome(Verdict.ERROR, engine="cli", detail=f"cannot write result file {args.result_file}: "
                                                                f"{getattr(e, 'strerror', None) or e}")
            comments = []
    print(out.verdict.value)
    for c in comments:
        print("; " + c)
    if out.verdict == Verdict.ERROR:
        sys.stdout.flush()
        return fail(out.detail)
    if args.verbose:
        print(f"vnncert: {out.engine}: {out.detail} ({out.seconds:.3f} s)", file=sys.stderr)
    elif note_lines(out):  # e.g. an op that kept engines out (router)
        print(f"vnncert: note: {one_line(out.stats['note'])}", file=sys.stderr)
    return EXIT_OK


def certificate_lines(out) -> List[str]:
    """The comment lines of a probabilistic answer: the claim about g and the certificate's numbers."""
    c = out.certificate
    if c is None:
        return []
    lines = [f"{c.claim}",
             f"smoothed classifier g: sigma={c.sigma} noise={c.noise} n0={c.n0} n={c.n} alpha={c.alpha}",
             f"predicted class {c.predicted}, pA_lower={c.pA_lower:.6g}, certified {c.norm} radius={c.radius:.6g}"]
    if c.needed_radius is not None:
        lines.append(f"needed radius={c.needed_radius:.6g}: box {'covered' if c.covered else 'NOT covered'} for g (probability 1-alpha)")
    return lines


def note_lines(out) -> List[str]:
    """`note: ...` when the router left a note (e.g. an operator that kept engines out) on an answer
    that is not sat: the result file's comment after the verdict (a sat's witness needs no note)."""
    from ..results import Verdict

    note = out.stats.get("note") if isinstance(out.stats, dict) else None
    if not note or out.verdict in (Verdict.SAT, Verdict.ERROR):
        return []
    return [f"note: {one_line(note)}"]
