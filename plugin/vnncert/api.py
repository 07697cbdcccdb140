"""The small Python API (`verify`, `verify_query`, `load_problem`, `load_spec`, `load_network`,
`Outcome`) and the one verify pipeline.

`run_query` is the supervised-verify function both command-line forms, `vnncert.verify` and
`vnncert.verify_query` call: argument checks, the deadline, the killable child process, the
mapping of what came back to an Outcome. `check_arguments` is the one check of the arguments they
share. `load_problem` is how a query and its models become one network and one normal form
(several networks, several inputs and outputs, hidden nodes: network/compose.py).
"""
from __future__ import annotations

import math
import os
import time
from typing import Dict, Mapping, Optional, Union

from .deadline import deadline_from_start, remaining
from .errors import VnncertError
from .options import Options, apply_threads
from .results import Outcome, Verdict


Models = Union[str, Mapping[str, str]]  # one model file, or declared network name -> model file


def check_network_mapping(declared, given: Mapping[str, str], query: str) -> None:
    """Standard error condition 1: exactly one model per declared network not declared `equal-to`.
    `declared` is [(network name, the network it is equal-to or None)]; ValueError otherwise."""
    equal_to = dict(declared)
    for name in given:
        if name not in equal_to:
            names = ", ".join(n for n, _ in declared)
            raise ValueError(f"--network {name}=...: {query} declares no network {name!r} (it declares {names})")
        if equal_to[name] is not None:
            raise ValueError(f"--network {name}=...: {query} declares {name!r} equal-to {equal_to[name]!r}, "
                             f"so it takes no model of its own")
    for name, eq in declared:
        if eq is None and name not in given:
            raise ValueError(f"no model for network {name!r} declared in {query}: give --network {name}=FILE.onnx")


def model_map(query, model: Models) -> Dict[str, str]:
    """Declared network name -> model file for a parsed 2.0 query (`spec.vnnlib2.Query`): `model` is
    a mapping (checked: `check_network_mapping`) or one file for the one network needing a model."""
    need = query.networks_needing_models()
    if isinstance(model, str):
        if len(need) != 1:
            raise ValueError(f"{query.where} declares {len(need)} networks that need a model ({', '.join(need)}); "
                             f"one model file was given: name each, `vnncert verify QUERY --network NAME=FILE ...` "
                             f"or vnncert.verify_query(query, networks={{NAME: FILE, ...}})")
        return {need[0]: model}
    given = dict(model)
    check_network_mapping([(n.name, n.equal_to) for n in query.networks], given, query.where)
    return given


def load_problem(model: Models, prop: str, threads: int = 0):
    """(network, spec) for a property and its model(s): the network the engines run on and the
    normal form over its flat input and output.

    A VNN-LIB 1.0 property takes one model (a file, or a mapping with one entry); a 2.0 query one
    model per declared network not declared `equal-to` another (a mapping by declared name; one
    file when one network needs a model). What the query needs beyond one network's input box and
    outputs (several networks, inputs or outputs, hidden nodes, comparisons across them,
    arithmetic) makes the network a `ComposedNetwork` (network/compose.py); its witnesses are
    replayed on the original files. Errors are VnncertError (bad files, bad queries) or
    ValueError (a mapping that does not match the query)."""
    from .network import load_network
    from .network.compose import load_model_file, network_for
    from .spec import detect_version, parse_spec, read_text

    text = read_text(prop)
    where = os.path.basename(prop)
    if detect_version(text) != "2.0":
        if not isinstance(model, str):
            if len(model) != 1:
                raise ValueError(f"{where} is a VNN-LIB 1.0 property (one network): give exactly one model, got "
                                 f"{len(model)}")
            model = next(iter(model.values()))
        network = load_network(model, threads=threads)
        return network, parse_spec(text, where=where, signature=network.signature)
    from .spec.vnnlib2 import parse_vnnlib2, read_declarations

    q = read_declarations(text, where)
    files = {name: load_model_file(path) for name, path in model_map(q, model).items()}
    spec = parse_vnnlib2(text, where, signatures={name: f.signature for name, f in files.items()}, query=q)
    return network_for(spec.composition, files, threads=threads, real=q.real), spec


def solve(model: Models, prop: str, options: Options, deadline: float) -> Outcome:
    """Load, parse and route one query in this process. Bad input becomes Outcome(error). A
    composed network's witness is reported as the declared variables: every declared input in
    declaration order, then the declared hidden nodes and outputs (`ComposedNetwork.declared`)."""
    from . import router

    t0 = time.monotonic()
    try:
        apply_threads(options.threads)
        network, spec = load_problem(model, prop, threads=options.threads)
        if remaining(deadline) <= 0:
            return Outcome(Verdict.TIMEOUT, engine="load", seconds=time.monotonic() - t0, detail="deadline reached while loading")
        out = router.run(network, spec, options, deadline)
    except (VnncertError, ValueError) as e:
        return Outcome(Verdict.ERROR, engine="load", seconds=time.monotonic() - t0, detail=str(e))
    if out.counterexample is not None and hasattr(network, "declared"):
        out.counterexample = network.declared(*out.counterexample)
    out.stats = {**(out.stats or {}), "load_seconds": round(time.monotonic() - t0 - out.seconds, 6)}
    return out


def read_assignment(text: str, query: str) -> Dict[str, "np.ndarray"]:
    """A standard-CLI `sat` answer's assignment (the lines after `sat`: per declared variable, in
    declaration order, `NAME TYPE [dims]` and one value per line) -> {name: values in the declared
    shape}; ValueError when it does not match the query's declarations (order, names, shapes,
    counts, finite values; the type is the declared one, or `Real`, as the standard's example)."""
    import numpy as np

    from .spec import read_text
    from .spec.vnnlib2 import read_declarations

    decls = read_declarations(read_text(query), os.path.basename(query)).declarations
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out: Dict[str, np.ndarray] = {}
    k = 0
    for d in decls:
        if k >= len(lines):
            raise ValueError(f"no values for {d.name}")
        head = lines[k].split()
        dims = "[" + ",".join(str(v) for v in d.shape) + "]"
        if len(head) != 3 or head[0] != d.name or head[1] not in (d.element_type, "Real") or \
                head[2].replace(" ", "") != dims:
            raise ValueError(f"expected the header {d.header()!r}, got {lines[k][:80]!r}")
        vals = np.array([float(v) for v in lines[k + 1:k + 1 + d.size]], dtype=np.float64)
        if vals.size != d.size or not np.isfinite(vals).all():
            raise ValueError(f"{d.name} needs {d.size} finite values")
        out[d.name] = vals.reshape(d.shape)
        k += 1 + d.size
    if k != len(lines):
        raise ValueError(f"unexpected text after the assignment: {lines[k][:80]!r}")
    return out


def check_assignment(query: str, networks: Models, assignment: Mapping[str, "np.ndarray"],
                     threads: int = 0) -> Optional[str]:
    """Whether an assignment (declared variable -> values, e.g. another solver's `sat` answer read
    by `read_assignment`) makes the query true: None if it does, else why not. Only its inputs
    count: they are replayed in ONNX Runtime on the original model files (hidden nodes and outputs
    recomputed, as vnncert's own witnesses are: `results.check_witness`) and the query is judged
    exactly on the replayed values."""
    import numpy as np

    from .results import check_witness
    from .spec import detect_version, read_text
    from .spec.vnnlib2 import read_declarations

    if detect_version(read_text(query)) != "2.0":
        raise ValueError(f"{query}: check_assignment reads VNN-LIB 2.0 queries (a 1.0 witness: results.check_witness)")
    network, spec = load_problem(networks, query, threads=threads)
    decls = [d for d in read_declarations(read_text(query), os.path.basename(query)).declarations if d.kind == "input"]
    missing = [d.name for d in decls if d.name not in assignment]
    if missing:
        return f"no values for the input(s) {', '.join(missing)}"
    x = np.concatenate([np.asarray(assignment[d.name], dtype=np.float64).reshape(-1) for d in decls])
    comp = spec.composition
    if comp is not None:
        index = comp.declared_inputs
        u = np.full(comp.n_free, np.nan)
        u[index] = x
        if not np.array_equal(u[index], x):
            return "inputs the query equates have different values"
    else:
        u = x
    if check_witness(network, spec, u) is None:
        return "its inputs, replayed on the models, do not make the query true"
    return None


def verify(model: str, prop: str, mode: str = "auto", timeout: Optional[float] = None, seed: int = 0,
           threads: int = 0, isolate: bool = False, **option_fields) -> Outcome:
    """Answer one VNN-LIB query on one ONNX model.

    `timeout` counts from this call. With isolate=True the work runs in a supervised child
    process that is killed at the deadline (what the CLI does; the child's stdout then goes to
    stderr); otherwise engines stop cooperatively at the deadline. Bad input, including arguments
    the command line would refuse (`check_arguments`), gives Outcome(verdict=error, detail=message).
    """
    since = time.monotonic()
    try:
        options = Options.make(mode=mode, seed=seed, threads=threads, **option_fields)
    except TypeError as e:  # an option name that does not exist
        return Outcome(Verdict.ERROR, engine="api", detail=str(e))
    return run_query(model, prop, options, timeout, since=since, isolate=isolate)


def verify_query(query: str, networks: Models, mode: str = "auto", timeout: Optional[float] = None, seed: int = 0,
                 threads: int = 0, isolate: bool = False, **option_fields) -> Outcome:
    """Answer a VNN-LIB 2.0 query over its networks: `networks` maps each declared network not
    declared `equal-to` another to its ONNX file (`{"teacher": "t.onnx", "student": "s.onnx"}`),
    as `vnncert verify QUERY --network NAME=FILE ...` does. The rest is `verify`'s. For `sat` the
    counterexample is (every declared input in declaration order, the declared hidden nodes and
    outputs in declaration order), flat; `named_assignment` splits it by variable."""
    return verify(networks if not isinstance(networks, str) else networks, query, mode=mode, timeout=timeout,
                  seed=seed, threads=threads, isolate=isolate, **option_fields)


def named_assignment(outcome: Outcome, query: str) -> Dict[str, "np.ndarray"]:
    """A sat outcome's counterexample as {declared variable: values in its declared shape}, in
    declaration order (a VNN-LIB 1.0 property: X_i and Y_j scalars)."""
    import numpy as np

    from .spec import detect_version, read_text
    from .spec.vnnlib2 import read_declarations

    if outcome.counterexample is None:
        raise ValueError("the outcome has no counterexample")
    x, y = (np.asarray(v).reshape(-1) for v in outcome.counterexample)
    text = read_text(query)
    if detect_version(text) != "2.0":
        return {**{f"X_{i}": x[i:i + 1] for i in range(x.size)}, **{f"Y_{j}": y[j:j + 1] for j in range(y.size)}}
    out: Dict[str, np.ndarray] = {}
    ox = oy = 0
    for d in read_declarations(text, os.path.basename(query)).declarations:
        if d.kind == "input":
            out[d.name] = x[ox:ox + d.size].reshape(d.shape)
            ox += d.size
        else:
            out[d.name] = y[oy:oy + d.size].reshape(d.shape)
            oy += d.size
    if ox != x.size or oy != y.size:
        raise ValueError(f"the counterexample has {x.size} + {y.size} values; {query} declares {ox} + {oy}")
    return out


ENGINE_MARGIN = 0.3  # seconds the engines stop before the hard deadline, to answer cleanly


def run_query(model: Models, prop: str, options: Options, timeout: Optional[float] = None, *,
              since: Optional[float] = None, isolate: bool = True, child_stdout: str = "stderr",
              quiet_warnings: bool = False) -> Outcome:
    """Answer one query under one deadline: the one verify pipeline behind both `vnncert verify`
    forms (VNN-COMP and VNN-LIB 2.0), `vnncert.verify` and `vnncert.verify_query`. `model` is one
    model file or a mapping from declared network names to files (`load_problem`).

    1. The options and the timeout are checked (`check_options`); a bad one gives Outcome(error)
       naming the argument the way the command line spells it.
    2. The hard deadline is `timeout` seconds after `since` (a time.monotonic() value; None: the
       start of this process, which is how the command line counts); no timeout, or inf, is none.
    3. isolate=True: `solve` runs in a supervised child process (`supervise.run_supervised`) whose
       whole process group is killed at the hard deadline; the engines are told to stop
       ENGINE_MARGIN seconds earlier, to answer cleanly. The child's stdout goes to `child_stdout`
       ("stderr", "null" or "inherit"); `quiet_warnings` hides its Python warnings.
       isolate=False: `solve` runs in this process; the engines stop cooperatively at the deadline.
    4. What came back (an Outcome, a kill at the deadline, a dead or failing child) becomes one
       Outcome, with `seconds` set.
    """
    t0 = time.monotonic()
    try:
        check_options(options, timeout)
    except (TypeError, ValueError) as e:
        return Outcome(Verdict.ERROR, engine="arguments", detail=str(e))
    limit = math.inf if timeout is None else float(timeout)
    hard = deadline_from_start(limit) if since is None else since + limit
    if isolate:
        from .supervise import run_supervised

        res = run_supervised(lambda: solve(model, prop, options, hard - ENGINE_MARGIN), hard,
                             child_stdout=child_stdout, quiet_warnings=quiet_warnings)
        out = _outcome_of(res, timeout)
    else:
        out = solve(model, prop, options, hard)
    if not out.seconds:
        out.seconds = time.monotonic() - t0
    return out


def _outcome_of(res, timeout) -> Outcome:
    from .supervise import ChildDied, ChildRaised, TimedOut

    if isinstance(res, Outcome):
        return res
    if isinstance(res, TimedOut):
        return Outcome(Verdict.TIMEOUT, engine="supervisor", seconds=res.seconds,
                       detail=f"killed at the {timeout} s deadline")
    if isinstance(res, ChildDied):
        return Outcome(Verdict.ERROR, engine="supervisor", detail=res.message)
    if isinstance(res, ChildRaised):
        e = res.exc
        return Outcome(Verdict.ERROR, engine="supervisor", detail=f"internal error: {type(e).__name__}: {e}",
                       stats={"traceback": res.trace})
    return Outcome(Verdict.ERROR, engine="supervisor", detail=f"unexpected result {res!r}")


# ---- argument checks shared by both verify grammars, the smoothing commands and the API ----------
THREADS_MAX = 1024  # --threads 0..1024 (0: all cores); a fixed cap, the same on every machine
SEED_MAX = 2 ** 64 - 1  # seeds feed numpy's SeedSequence / default_rng: any integer 0..2**64-1


def check_timeout(timeout) -> None:
    """A timeout is a number of seconds >= 0; `inf` means no limit (as if none was given). NaN is refused."""
    if timeout is None:
        return
    t = float(timeout)
    if math.isnan(t) or t < 0:
        raise ValueError(f"--timeout must be a number of seconds >= 0 (inf: no limit), got {timeout}")


def check_arguments(mode=None, timeout=None, seed=None, threads=None, relaxed_method=None, sigma=None,
                    noise=None, n0=None, n=None, alpha=None, batch=None) -> None:
    """Raise ValueError naming the first bad argument. None means "not given" (the default is used).

    The one check behind `vnncert verify MODEL PROP` (VNN-COMP form), `vnncert verify QUERY --network`
    (VNN-LIB 2.0 form), `vnncert smooth` and `vnncert.verify`, so that they accept the same values.
    """
    if mode is not None:
        from .router import MODES

        if mode not in MODES:
            raise ValueError(f"--mode must be one of {', '.join(sorted(MODES))}, got {mode!r}")
    check_timeout(timeout)
    if seed is not None and not (_is_int(seed) and 0 <= seed <= SEED_MAX):
        raise ValueError(f"--seed must be an integer in 0..2**64-1, got {seed}")
    if threads is not None and not (_is_int(threads) and 0 <= threads <= THREADS_MAX):
        raise ValueError(f"--threads must be an integer in 0..{THREADS_MAX} (0: all cores), got {threads}")
    if relaxed_method is not None:
        methods = relaxed_methods()
        if str(relaxed_method).lower() not in methods:
            raise ValueError(f"--relaxed-method must be one of {', '.join(methods)}, got {relaxed_method!r}")
    if sigma is not None and not (math.isfinite(float(sigma)) and float(sigma) > 0):
        raise ValueError(f"--sigma must be a positive finite number, got {sigma}")
    if noise is not None:
        noises = noise_kinds()
        if noise not in noises:
            raise ValueError(f"--noise must be one of {', '.join(noises)}, got {noise!r}")
    for name, v in (("--n0", n0), ("--n", n), ("--batch", batch)):
        if v is not None and not (_is_int(v) and 1 <= v <= 10 ** 12):
            raise ValueError(f"{name} must be an integer in 1..10**12, got {v}")
    if alpha is not None and not (0 < float(alpha) < 1):
        raise ValueError(f"--alpha must lie strictly between 0 and 1, got {alpha}")


def check_options(options: Options, timeout=None) -> None:
    """`check_arguments` on an Options object (the API's path)."""
    from .options import RelaxedOptions, SmoothingOptions

    sm = options.smoothing

    def given(value, default):  # a default is valid by construction (tests/test_process.py checks
        return None if value == default else value  # it): only a changed value is looked up

    check_arguments(mode=options.mode, timeout=timeout, seed=options.seed, threads=options.threads,
                    relaxed_method=given(options.relaxed.method, RelaxedOptions.method),
                    sigma=sm.sigma, noise=given(sm.noise, SmoothingOptions.noise),
                    n0=sm.n0, n=sm.n, alpha=sm.alpha, batch=sm.batch)


def relaxed_methods() -> tuple:
    """The relaxed engine's bounding methods, read off the engine (plus `lp`, the exact engine's LP)."""
    from .engines.relaxed import METHODS

    return tuple(METHODS) + ("lp",)


def noise_kinds() -> tuple:
    from .smoothing.noise import NOISES

    return tuple(NOISES)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
