#!/usr/bin/env bash
# VNN-COMP: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT
# Gives vnncert TIMEOUT minus a margin (VNNCERT_MARGIN, default 1.0 s; half of TIMEOUT when
# TIMEOUT < 2 s), so the script has exited before the harness's TIMEOUT. vnncert writes
# 'unknown' into RESULT_FILE at once and the final word before its own deadline. Exit 0 always
# once the file is written (the harness scores any non-zero exit as an error).
set -u
if [ "${1:-}" != "v1" ]; then echo "run_instance.sh: expected version string v1 as first argument, got '${1:-}'" >&2; exit 1; fi
if [ $# -ne 6 ]; then echo "usage: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT" >&2; exit 1; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MARGIN="${VNNCERT_MARGIN:-1.0}"
T=$(awk -v t="$6" -v m="$MARGIN" 'BEGIN { if (t < 2 * m) print t / 2; else print t - m }')
"$ROOT/.venv/bin/vnncert" verify "$3" "$4" --mode auto --timeout "$T" --result-file "$5" || true
[ -s "$5" ] || echo error > "$5"
exit 0
