"""`vnncert smooth certify|predict|report`: randomized smoothing over a data set (claims about g, not f)."""
from __future__ import annotations

from ..options import SmoothingOptions
from .common import EXIT_OK, fail

_CLAIM = ("Every certificate is a claim about the smoothed classifier g(x) = argmax_c P(f(x+e) = c), holding with "
          "probability at least 1-alpha per example; it says nothing definite about the network f itself.")


def _common(p, predict: bool) -> None:
    p.add_argument("model", metavar="MODEL.onnx", help="base classifier f (ONNX; argmax of its outputs)")
    p.add_argument("--data", required=True, metavar="FILE.npz",
                   help="x (one row per example, the model's input shape or flat) and y (integer labels)")
    p.add_argument("--sigma", type=float, required=True,
                   help="noise scale: sigma of the Gaussian, lambda of Laplace / uniform noise")
    p.add_argument("--noise", default=SmoothingOptions.noise, choices=["gaussian", "laplace", "uniform"],
                   help="gaussian: L2 radii; laplace, uniform (on [-lambda, lambda]): L1 radii (default gaussian)")
    if not predict:
        p.add_argument("--n0", type=int, default=SmoothingOptions.n0, help="selection samples (default %(default)s)")
    p.add_argument("--n", type=int, default=SmoothingOptions.n, help="estimation samples (default %(default)s)")
    p.add_argument("--alpha", type=float, default=SmoothingOptions.alpha,
                   help="failure probability per example (default %(default)s)")
    p.add_argument("--batch", type=int, default=SmoothingOptions.batch,
                   help="noisy inputs per ONNX Runtime call (default %(default)s)")
    p.add_argument("--skip", type=int, default=1, help="take every skip-th example (default 1)")
    p.add_argument("--max", type=int, default=-1, help="stop at this example index (default -1: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--threads", type=int, default=0, help="threads for ONNX Runtime and the noise (default: all cores)")
    p.add_argument("--fresh-noise", action="store_true",
                   help="draw fresh noise for every example instead of reusing one noise bank across examples "
                        "(each certification's samples are independent either way; see docs/probabilistic.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="FILE.tsv",
                   help="output in the reference format (a FILE.tsv.json next to it records the settings)")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "smooth", help="randomized smoothing over a data set: certify, predict, report",
        description="Randomized smoothing (Cohen, Rosenfeld, Kolter 2019) on ONNX Runtime. " + _CLAIM)
    ss = p.add_subparsers(dest="smooth_cmd", required=True, metavar="SUBCOMMAND")
    c = ss.add_parser("certify", help="CERTIFY each example: prediction of g and a certified radius",
                      description="CERTIFY each example (n0 selection samples, n estimation samples, one-sided "
                                  "Clopper-Pearson bound, abstain below 1/2). Writes idx label predict radius correct "
                                  "time (-1 = abstain). " + _CLAIM)
    _common(c, predict=False)
    q = ss.add_parser("predict", help="PREDICT each example: g's class or abstain (two-sided binomial test)",
                      description="PREDICT each example (n samples; abstain when the two-sided binomial test of the "
                                  "top two counts has p-value > alpha). Writes idx label predict correct time. " + _CLAIM)
    _common(q, predict=True)
    r = ss.add_parser("report", help="certified-accuracy table (and PNG plot) of certify files",
                      description="Certified accuracy at each radius r: the fraction of examples certified with "
                                  "radius >= r and predicted correctly (r = 0: the smoothed classifier's clean "
                                  "accuracy), and the average certified radius. " + _CLAIM)
    r.add_argument("files", nargs="+", metavar="FILE.tsv", help="outputs of `vnncert smooth certify`")
    r.add_argument("--radii", type=float, nargs="+", default=None, metavar="R",
                   help="radii of the table's columns (default 0 0.5 1 ... 3)")
    r.add_argument("--labels", nargs="+", default=None, metavar="NAME",
                   help="row names, one per file (default: sigma from FILE.tsv.json, else the file name)")
    r.add_argument("--plot", metavar="OUT.png", help="save certified accuracy against radius as a PNG")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..errors import VnncertError

    try:
        if args.smooth_cmd == "report":
            from ..outputs import check_distinct, check_writable
            from ..smoothing.report import report

            if args.plot:
                check_distinct([("--plot", args.plot)], [("input", f) for f in args.files]
                               + [("settings file", f + ".json") for f in args.files])
                check_writable("--plot", args.plot)

            print(report(args.files, radii=args.radii, plot=args.plot, labels=args.labels))
            return EXIT_OK
        return _run_dataset(args)
    except VnncertError as e:
        return fail(e)
    except ValueError as e:  # argument checks (api.check_arguments, outputs) say what they mean
        return fail(e)
    except (OSError, KeyError, RuntimeError) as e:
        return fail(f"{type(e).__name__}: {e}")


def _run_dataset(args) -> int:
    from .. import load_network
    from ..api import check_arguments
    from ..outputs import check_distinct, check_writable
    from ..smoothing.report import certify_dataset, load_dataset, predict_dataset

    # the same checks as `vnncert verify --mode probabilistic`, then the outputs, before any work
    check_arguments(seed=args.seed, threads=args.threads, sigma=args.sigma, noise=args.noise,
                    n0=getattr(args, "n0", None), n=args.n, alpha=args.alpha, batch=args.batch)
    if args.skip < 1:
        return fail(f"--skip must be >= 1, got {args.skip}")
    if args.max < -1:
        return fail(f"--max must be >= 0, or -1 for all, got {args.max}")
    outs = [("--out", args.out), ("--out's settings file", args.out + ".json")]
    check_distinct(outs, [("model", args.model), ("--data", args.data)])
    for what, path in outs:
        check_writable(what, path)
    net = load_network(args.model, threads=args.threads)
    x, y = load_dataset(args.data, net.n_inputs)
    common = dict(sigma=args.sigma, n=args.n, alpha=args.alpha, batch=args.batch, skip=args.skip, max=args.max,
                  seed=args.seed, progress=not args.no_progress, out=args.out, noise=args.noise, threads=args.threads,
                  bank=not args.fresh_noise, model_name=args.model)
    if args.smooth_cmd == "certify":
        rows = certify_dataset(net, x, y, n0=args.n0, **common)
        acc = sum(r.correct for r in rows) / max(len(rows), 1)
        print(f"{args.out}: {len(rows)} examples, smoothed accuracy {acc:.3f} "
              f"(claims about g, confidence 1-alpha = {1 - args.alpha:g} each)")
    else:
        rows = predict_dataset(net, x, y, **common)
        acc = sum(r.correct for r in rows) / max(len(rows), 1)
        abst = sum(r.predict < 0 for r in rows) / max(len(rows), 1)
        print(f"{args.out}: {len(rows)} examples, accuracy of g {acc:.3f}, abstained {abst:.3f}")
    return EXIT_OK
