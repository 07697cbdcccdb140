"""Make the shipped demo models, properties and data of vnnlib_specs/ (seeded, deterministic).

Run from the repository root:  .venv/bin/python vnnlib_specs/make_models.py  (or `make models`).

What it writes (all small; paths relative to vnnlib_specs/):
- onnx/digits_mlp.onnx                  64-32-32-10 ReLU MLP on scikit-learn's bundled 8x8 digits,
                                        trained plainly. Input "x" float32 [batch, 64] in [0, 1]
                                        (pixel / 16), output "logits" [batch, 10]. The batch axis is
                                        symbolic, so VNN-LIB counts 64 inputs / 10 outputs.
- onnx/digits_mlp_noise{025,050,100}.onnx  the same architecture trained with Gaussian noise
                                        augmentation at sigma = 0.25, 0.5, 1.0: the base classifiers
                                        for randomized smoothing (`vnncert smooth ...`).
- onnx/tiny_2in.onnx                    a hand-weighted 2-2-2 ReLU net for quick sat/unsat demos.
- vnnlib/digits_<idx>_eps<e>.vnnlib     L-inf local-robustness properties (box of half-width eps,
                                        clipped to [0, 1], unsafe if another logit reaches the label's)
                                        for a few test images of digits_mlp.
- vnnlib/tiny_*.vnnlib                  properties of tiny_2in with answers derivable by hand.
- instances.csv                         VNN-COMP format `onnx,vnnlib,timeout` (no header).
- data/digits_test.npz                  the held-out test split: x (N, 64) float32 in [0, 1], y int64.

The train/test split is scikit-learn's train_test_split(test_size=0.2, random_state=0,
stratify=y): 1437 training and 360 test images. Nothing here looks at verification answers:
the images are the first test images in split order, the eps values are fixed.
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "plugin"))

SEED = 0
HIDDEN = (32, 32)
EPOCHS = 60
NOISE_SIGMAS = (0.25, 0.5, 1.0)
SPEC_IMAGES = 4  # first test images in split order
SPEC_EPS = (0.02, 0.1)
TIMEOUT = 20


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)


def make_mlp(torch):
    layers, width = [], 64
    for h in HIDDEN:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    layers.append(torch.nn.Linear(width, 10))
    return torch.nn.Sequential(*layers)


def train(x, y, sigma: float, seed: int):
    """Adam, cross-entropy, minibatch 64; with sigma > 0 every minibatch gets fresh N(0, sigma^2 I) noise."""
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = make_mlp(torch)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    epochs = EPOCHS if sigma == 0 else 2 * EPOCHS
    if sigma > 0:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            xb = xt[idx]
            if sigma > 0:
                xb = xb + sigma * torch.randn(xb.shape, generator=gen)
            loss = torch.nn.functional.cross_entropy(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    return net


def export(net, path: Path) -> None:
    import onnx
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(net, torch.zeros(1, 64), str(tmp), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=13,
                      do_constant_folding=True)
    m = onnx.load(str(tmp))
    tmp.unlink()
    m.producer_name = "vnncert make_models.py"
    m.producer_version = ""
    m.doc_string = ""
    for i, node in enumerate(m.graph.node):  # stable names, independent of torch's counters
        node.name = f"{node.op_type}_{i}"
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def accuracy(net, x, y, sigma: float = 0.0, seed: int = 1) -> float:
    import torch

    with torch.no_grad():
        xt = torch.from_numpy(x)
        if sigma > 0:
            xt = xt + sigma * torch.randn(xt.shape, generator=torch.Generator().manual_seed(seed))
        return float((net(xt).argmax(1).numpy() == y).mean())


def tiny_net(path: Path) -> None:
    """y = W2 relu(W1 x + b1) + b2 with x in R^2; hand weights so answers follow by hand.

    h0 = relu(x0 + x1), h1 = relu(x0 - x1); y0 = h0 - h1, y1 = h1 - h0 + 0.5.
    On x0 >= x1 >= 0: y0 = 2*x1, y1 = 0.5 - 2*x1, so y1 >= y0 iff x1 <= 0.125.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1 = np.array([[1, 1], [1, -1]], np.float32)
    b1 = np.zeros(2, np.float32)
    w2 = np.array([[1, -1], [-1, 1]], np.float32)
    b2 = np.array([0, 0.5], np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1.T.copy(), "W1"), (b1, "B1"), (w2.T.copy(), "W2"), (b2, "B2"))]
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "B1"], ["h_pre"], name="Gemm_0"),
        helper.make_node("Relu", ["h_pre"], ["h"], name="Relu_1"),
        helper.make_node("Gemm", ["h", "W2", "B2"], ["y"], name="Gemm_2"),
    ]
    g = helper.make_graph(nodes, "tiny_2in",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="vnncert make_models.py")
    m.ir_version = 8
    onnx.checker.check_model(m)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


TINY_SPECS = {
    # on [0.5,1] x [0.25,0.5]: x1 >= 0.25 > 0.125, so y1 < y0 everywhere: unsat
    "tiny_unsat.vnnlib": ("x0 in [0.5, 1], x1 in [0.25, 0.5]: y1 >= y0 needs x1 <= 0.125, impossible here (unsat)",
                          (0.5, 1.0), (0.25, 0.5)),
    # on [0.5,1] x [0,0.5]: x1 = 0 gives y1 = 0.5 > y0 = 0: sat
    "tiny_sat.vnnlib": ("x0 in [0.5, 1], x1 in [0, 0.5]: x1 <= 0.125 makes y1 >= y0 (sat)",
                        (0.5, 1.0), (0.0, 0.5)),
}


def tiny_spec(comment: str, b0, b1) -> str:
    return "\n".join([
        f"; tiny_2in: {comment}",
        "(declare-const X_0 Real)", "(declare-const X_1 Real)",
        "(declare-const Y_0 Real)", "(declare-const Y_1 Real)",
        f"(assert (>= X_0 {b0[0]!r}))", f"(assert (<= X_0 {b0[1]!r}))",
        f"(assert (>= X_1 {b1[0]!r}))", f"(assert (<= X_1 {b1[1]!r}))",
        "(assert (>= Y_1 Y_0))", ""])


def main() -> int:
    import torch

    from vnncert.spec.robustness import robustness_vnnlib

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_tr, x_te, y_tr, y_te = digits_split()
    (HERE / "data").mkdir(exist_ok=True)
    np.savez_compressed(HERE / "data" / "digits_test.npz", x=x_te.astype(np.float32), y=y_te.astype(np.int64))
    print(f"data/digits_test.npz: {len(y_te)} test images (train {len(y_tr)})")

    plain = train(x_tr, y_tr, 0.0, SEED)
    export(plain, HERE / "onnx" / "digits_mlp.onnx")
    print(f"onnx/digits_mlp.onnx: clean test accuracy {accuracy(plain, x_te, y_te):.3f}")
    for k, sigma in enumerate(NOISE_SIGMAS):
        net = train(x_tr, y_tr, sigma, SEED + 1 + k)
        name = f"digits_mlp_noise{int(round(sigma * 100)):03d}.onnx"
        export(net, HERE / "onnx" / name)
        print(f"onnx/{name}: clean accuracy {accuracy(net, x_te, y_te):.3f}, "
              f"accuracy under N(0,{sigma}^2) noise {accuracy(net, x_te, y_te, sigma):.3f}")
    tiny_net(HERE / "onnx" / "tiny_2in.onnx")

    rows = []
    vdir = HERE / "vnnlib"
    vdir.mkdir(exist_ok=True)
    for name, (comment, b0, b1) in TINY_SPECS.items():
        (vdir / name).write_text(tiny_spec(comment, b0, b1))
        rows.append(("onnx/tiny_2in.onnx", f"vnnlib/{name}"))
    for i in range(SPEC_IMAGES):
        for eps in SPEC_EPS:
            name = f"digits_{i}_eps{eps:g}.vnnlib"
            text = robustness_vnnlib(x_te[i], int(y_te[i]), 10, eps, clip_lo=0.0, clip_hi=1.0,
                                     comment=f"digits test image {i} (label {int(y_te[i])}) of vnnlib_specs/data/digits_test.npz\n"
                                             f"made by vnnlib_specs/make_models.py for onnx/digits_mlp.onnx")
            (vdir / name).write_text(text)
            rows.append(("onnx/digits_mlp.onnx", f"vnnlib/{name}"))
    with open(HERE / "instances.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        for onnx_path, vnnlib_path in rows:
            w.writerow([onnx_path, vnnlib_path, TIMEOUT])
    print(f"instances.csv: {len(rows)} instances")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
