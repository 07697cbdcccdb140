"""`vnncert compare`: several tools' results CSVs side by side.

Rows of different tools are matched on (category without year tags, onnx stem, vnnlib stem),
since every harness writes its own path prefix. For every instance:
- the truth: `sat` if any tool's witness replays (a witness decides); else the ground truth
  if given; else, where tools contradict each other and no `sat` witness replays, `unsat`
  (the competition's rule); else what the tools that answered agree on (unconfirmed).
- each tool's points as in `score.py` against that truth (+10 / -150 / 0).
Outputs: agreement matrix (instances both answered / answered alike), every contradiction with
each `sat` witness re-checked and who is right, a per-tool table, a cactus plot (PNG), and a
markdown summary holding all of it.
"""
from __future__ import annotations

import os
import statistics
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .instances import file_stem
from .resultscsv import Row
from .score import (CORRECT, GroundTruth, Scored, ToolResults, Truth, instance_key, md_table, score_row,
                    text_table)
from .witness import WitnessCheck, WitnessChecker

Key = Tuple[str, str, str]


class _Checks:
    """Witness checks, each done once; `policy` says which sat rows get checked."""

    def __init__(self, checker: Optional[WitnessChecker], policy: str):
        self.checker = checker
        self.policy = policy
        self.done: Dict[Tuple[str, int], WitnessCheck] = {}

    def get(self, csv_path: str, row: Row, contradiction: bool) -> WitnessCheck:
        k = (csv_path, id(row))
        if k not in self.done:
            if self.checker is None or self.policy == "none" or (self.policy == "contradictions" and not contradiction):
                self.done[k] = WitnessCheck("unchecked", "not checked (--check)")
            else:
                self.done[k] = self.checker.check_row(csv_path, row)
        return self.done[k]


class _Fixed:
    """A checker stand-in handing score_row the check already made."""

    def __init__(self, wc: WitnessCheck):
        self.wc = wc

    def check_row(self, csv_path, row):
        return self.wc


@dataclass
class InstanceView:
    key: Key
    entries: Dict[str, Tuple[str, Row]]  # tool -> (csv, row)
    truth: str = "unknown"
    decided_by: str = ""
    scored: Dict[str, Scored] = field(default_factory=dict)

    @property
    def answers(self) -> Dict[str, str]:
        return {t: r.verdict for t, (_, r) in self.entries.items()}

    @property
    def contradiction(self) -> bool:
        a = set(self.answers.values())
        return "sat" in a and "unsat" in a


@dataclass
class CompareReport:
    tools: List[str]
    instances: List[InstanceView]
    ground_truth: Optional[str] = None

    # ---- derived tables --------------------------------------------------------------------------
    def tool_rows(self) -> List[List[str]]:
        out = []
        for t in self.tools:
            ss = [iv.scored[t] for iv in self.instances if t in iv.scored]
            ans = [s.answer for s in ss]
            solved = [s for s in ss if s.solved]
            wrong = sum(1 for s in ss if s.outcome in ("wrong", "bad_witness"))
            med = f"{statistics.median([s.row.run_time for s in solved]):.2f}" if solved else "-"
            out.append([t, str(len(ss)), str(ans.count("sat")), str(ans.count("unsat")),
                        str(len(ss) - ans.count("sat") - ans.count("unsat")), str(len(solved)), str(wrong),
                        str(sum(s.points for s in ss)), med])
        return out

    def agreement(self) -> List[List[str]]:
        rows = []
        for a in self.tools:
            cells = [a]
            for b in self.tools:
                both = same = 0
                for iv in self.instances:
                    ans = iv.answers
                    if a in ans and b in ans and ans[a] in ("sat", "unsat") and ans[b] in ("sat", "unsat"):
                        both += 1
                        same += ans[a] == ans[b]
                cells.append(str(both) if a == b else f"{same}/{both}")
            rows.append(cells)
        return rows

    def contradictions(self) -> List[InstanceView]:
        return [iv for iv in self.instances if iv.contradiction]

    def solved_times(self) -> Dict[str, List[float]]:
        return {t: [iv.scored[t].row.run_time for iv in self.instances if t in iv.scored and iv.scored[t].solved]
                for t in self.tools}

    def bad_witnesses(self) -> List[Tuple[InstanceView, str]]:
        return [(iv, t) for iv in self.instances for t, s in iv.scored.items()
                if s.outcome == "bad_witness" and not iv.contradiction]

    # ---- text --------------------------------------------------------------------------------------
    def render(self, markdown: bool = True, cactus_png: Optional[str] = None) -> str:
        table = md_table if markdown else text_table
        h = "## " if markdown else ""
        partial = sum(1 for iv in self.instances if len(iv.entries) < len(self.tools))
        out = [f"{'# ' if markdown else ''}Comparison of {', '.join(self.tools)}", "",
               f"{len(self.instances)} instances" + (f" ({partial} not run by every tool)" if partial else "") +
               (f"; ground truth: {self.ground_truth}" if self.ground_truth else "; no ground truth given") + ".",
               "", f"{h}Per tool", "",
               table(["tool", "instances", "sat", "unsat", "other", "solved", "wrong", "score", "median s"],
                     self.tool_rows()),
               "", "Points: +10 correct, -150 wrong or missing/failing witness, 0 otherwise; "
                   "truth = a replaying witness, else the ground truth, else the tools' agreement.",
               "", f"{h}Agreement", "",
               "Cell: instances both tools answered sat/unsat the same way / instances both answered "
               "(diagonal: instances the tool answered).", "",
               table(["", *self.tools], self.agreement()), "", f"{h}Contradictions", ""]
        cons = self.contradictions()
        if not cons:
            out.append("None: no instance has both a sat and an unsat answer.")
        for iv in cons:
            truth = f"**{iv.truth}**" if markdown else iv.truth
            out.append(f"- {iv.key[0]} / {iv.key[1]} / {iv.key[2]}: truth {truth} ({iv.decided_by})")
            for t, (_, row) in iv.entries.items():
                s = iv.scored[t]
                wit = f"; {s.witness.short()}" if s.witness else ""
                verdict = "right" if s.points > 0 else ("WRONG" if s.points < 0 else "no answer")
                out.append(f"    - {t}: {row.verdict} in {row.run_time:.2f} s{wit} -> {verdict}")
        bad = self.bad_witnesses()
        if bad:
            out += ["", f"{h}Other failed witnesses", ""]
            for iv, t in bad:
                out.append(f"- {t}: {iv.key[0]} / {iv.key[1]} / {iv.key[2]}: {iv.scored[t].note}")
        only = {t: 0 for t in self.tools}
        for iv in self.instances:
            solvers = [t for t, s in iv.scored.items() if s.solved]
            if len(solvers) == 1:
                only[solvers[0]] += 1
        out += ["", f"{h}Solved by one tool only", "", ", ".join(f"{t}: {n}" for t, n in only.items())]
        if cactus_png:
            out += ["", f"{h}Cactus plot", "", f"![instances solved vs time]({os.path.basename(cactus_png)})"
                    if markdown else f"cactus plot: {cactus_png}"]
        return "\n".join(out) + "\n"


def compare(tools: List[ToolResults], checker: Optional[WitnessChecker], truth: Optional[GroundTruth] = None,
            check: str = "all") -> CompareReport:
    names = []
    for t in tools:
        name, n = t.name, 2
        while name in names:
            name, n = f"{t.name}#{n}", n + 1
        names.append(name)
    views: "OrderedDict[Key, InstanceView]" = OrderedDict()
    for name, tool in zip(names, tools):
        for csv_path, row in tool.entries:
            k = instance_key(row.category, row.onnx, row.vnnlib)
            iv = views.setdefault(k, InstanceView(k, {}))
            iv.entries.setdefault(name, (csv_path, row))
    checks = _Checks(checker, check)
    for iv in views.values():
        contra = iv.contradiction
        wcs = {t: checks.get(c, r, contra) for t, (c, r) in iv.entries.items() if r.verdict == "sat"}
        gt = truth.lookup(next(iter(iv.entries.values()))[1]) if truth else None
        if any(w.accepted for w in wcs.values()):
            iv.truth, iv.decided_by = "sat", "a witness replays"
        elif gt is not None and gt.verdict in ("sat", "unsat"):
            iv.truth, iv.decided_by = gt.verdict, "ground truth"
        elif contra and all(w.status in ("invalid", "missing") for w in wcs.values()):
            iv.truth, iv.decided_by = "unsat", "no sat witness replays"
        else:
            answered = {a for a in iv.answers.values() if a in ("sat", "unsat")}
            if answered == {"unsat"}:
                iv.truth, iv.decided_by = "unsat", "unconfirmed agreement"
            else:
                iv.truth, iv.decided_by = "unknown", "undecided"
        t_obj = Truth(iv.truth if iv.truth in ("sat", "unsat") and iv.decided_by != "unconfirmed agreement"
                      else "unknown", gt.timeout if gt else None)
        for t, (c, r) in iv.entries.items():
            fixed = _Fixed(wcs[t]) if t in wcs else None
            iv.scored[t] = score_row(c, r, fixed, t_obj)
    return CompareReport(names, list(views.values()), truth.path if truth else None)


def write_outputs(report: CompareReport, out_dir: str) -> Tuple[str, str]:
    from .plots import cactus

    os.makedirs(out_dir, exist_ok=True)
    png = cactus(report.solved_times(), os.path.join(out_dir, "cactus.png"),
                 title=f"{len(report.instances)} instances: solved vs time")
    md = os.path.join(out_dir, "summary.md")
    from ..results import atomic_write

    atomic_write(md, report.render(markdown=True, cactus_png=png))
    return md, png


__all__ = ["compare", "write_outputs", "CompareReport", "CORRECT", "file_stem"]
