"""`vnncert score`: VNN-COMP 2026 scoring of one tool's results CSV(s), every witness re-checked.

Points per instance: +10 for a correct `sat` or `unsat`, -150 for a wrong answer or a `sat`
whose witness is missing or fails the re-check (`witness.py`), 0 for anything else
(`unknown`, `timeout`, `error`, ...). What is correct:
- `sat`: the witness decides (replayed with ONNX Runtime). A valid witness is correct even
  where the ground truth says `unsat` (that contradiction is listed). A witness that cannot be
  checked here (model not found, or not loadable) falls back on the ground truth; without one it
  scores 0 and is listed as unchecked.
- `unsat`: correct unless the ground truth says `sat`; without a ground-truth answer it scores
  +10 as in the competition when no other tool shows a counterexample, and is counted as
  `unconfirmed`.
- With a ground truth that gives the instance's timeout, an answer whose run_time exceeds it
  counts as a timeout (2026 rule: an answer after TIMEOUT scores as a timeout).

Ground-truth file: a CSV with a header and columns `benchmark` (or `category`), `onnx`,
`vnnlib`, `consensus` (or `result`/`expected`), optionally `timeout`, e.g.
the one docs/formats.md §2 describes. Rows are matched on (category, onnx stem, vnnlib stem),
ignoring a year prefix/suffix on category names (`2025_acasxu_2023` ~ `acasxu`).
"""
from __future__ import annotations

import glob
import os
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .instances import file_stem
from .resultscsv import ResultsCsvError, Row, normalise_result, read_rows
from .witness import FileResolver, WitnessCheck, WitnessChecker

CORRECT, WRONG = 10, -150
SOLVED_WITHIN = (1.0, 10.0, 60.0)


def norm_category(cat: str) -> str:
    c = re.sub(r"^\d{4}_", "", cat.strip())
    return re.sub(r"_\d{4}$", "", c)


def instance_key(category: str, onnx: str, vnnlib: str) -> Tuple[str, str, str]:
    return (norm_category(category), file_stem(onnx), file_stem(vnnlib))


# ---- loading tools' results ----------------------------------------------------------------------
@dataclass
class ToolResults:
    name: str
    entries: List[Tuple[str, Row]]  # (csv path, row)
    notes: List[str] = field(default_factory=list)


def _csvs_of(arg: str) -> List[str]:
    if os.path.isdir(arg):
        found = sorted(glob.glob(os.path.join(arg, "**", "results.csv"), recursive=True))
        return found or sorted(glob.glob(os.path.join(arg, "*.csv")))
    return [arg]


def tool_name_of(arg: str, rows: List[Row]) -> str:
    p = os.path.abspath(arg)
    if os.path.isdir(p):
        return os.path.basename(os.path.normpath(p))
    stem = os.path.splitext(os.path.basename(p))[0]
    if stem != "results":
        return stem
    cats = {norm_category(r.category) for r in rows}
    d = os.path.dirname(p)
    while os.path.basename(d) and norm_category(os.path.basename(d)) in cats:
        d = os.path.dirname(d)
    return os.path.basename(d) or stem


def load_tool(arg: str, name: Optional[str] = None) -> ToolResults:
    """One tool's rows: a results CSV, or a folder of them (results-repo layout: */results.csv)."""
    entries: List[Tuple[str, Row]] = []
    notes: List[str] = []
    csvs = _csvs_of(arg)
    if not csvs:
        raise ResultsCsvError(f"{arg}: no results CSV in this folder")
    for c in csvs:
        for r in read_rows(c, strict=False, notes=notes):
            entries.append((c, r))
    return ToolResults(name or tool_name_of(arg, [r for _, r in entries]), entries, notes)


# ---- ground truth --------------------------------------------------------------------------------
@dataclass
class Truth:
    verdict: str  # sat / unsat / unknown
    timeout: Optional[float] = None


class GroundTruth:
    def __init__(self, path: str):
        from .csvio import parse_csv_line, read_lines

        self.path = path
        self.by_key: Dict[Tuple[str, str, str], Truth] = {}
        by_stems: Dict[Tuple[str, str], List[Truth]] = defaultdict(list)
        header: Optional[List[str]] = None
        try:
            with open(path, "rb") as f:
                for line in read_lines(f):
                    where = f"{path}:{line.number}"
                    if line.problem is not None:
                        raise ResultsCsvError(f"{where}: {line.problem}: not a ground-truth CSV")
                    if not line.text.strip():
                        continue
                    try:
                        fields = parse_csv_line(line.text)
                    except ValueError as e:
                        raise ResultsCsvError(f"{where}: not a CSV line: {e}") from None
                    if header is None:
                        header = fields
                        cols = {c.lower().strip(): i for i, c in enumerate(header)}
                        col = lambda *names: next((cols[n] for n in names if n in cols), None)  # noqa: E731
                        c_cat, c_onnx, c_vnn = col("benchmark", "category"), col("onnx", "network"), col("vnnlib", "property")
                        c_ans = col("consensus", "result", "expected", "answer", "verdict")
                        c_to = col("timeout")
                        if c_onnx is None or c_vnn is None or c_ans is None:
                            raise ResultsCsvError(f"{path}: a ground-truth file needs onnx, vnnlib and consensus columns "
                                                  f"in its first line")
                        continue
                    get = lambda c: fields[c] if c is not None and c < len(fields) else ""  # noqa: E731
                    if not get(c_onnx) or not get(c_vnn):
                        raise ResultsCsvError(f"{where}: no onnx or vnnlib value ({len(fields)} of {len(header)} columns)")
                    t = Truth(normalise_result(get(c_ans)), _maybe_float(get(c_to)) if c_to is not None else None)
                    if t.verdict not in ("sat", "unsat"):
                        t.verdict = "unknown"
                    key = instance_key(get(c_cat), get(c_onnx), get(c_vnn))
                    self.by_key[key] = t
                    by_stems[key[1:]].append(t)
        except OSError as e:
            raise ResultsCsvError(f"{path}: cannot read ground truth: {e.strerror}") from None
        if header is None:
            raise ResultsCsvError(f"{path}: empty ground-truth file (it needs a header with onnx, vnnlib and consensus columns)")
        self.by_stems = {k: v[0] for k, v in by_stems.items() if len(v) == 1}

    def lookup(self, row: Row) -> Optional[Truth]:
        key = instance_key(row.category, row.onnx, row.vnnlib)
        return self.by_key.get(key) or self.by_stems.get(key[1:])


def _maybe_float(s) -> Optional[float]:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


# ---- scoring -------------------------------------------------------------------------------------
@dataclass
class Scored:
    csv: str
    row: Row
    answer: str  # normalised word
    points: int = 0
    outcome: str = "none"  # correct | unconfirmed | wrong | bad_witness | unchecked | late | none
    witness: Optional[WitnessCheck] = None
    truth: Optional[str] = None
    note: str = ""

    @property
    def solved(self) -> bool:
        return self.outcome in ("correct", "unconfirmed")


def score_row(csv_path: str, row: Row, checker: Optional[WitnessChecker], truth: Optional[Truth]) -> Scored:
    ans = row.verdict
    s = Scored(csv_path, row, ans, truth=truth.verdict if truth else None)
    if ans not in ("sat", "unsat"):
        return s
    if truth and truth.timeout is not None and row.run_time > truth.timeout:
        s.outcome, s.note = "late", f"answer after the {truth.timeout:g} s timeout counts as a timeout"
        return s
    t = truth.verdict if truth else "unknown"
    if ans == "sat":
        s.witness = checker.check_row(csv_path, row) if checker else WitnessCheck("unchecked", "checking disabled")
        if s.witness.accepted:
            s.points, s.outcome = CORRECT, "correct"
            if t == "unsat":
                s.note = "ground truth says unsat, but the witness replays: the ground truth is wrong here"
        elif s.witness.status == "unchecked":
            if t == "sat":
                s.points, s.outcome, s.note = CORRECT, "correct", "witness unchecked; ground truth says sat"
            elif t == "unsat":
                s.points, s.outcome, s.note = WRONG, "wrong", "ground truth says unsat (witness unchecked)"
            else:
                s.outcome, s.note = "unchecked", "witness unchecked and no ground truth: 0 points"
        else:
            s.points, s.outcome = WRONG, "bad_witness"
            s.note = s.witness.short()
        return s
    if t == "sat":
        s.points, s.outcome, s.note = WRONG, "wrong", "ground truth says sat"
    elif t == "unsat":
        s.points, s.outcome = CORRECT, "correct"
    else:
        s.points, s.outcome, s.note = CORRECT, "unconfirmed", "no ground truth answer for this instance"
    return s


@dataclass
class CategoryStats:
    name: str
    n: int = 0
    answers: Dict[str, int] = field(default_factory=lambda: defaultdict(int))
    correct: int = 0
    unconfirmed: int = 0
    wrong: int = 0
    bad_witness: int = 0
    score: int = 0
    times: List[float] = field(default_factory=list)  # run_time of solved rows

    def add(self, s: Scored) -> None:
        self.n += 1
        self.answers[s.answer] += 1
        self.score += s.points
        if s.outcome == "correct":
            self.correct += 1
        elif s.outcome == "unconfirmed":
            self.unconfirmed += 1
        elif s.outcome == "wrong":
            self.wrong += 1
        elif s.outcome == "bad_witness":
            self.bad_witness += 1
        if s.solved:
            self.times.append(s.row.run_time)

    def cells(self) -> List[str]:
        med = f"{statistics.median(self.times):.2f}" if self.times else "-"
        within = [str(sum(1 for t in self.times if t <= w)) for w in SOLVED_WITHIN]
        other = self.n - self.answers["sat"] - self.answers["unsat"]
        return [self.name, str(self.n), str(self.answers["sat"]), str(self.answers["unsat"]), str(other),
                str(self.correct + self.unconfirmed), str(self.unconfirmed), str(self.wrong + self.bad_witness),
                str(self.score), med, *within]


HEADER = ["benchmark", "instances", "sat", "unsat", "other", "solved", "unconfirmed", "wrong", "score",
          "median s", "<=1s", "<=10s", "<=60s"]


@dataclass
class ScoreReport:
    tool: str
    rows: List[Scored]
    categories: List[CategoryStats]
    total: CategoryStats

    def problems(self) -> List[Scored]:
        return [s for s in self.rows if s.outcome in ("wrong", "bad_witness", "unchecked") or
                (s.outcome == "correct" and s.note and "ground truth is wrong" in s.note)]


def score_tool(tool: ToolResults, checker: Optional[WitnessChecker], truth: Optional[GroundTruth]) -> ScoreReport:
    scored = [score_row(c, r, checker, truth.lookup(r) if truth else None) for c, r in tool.entries]
    cats: Dict[str, CategoryStats] = {}
    total = CategoryStats("total")
    for s in scored:
        cats.setdefault(s.row.category, CategoryStats(s.row.category)).add(s)
        total.add(s)
    return ScoreReport(tool.name, scored, [cats[k] for k in sorted(cats)], total)


# ---- output --------------------------------------------------------------------------------------
def text_table(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    return "\n".join(lines)


def md_table(header: List[str], rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def render(report: ScoreReport, markdown: bool = False) -> str:
    body = [c.cells() for c in report.categories]
    total = report.total.cells()
    table = (md_table if markdown else text_table)(HEADER, body + [total])
    head = f"{'## ' if markdown else ''}{report.tool}: score {report.total.score} " \
           f"({report.total.correct + report.total.unconfirmed} solved, " \
           f"{report.total.wrong + report.total.bad_witness} wrong, {report.total.n} instances)"
    out = [head, "", table]
    probs = report.problems()
    if probs:
        out += ["", "Rows to look at:" if not markdown else "Rows to look at:", ""]
        for s in probs:
            out.append(f"{'- ' if markdown else '  '}{s.row.category} {file_stem(s.row.onnx)} {file_stem(s.row.vnnlib)}: "
                       f"{s.answer} -> {s.outcome} ({s.points:+d}); {s.note}")
    if report.total.unconfirmed:
        out += ["", f"{report.total.unconfirmed} unsat answer(s) have no ground truth to confirm them "
                    "(scored +10, as the competition does when no tool shows a counterexample)."]
    return "\n".join(out) + "\n"


def to_json(report: ScoreReport) -> Dict:
    return {"tool": report.tool, "score": report.total.score,
            "categories": {c.name: dict(zip(HEADER[1:], c.cells()[1:])) for c in report.categories + [report.total]},
            "rows": [{"category": s.row.category, "onnx": s.row.onnx, "vnnlib": s.row.vnnlib, "answer": s.answer,
                      "run_time": s.row.run_time, "points": s.points, "outcome": s.outcome, "truth": s.truth,
                      "witness": s.witness.status if s.witness else None,
                      "witness_detail": s.witness.detail if s.witness else None, "note": s.note}
                     for s in report.rows]}


def default_roots(csv_paths: List[str], extra: List[str]) -> List[str]:
    roots = list(extra) + [os.getcwd()]
    for c in csv_paths:
        d = os.path.dirname(os.path.abspath(c))
        roots += [d, os.path.dirname(d)]
    return roots
