"""`vnncert spec robustness` (write a local-robustness property) and `vnncert spec show` (summarise one)."""
from __future__ import annotations

from .common import EXIT_OK, fail


def add_parser(sub) -> None:
    p = sub.add_parser("spec", help="write or inspect VNN-LIB properties")
    ss = p.add_subparsers(dest="spec_cmd", required=True)
    r = ss.add_parser("robustness", help="write a local-robustness property (box of half-width eps, unsafe if another class reaches the label's logit)")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FILE.npz", help="npz with x (examples) and y (labels); pick one with --index")
    src.add_argument("--point", metavar="V,V,...", help="the centre point, comma separated (flat C order)")
    r.add_argument("--index", type=int, default=0, help="row of --data (default 0)")
    r.add_argument("--label", type=int, help="label (required with --point; default: y[index] with --data)")
    r.add_argument("--eps", type=float, required=True, help="L-infinity half-width of the box")
    r.add_argument("--n-classes", type=int, help="number of outputs (default: from --model)")
    r.add_argument("--model", metavar="M.onnx", help="read the number of outputs (and inputs, checked) from this model")
    r.add_argument("--clip", type=float, nargs=2, metavar=("LO", "HI"), help="clip the box to [LO, HI]")
    r.add_argument("--out", required=True, metavar="F.vnnlib")
    s = ss.add_parser("show", help="parse a property and summarise its normal form")
    s.add_argument("prop")
    s.add_argument("--model", help="check the variable counts against this model")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..errors import VnncertError
    from ..outputs import OutputError

    try:
        return show(args) if args.spec_cmd == "show" else robustness(args)
    except VnncertError as e:
        return fail(e)
    except MemoryError:  # a property (or data set) too large for this machine's memory: one line, exit 2
        what = args.prop if args.spec_cmd == "show" else (args.data or "the point")
        return fail(f"{what}: out of memory while reading it")
    except OutputError as e:
        return fail(e)
    except (OSError, KeyError, ValueError, IndexError) as e:
        return fail(f"{type(e).__name__}: {e}")


def show(args) -> int:
    from .. import load_network, load_spec

    net = load_network(args.model) if args.model else None
    spec = load_spec(args.prop, network=net)
    print(f"{args.prop}: VNN-LIB {spec.version}, {spec.n_inputs} inputs, {spec.n_outputs} outputs, "
          f"{len(spec.cases)} input region(s), {sum(len(c.output) for c in spec.cases)} output disjunct(s)")
    for i, c in enumerate(spec.cases[:10]):
        w = c.region.upper - c.region.lower
        extra = f", {c.region.G.shape[0]} extra input constraints" if c.region.G is not None else ""
        print(f"  case {i}: box widths min {w.min():.6g} max {w.max():.6g}{extra}; "
              f"{len(c.output)} disjunct(s) of {', '.join(str(h.rows) for h in c.output[:8])}"
              f"{'...' if len(c.output) > 8 else ''} rows")
    if len(spec.cases) > 10:
        print(f"  ... {len(spec.cases) - 10} more")
    return EXIT_OK


def robustness(args) -> int:
    import math

    import numpy as np

    from ..outputs import check_distinct, check_writable
    from ..results import atomic_write
    from ..spec.robustness import robustness_vnnlib

    if not (math.isfinite(args.eps) and args.eps >= 0):
        return fail(f"--eps must be a finite number >= 0, got {args.eps}")
    if args.clip and not (all(math.isfinite(v) for v in args.clip) and args.clip[0] <= args.clip[1]):
        return fail(f"--clip takes LO HI, finite, LO <= HI, got {args.clip[0]} {args.clip[1]}")
    if args.n_classes is not None and args.n_classes < 1:
        return fail(f"--n-classes must be >= 1, got {args.n_classes}")
    if args.index < 0:
        return fail(f"--index must be >= 0, got {args.index}")
    check_distinct([("--out", args.out)], [("--data", args.data), ("--model", args.model)])
    check_writable("--out", args.out)
    n_classes = args.n_classes
    if args.model:
        from .. import load_network

        net = load_network(args.model)
        n_classes = n_classes or net.n_outputs
    if args.data:
        d = np.load(args.data)
        x = np.asarray(d["x"])[args.index].reshape(-1)
        label = args.label if args.label is not None else int(np.asarray(d["y"])[args.index])
    else:
        x = np.array([float(v) for v in args.point.split(",")])
        if args.label is None:
            return fail("--label is required with --point")
        label = args.label
    if not np.all(np.isfinite(x)):
        return fail("the point has a value that is not a finite number")
    if not n_classes:
        return fail("give --n-classes or --model")
    if args.model and x.size != net.n_inputs:
        return fail(f"point has {x.size} values but {args.model} has {net.n_inputs} inputs")
    if not 0 <= label < n_classes:
        return fail(f"label {label} is not in 0..{n_classes - 1}")
    lo, hi = (args.clip if args.clip else (None, None))
    atomic_write(args.out, robustness_vnnlib(x, label, n_classes, args.eps, lo, hi))
    print(args.out)
    return EXIT_OK
