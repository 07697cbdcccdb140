"""One network from everything a VNN-LIB 2.0 query names: several inputs and outputs, hidden nodes,
several networks, inputs copied to the output, the query's arithmetic (`signature.Composition`).

The engines see one `Network` with one flat input u and one flat output z (the normal form talks
about nothing else), so they do not change. Its ONNX graph (`composed_model`) is the product of
the models:

- each declared network's model is copied with every tensor name prefixed `n<k>/` (so two models,
  or two uses of one model, never clash), its opset raised to the largest of the query's models
  (at least 11) where they differ;
- its inputs are fed from u: a `Slice` (or a `Gather` where the query ties inputs of different
  tensors or networks to one position of u) reshaped to the input's shape;
- its hidden nodes (tensors inside the graph) and outputs are flattened (`Reshape` to [1, n]) and
  concatenated, per network in declaration order, hidden nodes first; then the inputs copied to
  the output (`Gather` of u); then the derived values: per group, its program as `Gather` of the
  concatenation, constants, `Neg`, `Add`, `Sub`, `Mul` in the group's element type, one node per
  step, vectorised over the group's members.

So `f1(x) - f2(x)` is one affine row over one graph whose two halves share x: the bounds layer
bounds the difference directly (docs/vnnlib2.md, "Several networks").

The witness replay (`ComposedNetwork.replay`) does NOT run the composed graph. Per declared
network it runs ONNX Runtime on the ORIGINAL model file, fed the witness's inputs tensor by
tensor; for a network with hidden nodes it also runs an augmented copy of that file (the same
graph and weights, the hidden tensors added to `graph.output`, nothing else changed) and takes
the hidden values from it, and the witness is rejected unless that run's outputs equal the
original file's bit for bit. The copied inputs are the witness's own values; the derived values
are computed in numpy, one IEEE operation per step in the group's element type (float32 or
float64), or, over `real`, as exact products (a product a float64 cannot hold exactly rejects the
witness). A replay that cannot be made gives NaN, which no check accepts.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import NetworkError, SpecError
from ..signature import Composition, Derived, NetworkUse, Signature
from .loader import ModelFile, Network, make_session, one_line_reason, read_model_bytes, run_quietly

INPUT_NAME = "vnncert_u"
OUTPUT_NAME = "vnncert_z"
MIN_OPSET = 11  # the composing nodes (Slice with inputs, Gather, Reshape, Concat) need opset >= 10

_NUMPY_OF = {"float32": np.float32, "float64": np.float64, "float16": np.float16}
_ONNX_ELEM = {"float32": 1, "float16": 10, "float64": 11}


# ---- loading ---------------------------------------------------------------------------------------
def load_network(path: str, threads: int = 0) -> Network:
    """Load and check an ONNX model (`.onnx` or `.onnx.gz`): one input and one output give a
    `Network`; more are composed into one (inputs concatenated in the graph's order, each
    flattened in C order, and likewise the outputs: docs/formats.md)."""
    data = read_model_bytes(path)
    mf = ModelFile(path, data)
    if len(mf.inputs) == 1 and len(mf.outputs) == 1:
        return Network(path, data, threads=threads, model_file=mf)
    return ComposedNetwork(trivial_composition(mf), {mf.name: mf}, threads=threads)


def load_model_file(path: str) -> ModelFile:
    return ModelFile(path, read_model_bytes(path))


def trivial_composition(mf: ModelFile) -> Composition:
    """A model with several inputs or outputs as it is: inputs and outputs in the graph's order."""
    n = sum(t.size for t in mf.inputs)
    use = NetworkUse(mf.name, mf.name, mf.inputs, (), mf.outputs, np.arange(n, dtype=np.int64))
    return Composition((use,), n, np.zeros(0, dtype=np.int64), ())


def network_for(composition: Optional[Composition], files: Mapping[str, ModelFile], threads: int = 0,
                real: bool = False) -> Network:
    """The network a parsed query runs on: its one model as it is, or the composition (`real`: the
    query is over `real`, so element types are not compared)."""
    if composition is None:
        (mf,) = {id(f): f for f in files.values()}.values()
        if len(mf.inputs) != 1 or len(mf.outputs) != 1:
            raise NetworkError(f"internal: {mf.name} has several inputs or outputs but the query composes nothing")
        return Network(mf.path, mf.bytes, threads=threads, model_file=mf)
    return ComposedNetwork(composition, files, threads=threads, real=real)


# ---- graph surgery ---------------------------------------------------------------------------------
def _rename(graph, prefix: str) -> None:
    """Prefix every tensor and node name of `graph` and of its subgraphs (in place)."""
    from onnx import AttributeProto

    def r(name: str) -> str:
        return prefix + name if name else name

    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        vi.name = r(vi.name)
    for t in graph.initializer:
        t.name = r(t.name)
    for st in graph.sparse_initializer:
        st.values.name = r(st.values.name)
        st.indices.name = r(st.indices.name)
    for n in graph.node:
        n.input[:] = [r(x) for x in n.input]
        n.output[:] = [r(x) for x in n.output]
        n.name = r(n.name) if n.name else ""
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                _rename(a.g, prefix)
            elif a.type == AttributeProto.GRAPHS:
                for g in a.graphs:
                    _rename(g, prefix)


def _node_outputs(graph) -> set:
    return {o for n in graph.node for o in n.output if o}


def check_hidden_names(mf: ModelFile, use: NetworkUse) -> None:
    """Every hidden node of `use` names a tensor some node of the model's graph computes."""
    produced = _node_outputs(mf.model.graph)
    inputs = {i.name for i in mf.model.graph.input}
    inits = {t.name for t in mf.model.graph.initializer}
    for h in use.hidden:
        if h.onnx_name in produced:
            continue
        what = ("is an input of the model" if h.onnx_name in inputs else
                "is a constant (initializer) of the model" if h.onnx_name in inits else
                "is not the output of any node of the model")
        near = sorted(produced)[:8]
        raise SpecError(f"{h.where or use.where}: hidden node {h.tensor.name} of network {use.name}: {h.onnx_name!r} "
                        f"{what} {mf.name} (a hidden node names a node output; it has e.g. "
                        f"{', '.join(repr(n) for n in near)}{', ...' if len(produced) > len(near) else ''})")


def augmented_model(mf: ModelFile, names: Sequence[str]):
    """A copy of the model whose graph also outputs the tensors `names` (nothing else changed)."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(mf.model)
    have = {o.name for o in m.graph.output}
    known = {vi.name: vi for vi in m.graph.value_info}
    try:
        inferred = onnx.shape_inference.infer_shapes(mf.model)
        known.update({vi.name: vi for vi in inferred.graph.value_info})
    except Exception:
        pass
    for name in names:
        if name in have:
            continue
        vi = known.get(name)
        if vi is not None and vi.type.tensor_type.elem_type:
            out = m.graph.output.add()
            out.CopyFrom(vi)
        else:  # no inferred type: an output without one (ONNX Runtime reports what it computes)
            m.graph.output.append(helper.make_empty_tensor_value_info(name))
        have.add(name)
    return m


def _unified(files: Mapping[str, ModelFile]) -> Tuple[Dict[str, object], int, Dict[str, int], int]:
    """The models (by declared network name) at one default-domain opset (the largest, at least
    MIN_OPSET; a model below it goes through onnx's version converter), the opset imports and
    the IR version of the product."""
    from onnx import helper, version_converter

    target = max([MIN_OPSET] + [f.opset for f in files.values()])
    out: Dict[str, object] = {}
    domains: Dict[str, int] = {}
    ir = 0
    for key, f in files.items():
        m = f.model
        if f.opset != target:
            try:
                m = version_converter.convert_version(m, target)
            except Exception as e:
                raise NetworkError(f"{f.name}: cannot raise the model from opset {f.opset} to {target} (the largest "
                                   f"opset of the query's models): {one_line_reason(e)}") from None
        out[key] = m
        ir = max(ir, m.ir_version)
        for o in m.opset_import:
            if o.domain not in ("", "ai.onnx"):
                domains[o.domain] = max(domains.get(o.domain, 0), o.version)
    ir = max(ir, helper.find_min_ir_version_for([helper.make_opsetid("", target)]))
    return out, target, domains, ir


def composed_model(composition: Composition, files: Mapping[str, ModelFile], input_type: str, value_type: str):
    """The product graph of the composition (module docstring): `input_type` is the element type of
    u, `value_type` that of the output vector z (the hidden nodes' shapes are their declared ones,
    checked against ONNX Runtime's by `ComposedNetwork`)."""
    import onnx
    from onnx import helper, numpy_helper

    models, opset, domains, ir = _unified({m: files[m] for m in composition.models})
    nodes: List = []
    inits: List = []
    value_info: List = []
    functions: Dict[Tuple[str, str], object] = {}
    counter = [0]

    def fresh(stem: str) -> str:
        counter[0] += 1
        return f"vnncert_{stem}_{counter[0]}"

    def const(values: np.ndarray, stem: str) -> str:
        name = fresh(stem)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(values), name))
        return name

    def select(src: str, idx: np.ndarray, stem: str) -> str:
        """src[:, idx] ([1, n] -> [1, len(idx)]): a Slice for a contiguous run, else a Gather."""
        out = fresh(stem)
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
            nodes.append(helper.make_node("Slice", [src, const(np.array([idx[0]], np.int64), "start"),
                                                    const(np.array([idx[0] + idx.size], np.int64), "end"),
                                                    const(np.array([1], np.int64), "axis")], [out], name=out))
        else:
            nodes.append(helper.make_node("Gather", [src, const(idx, "index")], [out], axis=1, name=out))
        return out

    def reshape(src: str, shape: Sequence[int], out: Optional[str] = None) -> str:
        out = out or fresh("flat")
        nodes.append(helper.make_node("Reshape", [src, const(np.array(list(shape), np.int64), "shape")], [out], name=out))
        return out

    pieces: List[str] = []
    for k, use in enumerate(composition.networks):
        m = models[use.model]
        g = onnx.GraphProto()
        g.CopyFrom(m.graph)
        prefix = f"n{k}/"
        _rename(g, prefix)
        mf = files[use.model]
        offset = 0
        for t, vi in zip(use.inputs, mf.input_infos):
            idx = use.input_index[offset:offset + t.size]
            offset += t.size
            reshape(select(INPUT_NAME, idx, "in"), t.shape or (), prefix + vi.name)
        nodes.extend(g.node)
        inits.extend(g.initializer)
        value_info.extend(g.value_info)
        for st in g.sparse_initializer:
            inits.append(numpy_helper.from_array(numpy_helper.to_array(st), st.values.name))
        for fn in m.functions:
            key = (fn.domain, fn.name)
            if key in functions and functions[key].SerializeToString() != fn.SerializeToString():
                raise NetworkError(f"{mf.name}: defines the model function {fn.domain}.{fn.name} differently from "
                                   f"another model of the query")
            functions[key] = fn
        exposed = [prefix + h.onnx_name for h in use.hidden] + [prefix + vi.name for vi in mf.output_infos]
        sizes = [h.tensor.size for h in use.hidden] + [t.size for t in use.outputs]
        for name, size in zip(exposed, sizes):
            pieces.append(reshape(name, (1, size)))
    if composition.exposed.size:
        pieces.append(select(INPUT_NAME, composition.exposed, "exposed"))
    base = fresh("base")
    nodes.append(helper.make_node("Concat", pieces, [base], axis=1, name=base))
    outs = [base]
    for group in composition.derived:
        vt = value_type if group.element_type == "real" else group.element_type
        steps: List[str] = []
        for step in group.program:
            op = step[0]
            if op == "in":
                steps.append(select(base, group.leaves[step[1]], "leaf"))
            elif op == "c":
                steps.append(const(group.consts[step[1]].astype(_NUMPY_OF[vt]).reshape(1, -1), "c"))
            else:
                out = fresh(op)
                onnx_op = {"neg": "Neg", "add": "Add", "sub": "Sub", "mul": "Mul"}[op]
                nodes.append(helper.make_node(onnx_op, [steps[i] for i in step[1:]], [out], name=out))
                steps.append(out)
        outs.append(steps[-1])
    nodes.append(helper.make_node("Concat", outs, [OUTPUT_NAME], axis=1, name=OUTPUT_NAME))
    u = helper.make_tensor_value_info(INPUT_NAME, _ONNX_ELEM[input_type], [1, composition.n_free])
    z = helper.make_tensor_value_info(OUTPUT_NAME, _ONNX_ELEM[value_type], [1, composition.n_outputs])
    graph = helper.make_graph(nodes, "vnncert_composed", [u], [z], inits, value_info=value_info)
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in sorted(domains.items())]
    model = helper.make_model(graph, opset_imports=imports, producer_name="vnncert")
    model.ir_version = ir
    model.functions.extend(functions.values())
    return model


# ---- checks of the declarations against the models ----------------------------------------------
def _structure(model) -> Tuple[list, list]:
    """A canonical form of a graph's structure: per node (op, domain, attributes without tensor
    values, wiring by canonical tensor ids), and the initializers' shapes by id."""
    from onnx import AttributeProto, helper

    g = model.graph
    ids: Dict[str, int] = {}

    def cid(name: str) -> int:
        if not name:
            return -1
        return ids.setdefault(name, len(ids))

    inits = {t.name: tuple(t.dims) for t in g.initializer}
    for i in g.input:
        if i.name not in inits:
            cid(i.name)
    nodes = []
    for n in g.node:
        attrs = []
        for a in sorted(n.attribute, key=lambda a: a.name):
            if a.type == AttributeProto.TENSOR:
                attrs.append((a.name, tuple(a.t.dims)))
            elif a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                attrs.append((a.name, "graph"))
            else:
                attrs.append((a.name, repr(helper.get_attribute_value(a))))
        nodes.append((n.op_type, n.domain, tuple(attrs), tuple(cid(x) for x in n.input), tuple(cid(x) for x in n.output)))
    shapes = sorted((ids[name], dims) for name, dims in inits.items() if name in ids)
    return nodes, shapes


def check_isomorphic(a: ModelFile, b: ModelFile) -> Optional[str]:
    """None when the two graphs have the same structure (the same ops, attributes and wiring, and
    constants of the same shapes; the weights and element types may differ), else why not."""
    na, sa = _structure(a.model)
    nb, sb = _structure(b.model)
    if len(na) != len(nb):
        return f"{a.name} has {len(na)} nodes, {b.name} {len(nb)}"
    for k, (x, y) in enumerate(zip(na, nb)):
        if x != y:
            return f"node {k} differs ({x[0]} in {a.name}, {y[0]} in {b.name}, or their attributes or wiring)"
    if sa != sb:
        return "their constants differ in shape"
    return None


def _check_tensors(use: NetworkUse, mf: ModelFile, real: bool) -> None:
    """The declared inputs and outputs of `use` against the model's (count, shape, element type)."""
    for what, declared, actual in (("input", use.inputs, mf.inputs), ("output", use.outputs, mf.outputs)):
        if len(declared) != len(actual):
            raise SpecError(f"{use.where}: network {use.name} declares {len(declared)} {what}(s) but {mf.name} has "
                            f"{len(actual)} ({', '.join(t.name for t in actual)}): the standard asks for all of them, "
                            f"in the model's order")
        for d, t in zip(declared, actual):
            if d.shape != t.shape:
                raise SpecError(f"{use.where}: {d.name} is declared with shape [{','.join(map(str, d.shape))}] but "
                                f"{what} {t.name!r} of {mf.name} has shape [{','.join(map(str, t.shape))}]")
            if not real and d.element_type != t.element_type:
                raise SpecError(f"{use.where}: {d.name} is declared {d.element_type} but {what} {t.name!r} of "
                                f"{mf.name} is {t.element_type} (element types must match unless the query is over "
                                f"`real`)")


# ---- the composed network ------------------------------------------------------------------------
class _Replayer:
    """One declared network's part of the witness replay: ORT on its original file (and, for hidden
    nodes, on the augmented copy), fed from u."""

    def __init__(self, use: NetworkUse, mf: ModelFile, original, augmented, dtypes: List[np.dtype]):
        self.use = use
        self.mf = mf
        self.original = original
        self.augmented = augmented
        self.dtypes = dtypes
        self.output_names = [vi.name for vi in mf.output_infos]
        self.hidden_names = [h.onnx_name for h in use.hidden]

    def feeds(self, u: np.ndarray) -> dict:
        out, offset = {}, 0
        for t, vi, dt in zip(self.use.inputs, self.mf.input_infos, self.dtypes):
            idx = self.use.input_index[offset:offset + t.size]
            offset += t.size
            out[vi.name] = u[idx].astype(dt).reshape(t.shape)
        return out

    def run(self, u: np.ndarray) -> Optional[List[np.ndarray]]:
        """[hidden values..., outputs...] flat, or None when the replay is refused."""
        feeds = self.feeds(u)
        try:
            outs = run_quietly(self.original, self.output_names, feeds)
        except Exception:
            return None
        hidden: List[np.ndarray] = []
        if self.augmented is not None:
            try:
                got = run_quietly(self.augmented, self.output_names + self.hidden_names, feeds)
            except Exception:
                return None
            n = len(self.output_names)
            for a, b in zip(outs, got[:n]):  # the augmented copy computes what the file computes
                a, b = np.asarray(a), np.asarray(b)
                if a.shape != b.shape or a.tobytes() != b.tobytes():
                    return None
            hidden = [np.asarray(h) for h in got[n:]]
        return [np.asarray(v).reshape(-1) for v in hidden + list(outs)]


def evaluate_derived(group: Derived, base: np.ndarray) -> np.ndarray:
    """The group's values from the base values (B, n_base) (float64 holding the exact values) ->
    (B, size) float64: IEEE steps in the group's element type, or exact products over `real`
    (NaN where a product is not a float64)."""
    base = np.atleast_2d(base)
    if group.element_type == "real":
        factors = [base[:, group.leaves[s[1]]] for s in group.program if s[0] == "in"]
        if any(s[0] not in ("in", "mul") for s in group.program):
            raise NetworkError("internal: a derived value over real is a product of variables")
        prod = factors[0].copy()
        for f in factors[1:]:
            prod = prod * f
        if len(factors) > 1:
            flat_p, flats = prod.reshape(-1), [f.reshape(-1) for f in factors]
            for i in range(flat_p.size):
                if not np.isfinite(flat_p[i]):
                    continue
                exact = Fraction(1)
                for f in flats:
                    exact *= Fraction(float(f[i]))
                if Fraction(float(flat_p[i])) != exact:
                    flat_p[i] = np.nan
            prod = flat_p.reshape(prod.shape)
        return prod
    dt = _NUMPY_OF[group.element_type]
    steps: List[np.ndarray] = []
    with np.errstate(all="ignore"):
        for step in group.program:
            op = step[0]
            if op == "in":
                steps.append(base[:, group.leaves[step[1]]].astype(dt))
            elif op == "c":
                steps.append(np.broadcast_to(group.consts[step[1]].astype(dt), (base.shape[0], group.size)))
            elif op == "neg":
                steps.append(np.negative(steps[step[1]]))
            elif op == "add":
                steps.append(np.add(steps[step[1]], steps[step[2]], dtype=dt))
            elif op == "sub":
                steps.append(np.subtract(steps[step[1]], steps[step[2]], dtype=dt))
            elif op == "mul":
                steps.append(np.multiply(steps[step[1]], steps[step[2]], dtype=dt))
            else:
                raise NetworkError(f"internal: unknown derived step {op!r}")
    return steps[-1].astype(np.float64)


class ComposedNetwork(Network):
    """The `Network` of a composition (module docstring): the engines run its composed graph; a
    witness is replayed on the original files (`replay`)."""

    def __init__(self, composition: Composition, files: Mapping[str, ModelFile], threads: int = 0,
                 real: bool = False):
        self.composition = composition
        self.files = dict(files)
        self.uses = composition.networks
        missing = [m for m in composition.models if m not in self.files]
        if missing:
            raise NetworkError(f"no model for network(s) {', '.join(missing)}")
        for use in self.uses:
            mf = self.files[use.model]
            _check_tensors(use, mf, real)
            check_hidden_names(mf, use)
            if use.isomorphic_to is not None:
                other = self.files[next(u.model for u in self.uses if u.name == use.isomorphic_to)]
                why = check_isomorphic(other, mf)
                if why:
                    raise SpecError(f"{use.where}: network {use.name} is declared isomorphic-to {use.isomorphic_to}, "
                                    f"but {mf.name} and {other.name} are not isomorphic: {why}")
        input_types = sorted({self.files[u.model].inputs[i].element_type for u in self.uses for i in range(len(u.inputs))})
        if len(input_types) != 1 or input_types[0] not in _NUMPY_OF:
            raise NetworkError(f"the query's networks take inputs of element types {', '.join(input_types)}; vnncert "
                               f"composes networks whose inputs share one of float32, float64, float16")
        itype = input_types[0]
        # one ORT session per model file (the witness replay), one per augmented copy; their shapes
        sessions = {name: make_session(self.files[name].name, self.files[name].bytes, threads)
                    for name in composition.models}
        self._replayers: List[_Replayer] = []
        value_types = set()
        for use in self.uses:
            mf = self.files[use.model]
            dtypes = [mf.input_dtype(i) for i in range(len(mf.inputs))]
            value_types.update(t.element_type for t in mf.outputs)
            augmented = None
            if use.hidden:
                aug = augmented_model(mf, [h.onnx_name for h in use.hidden])
                augmented = make_session(f"{mf.name} (with its hidden nodes as outputs)", aug.SerializeToString(), threads)
                zeros = {vi.name: np.zeros(t.shape, dt) for t, vi, dt in zip(mf.inputs, mf.input_infos, dtypes)}
                try:
                    vals = run_quietly(augmented, [h.onnx_name for h in use.hidden], zeros)
                except Exception as e:
                    raise NetworkError(f"{mf.name}: ONNX Runtime cannot compute the hidden nodes of network "
                                       f"{use.name}: {one_line_reason(e)}") from None
                for h, v in zip(use.hidden, vals):
                    v = np.asarray(v)
                    etype = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64",
                             np.dtype(np.float16): "float16"}.get(v.dtype, str(v.dtype))
                    if tuple(v.shape) != h.tensor.shape:
                        raise SpecError(f"{h.where or use.where}: hidden node {h.tensor.name} is declared with shape "
                                        f"[{','.join(map(str, h.tensor.shape))}] but {h.onnx_name!r} of {mf.name} "
                                        f"has shape [{','.join(map(str, v.shape))}]")
                    if not real and etype != h.tensor.element_type:
                        raise SpecError(f"{h.where or use.where}: hidden node {h.tensor.name} is declared "
                                        f"{h.tensor.element_type} but {h.onnx_name!r} of {mf.name} is {etype}")
                    value_types.add(etype)
            self._replayers.append(_Replayer(use, mf, sessions[use.model], augmented, dtypes))
        if composition.exposed.size:
            value_types.add(itype)
        value_types.update(g.element_type for g in composition.derived if g.element_type != "real")
        if len(value_types) != 1 or next(iter(value_types)) not in _NUMPY_OF:
            raise NetworkError(f"the query's variables are of element types {', '.join(sorted(value_types))}; vnncert "
                               f"composes networks whose outputs and hidden nodes share one of float32, float64, float16")
        vtype = next(iter(value_types))
        model = composed_model(composition, self.files, itype, vtype)
        label = "+".join(self.files[u.model].name if u.name == u.model == self.files[u.model].name
                         else f"{u.name}={self.files[u.model].name}" for u in self.uses)
        super().__init__(label, model.SerializeToString(), threads=threads)

    @property
    def signature(self):
        """The model's own signature when the composition runs one model file (e.g. a model with
        several inputs), for checking a property against it; a product of several has none."""
        if len(self.files) == 1:
            return next(iter(self.files.values())).signature
        raise NetworkError(f"{self.name}: a composition of several models has no single signature")

    def signatures(self) -> Dict[str, Signature]:
        return {name: mf.signature for name, mf in self.files.items()}

    def replay(self, x: np.ndarray) -> np.ndarray:
        """The witness replay on the original files (module docstring): u (flat, any float dtype;
        cast to the input dtype) -> z as float64 holding the exact values, NaN where refused."""
        u = np.asarray(x).astype(self.input_dtype).reshape(-1)
        parts: List[np.ndarray] = []
        for rp in self._replayers:
            got = rp.run(u)
            if got is None:
                return np.full(self.n_outputs, np.nan)
            parts.extend(v.astype(np.float64) for v in got)
        c = self.composition
        if c.exposed.size:
            parts.append(u[c.exposed].astype(np.float64))
        base = np.concatenate(parts) if parts else np.zeros(0)
        derived = [evaluate_derived(g, base[None, :])[0] for g in c.derived]
        z = np.concatenate([base] + derived) if derived else base
        if z.size != self.n_outputs:
            raise NetworkError(f"internal: the replay gave {z.size} values, the composed network has {self.n_outputs}")
        return z

    def declared(self, x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """A witness (u, z) as the declared variables: every declared input in declaration order
        (tied inputs repeat their value), and the declared hidden nodes and outputs."""
        c = self.composition
        return np.asarray(x)[c.declared_inputs], np.asarray(y)[:c.n_declared]

    def describe(self) -> str:
        c = self.composition
        return (f"{self.name}: composed network of {len(self.uses)} declared network(s), {c.n_free} free inputs, "
                f"{c.n_outputs} outputs ({c.n_declared} declared, {c.exposed.size} copied inputs, "
                f"{sum(g.size for g in c.derived)} derived), opset {self.opset}")

