"""ONNX file -> `Network`: checked model, shapes, op inventory, batched ONNX Runtime evaluation.

Validation happens once, here, the same for every engine and mode (`ModelFile`): the protobuf
parses, the ONNX checker accepts it, no input or output is declared with a 0 dim, every
floating-point constant is finite; `Network` then takes a model with exactly one real input and
one output, and ONNX Runtime creates a session on it and runs it once on a zero input (its
reason, one line, otherwise). Each failure is a `NetworkError`. A model with several inputs or
outputs, and everything a VNN-LIB 2.0 query composes (hidden nodes, several networks), becomes
one `Network` in network/compose.py (`load_network` there picks).

Conventions (docs/formats.md, "Our conventions"): symbolic dims count as 1, a fixed leading dim is
part of the shape, initializers listed as graph inputs are not inputs.
"""
from __future__ import annotations

import functools
import os
import re
from typing import List, Optional, Tuple

import numpy as np

from ..errors import NetworkError
from ..files import read_maybe_gzip

_ONNX_TO_NUMPY = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64}
# TensorProto element types -> the standard's names (ONNX "Set 1", as VNN-LIB 2.0 spells them)
_ONNX_TYPE_NAMES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                    10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128",
                    16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz",
                    21: "uint4", 22: "int4", 23: "float4e2m1"}
# TensorProto float types: FLOAT, FLOAT16, DOUBLE, BFLOAT16, the FLOAT8 and FLOAT4 kinds
_FLOAT_TYPES = {1, 10, 11, 16, 17, 18, 19, 20, 23}


MAX_REASON = 300  # characters of ONNX Runtime's / the checker's reason kept in an error message


def read_model_bytes(path: str) -> bytes:
    return read_maybe_gzip(path, NetworkError, "ONNX file")


def one_line_reason(e: BaseException, limit: int = MAX_REASON) -> str:
    """A library's exception as one short line: ONNX Runtime's `[ONNXRuntimeError] : 1 : FAIL :`
    prefix, its C++ source location and function signature dropped, whitespace collapsed, cut at
    `limit` characters."""
    msg = " ".join(str(e).split()) or type(e).__name__
    msg = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", msg)
    # 'Non-zero status code returned while running Reshape node. Name:'r' Status Message: ...'
    msg = re.sub(r"^Non-zero status code returned while running (\w+) node\. Name:'([^']*)' Status Message:\s*",
                 r"\1 node '\2': ", msg)
    # '/onnxruntime_src/.../model.cc:181 onnxruntime::Model::Model(onnx::ModelProto&&, ...) [const] [[with T = float]]'
    m = re.search(r"\S+\.(?:cc|cpp|h|hpp):\d+\s+", msg)
    if m:
        rest = msg[m.end():]
        sig = re.match(r"^(?:operator\(\)|[^()])*\((?:[^()]|\([^()]*\))*\)\s*(?:const\s*)?(?:\[with [^\]]*\]\s*)?", rest)
        msg = msg[:m.start()] + (rest[sig.end():] if sig and sig.end() < len(rest) else rest)
    if len(msg) <= limit:
        return msg
    # too long: the first sentence, then those that carry numbers (versions, counts), as room allows
    sentences = re.split(r"(?<=[.!?])\s+", msg)
    out, skipped = sentences[0], False
    if len(out) > limit:
        out = out[:limit - 4].rstrip() + " ..."
    for sent in sentences[1:]:
        if re.search(r"\d", sent) and len(out) + len(sent) + 5 <= limit:
            out += (" ... " if skipped else " ") + sent
            skipped = False
        else:
            skipped = True
    return out + (" ..." if skipped else "")


def _zero_dims(value_info) -> bool:
    """A dim declared 0 (not symbolic): the tensor has no elements."""
    t = value_info.type.tensor_type
    return t.HasField("shape") and any(d.HasField("dim_value") and d.dim_value == 0 for d in t.shape.dim)


def _declared(value_info) -> str:
    t = value_info.type.tensor_type
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim) + "]"


def non_finite_constant(model) -> Optional[str]:
    """Where the model keeps a NaN or an infinity in a floating-point constant (an initializer, a
    Constant node's value, a float attribute of a Constant; subgraphs included), as words, or None.
    Tensors stored outside the file (external data) are left to ONNX Runtime."""
    from onnx import AttributeProto, TensorProto, numpy_helper

    def bad_values(t) -> Optional[str]:
        if t.data_type not in _FLOAT_TYPES or t.data_location == TensorProto.EXTERNAL:
            return None
        a = numpy_helper.to_array(t)
        try:
            ok = np.isfinite(a)
        except TypeError:  # bfloat16 / float8 as ml_dtypes: compare in float32
            ok = np.isfinite(a.astype(np.float32))
        if ok.all():
            return None
        nan = int(np.isnan(a.astype(np.float32) if a.dtype.kind != "f" else a).sum())
        what = " and ".join(w for w, k in (("NaN", nan), ("infinity", int((~ok).sum()) - nan)) if k)
        return f"{what} ({int((~ok).sum())} of {a.size} values)"

    def walk(graph, where: str) -> Optional[str]:
        for t in graph.initializer:
            b = bad_values(t)
            if b:
                return f"initializer {t.name!r}{where} holds {b}"
        for n in graph.node:
            label = f"{n.op_type} node {(n.name or (n.output[0] if n.output else '?'))!r}{where}"
            for a in n.attribute:
                if a.type == AttributeProto.TENSOR:
                    b = bad_values(a.t)
                    if b:
                        return f"{label} holds {b} in its {a.name!r}"
                elif a.type == AttributeProto.FLOAT and n.op_type == "Constant" and not np.isfinite(a.f):
                    return f"{label} holds {a.f} in its {a.name!r}"
                elif a.type == AttributeProto.FLOATS and n.op_type == "Constant" and not np.isfinite(list(a.floats)).all():
                    return f"{label} holds a non-finite value in its {a.name!r}"
                elif a.type == AttributeProto.GRAPH:
                    r = walk(a.g, f" (in the {a.name!r} branch of {label})")
                    if r:
                        return r
                elif a.type == AttributeProto.GRAPHS:
                    for g in a.graphs:
                        r = walk(g, f" (in a subgraph of {label})")
                        if r:
                            return r
        return None

    return walk(model.graph, "")


def _dims(value_info) -> Tuple[Tuple[int, ...], List[bool]]:
    """Shape with symbolic dims as 1, and which dims were symbolic."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        raise NetworkError(f"tensor {value_info.name!r} has no declared shape")
    dims, symbolic = [], []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
            symbolic.append(False)
        else:
            dims.append(1)
            symbolic.append(True)
    return tuple(dims), symbolic


def _tensor_signature(value_info):
    from ..signature import TensorSignature

    shape, symbolic = _dims(value_info)
    elem = value_info.type.tensor_type.elem_type
    return TensorSignature(value_info.name, shape, _ONNX_TYPE_NAMES.get(elem, str(elem)), tuple(symbolic))


class ModelFile:
    """A checked ONNX model file, with any number of inputs and outputs: the protobuf parses, the
    ONNX checker accepts it, no input or output is declared with a 0 dim, every floating-point
    constant is finite. `inputs` / `outputs` are its real inputs (initializers listed as inputs
    are not inputs) and its outputs, in the graph's order, as `TensorSignature`s. `Network`
    builds on it (exactly one input and one output); network/compose.py composes several."""

    def __init__(self, path: str, model_bytes: bytes, name: Optional[str] = None):
        import onnx

        self.path = path
        self.name = name or os.path.basename(path)
        self.bytes = model_bytes
        try:
            model = onnx.load_from_string(model_bytes)
        except Exception as e:  # protobuf's DecodeError and friends
            raise NetworkError(f"{self.name}: not a valid ONNX file ({type(e).__name__})") from None
        try:
            onnx.checker.check_model(model)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise NetworkError(f"{self.name}: ONNX checker rejected the model: {one_line_reason(first)}") from None
        self.model = model
        graph = model.graph
        inits = {i.name for i in graph.initializer}
        self.input_infos = [i for i in graph.input if i.name not in inits]
        self.output_infos = list(graph.output)
        if not self.input_infos:
            raise NetworkError(f"{self.name}: model has no real input (every graph input is an initializer)")
        for what, infos in (("input", self.input_infos), ("output", self.output_infos)):
            for vi in infos:
                if _zero_dims(vi):
                    raise NetworkError(f"{self.name}: {what} {vi.name!r} has shape {_declared(vi)}: no elements to verify")
        self.inputs = tuple(_tensor_signature(vi) for vi in self.input_infos)
        self.outputs = tuple(_tensor_signature(vi) for vi in self.output_infos)
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        bad = non_finite_constant(model)
        if bad:
            raise NetworkError(f"{self.name}: {bad}; the weights of a network to verify must be finite")

    @property
    def signature(self):
        """The inputs and outputs as a `vnncert.signature.Signature`."""
        from ..signature import Signature

        return Signature(self.inputs, self.outputs, self.name)

    def input_dtype(self, k: int) -> np.dtype:
        """The numpy dtype of input k (float32/float64/float16; NetworkError otherwise)."""
        elem = self.input_infos[k].type.tensor_type.elem_type
        if elem not in (1, 10, 11):
            raise NetworkError(f"{self.name}: input {self.input_infos[k].name!r} has element type "
                               f"{_ONNX_TYPE_NAMES.get(elem, elem)}, which is not supported (float32/float64/float16 are)")
        return np.dtype(_ONNX_TO_NUMPY[elem])


def session_options(threads: int):
    """ONNX Runtime session options: `threads` intra-op threads (0: its default), its log silenced."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads > 0:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.log_verbosity_level = 0
    return so


def make_session(name: str, model_bytes: bytes, threads: int):
    """An ONNX Runtime CPU session on `model_bytes`; NetworkError with ORT's reason, one line."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(model_bytes, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise NetworkError(f"{name}: ONNX Runtime cannot load the model: {one_line_reason(e)}") from None


def run_quietly(session, outputs, feeds):
    """session.run with ONNX Runtime's own log silenced (its failure is the caller's to word)."""
    import onnxruntime as ort

    opts = ort.RunOptions()
    opts.log_severity_level = 4
    return session.run(outputs, feeds, opts)


class Network:
    """A loaded ONNX model with one input and one output (docs/formats.md; a model with several is
    composed into one of these by `network/compose.py`). Engines use `evaluate` (batched) and
    `replay` (the original file, one input)."""

    def __init__(self, path: str, model_bytes: bytes, threads: int = 0, model_file: Optional[ModelFile] = None):
        self.path = path
        self.name = os.path.basename(path)
        self.threads = int(threads)
        self._bytes = model_bytes
        mf = model_file if model_file is not None else ModelFile(path, model_bytes, self.name)
        self.model = model = mf.model
        graph = model.graph
        if len(mf.input_infos) != 1:
            names = ", ".join(i.name for i in mf.input_infos)
            raise NetworkError(f"{self.name}: model has {len(mf.input_infos)} real inputs ({names}); this loader takes "
                               f"exactly one (vnncert.network.load_network composes the others)")
        if len(graph.output) != 1:
            raise NetworkError(f"{self.name}: model has {len(graph.output)} outputs; this loader takes exactly one "
                               f"(vnncert.network.load_network composes the others)")
        self.input_info = mf.input_infos[0]
        self.output_info = graph.output[0]
        self.input_name = self.input_info.name
        self.output_name = self.output_info.name
        self.input_shape, self._in_symbolic = _dims(self.input_info)
        self.output_shape, self._out_symbolic = _dims(self.output_info)
        self.input_dtype = mf.input_dtype(0)
        self.input_type_name = mf.inputs[0].element_type
        self.output_type_name = mf.outputs[0].element_type
        self.n_inputs = int(np.prod(self.input_shape))
        self.n_outputs = int(np.prod(self.output_shape))
        self.opset = mf.opset
        self.ops = sorted({n.op_type for n in graph.node})
        self._batched_session = None
        self._batched_bytes: Optional[bytes] = None
        self._batch_mode: Optional[str] = None
        # ONNX Runtime loads the model now (tens of ms on small nets) and runs it once: a model it
        # cannot load or run is an error before any engine, the same in every mode; every witness is
        # replayed on this session
        self.session = self._make_session(model_bytes)
        self._check_runs()

    # ---- ONNX Runtime --------------------------------------------------------------------------
    def _session_options(self):
        return session_options(self.threads)

    def _make_session(self, model_bytes: bytes):
        return make_session(self.name, model_bytes, self.threads)

    def _check_runs(self) -> None:
        """One run on a zero input: a model ONNX Runtime loads but cannot run (a Reshape to another
        element count, a constant Gather index out of range, a Clip bound that is not a scalar)
        fails on every input, so it is refused here, in one line, and ONNX Runtime logs nothing."""
        try:
            run_quietly(self.session, [self.output_name], {self.input_name: np.zeros(self.input_shape, self.input_dtype)})
        except Exception as e:
            raise NetworkError(f"{self.name}: ONNX Runtime cannot run the model: {one_line_reason(e)}") from None

    def session_for(self, model_bytes: bytes):
        """A session on a rewritten graph of this model (e.g. smoothing's sampling graph), with this
        network's session options: every ONNX Runtime session of a network is made here."""
        return self._make_session(model_bytes)

    def replay(self, x: np.ndarray) -> np.ndarray:
        """Run the ORIGINAL model (`self.session`, the one every witness is replayed on) on one
        input cast to the input dtype -> flat output (input dtype values). Old models that list
        initializers as inputs need no feed for them: ONNX Runtime uses the initializer. (A
        composed network replays its original files instead: network/compose.py.)"""
        return self._run_one(x)

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        """This network's own model (`self.session`) on one input -> flat output."""
        xin = np.asarray(x).astype(self.input_dtype).reshape(self.input_shape)
        y = self.session.run([self.output_name], {self.input_name: xin})[0]
        return np.asarray(y).reshape(-1)

    def _prepare_batching(self) -> None:
        """Decide how to evaluate many inputs at once: native batch dim, rewritten batch dim, or a loop."""
        if self._batch_mode is not None:
            return
        self._batch_mode = "loop"
        if len(self.input_shape) >= 2 or (len(self.input_shape) == 1 and self._in_symbolic[0]):
            if self._in_symbolic and self._in_symbolic[0]:
                candidate = self._bytes
            elif self.input_shape[0] == 1 and len(self.input_shape) >= 2:
                candidate = self._rewrite_batch_dim()
            else:
                candidate = None
            if candidate is not None:
                try:
                    sess = self._make_session(candidate)
                    rng = np.random.default_rng(0)
                    xs = rng.standard_normal((3, self.n_inputs))
                    batched = self._run_batched(sess, xs, probe=True)
                    single = np.stack([self._run_one(x) for x in xs])
                    if batched.shape == single.shape and np.allclose(batched, single, rtol=1e-4, atol=1e-5, equal_nan=True):
                        self._batched_session = sess
                        self._batched_bytes = candidate
                        self._batch_mode = "batched"
                except Exception:
                    self._batched_session = None
                    self._batch_mode = "loop"

    def _rewrite_batch_dim(self) -> Optional[bytes]:
        import onnx

        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        g = m.graph
        for vi in list(g.input) + list(g.output):
            if vi.name in (self.input_name, self.output_name):
                dims = vi.type.tensor_type.shape.dim
                if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
                    dims[0].dim_param = "batch"
        del g.value_info[:]
        # Reshape targets that pin the leading dim to 1 become -1 (0 would copy it)
        inits = {t.name: t for t in g.initializer}
        from onnx import numpy_helper

        for node in g.node:
            if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in inits:
                shape = numpy_helper.to_array(inits[node.input[1]]).copy()
                if shape.size >= 2 and shape[0] == 1 and -1 not in shape[1:]:
                    shape[0] = -1
                    inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape.astype(np.int64), node.input[1]))
        return m.SerializeToString()

    def _run_batched(self, sess, xs: np.ndarray, probe: bool = False) -> np.ndarray:
        xin = xs.astype(self.input_dtype).reshape((xs.shape[0],) + tuple(self.input_shape[1:]))
        opts = None
        if probe:  # a failing probe is expected for some models: ONNX Runtime must not log it on stderr
            import onnxruntime as ort

            opts = ort.RunOptions()
            opts.log_severity_level = 4
        y = sess.run([self.output_name], {self.input_name: xin}, opts)[0]
        return np.asarray(y).reshape(xs.shape[0], -1)

    @property
    def batch_mode(self) -> str:
        self._prepare_batching()
        return self._batch_mode

    @property
    def batched_session(self):
        """A session taking (B, ...) inputs, or None when the model can only run one input at a time."""
        self._prepare_batching()
        return self._batched_session

    @property
    def batched_model_bytes(self) -> Optional[bytes]:
        """The model bytes behind `batched_session` (leading dim symbolic), or None when it runs one input at a time."""
        self._prepare_batching()
        return self._batched_bytes

    def evaluate(self, xs: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Outputs for a batch of flat inputs (B, n_inputs) -> (B, n_outputs), values in the model's dtype."""
        xs = np.asarray(xs)
        if xs.ndim == 1:
            xs = xs[None, :]
        self._prepare_batching()
        if self._batch_mode == "batched":
            outs = [self._run_batched(self._batched_session, xs[i:i + chunk]) for i in range(0, xs.shape[0], chunk)]
            return np.concatenate(outs, axis=0) if outs else np.zeros((0, self.n_outputs))
        return np.stack([self._run_one(x) for x in xs]) if len(xs) else np.zeros((0, self.n_outputs))

    # ---- other representations ---------------------------------------------------------------
    def normalised_model(self):
        """A copy for converters: initializers are not graph inputs, opset raised to >= 11."""
        from .normalise import normalise_model

        return normalise_model(self.model)

    @functools.cached_property
    def graph(self):
        """The IR (`vnncert.network.graph.Graph`): nodes on the input's path, constants folded."""
        from .graph import graph_from_model

        return graph_from_model(self.normalised_model())

    @functools.cached_property
    def layer_graph(self):
        """The layer graph (`vnncert.network.layers.LayerGraph`): affine maps, ReLUs and max
        nodes in float64, built from each op's affine lowering; UnsupportedOperator names an op
        without one (raised again on each access: nothing is cached then)."""
        from .layers import build_layer_graph

        lg = build_layer_graph(self.graph)
        if lg.n_inputs != self.n_inputs or lg.n_outputs != self.n_outputs:
            raise NetworkError(f"{self.name}: layer graph has {lg.n_inputs} inputs / {lg.n_outputs} outputs, "
                               f"the model declares {self.n_inputs} / {self.n_outputs}")
        return lg

    @functools.cached_property
    def _torch_module(self):
        from ..options import apply_torch_threads
        from .torch_convert import graph_to_torch

        apply_torch_threads(self.threads)
        module = graph_to_torch(self.graph)
        if module.n_inputs != self.n_inputs or module.n_outputs != self.n_outputs:
            raise NetworkError(f"{self.name}: converted module has {module.n_inputs} inputs / {module.n_outputs} "
                               f"outputs, the model declares {self.n_inputs} / {self.n_outputs}")
        return module

    def torch_module(self):
        """The torch.nn.Module of the network (built once; see `vnncert.network.torch_convert`
        for its contract): (B, n_inputs) float32 -> (B, n_outputs)."""
        return self._torch_module

    @functools.cached_property
    def signature(self):
        """The input and output tensors (names, shapes with symbolic dims as 1, element types) as a
        `vnncert.signature.Signature`: all that the property parser learns of the model."""
        from ..signature import Signature, TensorSignature

        return Signature((TensorSignature(self.input_name, self.input_shape, self.input_type_name, self._in_symbolic),),
                         (TensorSignature(self.output_name, self.output_shape, self.output_type_name, self._out_symbolic),),
                         self.name)

    def describe(self) -> str:
        return (f"{self.name}: input {self.input_name} {list(self.input_shape)} {self.input_type_name}, "
                f"output {self.output_name} {list(self.output_shape)}, opset {self.opset}, ops {', '.join(self.ops)}")


def load_network(path: str, threads: int = 0) -> Network:
    """Load and check an ONNX model (`.onnx` or `.onnx.gz`) with one input and one output
    (`vnncert.network.load_network` takes any number of each)."""
    return Network(path, read_model_bytes(path), threads=threads)
