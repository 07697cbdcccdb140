"""The torch modules the op handlers emit (imported only when a torch module is built).

Every tensor between steps has the batch on axis 0 (see `vnncert.network.torch_convert`).
Float constants are registered as buffers so `module.double()` converts them too; integer
facts (axes, slices, shapes) are plain Python values.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Step(nn.Module):
    """One step of the converted graph; `in_names`/`out_names` are set by the builder."""

    in_names: List[str]
    out_names: List[str]


def _buffer(module: nn.Module, name: str, value) -> None:
    module.register_buffer(name, torch.as_tensor(np.asarray(value, dtype=np.float32).copy()))


class Reshape(Step):
    def __init__(self, rest: Sequence[int]):
        super().__init__()
        self.rest = tuple(int(d) for d in rest)

    def forward(self, x):
        return x.reshape(-1, *self.rest)

    def extra_repr(self) -> str:
        return f"(-1, {', '.join(map(str, self.rest))})"


class Linear(Step):
    """y = x W^T + b on the last axis (optionally on the second-to-last: transpose around it)."""

    def __init__(self, weight: np.ndarray, bias=None, on_rows: bool = False):
        super().__init__()
        w = np.array(weight, dtype=np.float32)
        self.linear = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(w))
            if bias is not None:
                self.linear.bias.copy_(torch.as_tensor(np.array(bias, dtype=np.float32).reshape(-1)))
        self.on_rows = on_rows

    def forward(self, x):
        if self.on_rows:
            return self.linear(x.transpose(-1, -2)).transpose(-1, -2)
        return self.linear(x)


class Conv(Step):
    """ConvNd; a 1-D convolution runs as a 2-D one of height 1 (auto_LiRPA 0.3 bounds Conv2d only)."""

    def __init__(self, weight: np.ndarray, bias, strides, pads, dilations, group: int):
        super().__init__()
        w = np.array(weight, dtype=np.float32)
        nd = w.ndim - 2
        self.as_1d = nd == 1
        if self.as_1d:
            w = w[:, :, None, :]
            strides, dilations = [1] + list(strides), [1] + list(dilations)
            pads = [0, pads[0], 0, pads[1]]
            nd = 2
        cls = {2: nn.Conv2d, 3: nn.Conv3d}[nd]
        begin, end = list(pads[:nd]), list(pads[nd:])
        symmetric = begin == end
        self.pad = None
        if not symmetric:
            # F.pad wants (last_begin, last_end, ..., first_begin, first_end)
            p = []
            for i in reversed(range(nd)):
                p += [int(begin[i]), int(end[i])]
            self.pad = tuple(p)
        self.conv = cls(w.shape[1] * group, w.shape[0], kernel_size=tuple(w.shape[2:]), stride=tuple(strides),
                        padding=tuple(begin) if symmetric else 0, dilation=tuple(dilations), groups=group,
                        bias=bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(torch.as_tensor(w))
            if bias is not None:
                self.conv.bias.copy_(torch.as_tensor(np.array(bias, dtype=np.float32)))

    def forward(self, x):
        if self.as_1d:
            x = x.unsqueeze(2)
        if self.pad is not None:
            x = F.pad(x, self.pad)
        y = self.conv(x)
        if self.as_1d:
            y = y.squeeze(2)
        return y


class ConstOp(Step):
    """x (op) c or c (op) x with a constant c broadcast over the batch."""

    def __init__(self, op: str, const: np.ndarray, const_first: bool):
        super().__init__()
        self.op = op
        self.const_first = const_first
        _buffer(self, "c", const)

    def forward(self, x):
        c = self.c
        if self.op == "Add":
            return x + c
        if self.op == "Mul":
            return x * c
        if self.op == "Sub":
            return c - x if self.const_first else x - c
        if self.op == "Div":
            return c * torch.reciprocal(x) if self.const_first else x / c
        raise ValueError(self.op)

    def extra_repr(self) -> str:
        return f"{self.op}, const shape {tuple(self.c.shape)}, const_first={self.const_first}"


class Affine(Step):
    """x * scale + shift (a folded BatchNormalization)."""

    def __init__(self, scale: np.ndarray, shift: np.ndarray):
        super().__init__()
        _buffer(self, "scale", scale)
        _buffer(self, "shift", shift)

    def forward(self, x):
        return x * self.scale + self.shift


class Binary(Step):
    """Two variable operands (both carry the batch on axis 0)."""

    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, x, y):
        if self.op == "Add":
            return x + y
        if self.op == "Sub":
            return x - y
        if self.op == "Mul":
            return x * y
        if self.op == "Div":
            return x / y
        if self.op == "MatMul":
            return torch.matmul(x, y)
        raise ValueError(self.op)

    def extra_repr(self) -> str:
        return self.op


class Unary(Step):
    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, x):
        op = self.op
        if op == "Relu":
            return F.relu(x)
        if op == "Sigmoid":
            return torch.sigmoid(x)
        if op == "Tanh":
            return torch.tanh(x)
        if op == "Exp":
            return torch.exp(x)
        if op == "Neg":
            return -x
        if op == "Sqrt":
            return torch.sqrt(x)
        if op == "Reciprocal":
            return torch.reciprocal(x)
        raise ValueError(op)

    def extra_repr(self) -> str:
        return self.op


class LeakyRelu(Step):
    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x):
        return F.leaky_relu(x, self.alpha)


class Pow(Step):
    """x ** p; an integer p >= 3 is built from squares and products (auto_LiRPA 0.3 bounds only x ** 2)."""

    def __init__(self, exponent: float):
        super().__init__()
        self.exponent = float(exponent)

    def forward(self, x):
        p = self.exponent
        if p == int(p) and 3 <= p <= 16:
            return _int_power(x, int(p))
        return torch.pow(x, p)


def _int_power(x, n: int):
    if n == 1:
        return x
    if n == 2:
        return torch.pow(x, 2.0)
    half = _int_power(x, n // 2)
    sq = torch.pow(half, 2.0)
    return sq * x if n % 2 else sq


class Slice(Step):
    """Basic slicing on torch axes: `index` is a tuple of Python slices (axis 0, the batch, is ':')."""

    def __init__(self, index: Tuple[slice, ...]):
        super().__init__()
        self.index = tuple(index)

    def forward(self, x):
        return x[self.index]

    def extra_repr(self) -> str:
        return ", ".join(f"{s.start}:{s.stop}:{s.step}" for s in self.index)


class SplitSlices(Step):
    """Several slices of one tensor (Split): one output per slice tuple."""

    def __init__(self, indices: List[Tuple[slice, ...]]):
        super().__init__()
        self.indices = [tuple(i) for i in indices]

    def forward(self, x):
        return tuple(x[i] for i in self.indices)


class Concat(Step):
    def __init__(self, axis: int):
        super().__init__()
        self.axis = int(axis)

    def forward(self, *xs):
        return torch.cat(xs, dim=self.axis)


class Transpose(Step):
    def __init__(self, perm: Sequence[int]):
        super().__init__()
        self.perm = tuple(int(p) for p in perm)

    def forward(self, x):
        return x.permute(*self.perm)


class Reduce(Step):
    def __init__(self, op: str, axes: Sequence[int], keepdims: bool):
        super().__init__()
        self.op = op
        self.axes = tuple(int(a) for a in axes)
        self.keepdims = bool(keepdims)

    def forward(self, x):
        if self.op == "ReduceSum":
            return torch.sum(x, dim=self.axes, keepdim=self.keepdims)
        if self.op == "ReduceMean":
            return torch.mean(x, dim=self.axes, keepdim=self.keepdims)
        raise ValueError(self.op)


class MaxPool(Step):
    def __init__(self, nd: int, kernel, stride, padding, dilation, ceil_mode: bool):
        super().__init__()
        cls = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[nd]
        self.pool = cls(kernel_size=tuple(kernel), stride=tuple(stride), padding=tuple(padding),
                        dilation=tuple(dilation), ceil_mode=bool(ceil_mode))

    def forward(self, x):
        return self.pool(x)


class AvgPool(Step):
    def __init__(self, nd: int, kernel, stride, padding, ceil_mode: bool, count_include_pad: bool):
        super().__init__()
        cls = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[nd]
        self.pool = cls(kernel_size=tuple(kernel), stride=tuple(stride), padding=tuple(padding),
                        ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad))

    def forward(self, x):
        return self.pool(x)


class GlobalAvgPool(Step):
    def __init__(self, nd: int):
        super().__init__()
        self.dims = tuple(range(2, 2 + nd))

    def forward(self, x):
        return torch.mean(x, dim=self.dims, keepdim=True)


class Network(nn.Module):
    """The converted network: flat (B, n_inputs) in, flat (B, n_outputs) out.

    It also takes (B, *input_rest) (the input already in its torch shape, e.g. images for
    auto_LiRPA's patches mode, which cannot look through a reshape in front of a Conv).
    """

    def __init__(self, steps: List[Step], input_name: str, input_rest: Sequence[int], output_name: str,
                 n_inputs: int, n_outputs: int, input_shape: Sequence[int], output_shape: Sequence[int]):
        super().__init__()
        self.steps = nn.ModuleList(steps)
        self.input_name = input_name
        self.input_rest = tuple(int(d) for d in input_rest)
        self.output_name = output_name
        self.n_inputs = int(n_inputs)
        self.n_outputs = int(n_outputs)
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)

    def forward(self, x):
        if tuple(x.shape[1:]) != self.input_rest:  # flat (B, n_inputs) -> (B, *input_rest)
            x = x.reshape(-1, *self.input_rest)
        env = {self.input_name: x}
        for step in self.steps:
            out = step(*[env[n] for n in step.in_names])
            if len(step.out_names) == 1:
                env[step.out_names[0]] = out
            else:
                for n, o in zip(step.out_names, out):
                    env[n] = o
        return env[self.output_name].reshape(-1, self.n_outputs)
