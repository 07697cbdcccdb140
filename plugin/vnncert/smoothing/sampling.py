"""The sampling graph: the network's batched model with the noise added inside it, and how noisy inputs reach it.

`Sampler` picks the fastest path a network allows, each checked against the plain path first:
- in-graph noise (`sampling_model`): the batched model takes standard noise z, a multiplier and
  the centre, computes the noisy input itself and outputs the argmax too: one ONNX Runtime call per
  batch and no numpy pass over the noisy inputs;
- projected noise (`projected_sampling_model`, Gaussian noise only): the graph starts at the first
  linear layer, fed with noise already pushed through it (same law, fewer numbers and flops);
- numpy noise + the network's batched session, or one input at a time when the model cannot batch.

Every session comes from the `Network` (`Network.batched_session`, and `Network.session_for` for
the rewritten graphs), so ONNX Runtime sessions are made in one place with one set of options.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


def add_argmax_output(g, network) -> None:
    """Append `vnncert_argmax` (B,) int64, the first index of the maximum of the model's output."""
    from onnx import TensorProto, helper

    g.node.extend([helper.make_node("Flatten", [network.output_name], ["vnncert_flat"], axis=1, name="vnncert_flatten"),
                   helper.make_node("ArgMax", ["vnncert_flat"], ["vnncert_argmax"], axis=1, keepdims=0, name="vnncert_argmax")])
    g.output.extend([helper.make_tensor_value_info("vnncert_argmax", TensorProto.INT64, ["vnncert_batch"])])


def sampling_model(network) -> Optional[bytes]:
    """The batched model with noise added inside the graph, or None when the model cannot batch.

    Inputs: z (B, ...) standard noise, mult (1, ...) and shift (1, ...) in the model's input dtype;
    the model sees shift + mult * z (an ONNX Mul then Add, rounded like numpy's float ops).
    Outputs: the model's output and `vnncert_argmax` (B,) int64, the first index of the maximum.
    """
    import onnx
    from onnx import helper

    data = network.batched_model_bytes
    if data is None:
        return None
    m = onnx.load_from_string(data)
    g = m.graph
    elem = network.input_info.type.tensor_type.elem_type
    rest = [int(d) for d in network.input_shape[1:]]
    keep = [i for i in g.input if i.name != network.input_name]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("vnncert_z", elem, ["vnncert_batch"] + rest),
                    helper.make_tensor_value_info("vnncert_mult", elem, [1] + rest),
                    helper.make_tensor_value_info("vnncert_shift", elem, [1] + rest)] + keep)
    nodes = [helper.make_node("Mul", ["vnncert_z", "vnncert_mult"], ["vnncert_scaled"], name="vnncert_noise_mul"),
             helper.make_node("Add", ["vnncert_scaled", "vnncert_shift"], [network.input_name], name="vnncert_noise_add")]
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)
    add_argmax_output(g, network)
    return m.SerializeToString()


@dataclass
class Projection:
    """Gaussian noise pushed through the network's first linear layer (see `projected_sampling_model`).

    The first layer computes t = x M + c (M: n_in x h, h < n_in). With the SVD M = U S V^T
    (U: n_in x r, r = h), e ~ N(0, s^2 I) gives e M = (e U) S V^T, and e U ~ N(0, s^2 I_r): so
    t(x + e) has exactly the law of x M + c + zeta L with zeta ~ N(0, s^2 I_r), L = S V^T. The
    sampling graph draws zeta (r numbers a sample instead of n_in) and starts at t. The input
    x + zeta U^T has that very t, so it stands for the sample wherever an input is needed
    (witness replays, tests).
    """

    model: bytes
    M: np.ndarray  # n_in x h, float64
    c: np.ndarray  # h
    U: np.ndarray  # n_in x r

    @property
    def r(self) -> int:
        return int(self.U.shape[1])

    @property
    def h(self) -> int:
        return int(self.M.shape[1])

    def shift(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.M + self.c

    def inputs(self, x: np.ndarray, zeta: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) + np.asarray(zeta, np.float64) @ self.U.T


def projected_sampling_model(network) -> Optional[Projection]:
    """The batched model starting at its first linear layer, fed with projected Gaussian noise.

    Applies when the input reaches a Gemm or MatMul with a constant weight through Flatten /
    Reshape-to-(B, n_in) nodes only (nothing else reads the input or those tensors) and the layer
    has fewer outputs h than inputs. Inputs: z (B, r) standard noise, mult (1, r), shift (1, h);
    the graph computes (z * mult) @ L + shift in place of the layer's output. None otherwise.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    data = network.batched_model_bytes
    if data is None:
        return None
    m = onnx.load_from_string(data)
    g = m.graph
    n_in = int(network.n_inputs)
    inits = {t.name: t for t in g.initializer}
    consumers: dict = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in g.output}

    def only_consumer(name):
        c = consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in outputs else None

    chain = []
    tensor = network.input_name
    node = only_consumer(tensor)
    while node is not None and node.op_type in ("Flatten", "Reshape"):
        if node.op_type == "Flatten":
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if axis != 1:
                return None
        else:
            shape = inits.get(node.input[1]) if len(node.input) > 1 else None
            if shape is None:
                return None
            s = numpy_helper.to_array(shape).reshape(-1)
            if s.size != 2 or int(s[1]) != n_in or int(s[0]) not in (-1, 0):
                return None
        chain.append(node)
        tensor = node.output[0]
        node = only_consumer(tensor)
    if node is None or node.input[0] != tensor:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        if attrs.get("transA", 0) or node.input[1] not in inits:
            return None
        B = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        if attrs.get("transB", 0):
            B = B.T
        M = float(attrs.get("alpha", 1.0)) * B
        c = np.zeros(M.shape[1] if M.ndim == 2 else 0)
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in inits:
                return None
            C = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64).reshape(-1)
            if C.size not in (1, c.size):
                return None
            c = c + float(attrs.get("beta", 1.0)) * C
    elif node.op_type == "MatMul":
        if node.input[1] not in inits:
            return None
        M = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        c = np.zeros(M.shape[1] if M.ndim == 2 else 0)
    else:
        return None
    if M.ndim != 2 or M.shape[0] != n_in or M.shape[1] >= n_in or not np.all(np.isfinite(M)):
        return None
    h = int(M.shape[1])
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    L = S[:, None] * Vt  # r x h
    r = int(S.size)
    elem = network.input_info.type.tensor_type.elem_type
    dtype = np.float64 if elem == TensorProto.DOUBLE else np.float32
    removed = chain + [node]
    used_by_removed = {name for n in removed for name in n.input[1:]}
    still_used = {name for n in g.node if n not in removed for name in n.input}
    graph_inputs = {i.name for i in g.input}
    keep_inits = [t for t in g.initializer if not (t.name in used_by_removed and t.name not in still_used
                                                   and t.name not in graph_inputs)]
    del g.initializer[:]
    g.initializer.extend(keep_inits + [numpy_helper.from_array(L.astype(dtype), "vnncert_L")])
    keep = [i for i in g.input if i.name != network.input_name]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("vnncert_z", elem, ["vnncert_batch", r]),
                    helper.make_tensor_value_info("vnncert_mult", elem, [1, r]),
                    helper.make_tensor_value_info("vnncert_shift", elem, [1, h])] + keep)
    rest = [n for n in g.node if n not in removed]
    del g.node[:]
    g.node.extend([helper.make_node("Mul", ["vnncert_z", "vnncert_mult"], ["vnncert_scaled"], name="vnncert_noise_mul"),
                   helper.make_node("MatMul", ["vnncert_scaled", "vnncert_L"], ["vnncert_proj"], name="vnncert_noise_proj"),
                   helper.make_node("Add", ["vnncert_proj", "vnncert_shift"], [node.output[0]], name="vnncert_noise_add")]
                  + rest)
    add_argmax_output(g, network)
    return Projection(m.SerializeToString(), M, c, U)



class Sampler:
    """How a batch of noise rows becomes argmax classes (and logits) of the network.

    noise_dim: numbers of noise per sample (the input size, or the first layer's rank when the
    noise is projected). `path` says which way the noise goes, in words.
    """

    def __init__(self, network, dtype, noise: str, in_graph: bool = True, project: bool = True):
        self.network = network
        self.dim = int(network.n_inputs)
        self.dtype = np.dtype(dtype)
        self.session = network.batched_session
        self.feed_shape = tuple(int(d) for d in network.input_shape[1:]) if self.session is not None else None
        self.graph_session = None
        self.projection: Optional[Projection] = None
        if in_graph and self.session is not None and self.dtype == np.dtype(network.input_dtype):
            if project and noise == "gaussian":
                self.graph_session, self.projection = self._make_projected_session()
            if self.graph_session is None:
                self.graph_session = self._make_graph_session()
        self.noise_dim = self.projection.r if self.projection is not None else self.dim
        if self.projection is not None:
            self.path = f"in-graph noise, projected through the first linear layer ({self.dim} -> {self.projection.h})"
        else:
            self.path = "in-graph noise" if self.graph_session is not None else (
                "numpy noise + batched session" if self.session is not None else "numpy noise + one input at a time")

    def _make_graph_session(self):
        try:
            data = sampling_model(self.network)
            if data is None:
                return None
            sess = self.network.session_for(data)
            # it must compute exactly what the batched session computes on numpy's noisy inputs
            rng = np.random.default_rng(12345)
            z = rng.standard_normal((4, self.dim)).astype(self.dtype)
            mult = rng.uniform(0.1, 1.0, self.dim).astype(self.dtype)
            shift = rng.uniform(-1.0, 1.0, self.dim).astype(self.dtype)
            am, y = self._run_graph(sess, z, mult, shift, logits=True, projected=False)
            y_ref = self.run_plain(z * mult + shift)
            if not (np.array_equal(am, y_ref.argmax(axis=1)) and np.allclose(y, y_ref, rtol=1e-5, atol=1e-6, equal_nan=True)):
                return None
            return sess
        except Exception:
            return None

    def _make_projected_session(self):
        try:
            proj = projected_sampling_model(self.network)
            if proj is None:
                return None, None
            sess = self.network.session_for(proj.model)
            # it must compute what the model computes on the inputs the noise stands for (up to rounding)
            rng = np.random.default_rng(12345)
            x = rng.uniform(-1.0, 1.0, self.dim)
            z = rng.standard_normal((4, proj.r)).astype(self.dtype)
            mult = rng.uniform(0.1, 1.0, proj.r).astype(self.dtype)
            feed = {"vnncert_z": z, "vnncert_mult": mult[None, :], "vnncert_shift": proj.shift(x).astype(self.dtype)[None, :]}
            y = np.asarray(sess.run([self.network.output_name], feed)[0], np.float64).reshape(4, -1)
            y_ref = self.run_plain(proj.inputs(x, z.astype(np.float64) * mult).astype(self.dtype)).astype(np.float64)
            tol = 1e-4 * (1.0 + np.abs(y_ref).max())
            if y.shape != y_ref.shape or not np.all(np.abs(y - y_ref) <= tol):
                return None, None
            return sess, proj
        except Exception:
            return None, None

    def run_graph(self, z, mult, shift, logits: bool):
        """(argmax classes (B,), logits (B, n_outputs) or None) of the sampling graph on noise rows z."""
        return self._run_graph(self.graph_session, z, mult, shift, logits, self.projection is not None)

    def _run_graph(self, sess, z, mult, shift, logits: bool, projected: bool):
        m = z.shape[0]
        if projected:
            feed = {"vnncert_z": z, "vnncert_mult": mult.reshape(1, -1), "vnncert_shift": shift.reshape(1, -1)}
        else:
            feed = {"vnncert_z": z.reshape((m,) + self.feed_shape), "vnncert_mult": mult.reshape((1,) + self.feed_shape),
                    "vnncert_shift": shift.reshape((1,) + self.feed_shape)}
        if logits:
            am, y = sess.run(["vnncert_argmax", self.network.output_name], feed)
            return am, np.asarray(y).reshape(m, -1)
        return sess.run(["vnncert_argmax"], feed)[0], None

    def run_plain(self, xs: np.ndarray) -> np.ndarray:
        """Logits (B, n_outputs) of ready-made noisy inputs (B, n_inputs): the batched session, or one at a time."""
        m = xs.shape[0]
        if self.session is None:
            return np.asarray(self.network.evaluate(xs)).reshape(m, -1)
        feed = xs if xs.dtype == self.network.input_dtype else xs.astype(self.network.input_dtype)
        y = self.session.run([self.network.output_name], {self.network.input_name: feed.reshape((m,) + self.feed_shape)})[0]
        return np.asarray(y).reshape(m, -1)
