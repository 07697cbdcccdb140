"""ONNX file -> `Network` (checked model, shapes, op inventory, batched ONNX Runtime, torch module).

`load_network` takes any model: one input and one output give a `Network` (loader.py), more are
composed into one (compose.py), as is everything a VNN-LIB 2.0 query composes."""
from .compose import ComposedNetwork, load_network
from .loader import ModelFile, Network, read_model_bytes

__all__ = ["Network", "ComposedNetwork", "ModelFile", "load_network", "read_model_bytes"]
