"""Command line: argument parsing and printing only.

Exit codes (docs/formats.md, "Our conventions"): 0 for any verdict, 2 for bad input or an internal
error (the result file then says `error` and stderr has one line), 130 after SIGINT and 143 after
SIGTERM (quietly: no traceback, and nothing is written after the signal; docs/usage.md "Guarantees").

Every argument error, whichever subcommand, is one line `vnncert: error: ...` on stderr and exit 2
(`Parser`, used by every subparser); `verify` then also says `error` on stdout and in the result
file, when one was named and it is safe to write.
"""
from __future__ import annotations

import os
import signal
import sys

_signalled: list = []  # the signals that reached the command line, first first


class Interrupted(BaseException):
    """SIGTERM reached the command line: stop quietly (exit 128 + signal), write nothing more."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_sigint(signum, frame):
    """Python's own SIGINT behaviour (KeyboardInterrupt), remembering that it happened: whatever
    exception the interrupt turns into (an import interrupted half-way can raise ImportError)
    then ends the command quietly."""
    _signalled.append(signum)
    raise KeyboardInterrupt


def _on_sigterm(signum, frame):
    _signalled.append(signum)
    raise Interrupted(signum)


def _interrupt_exit_code(exc: Optional[BaseException]) -> Optional[int]:
    """128 + signal when exc comes from a signal (or one was received), else None."""
    if isinstance(exc, Interrupted):
        return 128 + exc.signum
    if _signalled:
        return 128 + _signalled[0]
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return None


def _quiet_interrupt_hook(kind, value, tb):
    """SIGINT / SIGTERM at any moment, even while modules are still being imported: no traceback."""
    code = _interrupt_exit_code(value)
    if code is not None:
        try:
            sys.stdout.flush()
        except BaseException:  # noqa: BLE001 - exiting anyway
            pass
        os._exit(code)
    _previous_hook(kind, value, tb)


_previous_hook = sys.excepthook
sys.excepthook = _quiet_interrupt_hook
try:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
except ValueError:  # imported outside the main thread
    pass

import argparse  # noqa: E402
from typing import List, Optional, Sequence  # noqa: E402

from . import __version__  # noqa: E402

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_SIGINT = 130


class UsageError(SystemExit):
    """A command line argparse refused. Its one line is on stderr already; exit code 2."""

    def __init__(self, message: str):
        super().__init__(EXIT_ERROR)
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse with the house rule for bad arguments: one line `vnncert: error: ...`, exit 2, no usage.

    Subparsers inherit the class (argparse's add_subparsers uses the parent's class), so every
    subcommand, including those other modules add (smooth, bench, score, compare, supports), follows it.
    """

    def error(self, message):
        print(f"vnncert: error: {' '.join(str(message).split())}", file=sys.stderr)
        raise UsageError(message)


def _mode_help() -> str:
    from .router import MODE_HELP

    return "; ".join(f"{m}: {h}" for m, h in MODE_HELP.items())


def _add_verify(sub) -> None:
    from .router import MODES

    p = sub.add_parser(
        "verify", help="answer one query: MODEL.onnx PROP.vnnlib (VNN-COMP form), or, VNN-LIB 2.0 form, "
                       "QUERY.vnnlib --network NAME=MODEL.onnx (`vnncert verify QUERY --network N=M --help`)",
        description="Is there an input in the property's input region whose output lies in its (unsafe) output set? "
                    "Prints sat / unsat / unknown / timeout / error on stdout and writes a VNN-COMP result file. "
                    "Exit code 0 for any verdict, 2 for bad input or an internal error.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="MODEL.onnx[.gz] PROP.vnnlib[.gz]")
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
    ap = Parser(
        prog="vnncert",
        description="VNN-COMP / VNN-LIB neural-network verification: falsification, relaxed bounds, exact MILP "
                    "and randomized smoothing behind one command line.")
    ap.add_argument("--version", action="version", version=__version__, help="print the version and exit")
    ap.add_argument("--name", action="version", version="vnncert",
                    help="print the tool's name and exit (VNN-LIB 2.0 standard command line)")
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


def _verify_options(ap: argparse.ArgumentParser) -> List[str]:
    for action in ap._subparsers._group_actions:  # noqa: SLF001 - argparse keeps subparsers here
        verify = getattr(action, "choices", {}).get("verify")
        if verify is not None:
            return [o for o in verify._option_string_actions if o.startswith("--")]  # noqa: SLF001
    return []


def _error_into_result_file(argv: Sequence[str], known: Sequence[str]) -> None:
    """After an argument error in `verify`: `error` into the result file, if one was named and that
    file is none of the other files on the command line (and can be written). Says nothing itself."""
    from .outputs import check_distinct, check_writable
    from .results import Outcome, Verdict, write_result_file

    res = _option_value(argv, "--result-file", known)
    if not res:
        return
    tokens = list(argv) + [a.partition("=")[2] for a in argv if a.startswith("--") and "=" in a]
    tokens.remove(res)  # the value itself; any other mention of the same file forbids writing it
    others = [("file", t) for t in tokens if t and os.path.exists(t)]
    js = _option_value(argv, "--json", known)
    try:
        check_distinct([("--result-file", res)], others + ([("--json", js)] if js else []))
        check_writable("--result-file", res)
        write_result_file(res, Outcome(Verdict.ERROR))
    except (OSError, ValueError):
        pass


def cmd_verify(args) -> int:
    from .api import check_options, run_query
    from .options import Options
    from .outputs import OutputError, check_distinct, check_writable
    from .results import Outcome, Verdict, write_json, write_result_file

    inputs = [("model" if i == 0 else "property" if i == 1 else "input", p) for i, p in enumerate(args.paths)]
    # 1) the result file: never one of the inputs, writable; it holds `unknown` from here on
    if args.result_file:
        try:
            check_distinct([("--result-file", args.result_file)], inputs)
            check_writable("--result-file", args.result_file)
            write_result_file(args.result_file, Outcome(Verdict.UNKNOWN))
        except OutputError as e:
            print("error")
            return _fail(str(e))
        except OSError as e:
            print("error")
            return _fail(f"cannot write result file {args.result_file}: {e.strerror}")
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
            raise ValueError(f"verify takes MODEL.onnx PROP.vnnlib, got {len(args.paths)} path(s)")
    except ValueError as e:
        problem = str(e)
    if problem is not None:
        out = Outcome(Verdict.ERROR, engine="cli", detail=problem)
    else:
        model, prop = args.paths
        out = run_query(model, prop, options, args.timeout, child_stdout="stderr" if args.verbose else "null",
                        quiet_warnings=not args.verbose)
    comments = _certificate_comments(out)
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
            write_result_file(args.result_file, out, comments)
        except (OSError, ValueError) as e:
            out = Outcome(Verdict.ERROR, engine="cli", detail=f"cannot write result file {args.result_file}: "
                                                                f"{getattr(e, 'strerror', None) or e}")
            comments = []
    print(out.verdict.value)
    for c in comments:
        print("; " + c)
    if out.verdict == Verdict.ERROR:
        sys.stdout.flush()
        print(f"vnncert: error: {' '.join(str(out.detail).split())}", file=sys.stderr)
        return EXIT_ERROR
    if args.verbose:
        print(f"vnncert: {out.engine}: {out.detail} ({out.seconds:.3f} s)", file=sys.stderr)
    elif isinstance(out.stats, dict) and out.stats.get("note"):  # e.g. an op that kept engines out (router)
        print(f"vnncert: note: {out.stats['note']}", file=sys.stderr)
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
    import math

    import numpy as np

    from .errors import VnncertError
    from .outputs import check_distinct, check_writable

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

        if not (math.isfinite(args.eps) and args.eps >= 0):
            return _fail(f"--eps must be a finite number >= 0, got {args.eps}")
        if args.clip and not (all(math.isfinite(v) for v in args.clip) and args.clip[0] <= args.clip[1]):
            return _fail(f"--clip takes LO HI, finite, LO <= HI, got {args.clip[0]} {args.clip[1]}")
        if args.n_classes is not None and args.n_classes < 1:
            return _fail(f"--n-classes must be >= 1, got {args.n_classes}")
        if args.index < 0:
            return _fail(f"--index must be >= 0, got {args.index}")
        check_distinct([("--out", args.out)], [("--data", args.data), ("--model", args.model)])
        check_writable("--out", args.out)
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
        if not np.all(np.isfinite(x)):
            return _fail("the point has a value that is not a finite number")
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
        msg = str(e) if type(e).__name__ == "OutputError" else f"{type(e).__name__}: {e}"
        return _fail(" ".join(msg.split()))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line. SIGINT gives exit 130 and SIGTERM 143, quietly, at any moment."""
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = None
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding program): leave its signals alone
        pass
    try:
        return _main(argv)
    except BaseException as e:  # noqa: BLE001 - only interrupts are handled here
        code = _interrupt_exit_code(e)
        if code is None:
            raise
        return code
    finally:
        if previous is not None:
            try:
                signal.signal(signal.SIGTERM, previous)
            except ValueError:
                pass


def _main(argv: List[str]) -> int:
    std = _optional("cli_standard")
    if std is not None and std.handles(argv):
        return std.main(argv)
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except UsageError:
        if argv[:1] == ["verify"]:
            _error_into_result_file(argv[1:], _verify_options(ap))
            print("error")
        return EXIT_ERROR
    if args.command == "verify":
        return cmd_verify(args)
    if args.command == "spec":
        return cmd_spec(args)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
