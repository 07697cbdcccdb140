"""The VNN-COMP results CSV: `category,onnx,vnnlib,prepare_time,result,run_time`, no header.

Writing: one whole line per `os.write` on an `O_APPEND` descriptor, then `fsync`, so a reader (or
a resumed run) sees complete rows; a run killed inside a write can leave at most a torn LAST line,
which `repair` drops (by writing the good lines to a new file and renaming it over the old one).

Reading other tools' files: the harness's words (`holds`, `violated`, `error_exit_code_N`,
`run_instance_timeout`, `prepare_instance_error_N`, `no_result_in_file`, ...) are mapped onto
sat / unsat / unknown / timeout / error the way the VNN-COMP scoring scripts map them.
"""
from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from .instances import file_stem

RESULTS = ("sat", "unsat", "unknown", "timeout", "error")


class ResultsCsvError(ValueError):
    """A results CSV that is not in the expected format (reported as one line)."""


@dataclass
class Row:
    category: str
    onnx: str
    vnnlib: str
    prepare_time: float
    result: str  # as written in the file
    run_time: float

    @property
    def key(self) -> Tuple[str, str, str]:
        return (self.category, self.onnx, self.vnnlib)

    @property
    def verdict(self) -> str:
        """One of RESULTS."""
        return normalise_result(self.result)

    @property
    def instance_id(self) -> Tuple[str, str]:
        """(onnx stem, vnnlib stem): how rows of different tools (path prefixes differ) are matched."""
        return (file_stem(self.onnx), file_stem(self.vnnlib))

    def line(self) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [self.category, self.onnx, self.vnnlib, _num(self.prepare_time), self.result, _num(self.run_time)])
        return buf.getvalue()


def _num(v: float) -> str:
    return f"{v:.6f}"


# prefix -> word, in the order the VNN-COMP scoring scripts apply them (first match wins)
_SUBSTITUTIONS = (
    ("unsat", "unsat"), ("holds", "unsat"),
    ("sat", "sat"), ("violated", "sat"),
    ("no_result_in_file", "unknown"),
    ("prepare_instance_error", "unknown"),
    ("run_instance_timeout", "timeout"), ("prepare_instance_timeout", "timeout"),
    ("timed-out", "timeout"), ("timeout", "timeout"),
    ("error_nonmaximal", "unknown"),
    ("error", "error"), ("run_single_instance_error", "error"), ("exception", "error"),
    ("unknown", "unknown"),
)


def normalise_result(word: str) -> str:
    w = (word or "").strip().lower()
    if not w:
        return "unknown"
    for prefix, to in _SUBSTITUTIONS:
        if w.startswith(prefix):
            return to
    return "unknown"


def parse_line(fields: List[str]) -> Row:
    """A row from csv fields: 6 columns (2022+) or 5 (2021: no prepare_time)."""
    fields = [f.strip() for f in fields]
    if len(fields) == 5:
        cat, onnx, vnnlib, result, rt = fields
        prep = "0"
    elif len(fields) >= 6:
        cat, onnx, vnnlib, prep, result, rt = fields[:6]
    else:
        raise ValueError(f"expected 6 columns, got {len(fields)}")
    return Row(cat, onnx, vnnlib, _float(prep), result, _float(rt))


def _float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"{s!r} is not a number") from None
    return v


def read_rows(path: str, strict: bool = True, notes: Optional[List[str]] = None) -> List[Row]:
    """Rows of a results CSV. A torn last line (no newline: a kill mid-write) is ignored.
    strict=False also skips (rather than rejects) bad lines in the middle; `notes` collects what
    was skipped. A NUL byte, text that is not UTF-8 or a line over csvio.MAX_LINE bytes anywhere
    but in a torn last line: ResultsCsvError (not a results CSV at all)."""
    try:
        with open(path, "rb") as f:
            good, _, bad = _split(f, path, strict)
    except OSError as e:
        raise ResultsCsvError(f"{path}: cannot read results CSV: {e.strerror}") from None
    if notes is not None:
        notes.extend(bad)
    return good


def _split(f, path: str, strict: bool):
    """(rows, byte length of the good prefix, list of bad-line messages) of an open binary file."""
    from .csvio import parse_csv_line, read_lines

    rows: List[Row] = []
    good_len = 0
    bad: List[str] = []
    for line in read_lines(f):
        i = line.number - 1
        if line.problem is not None:
            if line.last and not line.complete:
                bad.append(f"{path}:{i + 1}: dropped a torn last line ({line.problem})")
                break
            raise ResultsCsvError(f"{path}:{i + 1}: {line.problem}: not a results CSV")
        if not line.text.strip():
            good_len += line.size if line.complete else 0
            continue
        try:
            row = parse_line(parse_csv_line(line.text))
        except ValueError as e:
            if line.last and not line.complete:
                bad.append(f"{path}:{i + 1}: dropped a torn last line ({e})")
                break
            if strict:
                raise ResultsCsvError(f"{path}:{i + 1}: not a results-CSV row: {e}") from None
            bad.append(f"{path}:{i + 1}: skipped ({e})")
            good_len += line.size
            continue
        if not line.complete:  # a kill mid-write: the last line lacks its newline
            bad.append(f"{path}:{i + 1}: dropped a torn last line (no newline)")
            break
        rows.append(row)
        good_len += line.size
    return rows, good_len, bad


def repair(path: str) -> Tuple[List[Row], List[str]]:
    """Read our own results CSV for resuming; a torn last line is removed from the file."""
    if not os.path.exists(path):
        return [], []
    with open(path, "rb") as f:
        rows, good_len, notes = _split(f, path, strict=True)
        size = f.seek(0, os.SEEK_END)
        if good_len != size:
            f.seek(0)
            good = f.read(good_len)
    if good_len != size:
        from ..results import atomic_write

        atomic_write(path, good.decode("utf-8", errors="replace"))
    return rows, notes


class Appender:
    """Appends whole rows to a results CSV (and its JSON-lines log) with fsync after each."""

    def __init__(self, path: str, log_path: Optional[str] = None):
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if log_path else None

    def append(self, row: Row) -> None:
        _write_all(self._fd, row.line().encode("utf-8"))
        os.fsync(self._fd)

    def log(self, record: Dict) -> None:
        if self._log is None:
            return
        import json

        _write_all(self._log, (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8"))
        os.fsync(self._log)

    def close(self) -> None:
        for fd in (self._fd, self._log):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._log = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def remaining(instances: Iterable, done: Iterable[Row]) -> List:
    """Instances still to run: each finished row cancels one instance with the same key."""
    left = Counter(r.key for r in done)
    out = []
    for inst in instances:
        if left[inst.key] > 0:
            left[inst.key] -= 1
        else:
            out.append(inst)
    return out
