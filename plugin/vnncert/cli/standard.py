"""The VNN-LIB 2.0 standard command line (standard chapter 5): `--name`, `--version`, `verify`, `supports`.

`vnncert verify` runs this form or the VNN-COMP form (`cli/verify.py`) by the rule written in
`cli/__init__.py` (the arguments alone decide: `--network` or `--serialise-assignments`, or
exactly one positional argument and no option only the VNN-COMP form has, select this form).

A query may declare several networks (one `--network NAME=FILE` per network not declared
`equal-to` another), several inputs and outputs, hidden nodes, and relate them in any arithmetic:
every theory of the standard is answered (docs/vnnlib2.md; the query and its models become one
network and one normal form in `api.load_problem`).

Output: the first stdout line is `sat`, `unsat`, `unknown` or `timed-out`; for `sat` the
assignment follows in the command-line format (a header `NAME TYPE [dims]` per declared
variable, hidden nodes included, in declaration order, then one value per line, row-major; values
are the exact values the models were run on, in positional notation) unless `--serialise-assignments DIR` is given (then
DIR/NAME.pb holds an ONNX TensorProto per variable and stdout has the result line only). Logs,
warnings and errors go to stderr. Exit code 0 for any of the four answers; 2 on any error (then
stdout is empty), which covers the standard's three required error conditions: a `--network`
mapping that misses a declared network or names one the query does not need, element types that
differ from the model's (unless the query is over `real`), and element types vnncert cannot
analyse soundly (it says so and suggests `real`).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Dict, List, Sequence, Tuple

from .. import __version__
from .common import EXIT_ERROR, EXIT_OK, NAME, Parser, UsageError, fail

CAPABILITIES = (
    "--onnx-opset-versions", "--onnx-element-types", "--onnx-operators", "--vnnlib-versions",
    "--hidden-node-theories", "--multiple-input-output-theories", "--multiple-network-theories",
    "--multiple-node-comparison-theories", "--arithmetic-complexity-theories",
    "--optimised-disjunctive-reasoning", "--serialise-assignments",
)
# the standard's own example spells this one with an extra "s"
_CAPABILITY_ALIASES = {"--multiple-inputs-output-theories": "--multiple-input-output-theories"}

_ANSWER_WORDS = {"sat": "sat", "unsat": "unsat", "unknown": "unknown", "timeout": "timed-out"}


def add_parser(sub) -> None:
    """The `supports` entry of `vnncert --help` (`cli.main` sends `supports ...` to `main` directly)."""
    p = sub.add_parser("supports", help="VNN-LIB 2.0: report one capability (the standard's `supports` command; "
                                        "`vnncert --name` prints the tool's name)",
                       description="Print what vnncert supports, in the VNN-LIB 2.0 format. One of: "
                                   + ", ".join(CAPABILITIES))
    p.add_argument("capability", choices=CAPABILITIES)
    p.set_defaults(run=lambda args: main(["supports", args.capability]))


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv == ["--name"]:
        _out(NAME + "\n")
        return EXIT_OK
    if argv == ["--version"]:
        _out(__version__ + "\n")
        return EXIT_OK
    if argv and argv[0] in ("supports", "capabilities"):
        return cmd_supports(argv[1:])
    if argv and argv[0] == "verify":
        return cmd_verify(argv[1:])
    return fail(f"not a VNN-LIB 2.0 command: {' '.join(argv)}")


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# ---- supports ------------------------------------------------------------------------------------
def onnx_operators() -> Tuple[List[str], str]:
    """Op types some converter of the op registry handles, and the constant-only shape ops
    (`ops.operators()`, read off the registry), and a note if none."""
    from ..network import ops

    names = ops.operators()
    return names, "" if names else "the ONNX op registry lists no converter yet"


def onnx_opset_range() -> Tuple[int, int]:
    """(lowest, highest) default-domain opset a model may declare, found by asking the machinery.

    Highest: what ONNX Runtime (which replays every witness) loads, up to the installed onnx's
    newest opset. Lowest: the oldest opset that ONNX Runtime loads and the converters' normalisation
    (`normalised_model`) accepts. Each probe is a one-node Relu model.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from ..network.normalise import normalise_model

    def model(opset: int):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
        ops_ = [helper.make_opsetid("", opset)]
        m = helper.make_model(g, opset_imports=ops_)
        m.ir_version = helper.find_min_ir_version_for(ops_)
        return m

    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.intra_op_num_threads = 1

    def runs(opset: int) -> bool:
        try:
            ort.InferenceSession(model(opset).SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
            return True
        except Exception:
            return False

    def converts(opset: int) -> bool:
        try:
            normalise_model(model(opset))
            return True
        except Exception:
            return False

    newest = onnx.defs.onnx_opset_version()
    hi = next((v for v in range(newest, 0, -1) if runs(v)), 0)
    lo = next((v for v in range(1, hi + 1) if runs(v) and converts(v)), hi)
    return lo, hi


def capability_lines(capability: str) -> Tuple[List[str], str]:
    """The answer lines for one capability, and a note for stderr (empty when there is nothing to say)."""
    from ..spec.vnnlib2 import SOUND_ELEMENT_TYPES, THEORIES, VNNLIB_VERSIONS

    if capability == "--onnx-opset-versions":
        lo, hi = onnx_opset_range()
        return [str(lo), str(hi)], ""
    if capability == "--onnx-element-types":
        return list(SOUND_ELEMENT_TYPES) + ["real"], ""
    if capability == "--onnx-operators":
        return onnx_operators()
    if capability == "--vnnlib-versions":
        return [VNNLIB_VERSIONS[0], VNNLIB_VERSIONS[-1]], ""
    theory = {"--hidden-node-theories": "hidden-node",
              "--multiple-input-output-theories": "multiple-input-output",
              "--multiple-network-theories": "multiple-network",
              "--multiple-node-comparison-theories": "multiple-node-comparison",
              "--arithmetic-complexity-theories": "arithmetic-complexity"}.get(capability)
    if theory:
        return list(THEORIES[theory]), ""
    if capability == "--optimised-disjunctive-reasoning":
        return ["false"], ""  # queries are expanded to disjunctive normal form
    if capability == "--serialise-assignments":
        return ["true"], ""
    raise KeyError(capability)


def cmd_supports(args: Sequence[str]) -> int:
    if list(args) in (["-h"], ["--help"]):
        _out(f"usage: {NAME} supports CAPABILITY\n\nPrint what vnncert supports (VNN-LIB 2.0 standard, chapter 5). "
             f"CAPABILITY is one of:\n" + "".join(f"  {c}\n" for c in CAPABILITIES))
        return EXIT_OK
    if len(args) != 1:
        return fail(f"supports takes exactly one capability: {', '.join(CAPABILITIES)}")
    cap = _CAPABILITY_ALIASES.get(args[0], args[0])
    if cap not in CAPABILITIES:
        return fail(f"unknown capability {args[0]!r}; the standard defines {', '.join(CAPABILITIES)}")
    try:
        lines, note = capability_lines(cap)
    except Exception as e:  # a broken installation: say so rather than print a wrong answer
        return fail(f"cannot determine {cap}: {type(e).__name__}: {e}")
    if note:
        print(f"{NAME}: note: {note}", file=sys.stderr)
    _out("".join(line + "\n" for line in lines))
    return EXIT_OK


# ---- verify --------------------------------------------------------------------------------------
def verify_parser() -> argparse.ArgumentParser:
    from ..router import MODES

    p = Parser(prog=f"{NAME} verify", allow_abbrev=False,
               description="VNN-LIB 2.0 verify: is the query satisfiable? First stdout line: sat, unsat, unknown "
                           "or timed-out; for sat the assignment follows. Errors: stderr, exit code 2.",
               epilog="This is the VNN-LIB 2.0 form of `vnncert verify`, chosen by --network or "
                      "--serialise-assignments, or by one positional argument; `vnncert verify --help` shows the "
                      "VNN-COMP form (MODEL.onnx PROP.vnnlib) and the rule that picks a form.")
    p.add_argument("query", metavar="QUERY", help="the VNN-LIB query (2.0; 1.0 is accepted too), .gz accepted")
    p.add_argument("--network", action="append", default=[], metavar="NAME=FILE",
                   help="the ONNX model of a declared network (once per network not declared equal-to another)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds >= 0 counted from process start (inf: no limit); the answer (timed-out at the "
                        "latest) is out by S + 0.5 s")
    p.add_argument("--serialise-assignments", "--assignments", dest="serialise", metavar="DIR",
                   help="write a satisfying assignment to DIR/NAME.pb (ONNX TensorProto) instead of stdout")
    p.add_argument("--mode", default="auto", choices=sorted(MODES), help="engines to run (non-standard, optional)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random engine, 0..2**64-1 (non-standard)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads for torch / ONNX Runtime / HiGHS, 0..1024, 0: all cores (non-standard)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="engine and detail on stderr, and what the libraries print (non-standard)")
    return p


def _network_map(pairs: Sequence[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for token in pairs:
        name, sep, path = token.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--network takes NAME=FILE, got {token!r}")
        if name in out:
            raise ValueError(f"--network maps {name!r} twice")
        out[name] = path
    return out


def _declarations_1_0(text: str, n_inputs: int, n_outputs: int):
    """A 1.0 query's variables in declaration order: scalar `Real` constants X_i / Y_j."""
    from ..spec.vnnlib2 import Declaration

    names = re.findall(r"\(\s*declare-const\s+([XY]_\d+)\s", text)
    if sorted(names) != sorted([f"X_{i}" for i in range(n_inputs)] + [f"Y_{j}" for j in range(n_outputs)]):
        names = [f"X_{i}" for i in range(n_inputs)] + [f"Y_{j}" for j in range(n_outputs)]
    return [Declaration(n, "input" if n[0] == "X" else "output", "Real", (), "") for n in names]


def assignment_arrays(decls, x, y) -> List[Tuple[object, object]]:
    """[(declaration, values in row-major order)] from the flat witness (x, y), declaration order kept.

    A 2.0 witness is every declared input in declaration order (x) and every declared hidden node
    and output in declaration order (y): each declaration takes the next values of its vector. A
    1.0 declaration (network "") is the scalar X_i / Y_j.
    """
    import numpy as np

    x, y = np.asarray(x).reshape(-1), np.asarray(y).reshape(-1)
    out = []
    at = {"x": 0, "y": 0}
    for d in decls:
        which = "x" if d.kind == "input" else "y"
        flat = x if which == "x" else y
        if d.network == "":
            i = int(d.name[2:])
            vals = flat[i:i + 1]
        else:
            vals = flat[at[which]:at[which] + d.size]
            at[which] += d.size
        if vals.size != d.size:
            raise ValueError(f"witness has {vals.size} values for {d.name}, which is declared with {d.size}")
        out.append((d, vals))
    if decls and decls[0].network != "" and (at["x"], at["y"]) != (x.size, y.size):
        raise ValueError(f"witness has {x.size} input and {y.size} output values; the query declares "
                         f"{at['x']} and {at['y']}")
    return out


def format_assignment(decls, x, y) -> str:
    """The standard's command-line assignment format.

    Each value is the exact value the model was run on, in positional notation (no exponent, always
    a fractional part), the shortest decimal that reads back as that same float64 -- and hence, for a
    float32 model, as that same float32.
    """
    from ..spec.vnnlib2 import format_number

    lines = []
    for d, vals in assignment_arrays(decls, x, y):
        lines.append(d.header())
        lines.extend(format_number(float(v)) for v in vals)
    return "".join(line + "\n" for line in lines)


def _pb_path(folder: str, name: str) -> str:
    return os.path.join(folder, f"{name}.pb")


def serialise_assignment(folder: str, decls, x, y, protect: Sequence[str] = ()) -> None:
    """DIR/NAME.pb: an ONNX TensorProto of the declared shape per variable (the model's element type
    for variables declared `real`/`Real`). Each file is written atomically (`results.atomic_write`);
    a file that is one of `protect` (the query, the models) is refused (ValueError)."""
    import numpy as np
    from onnx import numpy_helper

    from ..outputs import check_distinct
    from ..results import atomic_write

    os.makedirs(folder, exist_ok=True)
    types = {"float32": np.float32, "float64": np.float64, "float16": np.float16}
    pairs = assignment_arrays(decls, x, y)
    check_distinct([("--serialise-assignments", _pb_path(folder, d.name)) for d, _ in pairs],
                   [("input", p) for p in protect])
    for d, vals in pairs:
        arr = vals.astype(types.get(d.element_type, vals.dtype)).reshape(d.shape)
        atomic_write(_pb_path(folder, d.name), numpy_helper.from_array(arr, name=d.name).SerializeToString())


def cmd_verify(args: Sequence[str]) -> int:
    from ..api import check_options, model_map, run_query
    from ..errors import VnncertError
    from ..options import Options
    from ..outputs import check_distinct, check_folder_writable
    from ..results import Verdict
    from ..spec import detect_version, read_text

    try:
        a = verify_parser().parse_args(list(args))
    except UsageError:  # its line is on stderr already
        return EXIT_ERROR
    options = Options(mode=a.mode, seed=a.seed, threads=a.threads)
    try:  # the same checks as `vnncert verify MODEL PROP`, before any file is read
        check_options(options, a.timeout)
    except ValueError as e:
        return fail(str(e))
    try:
        given = _network_map(a.network)
        text = read_text(a.query)
        where = os.path.basename(a.query)
        if detect_version(text) == "2.0":
            from ..spec.vnnlib2 import read_declarations

            q = read_declarations(text, where)
            for w in q.warnings:
                print(f"{NAME}: {w}", file=sys.stderr)
            model = model_map(q, given)
            if not model:
                raise ValueError(f"{where}: no network needs a model")
            decls = q.declarations
        else:  # a 1.0 property has no network declaration: exactly one model, under any name
            if len(given) != 1:
                raise ValueError(f"{where} is a VNN-LIB 1.0 property (one network): give exactly one "
                                 f"--network NAME=FILE.onnx, got {len(given)}")
            model = next(iter(given.values()))
            decls = None
        if a.serialise:  # before any work: the folder takes files, and none of them is an input
            check_folder_writable("--serialise-assignments", a.serialise)
            inputs = [("query", a.query)] + [(f"network {n}", f) for n, f in given.items()]
            check_distinct([("--serialise-assignments", a.serialise)], inputs)
            if decls is not None:
                check_distinct([("--serialise-assignments", _pb_path(a.serialise, d.name)) for d in decls], inputs)
    except (VnncertError, ValueError) as e:
        return fail(str(e))

    out = run_query(model, a.query, options, a.timeout, child_stdout="stderr" if a.verbose else "null",
                    quiet_warnings=not a.verbose)
    if out.verdict == Verdict.ERROR:
        return fail(out.detail or "verification failed")
    if a.verbose:
        print(f"{NAME}: {out.engine}: {out.detail} ({out.seconds:.3f} s)", file=sys.stderr)
    elif isinstance(out.stats, dict) and out.stats.get("note"):  # e.g. an op that kept engines out (router)
        print(f"{NAME}: note: {out.stats['note']}", file=sys.stderr)
    word = _ANSWER_WORDS[out.verdict.value]
    if out.verdict != Verdict.SAT:
        _out(word + "\n")
        return EXIT_OK
    x, y = out.counterexample
    if decls is None:
        decls = _declarations_1_0(text, x.size, y.size)
    try:
        if a.serialise:
            serialise_assignment(a.serialise, decls, x, y, protect=[a.query] + list(given.values()))
            body = ""
        else:
            body = format_assignment(decls, x, y)
    except (OSError, ValueError) as e:
        return fail(f"found a satisfying assignment but cannot report it: {e}")
    _out("sat\n" + body)
    return EXIT_OK
