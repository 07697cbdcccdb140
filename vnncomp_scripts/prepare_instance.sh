#!/usr/bin/env bash
# VNN-COMP: prepare_instance.sh v1 CATEGORY ONNX VNNLIB
# No analysis and no per-instance tuning: it only checks the installation and that the files exist,
# (it kills nothing: several instances may run side by side).
set -u
if [ "${1:-}" != "v1" ]; then echo "prepare_instance.sh: expected version string v1 as first argument, got '${1:-}'" >&2; exit 1; fi
if [ $# -ne 4 ]; then echo "usage: prepare_instance.sh v1 CATEGORY ONNX VNNLIB" >&2; exit 1; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -x "$ROOT/.venv/bin/vnncert" ] || { echo "prepare_instance.sh: vnncert is not installed (run install_tool.sh v1)" >&2; exit 1; }
[ -r "$3" ] || { echo "prepare_instance.sh: cannot read ONNX file $3" >&2; exit 1; }
[ -r "$4" ] || { echo "prepare_instance.sh: cannot read VNN-LIB file $4" >&2; exit 1; }
exit 0
