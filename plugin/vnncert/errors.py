"""Errors that mean "bad input": each is shown as one line on stderr and gives an `error` verdict."""


class VnncertError(Exception):
    """Base class: a problem with the user's input, reported as one line, never a wrong answer."""


class SpecError(VnncertError):
    """A VNN-LIB property that cannot be read or does not fit the network."""


class NetworkError(VnncertError):
    """An ONNX model that cannot be loaded or has a shape the project cannot handle."""


class UnsupportedOperator(NetworkError):
    """An ONNX operator that a converter or encoder has no handler for."""

    def __init__(self, op_type: str, where: str = "", node_name: str = ""):
        self.op_type = op_type
        node = f" (node {node_name!r})" if node_name else ""
        tail = f" by {where}" if where else ""
        super().__init__(f"unsupported ONNX operator {op_type}{node}{tail}")
