"""A VNN-LIB 2.0 query's declarations and the layout of its flat vectors, shared by its two front ends.

`Query` (its networks and declared variables, in order), the checks of the declarations against
the models' `Signature`s, and `Layout`: where each declared variable lives in the normal form's
flat input vector u and output vector z, and what the query adds to z (inputs copied to the
output, derived values), ending in the `Composition` (vnncert/signature.py). The package's front
end (`vnnlib2.py`) and the bulk one (`vnnlib2_bulk.py`) both build on these, so their normal forms
agree bit for bit.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import SpecError
from ..signature import Composition, Derived, HiddenNode, NetworkUse, Signature, TensorSignature
from .atoms import AtomBuilder, Key
from .model import Spec

# Without a model to check shapes against, a declared input or output may have at most this many
# elements (2**24: sixteen times an ImageNet image); the normal form holds a few arrays of this size
# per disjunct. With a model, the declared shapes must be the model's.
MAX_ELEMENTS_WITHOUT_MODEL = 1 << 24

# Element types vnncert analyses for the declared type's own semantics: witnesses are replayed in
# that type with ONNX Runtime and checked exactly, the query's arithmetic is evaluated in that type
# (see the module docstring). float16 and the integer types are not claimed; `real` is always
# accepted (the user's consent to real-valued analysis).
SOUND_ELEMENT_TYPES: Tuple[str, ...] = ("float32", "float64")

# ---- declarations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Declaration:
    name: str
    kind: str  # "input" | "hidden" | "output"
    element_type: str  # the standard's name, "real" included
    shape: Tuple[int, ...]
    network: str
    onnx_name: Optional[str] = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def header(self) -> str:
        """The command-line assignment header: `NAME TYPE [d1,d2]`."""
        return f"{self.name} {self.element_type} [{','.join(str(d) for d in self.shape)}]"

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "element_type": self.element_type,
                "shape": list(self.shape), "network": self.network, "onnx_name": self.onnx_name}


@dataclass(frozen=True)
class NetworkDecl:
    name: str
    equal_to: Optional[str]
    isomorphic_to: Optional[str]
    declarations: Tuple[Declaration, ...]

    @property
    def inputs(self) -> List[Declaration]:
        return [d for d in self.declarations if d.kind == "input"]

    @property
    def hidden(self) -> List[Declaration]:
        return [d for d in self.declarations if d.kind == "hidden"]

    @property
    def outputs(self) -> List[Declaration]:
        return [d for d in self.declarations if d.kind == "output"]


@dataclass
class Query:
    """A parsed, type-checked 2.0 query: its networks and declarations in order, and the package's
    AST."""

    text: str
    where: str
    version: str
    networks: Tuple[NetworkDecl, ...]
    warnings: List[str]
    ast: object  # vnnlib.Query

    @property
    def declarations(self) -> List[Declaration]:
        return [d for n in self.networks for d in n.declarations]

    @property
    def real(self) -> bool:
        return all(d.element_type == "real" for d in self.declarations)

    def networks_needing_models(self) -> List[str]:
        """Names that take a `--network NAME=FILE` (every network not declared `equal-to` another)."""
        return [n.name for n in self.networks if n.equal_to is None]


# ---- positions ---------------------------------------------------------------------------------
def _line_col(text: str, line: Optional[int], needle: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
    """1-based column of `needle` on `line` (1 when not found there)."""
    if not line or line < 1:
        return None, None
    lines = text.split("\n")
    if line > len(lines):
        return line, 1
    src = lines[line - 1]
    col = 1
    if needle:
        k = src.find(needle)
        if k < 0:
            compact = re.sub(r"\s+", "", needle)
            # variables are printed with spaces by the package ("X [0, 2]"); find them loosely
            m = re.search(r"\s*".join(re.escape(c) for c in compact), src) if compact else None
            k = m.start() if m else -1
        if k >= 0:
            col = k + 1
    return line, col


def _at(where: str, text: str, line: Optional[int], needle: Optional[str], message: str) -> SpecError:
    line, col = _line_col(text, line, needle)
    loc = f"{where}:{line}:{col}" if line else where
    return SpecError(f"{loc}: {message}")


def _find_decl(text: str, keyword: str, name: str, nth: int = 0) -> Tuple[Optional[int], Optional[int]]:
    """(line, column) of the nth `(keyword name` in the text."""
    found = re.finditer(r"\(\s*" + re.escape(keyword) + r"\s+" + re.escape(name) + r"(?![\w])", text)
    m = next((m for k, m in enumerate(found) if k == nth), None)
    if not m:
        return None, None
    off = m.start()
    return text.count("\n", 0, off) + 1, off - (text.rfind("\n", 0, off) + 1) + 1


def _decl_error(where: str, text: str, keyword: str, name: str, message: str, nth: int = 0) -> SpecError:
    line, col = _find_decl(text, keyword, name, nth)
    return SpecError(f"{where}:{line}:{col}: {message}" if line else f"{where}: {message}")

def _check_unique_networks(q: "Query") -> None:
    """The standard asks for unique names; the package does not check network names."""
    seen = set()
    for n in q.networks:
        if n.name in seen:
            raise _decl_error(q.where, q.text, "declare-network", n.name, f"network {n.name} is declared twice (the "
                                                                           f"standard asks for unique network names)", 1)
        seen.add(n.name)

# ---- where each variable lives: the layout of u and z ---------------------------------------------
# provisional output positions of derived values (their final place is known once the walk is over)
_DERIVED_BASE = 1 << 40
MAX_POLY_TERMS = 10_000  # monomials of one expanded product (a product of sums multiplies out)


class Layout:
    """The flat vectors of the normal form for a query (signature.Composition says the order).

    Inputs: every declared input element has a position in the declared-inputs vector (networks
    in order, inputs in order, each flattened in C order); `ties` (pairs of such positions that
    the query equates in every disjunct) merge positions, and u lists what remains in order.
    Outputs: the declared hidden nodes and outputs (per network, in declaration order), then the
    inputs exposed to the output, then the derived values."""

    def __init__(self, q: "Query", ties: Sequence[Tuple[int, int]] = ()):
        self.q = q
        self.offset: Dict[str, int] = {}  # declared variable -> offset in its vector
        self.decl: Dict[str, Declaration] = {}
        nx = nz = 0
        for d in q.declarations:
            self.decl[d.name] = d
            if d.kind == "input":
                self.offset[d.name] = nx
                nx += d.size
            else:
                self.offset[d.name] = nz
                nz += d.size
        self.n_declared_inputs = nx
        self.n_declared = nz
        parent = list(range(nx)) if ties else None
        if ties:
            def find(i: int) -> int:
                while parent[i] != i:
                    parent[i] = parent[parent[i]]
                    i = parent[i]
                return i

            for a, b in ties:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            roots = np.array([find(i) for i in range(nx)], dtype=np.int64)
            _, self.u_of = np.unique(roots, return_inverse=True)
            self.u_of = self.u_of.reshape(-1).astype(np.int64)
            self.n_free = int(self.u_of.max()) + 1 if nx else 0
        else:
            self.u_of = None
            self.n_free = nx
        self.exposed: Dict[int, int] = {}  # u position -> exposure index
        self.derived: List[tuple] = []  # (element type, program, leaves, consts)
        self.derived_id: Dict[tuple, int] = {}

    def key(self, d: Declaration, flat: int) -> Key:
        pos = self.offset[d.name] + flat
        if d.kind == "input":
            return "X", int(self.u_of[pos]) if self.u_of is not None else pos
        return "Y", pos

    def expose(self, u: int) -> int:
        """The output position of input u copied to the output."""
        k = self.exposed.setdefault(u, len(self.exposed))
        return self.n_declared + k

    def base_position(self, key: Key) -> int:
        """The position of a variable in the base vector (declared outputs, then exposed inputs)."""
        return self.expose(key[1]) if key[0] == "X" else key[1]

    def derive(self, etype: str, program: tuple, leaves: Sequence[int], consts: Sequence[float]) -> Key:
        """The provisional output key of a derived value (equal ones share one)."""
        sig = (etype, program, tuple(leaves), tuple(consts))
        j = self.derived_id.get(sig)
        if j is None:
            j = self.derived_id[sig] = len(self.derived)
            self.derived.append(sig)
        return "Y", _DERIVED_BASE + j

    @property
    def n_outputs(self) -> int:
        return self.n_declared + len(self.exposed) + len(self.derived)

    def finish(self, atoms: AtomBuilder) -> Tuple[Derived, ...]:
        """Group the derived values (one group per element type and program, in order of first
        use), give them their final positions and move the atoms' provisional keys there."""
        groups: Dict[tuple, List[int]] = {}
        for j, (etype, program, _, _) in enumerate(self.derived):
            groups.setdefault((etype, program), []).append(j)
        final = np.empty(len(self.derived), dtype=np.int64)
        pos = self.n_declared + len(self.exposed)
        out = []
        for (etype, program), members in groups.items():
            final[members] = pos + np.arange(len(members))
            pos += len(members)
            n_leaves = sum(1 for s in program if s[0] == "in")
            n_consts = sum(1 for s in program if s[0] == "c")
            leaves = tuple(np.array([self.derived[j][2][k] for j in members], dtype=np.int64) for k in range(n_leaves))
            consts = tuple(np.array([self.derived[j][3][k] for j in members], dtype=np.float64) for k in range(n_consts))
            out.append(Derived(etype, program, leaves, consts))
        if self.derived:
            for a, (kind, items, rhs, strict) in enumerate(atoms.rows):
                if kind == "Y" and any(i >= _DERIVED_BASE for i, _ in items):
                    atoms.rows[a] = (kind, tuple((int(final[i - _DERIVED_BASE]) if i >= _DERIVED_BASE else i, c)
                                                 for i, c in items), rhs, strict)
        return tuple(out)

    def needs_composition(self) -> bool:
        q = self.q
        return (len(q.networks) > 1 or any(len(n.inputs) != 1 or len(n.outputs) != 1 or n.hidden for n in q.networks)
                or bool(self.exposed) or bool(self.derived) or self.n_free != self.n_declared_inputs)

    def composition(self, derived: Tuple[Derived, ...]) -> Composition:
        q = self.q
        u_of = self.u_of if self.u_of is not None else np.arange(self.n_declared_inputs, dtype=np.int64)
        uses = []
        for n in q.networks:
            def sig(d: Declaration) -> TensorSignature:
                return TensorSignature(d.name, d.shape, d.element_type)

            start = self.offset[n.inputs[0].name] if n.inputs else 0
            size = sum(d.size for d in n.inputs)
            line, col = _find_decl(q.text, "declare-network", n.name)
            where = f"{q.where}:{line}:{col}" if line else q.where
            hidden = []
            for d in n.hidden:
                hl, hc = _find_decl(q.text, "declare-hidden", d.name)
                hidden.append(HiddenNode(d.onnx_name or "", sig(d), f"{q.where}:{hl}:{hc}" if hl else q.where))
            uses.append(NetworkUse(n.name, n.equal_to or n.name, tuple(sig(d) for d in n.inputs), tuple(hidden),
                                   tuple(sig(d) for d in n.outputs), u_of[start:start + size].copy(),
                                   n.isomorphic_to, where))
        exposed = np.array(list(self.exposed), dtype=np.int64)
        return Composition(tuple(uses), self.n_free, exposed, derived)

    def input_name(self, u: int) -> str:
        """How an element of u is written: its first declared input element."""
        u_of = self.u_of if self.u_of is not None else None
        pos = int(np.argmax(u_of == u)) if u_of is not None else int(u)
        for d in self.q.declarations:
            if d.kind == "input" and self.offset[d.name] <= pos < self.offset[d.name] + d.size:
                return _index_name(d, pos - self.offset[d.name])
        return f"input {u}"


def _index_name(decl: Declaration, flat: int) -> str:
    if not decl.shape:
        return decl.name
    idx = np.unravel_index(flat, decl.shape)
    return f"{decl.name}[{','.join(str(int(i)) for i in idx)}]"

# ---- structure checks ----------------------------------------------------------------------------
def _check_structure(q: "Query", signatures: Mapping[str, Signature]) -> None:
    """Names, element types and shapes of the declarations; against the models' signatures where
    given (`signatures[network]`; a network declared `equal-to` another runs that one's model)."""
    where, text = q.where, q.text
    _check_unique_networks(q)
    decls = q.declarations
    types = {d.element_type for d in decls}
    if "real" in types and len(types) > 1:
        first = next(d for d in decls if d.element_type != "real")
        raise _decl_error(where, text, f"declare-{first.kind}", first.name,
                          f"the query mixes `real` with {', '.join(sorted(types - {'real'}))}: a query over real must "
                          f"declare every variable `real`")
    for d in decls:
        if any(s < 1 for s in d.shape):
            raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                              f"{d.name} is declared with shape [{','.join(map(str, d.shape))}]: no elements")
    for n in q.networks:
        sig = signatures.get(n.equal_to or n.name)
        if sig is not None:
            _check_against_model(q, n, sig)
        else:
            for d in n.inputs + n.outputs + n.hidden:
                if d.size > MAX_ELEMENTS_WITHOUT_MODEL:
                    raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                      f"{d.name} has {d.size} elements; without a model to check its shape against, "
                                      f"vnncert reads at most {MAX_ELEMENTS_WITHOUT_MODEL} (give the model)")
    if "real" not in types:
        for d in decls:
            if d.element_type not in SOUND_ELEMENT_TYPES:
                raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                  f"{d.name} is declared {d.element_type}, which vnncert cannot analyse soundly "
                                  f"(it does {', '.join(SOUND_ELEMENT_TYPES)}); declare the query's variables "
                                  f"`real` to consent to real-valued analysis")


def _check_against_model(q: "Query", net: NetworkDecl, signature: Signature) -> None:
    """The declared inputs and outputs of one network against its model's (count, order, element
    types, shapes): the standard asks for all of them, in the model's order."""
    where, text = q.where, q.text
    model = signature.model
    real = q.real
    for what, declared, tensors in (("input", net.inputs, signature.inputs), ("output", net.outputs, signature.outputs)):
        if len(declared) != len(tensors):
            raise _decl_error(where, text, "declare-network", net.name,
                              f"network {net.name} declares {len(declared)} {what}(s) but {model} has {len(tensors)} "
                              f"({', '.join(t.name for t in tensors)}): the standard asks for every {what} of the model, "
                              f"in the model's order")
        for d, t in zip(declared, tensors):
            the = f"the {what} of {model}" if len(tensors) == 1 else f"the {what} {t.name!r} of {model}"
            if not real and d.element_type != t.element_type:
                raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                  f"{d.name} is declared {d.element_type} but {the} is {t.element_type} (element "
                                  f"types must match unless the query is over `real`)")
            shape = t.shape
            if len(d.shape) == len(shape) and all(a == b for a, b in zip(d.shape, shape)):
                continue
            if len(d.shape) == len(shape):
                bad = [i for i, (a, b) in enumerate(zip(d.shape, shape)) if a != b]
                if all(t.symbolic[i] for i in bad):
                    raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                                      f"{d.name} instantiates the dynamic dimension(s) {bad} of {the} to "
                                      f"{[d.shape[i] for i in bad]}; vnncert evaluates dynamic dimensions as 1")
            raise _decl_error(where, text, f"declare-{d.kind}", d.name,
                              f"{d.name} is declared with shape [{','.join(map(str, d.shape))}] but {the} has "
                              f"shape [{','.join(map(str, shape))}]")


def _signatures(q: "Query", signature: Optional[Signature],
                signatures: Optional[Mapping[str, Signature]]) -> Dict[str, Signature]:
    """The models' signatures by declared network name; a lone `signature` is the model of the one
    network that needs one."""
    out: Dict[str, Signature] = dict(signatures or {})
    if signature is not None:
        need = q.networks_needing_models()
        if len(need) != 1:
            raise SpecError(f"{q.where}: the query declares {len(need)} networks that need a model "
                            f"({', '.join(need)}); one model was given (name each: --network NAME=FILE)")
        out[need[0]] = signature
    return out

def _spec(q: "Query", layout: Layout, cases, composition) -> Spec:
    decl = {"version": q.version, "real": q.real, "warnings": list(q.warnings),
            "networks": [{"name": n.name, "equal_to": n.equal_to, "isomorphic_to": n.isomorphic_to} for n in q.networks],
            "variables": [d.as_dict() for d in q.declarations]}
    return Spec(n_inputs=layout.n_free, n_outputs=layout.n_outputs, cases=cases, source=q.where, version="2.0",
                declarations=decl, composition=composition)
