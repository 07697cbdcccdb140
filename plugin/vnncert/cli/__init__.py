"""The command line, `vnncert COMMAND ...`: argument parsing and printing only.

One module per command group: `verify.py` (the VNN-COMP form of verify), `standard.py` (the
VNN-LIB 2.0 standard command line: verify QUERY --network, supports, --name, --version),
`spec.py` (spec robustness / show), `smooth.py` (smooth certify / predict / report), `bench.py`
(bench / score / compare); `common.py` holds the exit codes, the one argument parser class and the
one error line. The work of a verify, in both forms, is `api.run_query`.

Which form of `vnncert verify` (the rule; `vnncert verify --help` and docs/usage.md say the same).
The arguments alone decide; no file is opened to decide:
  1. `--network` or `--serialise-assignments` (options only the VNN-LIB 2.0 form has) is the
     VNN-LIB 2.0 form, `vnncert verify QUERY --network NAME=MODEL.onnx`;
  2. `--result-file`, `--json`, `--relaxed-method`, `--sigma`, `--noise`, `--n0`, `--n` or
     `--alpha` (options only the VNN-COMP form has) is the VNN-COMP form,
     `vnncert verify MODEL.onnx PROP.vnnlib`;
  3. with neither, one positional argument is the VNN-LIB 2.0 form (QUERY) and two are the
     VNN-COMP form (MODEL PROP);
  4. anything else is an error naming both forms: options of both forms together, or no option of
     either and no positional argument, or three or more (exit 2; `vnncert verify --help` alone
     shows the VNN-COMP form's help, which states this rule).
An option is recognised as argparse would: exactly, `--opt=value`, or by an unambiguous prefix;
everything after `--` is positional. The chosen form's own parser then checks the line.

Exit codes (docs/formats.md, "Our conventions"): 0 for any verdict, 2 for bad input or an internal
error (one line `vnncert: error: ...` on stderr; `verify` in the VNN-COMP form also says `error`
on stdout and in the result file, when one was named and it is safe to write), 130 after SIGINT
and 143 after SIGTERM (quietly: no traceback, and nothing is written after the signal;
docs/usage.md "Guarantees"). `python -m vnncert.cli` and the `vnncert` console script both run
`main`.
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


def _interrupt_exit_code(exc):
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


# installed before anything else is imported, so that an interrupt during imports is quiet too
_previous_hook = sys.excepthook
sys.excepthook = _quiet_interrupt_hook
try:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
except ValueError:  # imported outside the main thread
    pass

import argparse  # noqa: E402
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: E402

from .. import __version__  # noqa: E402
from .common import EXIT_ERROR, EXIT_OK, Parser, UsageError, fail  # noqa: E402

VNNCOMP, STANDARD = "vnncomp", "standard"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: global options and one entry per command (what `vnncert --help` lists)."""
    from . import bench, smooth, spec, standard, verify

    ap = Parser(
        prog="vnncert",
        description="VNN-COMP / VNN-LIB neural-network verification: falsification, relaxed bounds, exact MILP "
                    "and randomized smoothing behind one command line.")
    ap.add_argument("--version", action="version", version=__version__, help="print the version and exit")
    ap.add_argument("--name", action="version", version="vnncert",
                    help="print the tool's name and exit (VNN-LIB 2.0 standard command line)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # verify and supports are dispatched before this parser (main); their entries here are for --help
    sub.add_parser("verify", add_help=False,
                   help=f"answer one query: {verify.FORMS}; `vnncert verify --help` says which form a line is")
    spec.add_parser(sub)
    smooth.add_parser(sub)
    bench.add_parser(sub)
    standard.add_parser(sub)
    return ap


# ---- which form of verify ------------------------------------------------------------------------
def _option_table() -> Tuple[Dict[str, int], set, set]:
    """(option -> number of values it takes, options only the VNN-COMP form has, options only the
    VNN-LIB 2.0 form has), read off the two forms' parsers."""
    from . import standard, verify

    def table(p) -> Dict[str, int]:
        return {o: (0 if a.nargs == 0 else 1) for o, a in p._option_string_actions.items()}  # noqa: SLF001

    comp, std = table(verify.parser()), table(standard.verify_parser())
    takes = {**comp, **std}
    return takes, set(comp) - set(std), set(std) - set(comp)


def verify_form(args: Sequence[str]) -> Tuple[Optional[str], str]:
    """(VNNCOMP, "") or (STANDARD, "") for the arguments after `verify`, by the rule of this module's
    docstring, or (None, why) when the line is neither form."""
    takes, comp_only, std_only = _option_table()
    positional, comp_seen, std_seen = 0, [], []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            positional += len(args) - i
            break
        if a.startswith("-") and a != "-" and not _is_number(a):
            name, eq, _ = a.partition("=")
            hits = [name] if name in takes else [o for o in takes if o.startswith(name) and name.startswith("--")]
            if len(hits) == 1:
                o = hits[0]
                (comp_seen if o in comp_only else std_seen if o in std_only else []).append(name)
                if takes[o] and not eq:
                    i += 1  # its value
            continue
        positional += 1
    if comp_seen and std_seen:
        return None, (f"{std_seen[0]} is an option of the VNN-LIB 2.0 form and {comp_seen[0]} one of the VNN-COMP "
                      f"form: use one form, {_forms()}")
    if std_seen:
        return STANDARD, ""
    if comp_seen:
        return VNNCOMP, ""
    if positional == 1:
        return STANDARD, ""
    if positional == 2:
        return VNNCOMP, ""
    return None, f"verify takes {_forms()}; got {positional} positional argument(s)"


def _forms() -> str:
    from .verify import FORMS

    return FORMS


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _wants_help(args: Sequence[str]) -> bool:
    return any(a in ("-h", "--help") for a in (args[:args.index("--")] if "--" in args else args))


# ---- main ----------------------------------------------------------------------------------------
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
    try:
        if argv[:1] == ["verify"]:
            return _verify(argv[1:])
        if argv[:1] in (["supports"], ["capabilities"]):
            from . import standard

            return standard.main(argv)
        ap = build_parser()
        try:
            args = ap.parse_args(argv)
        except UsageError:  # its line is on stderr already
            return EXIT_ERROR
        return args.run(args)
    except SystemExit as e:  # --help, --version, --name: argparse printed them
        if e.code in (0, None):
            return EXIT_OK
        raise


def _verify(args: List[str]) -> int:
    from . import standard, verify

    form, why = verify_form(args)
    if form == STANDARD:
        return standard.main(["verify"] + args)
    if form == VNNCOMP or _wants_help(args):
        return verify.main(args)
    fail(why)
    # a named result file (an option of the VNN-COMP form) gets `error`, the VNN-COMP way
    return verify.refused(args) if verify.names_result_file(args) else EXIT_ERROR
