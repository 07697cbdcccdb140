"""Benchmark instances: `instances.csv` reading and suite discovery.

`instances.csv` (docs/formats.md): `onnx,vnnlib,timeout` per line, no header, paths relative to the
file's folder (2021 used bare names for files that sit in `onnx/` and `vnnlib/` or beside the
file), the last line may lack a newline, and paths may end in `.gz` (or name a file that only
exists compressed, or only uncompressed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

INSTANCES_FILE = "instances.csv"


class InstancesError(ValueError):
    """An instances file that cannot be read (reported as one line)."""


@dataclass(frozen=True)
class Instance:
    """One row to run. `onnx`/`vnnlib` are the paths written to the results CSV (and passed to tools)."""

    category: str
    onnx: str
    vnnlib: str
    timeout: float  # seconds, after --timeout-scale

    @property
    def key(self) -> Tuple[str, str, str]:
        return (self.category, self.onnx, self.vnnlib)

    @property
    def witness_name(self) -> str:
        """`<onnx stem>_<vnnlib stem>.counterexample` (VNN-COMP results-repo layout)."""
        return witness_file_name(self.onnx, self.vnnlib)


def witness_file_name(onnx: str, vnnlib: str) -> str:
    """`<onnx stem>_<vnnlib stem>.counterexample`, one file name (see `safe_component`)."""
    return safe_component(f"{file_stem(onnx)}_{file_stem(vnnlib)}.counterexample")


def safe_component(name: str) -> str:
    """`name` made one file or folder name that stays inside its parent folder: path separators,
    NUL and other control characters become `_`, and a name of dots only (`.`, `..`) or nothing
    gets a `_` in front. A name that is already safe comes back unchanged."""
    s = "".join("_" if c in "/\\" or ord(c) < 32 or ord(c) == 127 else c for c in name)
    return s if s.strip(".") else "_" + s


def check_category(category: str, what: str = "--category") -> str:
    """A category names the witnesses' folder under the results CSV's folder: it must be one
    folder name (InstancesError otherwise)."""
    if safe_component(category) != category:
        raise InstancesError(f"{what} {category!r} is not a folder name: a category names the witnesses' folder beside "
                             f"the results CSV (no '/', '\\', '..', NUL or control characters)")
    return category


def file_stem(path: str) -> str:
    """File name without `.gz` and without its last suffix: `a/net.onnx.gz` -> `net`."""
    name = os.path.basename(path.replace("\\", "/"))
    if name.endswith(".gz"):
        name = name[:-3]
    root, ext = os.path.splitext(name)
    return root if ext else name


def resolve_file(folder: str, name: str, subdirs: Iterable[str] = ()) -> Optional[str]:
    """The existing file `name` means, relative to `folder` (also under `subdirs`, with/without .gz)."""
    candidates = [name] + [os.path.join(s, os.path.basename(name)) for s in subdirs]
    for c in candidates:
        base = c if os.path.isabs(c) else os.path.join(folder, c)
        for p in (base, base + ".gz", base[:-3] if base.endswith(".gz") else None):
            if p and os.path.isfile(p):
                return p
    return None


def _is_header(fields: List[str]) -> bool:
    try:
        float(fields[2])
        return False
    except (ValueError, IndexError):
        return any("onnx" in f.lower() for f in fields[:2])


def read_instances(path: str, category: Optional[str] = None, base: Optional[str] = None,
                   timeout_scale: float = 1.0) -> List[Instance]:
    """Instances of one instances file. Relative paths are resolved against `base` (default: the
    file's folder) and written as `base/<path>` the way the user spelled `base`. A line that is
    not UTF-8 CSV text (NUL bytes, other encodings, a line over csvio.MAX_LINE bytes, a field
    the csv module refuses), a path with a NUL or control character: InstancesError."""
    from .csvio import parse_csv_line, read_lines

    base = (os.path.dirname(path) or ".") if base is None else base
    category = check_category(category or os.path.basename(os.path.normpath(os.path.abspath(base))), "category")
    out: List[Instance] = []
    try:
        with open(path, "rb") as f:
            for line in read_lines(f):
                n = line.number
                if line.problem is not None:
                    raise InstancesError(f"{path}:{n}: {line.problem}: not an instances file")
                try:
                    fields = [x.strip() for x in parse_csv_line(line.text)]
                except ValueError as e:
                    raise InstancesError(f"{path}:{n}: not a CSV line: {e}") from None
                if not fields or all(not x for x in fields) or fields[0].startswith("#"):
                    continue
                if n == 1 and _is_header(fields):
                    continue
                if len(fields) < 3:
                    raise InstancesError(f"{path}:{n}: expected onnx,vnnlib,timeout, got {len(fields)} field(s)")
                try:
                    timeout = float(fields[2])
                except ValueError:
                    raise InstancesError(f"{path}:{n}: timeout {fields[2][:40]!r} is not a number") from None
                if not timeout > 0 or timeout == float("inf"):
                    raise InstancesError(f"{path}:{n}: timeout must be a positive number of seconds, got {fields[2][:40]}")
                for name in fields[:2]:
                    if not name or any(ord(c) < 32 or ord(c) == 127 for c in name):
                        raise InstancesError(f"{path}:{n}: {name[:80]!r} is not a file path (empty, or a control character)")
                onnx = _written_path(base, fields[0], ("onnx", "nets"))
                vnnlib = _written_path(base, fields[1], ("vnnlib", "vnnlibs", "specs"))
                out.append(Instance(category, onnx, vnnlib, timeout * timeout_scale))
    except OSError as e:
        raise InstancesError(f"{path}: cannot read instances file: {e.strerror}") from None
    return out


def _written_path(base: str, name: str, subdirs: Tuple[str, ...]) -> str:
    found = resolve_file(base, name, subdirs)
    if found is None:  # keep the path: the tool reports the missing file as this row's error
        found = name if os.path.isabs(name) else os.path.join(base, name)
    return os.path.normpath(found)


def category_of(folder: str) -> str:
    return os.path.basename(os.path.normpath(os.path.abspath(folder)))


def find_suites(bench_dir: str) -> List[Tuple[str, str]]:
    """(instances file, category) pairs: BENCH_DIR itself, else each subfolder holding instances.csv."""
    own = os.path.join(bench_dir, INSTANCES_FILE)
    if os.path.isfile(own):
        return [(own, category_of(bench_dir))]
    suites = []
    try:
        names = sorted(os.listdir(bench_dir))
    except OSError as e:
        raise InstancesError(f"{bench_dir}: cannot list benchmark folder: {e.strerror}") from None
    for name in names:
        f = os.path.join(bench_dir, name, INSTANCES_FILE)
        if os.path.isfile(f):
            suites.append((f, name))
    if not suites:
        raise InstancesError(f"{bench_dir}: no {INSTANCES_FILE} in it or in its subfolders")
    return suites


def load_suite(bench_dir: str, instances: Optional[str] = None, category: Optional[str] = None,
               timeout_scale: float = 1.0, limit: Optional[int] = None) -> List[Instance]:
    """Every instance under BENCH_DIR (one category per instances file), in file order.

    With `instances`, that file lists the rows and its relative paths name files under BENCH_DIR
    (a subset file can live anywhere)."""
    if category is not None:
        check_category(category)
    if instances:
        rows = read_instances(instances, category or category_of(bench_dir), base=bench_dir,
                              timeout_scale=timeout_scale)
        return rows[:limit] if limit else rows
    out: List[Instance] = []
    for path, cat in find_suites(bench_dir):
        rows = read_instances(path, category or cat, timeout_scale=timeout_scale)
        out.extend(rows[:limit] if limit else rows)
    return out
