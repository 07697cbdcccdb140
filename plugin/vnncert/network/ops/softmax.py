"""Softmax and LogSoftmax: torch lowering only (not piecewise linear, not elementwise).

Opset 13 normalises along `axis` (default -1); opsets 1-12 flatten the tensor into a matrix at
`axis` (default 1: dims before it are rows, from it on columns) and normalise each row.
The torch step runs torch's softmax / log_softmax (stable: the maximum subtracted); while
auto_LiRPA 0.3 traces it (torch.jit.is_tracing()), the same function as exp(x) / sum exp(x)
(LogSoftmax: x - log sum exp(x)), which it bounds: torch's own softmax traces to a ReduceMax
that it cannot bound backwards. (exp overflows there beyond 88 in float32: the bounds become
infinite, never wrong.)
"""
from __future__ import annotations

from .base import LazySteps, OpHandler, norm_axis, prod, register


@register("Softmax", "LogSoftmax")
class SoftmaxOp(OpHandler):
    def to_torch(self, node, ctx):
        x = node.inputs[0]
        shape = ctx.view(x).shape
        rank = len(shape)
        opset = ctx.graph.opset
        axis = norm_axis(node.attr("axis", -1 if opset >= 13 else 1), rank)
        log = node.op_type == "LogSoftmax"
        if opset >= 13 or axis == rank - 1:
            x = ctx.not_on_batch(x, [axis])
            v = ctx.view(x)
            ctx.emit(steps.Softmax(v.axis(axis), log), [x], [node.outputs[0]], v.merged)
            return
        flat = ctx.reshape(x, (prod(shape[:axis]), prod(shape[axis:])), merged=False)
        tmp = ctx.fresh(node.outputs[0])
        ctx.emit(steps.Softmax(2, log), [flat], [tmp], False)
        ctx.reshape(tmp, shape, out=node.outputs[0])


def _define_steps():
    from .torch_base import Step, torch

    class Softmax(Step):
        def __init__(self, axis: int, log: bool):
            super().__init__()
            self.axis, self.log = int(axis), bool(log)

        def forward(self, x):
            if not torch.jit.is_tracing():
                return torch.log_softmax(x, dim=self.axis) if self.log else torch.softmax(x, dim=self.axis)
            e = torch.exp(x)
            s = e.sum(dim=self.axis, keepdim=True)
            return x - torch.log(s) if self.log else e / s

    return {"Softmax": Softmax}


steps = LazySteps(_define_steps)
