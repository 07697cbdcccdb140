"""`make demo`: run `vnncert verify` on the shipped default (vnnlib_specs/instances.csv) and show the answers,
then the certified-accuracy table of the shipped noise-trained digits classifiers (a claim about the
smoothed classifiers g).
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "vnnlib_specs"
DETAIL_WIDTH = 90  # characters of the engine / detail column per line


def main() -> int:
    rows = [r for r in csv.reader((SPECS / "instances.csv").read_text().splitlines()) if r]
    out_dir = ROOT / "out" / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"vnncert demo: {len(rows)} instances from {SPECS.relative_to(ROOT)}/instances.csv, mode auto\n")
    print(f"{'model':<22} {'property':<28} {'verdict':<8} {'time':>7}  engine / detail")
    counts = {}
    for onnx_rel, prop_rel, timeout in rows:
        res = out_dir / (Path(onnx_rel).stem + "_" + Path(prop_rel).stem + ".txt")
        js = res.with_suffix(".json")
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "vnncert.cli", "verify", str(SPECS / onnx_rel), str(SPECS / prop_rel),
                            "--timeout", timeout, "--result-file", str(res), "--json", str(js)],
                           capture_output=True, text=True)
        dt = time.monotonic() - t0
        verdict = res.read_text().splitlines()[0] if res.exists() else "error"
        counts[verdict] = counts.get(verdict, 0) + 1
        detail = ""
        if js.exists():
            import json

            j = json.loads(js.read_text())
            detail = f"{j.get('engine', '')}: {j.get('detail', '')}"
        if p.returncode != 0:
            detail = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
        row = f"{Path(onnx_rel).name:<22} {Path(prop_rel).name:<28} {verdict:<8} {dt:6.2f}s  "
        lines = detail_lines(detail)
        print(row + lines[0])
        for line in lines[1:]:
            print(" " * len(row) + line)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + f"   (result files in {out_dir.relative_to(ROOT)}/)")
    _smoothing_table(out_dir)
    return 0


def detail_lines(detail: str, width: int = DETAIL_WIDTH) -> list:
    """The detail column: whole words, wrapped onto lines of at most `width` characters (a word
    longer than that, such as a path, gets a line of its own rather than being cut)."""
    import textwrap

    return textwrap.wrap(" ".join(detail.split()), width, break_long_words=False, break_on_hyphens=False) or [""]


def _smoothing_table(out_dir: Path) -> None:
    data = SPECS / "data" / "digits_test.npz"
    tsvs = []
    print("\nRandomized smoothing (claims about the smoothed classifiers g, confidence 1 - alpha):")
    for tag, sigma in (("025", 0.25), ("050", 0.5), ("100", 1.0)):
        model = SPECS / "onnx" / f"digits_mlp_noise{tag}.onnx"
        if not model.exists():
            continue
        tsv = out_dir / f"smooth_sigma{tag}.tsv"
        subprocess.run([sys.executable, "-m", "vnncert.cli", "smooth", "certify", str(model), "--data", str(data),
                        "--sigma", str(sigma), "--n", "10000", "--skip", "4", "--no-progress", "--out", str(tsv)], check=False)
        if tsv.exists():
            tsvs.append(str(tsv))
    if tsvs:
        subprocess.run([sys.executable, "-m", "vnncert.cli", "smooth", "report", *tsvs, "--radii", "0", "0.25", "0.5", "0.75", "1.0",
                        "--plot", str(out_dir / "certified_accuracy.png")], check=False)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
