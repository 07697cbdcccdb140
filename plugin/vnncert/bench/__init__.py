"""Benchmark suites: run an instances.csv, keep a VNN-COMP results CSV, score it, compare tools.

| module | holds |
| --- | --- |
| `instances.py` | `Instance`, reading `instances.csv` (no header, 2021 bare names, `.gz`), finding suites |
| `resultscsv.py` | the results CSV: append whole lines with fsync, repair a torn tail, read any tool's CSV |
| `procs.py` | one process per step under a wall-clock limit (process group killed at the limit) |
| `solvers.py` | `Solver`s: how a tool is started on one instance and how its answer is read |
| `runner.py` | `vnncert bench`: the local scheduler (`--jobs`), progress bar, witnesses, resume |
| `dask_runner.py` | the same rows computed on a Dask distributed cluster (`--scheduler`) |
| `witness.py` | finding a counterexample file in the results-repo layout and re-checking it with ORT |
| `score.py` | `vnncert score`: VNN-COMP 2026 scoring with every witness re-checked |
| `compare.py` | `vnncert compare`: agreement matrix, contradictions, cactus plot, markdown summary |
| `plots.py` | matplotlib (Agg) figures |

Nothing here imports torch; numpy / ONNX Runtime only where witnesses are re-checked.
"""
