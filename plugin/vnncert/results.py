"""Verdicts, outcomes, witness re-checking and VNN-COMP result files.

`sat` is only ever written for a witness that `check_witness` replayed with ONNX Runtime on the
original model and found inside the input region with an output in the unsafe set, exactly.
"""
from __future__ import annotations

import enum
import errno
import gzip
import json
import os
import stat
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np


class Verdict(str, enum.Enum):
    SAT = "sat"
    UNSAT = "unsat"
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


# words earlier harnesses and tools wrote, mapped onto ours
_ALIASES = {
    "sat": Verdict.SAT, "violated": Verdict.SAT, "unsat": Verdict.UNSAT, "holds": Verdict.UNSAT,
    "unknown": Verdict.UNKNOWN, "timeout": Verdict.TIMEOUT, "timed-out": Verdict.TIMEOUT,
    "run_instance_timeout": Verdict.TIMEOUT, "error": Verdict.ERROR,
}


def parse_verdict(word: str) -> Verdict:
    w = word.strip().lower()
    if w in _ALIASES:
        return _ALIASES[w]
    if w.startswith("error") or w.startswith("prepare_instance_error") or w.startswith("exception"):
        return Verdict.ERROR
    if "timeout" in w:
        return Verdict.TIMEOUT
    return Verdict.UNKNOWN


@dataclass
class Certificate:
    """A probabilistic certificate: a claim about the smoothed classifier g, never about f."""

    sigma: float
    noise: str
    n0: int
    n: int
    alpha: float
    predicted: int
    count: int
    pA_lower: float
    radius: float
    norm: str
    needed_radius: Optional[float] = None
    covered: Optional[bool] = None
    claim: str = "claim about the smoothed classifier g, not the network f; holds with confidence 1-alpha"


@dataclass
class Outcome:
    verdict: Verdict
    engine: str = ""
    seconds: float = 0.0
    counterexample: Optional[Tuple[np.ndarray, np.ndarray]] = None  # (x, y) flat, input/output dtype
    witness_checked: bool = False
    certificate: Optional[Certificate] = None
    detail: str = ""
    stats: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.verdict = Verdict(self.verdict)

    def to_json(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {
            "verdict": self.verdict.value, "engine": self.engine, "seconds": round(self.seconds, 6),
            "detail": self.detail, "stats": _jsonable(self.stats),
        }
        if self.counterexample is not None:
            x, y = self.counterexample
            d["counterexample"] = {"x": [float(v) for v in np.ravel(x)], "y": [float(v) for v in np.ravel(y)],
                                   "replay_checked": self.witness_checked}
        if self.certificate is not None:
            d["certificate"] = _jsonable(asdict(self.certificate))
        return d


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v


# ---- witness re-check ----------------------------------------------------------------------------
def check_witness(network, spec, x: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray, int]]:
    """Replay x on the ORIGINAL model with ONNX Runtime; return (x, y, case index) if x is a real witness.

    x is cast to the model's input dtype first; that exact value must be an input the model can
    see from a point of the case's region (`InputRegion.contains_input`: the rounding, to the
    input dtype, of a point of the region, e.g. fl32(0.1) for a fixed input 0.1; no other slack)
    and its output must satisfy the property's own relations. Both are decided exactly: the
    replayed values are exact rationals and are compared with the property's exact constants
    (`spec/model.py`), not with the float64 arrays the engines read.

    The engines search a box rounded outward from the property's constants; a candidate on its
    edge (one float64 ulp outside the property's own bound) is moved onto the nearest accepted
    input of that case (`InputRegion.snap_input`) and replayed again (at most
    SNAP_RETRIES cases), so that it is not lost to the rounding.
    """
    x_in = np.asarray(x).astype(network.input_dtype).reshape(-1)
    if x_in.size != network.n_inputs or not np.all(np.isfinite(x_in)):
        return None
    y = network.replay(x_in)
    if not np.all(np.isfinite(y)):
        return None
    xd = x_in.astype(np.float64)
    idx = spec.find_violation(xd, y.astype(np.float64), network.input_dtype)
    if idx is not None:
        return x_in, y, idx
    if np.dtype(network.input_dtype).kind != "f":
        return None
    tries = 0
    for i, case in enumerate(spec.cases):
        reg = case.region
        if tries >= SNAP_RETRIES:
            break
        if (xd < reg.lower).any() or (xd > reg.upper).any() or reg.contains_input(xd, network.input_dtype)[0]:
            continue  # outside the outward box, or in the region (its output was not unsafe)
        x2 = reg.snap_input(xd, network.input_dtype)[0]
        if np.array_equal(x2, xd) or not reg.contains_input(x2, network.input_dtype)[0]:
            continue
        tries += 1
        x2_in = x2.astype(network.input_dtype)
        y2 = network.replay(x2_in)
        if np.all(np.isfinite(y2)) and case.unsafe(y2.astype(np.float64))[0]:
            return x2_in, y2, i
    return None


# a failed candidate inside some case's outward box is moved onto that case's exact region and
# replayed again for at most this many cases
SNAP_RETRIES = 2


def sat_outcome(network, spec, x: np.ndarray, engine: str, detail: str = "", **stats) -> Optional[Outcome]:
    """An Outcome(sat) for x if the replay confirms it, else None."""
    checked = check_witness(network, spec, x)
    if checked is None:
        return None
    x_in, y, idx = checked
    return Outcome(Verdict.SAT, engine=engine, counterexample=(x_in, y), witness_checked=True,
                   detail=detail or f"witness replayed with ONNX Runtime on the original model (case {idx})",
                   stats=stats)


# ---- result files --------------------------------------------------------------------------------
def format_value(v, dtype) -> str:
    """17 significant digits of the exact value the model was run on (round-trips float32 and float64)."""
    return format(float(np.asarray(v, dtype=dtype)), ".17g")


def format_witness(x: np.ndarray, y: np.ndarray) -> str:
    x = np.ravel(x)
    y = np.ravel(y)
    lines = [f"(X_{i} {format_value(v, x.dtype)})" for i, v in enumerate(x)]
    lines += [f"(Y_{j} {format_value(v, y.dtype)})" for j, v in enumerate(y)]
    if not lines:
        return "()"
    return "(" + "\n ".join(lines) + ")"


def result_text(outcome: Outcome, comments: Optional[List[str]] = None) -> str:
    if outcome.verdict == Verdict.SAT:
        if outcome.counterexample is None or not outcome.witness_checked:
            raise ValueError("refusing to write sat without a replay-checked witness")
        x, y = outcome.counterexample
        body = "sat\n" + format_witness(x, y) + "\n"
    else:
        body = outcome.verdict.value + "\n"
    for c in comments or []:
        body += "; " + c + "\n"
    return body


def _umask() -> int:
    """This process's umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_target(path: str) -> str:
    """The file a write to `path` changes: a symlink is written through (its final target), else `path`."""
    return os.path.realpath(path) if os.path.islink(path) else path


def _is_std_stream(st) -> bool:
    for fd in (0, 1, 2):
        try:
            f = os.fstat(fd)
        except OSError:
            continue
        if (f.st_dev, f.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False


def atomic_write(path: str, text: Union[str, bytes]) -> None:
    """Write via a temporary file in the target's folder and rename: readers see old or new, never half.

    A symlink at `path` is written through: the file it points to is replaced (atomically, in that
    file's folder) and the link stays. The new file keeps the mode of the file it replaces, or gets
    0666 minus the umask when there was none (what open() gives, not mkstemp's 0600). An existing
    file that is not writable is refused (PermissionError), as open() would. A path that is not a
    regular file (/dev/null, a FIFO), or is this process's stdin/stdout/stderr (/dev/stdout
    redirected to a file), is written in place, never replaced.
    """
    binary = isinstance(text, bytes)
    target = output_target(path)
    d = os.path.dirname(os.path.abspath(target)) or "."
    try:
        st = os.stat(target)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    else:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not os.access(target, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        if not stat.S_ISREG(st.st_mode) or _is_std_stream(st):
            with open(path, "wb" if binary else "w") as f:
                f.write(text)
            return
        mode = stat.S_IMODE(st.st_mode)
    fd, tmp = tempfile.mkstemp(prefix=".vnncert-", dir=d)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb" if binary else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_result_file(path: str, outcome: Outcome, comments: Optional[List[str]] = None) -> None:
    atomic_write(path, result_text(outcome, comments))


def write_json(path: str, outcome: Outcome, extra: Optional[Dict[str, Any]] = None) -> None:
    d = outcome.to_json()
    if extra:
        d.update(_jsonable(extra))
    atomic_write(path, json.dumps(d, indent=2) + "\n")


def read_result_file(path: str) -> Tuple[Verdict, Optional[Dict[str, float]]]:
    """First word and, for sat, the assignment {'X_0': v, ..., 'Y_0': v}. `.gz` accepted."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    verdict = parse_verdict(first) if first else Verdict.UNKNOWN
    if verdict != Verdict.SAT:
        return verdict, None
    return verdict, parse_assignment("\n".join(lines[1:]))


def parse_assignment(text: str) -> Dict[str, float]:
    """Pairs `(NAME value)` anywhere in text (VNN-COMP witness format); comments after ';' ignored."""
    import re

    clean = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"\(\s*([XY]_\d+)\s+([^\s()]+)\s*\)", clean)}


def witness_input(assignment: Dict[str, float], n_inputs: int) -> Optional[np.ndarray]:
    """The X part of an assignment as a flat float64 array, or None when incomplete."""
    try:
        return np.array([assignment[f"X_{i}"] for i in range(n_inputs)], dtype=np.float64)
    except KeyError:
        return None
