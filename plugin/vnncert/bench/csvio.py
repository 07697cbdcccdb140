"""Reading the benchmark tools' CSV files (instances files, results CSVs, ground truth) as hostile input.

Every reader goes through `read_lines`: the file is read line by line in binary, each line at most
MAX_LINE bytes (a longer one is skipped in chunks and reported, never held in memory), a NUL byte
or a line that is not UTF-8 is reported with its line number, and `parse_csv_line` turns the csv
module's own complaints into ValueError. So a malformed file is one clear message (the callers
turn it into `vnncert: error: ...` and exit 2), never a traceback, and memory stays bounded by
MAX_LINE plus what the caller keeps.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, Optional

MAX_LINE = 1 << 20  # bytes in one line of any of these files


@dataclass
class Line:
    number: int  # 1-based
    text: str  # decoded, line ending included ('' when `problem` is set)
    size: int  # bytes in the file, line ending included
    complete: bool  # ended with a newline
    last: bool  # no line follows
    problem: Optional[str] = None  # why the line is unreadable: too long, NUL byte, not UTF-8


def read_lines(f: BinaryIO, max_line: int = MAX_LINE) -> Iterator[Line]:
    """The lines of a binary file, one at a time (see the module docstring)."""
    number = 0
    pending: Optional[Line] = None
    while True:
        raw = f.readline(max_line + 1)
        if not raw:
            break
        number += 1
        size = len(raw)
        problem = None
        if len(raw) > max_line and not raw.endswith(b"\n"):
            while True:  # skip the rest of the line without keeping it
                more = f.readline(max_line)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    raw = more
                    break
            problem = f"line longer than {max_line} bytes"
            text = ""
        elif b"\x00" in raw:
            problem = f"NUL byte at column {raw.index(0) + 1}"
            text = ""
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problem = f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                text = ""
        line = Line(number, text, size, raw.endswith(b"\n"), False, problem)
        if pending is not None:
            yield pending
        pending = line
    if pending is not None:
        pending.last = True
        yield pending


def parse_csv_line(text: str) -> List[str]:
    """The fields of one CSV line (ValueError for what the csv module refuses)."""
    try:
        rows = list(csv.reader([text]))
    except csv.Error as e:
        raise ValueError(str(e)) from None
    return rows[0] if rows else []
