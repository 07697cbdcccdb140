"""vnncert: VNN-COMP / VNN-LIB neural-network verification with exact, relaxed and probabilistic engines.

Public surface: `verify`, `verify_query`, `load_spec`, `load_network`, `Outcome`, `Verdict`, `Options`.
"""
__version__ = "0.1.0"

from .cpu import mkl_avx2_dispatch as _mkl_avx2_dispatch  # noqa: E402

_mkl_avx2_dispatch()  # before anything imports torch (vnncert/cpu.py)

from .errors import NetworkError, SpecError, UnsupportedOperator, VnncertError  # noqa: E402

# Options, Outcome, Verdict and Certificate load on first use (PEP 562): importing the package stays
# cheap (no numpy), so the command line installs its quiet SIGINT handling within milliseconds.
_LAZY = {"Options": "options", "Outcome": "results", "Verdict": "results", "Certificate": "results"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def verify(*args, **kwargs):
    from .api import verify as _verify

    return _verify(*args, **kwargs)


verify.__doc__ = "See vnncert.api.verify."


def verify_query(*args, **kwargs):
    from .api import verify_query as _verify_query

    return _verify_query(*args, **kwargs)


verify_query.__doc__ = "See vnncert.api.verify_query: a VNN-LIB 2.0 query over several named networks."


def load_spec(path, network=None, n_inputs=None, n_outputs=None):
    """Parse a VNN-LIB property (1.0 or 2.0, `.gz` accepted) into a `Spec`; with a loaded `network`
    it is checked against the model's inputs and outputs (`Network.signature`)."""
    from .spec import load_spec as _load

    return _load(path, signature=network.signature if network is not None else None, n_inputs=n_inputs,
                 n_outputs=n_outputs)


def load_network(path, threads=0):
    """Load and check an ONNX model (`.onnx` or `.onnx.gz`) into a `Network`."""
    from .network import load_network as _load

    return _load(path, threads=threads)


__all__ = ["verify", "verify_query", "load_spec", "load_network", "Outcome", "Verdict", "Certificate", "Options",
           "VnncertError", "SpecError", "NetworkError", "UnsupportedOperator", "__version__"]
