"""Command line of the benchmark tools: `vnncert bench`, `vnncert score`, `vnncert compare`.

Exit codes follow the house rule: 0 when the command did its job (whatever the verdicts or the
score), 2 for bad input (with one line on stderr); an interrupted bench exits 130 (SIGINT) or
143 (SIGTERM) after stopping its instances. Its CSV then holds every finished row, and rerunning
the same command resumes.
"""
from __future__ import annotations

import os
import sys

from .common import EXIT_OK, fail


def add_parser(sub) -> None:
    _add_bench(sub)
    _add_score(sub)
    _add_compare(sub)


def _add_bench(sub) -> None:
    from ..router import MODES

    p = sub.add_parser(
        "bench", help="run a benchmark suite (instances.csv) into a VNN-COMP results CSV (resumable)",
        description="Run every instance of BENCH_DIR/instances.csv (or of each subfolder holding one) in its own "
                    "process under its timeout, appending rows `category,onnx,vnnlib,prepare_time,result,run_time` to "
                    "--out as they finish; witnesses go to <out dir>/<category>/<onnx stem>_<vnnlib stem>.counterexample. "
                    "Rerunning the command skips rows already in --out. The tool is vnncert itself unless "
                    "--vnncomp-scripts or --solver-cmd names another one.")
    p.add_argument("bench_dir", metavar="BENCH_DIR", help="a benchmark folder with instances.csv, or a folder of them")
    p.add_argument("--out", required=True, metavar="results.csv", help="results CSV (appended to; resumed if it exists)")
    p.add_argument("--instances", metavar="FILE", help="instances file to run instead of BENCH_DIR/instances.csv "
                                                       "(its relative paths name files under BENCH_DIR)")
    p.add_argument("--category", help="category name written to the CSV and the witnesses' folder beside it: one folder "
                                      "name, no '/' or '..' (default: the benchmark folder's name)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N instances of each instances file")
    p.add_argument("--timeout-scale", type=float, default=1.0, metavar="X", help="multiply every instance timeout by X")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="instances run at once (default 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads per instance (default: cores / jobs; 1 with --scheduler)")
    p.add_argument("--memory-limit", type=float, default=None, metavar="MB",
                   help="address-space limit (RLIMIT_AS) of every instance process, in MiB")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--keep-workdirs", action="store_true", help="keep each instance's temporary folder (logs)")
    g = p.add_argument_group("vnncert as the tool")
    g.add_argument("--mode", default="auto", choices=sorted(MODES), help="vnncert verify --mode")
    g.add_argument("--seed", type=int, default=0, help="vnncert verify --seed")
    g.add_argument("--margin", type=float, default=1.0, metavar="S",
                   help="vnncert is told TIMEOUT - S (half of TIMEOUT below 2 S), so it exits before the kill at TIMEOUT")
    g.add_argument("--verify-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for vnncert verify (repeat; e.g. --verify-arg=--sigma --verify-arg=0.5)")
    t = p.add_argument_group("another tool")
    t.add_argument("--vnncomp-scripts", metavar="DIR",
                   help="a VNN-COMP tool folder: prepare_instance.sh then run_instance.sh v1 ... per instance")
    t.add_argument("--solver-cmd", metavar="CMD", help="a VNN-LIB 2.0 command-line solver")
    t.add_argument("--prepare-timeout", type=float, default=60.0, metavar="S",
                   help="limit of prepare_instance.sh (default 60 s, as the VNN-COMP harness)")
    t.add_argument("--name", help="tool name in logs and reports")
    d = p.add_argument_group("scale-out")
    d.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="submit the instances to this Dask distributed scheduler (workers need vnncert and the "
                        "benchmark files under the same paths)")
    p.set_defaults(run=cmd_bench)


def _add_score(sub) -> None:
    p = sub.add_parser(
        "score", help="VNN-COMP 2026 score of a results CSV, every witness re-checked with ONNX Runtime",
        description="+10 per correct sat/unsat, -150 per wrong answer or missing/failing witness, 0 otherwise. "
                    "Witnesses are read from <csv dir>/<category>/<onnx stem>_<vnnlib stem>.counterexample[.gz] and "
                    "replayed on the original model (input box slack 1e-4, output relations exact). Prints a "
                    "per-benchmark and total table with runtime statistics.")
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results CSV(s) of ONE tool, or folders of */results.csv")
    p.add_argument("--ground-truth", metavar="FILE", help="CSV with benchmark,onnx,vnnlib,...,consensus columns")
    p.add_argument("--benchmarks", action="append", default=[], metavar="DIR",
                   help="where to look for the models and properties the CSV names (repeatable)")
    p.add_argument("--name", help="tool name in the report")
    p.add_argument("--input-atol", type=float, default=1e-4, help="slack on the input box when re-checking (default 1e-4)")
    p.add_argument("--no-check", action="store_true", help="do not re-check witnesses (sat then needs the ground truth)")
    p.add_argument("--markdown", metavar="FILE", help="also write the report as markdown")
    p.add_argument("--json", metavar="FILE", help="also write every row's scoring as JSON")
    p.add_argument("--cactus", metavar="PNG", help="also draw the solved-vs-time plot")
    p.set_defaults(run=cmd_score)


def _add_compare(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare tools' results CSVs: agreement, contradictions with witnesses checked, cactus plot",
        description="Rows are matched on (category, onnx stem, vnnlib stem). Each argument is one tool: a results "
                    "CSV or a folder of */results.csv (VNN-COMP results-repo layout). Writes OUT/summary.md and "
                    "OUT/cactus.png and prints the summary.")
    p.add_argument("results", nargs="+", metavar="RESULTS")
    p.add_argument("--names", help="comma-separated tool names, in argument order (default: from the paths)")
    p.add_argument("--ground-truth", metavar="FILE")
    p.add_argument("--benchmarks", action="append", default=[], metavar="DIR")
    p.add_argument("--check", choices=("all", "contradictions", "none"), default="all",
                   help="which sat witnesses to re-check (default all)")
    p.add_argument("--input-atol", type=float, default=1e-4)
    p.add_argument("--out", default="compare", metavar="DIR", help="folder for summary.md and cactus.png (default ./compare)")
    p.set_defaults(run=cmd_compare)


# ---- commands ------------------------------------------------------------------------------------
def _no_rows(message: str, notes) -> str:
    """One line: `message`, with the first reason lines were dropped (the rest counted)."""
    notes = list(notes)
    if not notes:
        return message
    more = f"; {len(notes) - 1} more line(s) dropped" if len(notes) > 1 else ""
    return f"{message} ({notes[0]}{more})"


def cmd_bench(args) -> int:
    from ..bench.instances import InstancesError, load_suite
    from ..bench.runner import log_path, run_bench
    from ..bench.solvers import SolverUnavailable, make_solver

    if args.jobs < 1:
        return fail("--jobs must be at least 1")
    if not args.timeout_scale > 0:
        return fail("--timeout-scale must be positive")
    if args.memory_limit is not None and not args.memory_limit > 0:
        return fail("--memory-limit must be positive")
    if not os.path.isdir(args.bench_dir):
        return fail(f"{args.bench_dir}: not a folder")
    threads = args.threads
    if threads is None:
        threads = 1 if args.scheduler else max(1, (os.cpu_count() or 1) // args.jobs)
    try:
        instances = load_suite(args.bench_dir, args.instances, args.category, args.timeout_scale, args.limit)
        solver = make_solver(args.solver_cmd, args.vnncomp_scripts, name=args.name, mode=args.mode, seed=args.seed,
                             threads=threads, margin=args.margin, extra_args=tuple(args.verify_arg),
                             prepare_timeout=args.prepare_timeout)
    except (InstancesError, SolverUnavailable, FileNotFoundError) as e:
        return fail(str(e))
    if not instances:
        return fail(f"{args.bench_dir}: no instances")
    from ..bench.resultscsv import ResultsCsvError

    try:
        summary = run_bench(instances, solver, args.out, jobs=args.jobs, memory_limit_mb=args.memory_limit,
                            progress=not args.no_progress, scheduler=args.scheduler, argv=sys.argv,
                            keep_workdirs=args.keep_workdirs)
    except ResultsCsvError as e:
        return fail(f"{e} (not resuming into a file that is not a results CSV)")
    except RuntimeError as e:  # dask_runner.DaskUnavailable
        return fail(str(e))
    except OSError as e:
        return fail(f"{e.filename or args.out}: {e.strerror}")
    for note in summary.notes:
        print(f"vnncert: {note}", file=sys.stderr)
    print(f"{solver.name}: {summary.line()}")
    if summary.ran:
        line = f"instance processes {summary.run_time + summary.prepare_time:.2f} s"
        if summary.verifier_rows:
            line += f" (the tool's own time {summary.verifier_seconds:.2f} s)"
        if args.jobs == 1 and not args.scheduler:
            line += f"; runner overhead {summary.overhead_per_instance() * 1000:.0f} ms/instance"
        else:
            line += f"; {summary.ran / max(summary.wall, 1e-9):.2f} instances/s"
        print(line)
    print(f"results: {args.out}  log: {log_path(args.out)}")
    if summary.interrupted:
        print(f"vnncert: interrupted ({summary.interrupted}); rerun the same command to resume", file=sys.stderr)
        return 143 if summary.interrupted == "SIGTERM" else 130
    return EXIT_OK


def _checker(args, csvs):
    from ..bench.score import default_roots
    from ..bench.witness import FileResolver, WitnessChecker

    for d in args.benchmarks:
        if not os.path.isdir(d):
            raise FileNotFoundError(f"--benchmarks {d}: not a folder")
    return WitnessChecker(FileResolver(default_roots(csvs, args.benchmarks)), input_atol=args.input_atol)


def cmd_score(args) -> int:
    import json

    from ..bench.resultscsv import ResultsCsvError
    from ..bench.score import GroundTruth, ToolResults, load_tool, render, score_tool, to_json

    try:
        parts = [load_tool(r) for r in args.results]
        name = args.name or parts[0].name
        tool = ToolResults(name, [e for p in parts for e in p.entries])
        if not tool.entries:
            return fail(_no_rows("no result rows to score", [n for p in parts for n in p.notes]))
        for note in (n for p in parts for n in p.notes):
            print(f"vnncert: {note}", file=sys.stderr)
        truth = GroundTruth(args.ground_truth) if args.ground_truth else None
        checker = None if args.no_check else _checker(args, sorted({c for c, _ in tool.entries}))
    except (ResultsCsvError, FileNotFoundError) as e:
        return fail(str(e))
    report = score_tool(tool, checker, truth)
    print(render(report), end="")
    from ..results import atomic_write

    if args.markdown:
        atomic_write(args.markdown, render(report, markdown=True))
    if args.json:
        atomic_write(args.json, json.dumps(to_json(report), indent=2) + "\n")
    if args.cactus:
        from ..bench.plots import cactus

        cactus({name: report.total.times}, args.cactus, title=f"{name}: instances solved vs time")
    return EXIT_OK


def cmd_compare(args) -> int:
    from ..bench.compare import compare, write_outputs
    from ..bench.resultscsv import ResultsCsvError
    from ..bench.score import GroundTruth, load_tool

    names = [n.strip() for n in args.names.split(",")] if args.names else []
    if names and len(names) != len(args.results):
        return fail(f"--names gives {len(names)} names for {len(args.results)} tools")
    try:
        tools = [load_tool(r, names[i] if names else None) for i, r in enumerate(args.results)]
        for arg, t in zip(args.results, tools):
            if not t.entries:
                return fail(_no_rows(f"{arg}: no result rows to compare", t.notes))
        for note in (n for t in tools for n in t.notes):
            print(f"vnncert: {note}", file=sys.stderr)
        truth = GroundTruth(args.ground_truth) if args.ground_truth else None
        checker = None if args.check == "none" else _checker(args, sorted({c for t in tools for c, _ in t.entries}))
    except (ResultsCsvError, FileNotFoundError) as e:
        return fail(str(e))
    report = compare(tools, checker, truth, check=args.check)
    md, png = write_outputs(report, args.out)
    print(report.render(markdown=False, cactus_png=png), end="")
    print(f"\nwrote {md} and {png}")
    return EXIT_OK
