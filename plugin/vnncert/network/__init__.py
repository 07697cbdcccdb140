"""ONNX file -> `Network` (checked model, shapes, op inventory, batched ONNX Runtime, torch module)."""
from .loader import Network, load_network, read_model_bytes

__all__ = ["Network", "load_network", "read_model_bytes"]
