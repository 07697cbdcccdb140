"""The torch side shared by every op: the Step base class, the View of a tensor's batch axis,
the Reshape step the converter inserts itself, and the module that runs the steps.

Imported only when a torch module is built (torch is heavy). Each op's own Steps live in its
file (`ops/<op>.py`), defined on first use through `LazySteps`, so the registry imports without
torch. Every tensor between steps has the batch on axis 0 (see `vnncert.network.torch_convert`).
Float constants are registered as buffers so `module.double()` converts them too; integer facts
(axes, slices, shapes) are plain Python values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: F401  (the ops' Steps take it from here)
from torch import nn

from ...errors import NetworkError
from .base import norm_axis


class Step(nn.Module):
    """One step of the converted graph; `in_names`/`out_names` are set by the builder.

    Class facts the engines read instead of knowing step class names:
    `affine`: every output is an affine function of the inputs (a step may make it a property);
    `relu`: the step is relu of its one input.
    """

    in_names: List[str]
    out_names: List[str]
    affine = False
    relu = False


def buffer(module: nn.Module, name: str, value) -> None:
    """Register a float constant as a float32 buffer (converted by `.double()`)."""
    module.register_buffer(name, torch.as_tensor(np.asarray(value, dtype=np.float32).copy()))


@dataclass(frozen=True)
class View:
    """How an ONNX tensor of shape `shape` (batch of one) is carried in torch: `merged` when ONNX
    axis 0 IS the batch axis (torch shape (B, *shape[1:])), else `prepended` (torch (B, *shape))."""

    shape: Tuple[int, ...]
    merged: bool

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def rest(self) -> Tuple[int, ...]:
        """Torch shape after the batch axis."""
        return self.shape[1:] if self.merged else self.shape

    def axis(self, a: int) -> int:
        """Torch axis of ONNX axis `a` (negative allowed); the caller ensures it is not the merged batch axis."""
        a = norm_axis(a, self.rank)
        if self.merged:
            if a == 0:
                raise NetworkError("internal: ONNX axis 0 of a merged tensor is the batch axis")
            return a
        return a + 1


class Reshape(Step):
    affine = True

    def __init__(self, rest: Sequence[int]):
        super().__init__()
        self.rest = tuple(int(d) for d in rest)

    def forward(self, x):
        return x.reshape(-1, *self.rest)

    def extra_repr(self) -> str:
        return f"(-1, {', '.join(map(str, self.rest))})"


class StepModule(nn.Module):
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
