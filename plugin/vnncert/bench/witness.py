"""Counterexample files of a results CSV: where they are, and whether they are real witnesses.

Layout (VNN-COMP results repositories, and what `vnncert bench` writes):
`<csv dir>/<category>/<onnx stem>_<vnnlib stem>.counterexample[.gz]`, or, when the CSV sits in the
category folder itself (`<tool>/<category>/results.csv`), beside it.

Re-check (the 2026 scorer's rule, docs/formats.md): X is read from the file (Y is ignored), cast to
the model's input dtype and replayed with ONNX Runtime on the ORIGINAL model; X must lie in an
input region, with an absolute slack of `input_atol` (1e-4) allowed on the box only; the replayed
output must satisfy the property's own relations exactly. `valid` means it passes without any
slack (`vnncert.results.check_witness`), `valid_tol` only with the scorer's slack.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Dict, Iterable, List, Optional, Tuple

from .instances import file_stem, safe_component, witness_file_name
from .resultscsv import Row

ACCEPTED = ("valid", "valid_tol")


@dataclass
class WitnessCheck:
    status: str  # valid | valid_tol | invalid | missing | unchecked
    detail: str = ""
    path: Optional[str] = None

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED

    def short(self) -> str:
        return {"valid": "witness valid", "valid_tol": "witness valid (within the scorer's 1e-4 input slack)",
                "invalid": "witness INVALID", "missing": "witness missing",
                "unchecked": "witness not checked"}[self.status] + (f": {self.detail}" if self.detail else "")


def witness_candidates(csv_path: str, row: Row) -> List[str]:
    """Where a row's witness may be: under the CSV's folder only (the row's category and file
    names are made single names, `instances.safe_component`, as `vnncert bench` writes them)."""
    d = os.path.dirname(os.path.abspath(csv_path))
    name = witness_file_name(row.onnx, row.vnnlib)
    category = safe_component(row.category)
    folders = [os.path.join(d, category), d]
    try:  # results repos prefix the year: 2025_acasxu_2023/
        folders += [os.path.join(d, x) for x in sorted(os.listdir(d)) if x.endswith("_" + category)]
    except OSError:
        pass
    return [os.path.join(f, name + ext) for f in folders for ext in ("", ".gz")]


def find_witness(csv_path: str, row: Row) -> Optional[str]:
    for p in witness_candidates(csv_path, row):
        if os.path.isfile(p):
            return p
    return None


class FileResolver:
    """Finds the ONNX / VNN-LIB file a results row names, whatever prefix the harness gave it.

    Tries the path as is, then under each root with leading path components removed one at a
    time (`./benchmarks/acasxu/onnx/x.onnx` -> `acasxu/onnx/x.onnx` -> `onnx/x.onnx` ...), also
    under each root's subfolders, with and without `.gz`."""

    def __init__(self, roots: Iterable[str]):
        self.roots: List[str] = []
        for r in roots:
            if r and os.path.isdir(r) and os.path.abspath(r) not in self.roots:
                self.roots.append(os.path.abspath(r))
        expanded = list(self.roots)
        for r in self.roots:
            try:
                expanded += [os.path.join(r, x) for x in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, x))]
            except OSError:
                pass
        self.search = expanded
        self._cache: Dict[Tuple[str, str], Optional[str]] = {}

    def resolve(self, path: str, category: str = "") -> Optional[str]:
        key = (path, category)
        if key not in self._cache:
            self._cache[key] = self._resolve(path, category)
        return self._cache[key]

    def _resolve(self, path: str, category: str) -> Optional[str]:
        for p in _gz_variants(path):
            if os.path.isfile(p):
                return p
        parts = [x for x in path.replace("\\", "/").split("/") if x not in ("", ".")]
        roots = list(self.search)
        if category:  # prefer the category's own folder
            roots.sort(key=lambda r: os.path.basename(r) != category)
        for k in range(len(parts)):
            tail = os.path.join(*parts[k:])
            for r in roots:
                for p in _gz_variants(os.path.join(r, tail)):
                    if os.path.isfile(p):
                        return p
        return None


def _gz_variants(p: str) -> List[str]:
    return [p, p[:-3]] if p.endswith(".gz") else [p, p + ".gz"]


class WitnessChecker:
    """Re-checks witnesses; networks and properties are loaded once and kept (a few at a time)."""

    def __init__(self, resolver: FileResolver, input_atol: float = 1e-4, cache_size: int = 8):
        self.resolver = resolver
        self.input_atol = float(input_atol)
        self._nets: "OrderedDict[str, object]" = OrderedDict()
        self._specs: "OrderedDict[Tuple[str, str], object]" = OrderedDict()
        self.cache_size = cache_size

    def _net(self, path: str):
        from ..network import load_network

        if path in self._nets:
            self._nets.move_to_end(path)
            return self._nets[path]
        net = load_network(path, threads=1)
        self._nets[path] = net
        while len(self._nets) > self.cache_size:
            self._nets.popitem(last=False)
        return net

    def _spec(self, path: str, onnx: str, net):
        from ..spec import load_spec

        key = (path, onnx)
        if key in self._specs:
            self._specs.move_to_end(key)
            return self._specs[key]
        spec = load_spec(path, signature=net.signature)
        self._specs[key] = spec
        while len(self._specs) > self.cache_size:
            self._specs.popitem(last=False)
        return spec

    def check_row(self, csv_path: str, row: Row) -> WitnessCheck:
        wpath = find_witness(csv_path, row)
        if wpath is None:
            return WitnessCheck("missing", f"no {file_stem(row.onnx)}_{file_stem(row.vnnlib)}.counterexample[.gz] "
                                           f"beside {os.path.basename(csv_path)}")
        from .solvers import read_result_text

        text = read_result_text(wpath)
        if text is None:
            return WitnessCheck("invalid", "unreadable file", wpath)
        onnx = self.resolver.resolve(row.onnx, row.category)
        vnnlib = self.resolver.resolve(row.vnnlib, row.category)
        if onnx is None or vnnlib is None:
            missing = row.onnx if onnx is None else row.vnnlib
            return WitnessCheck("unchecked", f"cannot find {missing} (give --benchmarks DIR)", wpath)
        res = self.check_text(text, onnx, vnnlib)
        res.path = wpath
        return res

    def check_text(self, text: str, onnx: str, vnnlib: str) -> WitnessCheck:
        import numpy as np

        from ..errors import VnncertError
        from ..results import check_witness, parse_assignment, witness_input

        try:
            net = self._net(onnx)
            spec = self._spec(vnnlib, onnx, net)
        except VnncertError as e:
            return WitnessCheck("unchecked", f"cannot load the instance: {e}")
        except Exception as e:  # an exotic model our loader rejects: say so, do not guess
            return WitnessCheck("unchecked", f"cannot load the instance: {type(e).__name__}: {e}")
        assign = parse_assignment(text)
        x = witness_input(assign, net.n_inputs)
        if x is None:
            got = sum(1 for k in assign if k.startswith("X_"))
            return WitnessCheck("invalid", f"the file gives {got} of {net.n_inputs} input values")
        try:
            if check_witness(net, spec, x) is not None:
                return WitnessCheck("valid")
            x_in = np.asarray(x).astype(net.input_dtype).reshape(-1)
            if not np.all(np.isfinite(x_in)):
                return WitnessCheck("invalid", "non-finite input value")
            y = np.asarray(net.replay(x_in)).astype(np.float64).reshape(1, -1)
            xd = x_in.astype(np.float64).reshape(1, -1)
            best_box, best_out = np.inf, np.inf
            for case in spec.cases:
                reg = case.region
                box_excess = float(max(np.max(reg.lower - xd), np.max(xd - reg.upper), 0.0))
                loose = replace(reg, lower=reg.lower - self.input_atol, upper=reg.upper + self.input_atol,
                                lower_strict=None, upper_strict=None)
                inside = bool(loose.contains(xd)[0])
                unsafe = bool(case.unsafe(y)[0])
                if inside and unsafe:
                    return WitnessCheck("valid_tol", f"input outside the box by {box_excess:.3g}")
                best_box = min(best_box, box_excess)
                if inside:
                    best_out = min(best_out, min(float(h.violation(y)[0]) for h in case.output) if case.output else np.inf)
            if best_out < np.inf:
                return WitnessCheck("invalid", f"replayed output is not in the unsafe set (closest margin {best_out:.3g})")
            return WitnessCheck("invalid", f"input outside every input region by {best_box:.3g}")
        except Exception as e:
            return WitnessCheck("unchecked", f"replay failed: {type(e).__name__}: {e}")
