#!/usr/bin/env bash
# VNN-COMP: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT
# Gives vnncert TIMEOUT minus a margin (VNNCERT_MARGIN, default 1.0 s; half of TIMEOUT when
# TIMEOUT < 2 s), so the script has exited before the harness's TIMEOUT. vnncert writes
# 'unknown' into RESULT_FILE at once and the final word before its own deadline. Exit 0 always
# once the file is written (the harness scores any non-zero exit as an error).
# A TIMEOUT that is not a number of seconds >= 0 gives 'error' (not 'timeout'). Paths are passed
# after `--`, so a file name starting with '-' is a file name. SIGTERM / SIGINT / SIGHUP to this
# script are passed on to vnncert (SIGTERM), which kills its engine and writes nothing more; the
# script waits for it and only then exits (143 / 130 / 129): nothing writes RESULT_FILE after the
# script is gone. SIGKILL to the script's process group takes vnncert's engine with it (the engine
# dies with its parent; vnncert/supervise.py).
set -u
if [ "${1:-}" != "v1" ]; then echo "run_instance.sh: expected version string v1 as first argument, got '${1:-}'" >&2; exit 1; fi
if [ $# -ne 6 ]; then echo "usage: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULT_FILE TIMEOUT" >&2; exit 1; fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ONNX="$3" VNNLIB="$4" RESULT="$5" TIMEOUT="$6"
MARGIN="${VNNCERT_MARGIN:-1.0}"
NUMBER='^([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?$'

write_error() {  # 'error' into RESULT_FILE, unless that is one of the input files (same file: -ef)
    if [ "$RESULT" -ef "$ONNX" ] || [ "$RESULT" -ef "$VNNLIB" ]; then
        echo "run_instance.sh: RESULT_FILE $RESULT is one of the input files: not written" >&2
        return
    fi
    printf 'error\n' > "$RESULT" || echo "run_instance.sh: cannot write $RESULT" >&2
}

if ! [[ "$TIMEOUT" =~ $NUMBER ]]; then
    echo "run_instance.sh: TIMEOUT must be a number of seconds >= 0, got '$TIMEOUT'" >&2
    write_error
    exit 0
fi
if ! [[ "$MARGIN" =~ $NUMBER ]]; then
    echo "run_instance.sh: VNNCERT_MARGIN must be a number of seconds >= 0, got '$MARGIN'" >&2
    write_error
    exit 0
fi
T=$(awk -v t="$TIMEOUT" -v m="$MARGIN" 'BEGIN { if (t < 2 * m) print t / 2; else print t - m }')

SIGNAL_EXIT=""
"$ROOT/.venv/bin/vnncert" verify --mode auto --timeout "$T" --result-file="$RESULT" -- "$ONNX" "$VNNLIB" &
PID=$!
forward() { SIGNAL_EXIT="$1"; kill -TERM "$PID" 2>/dev/null; }
trap 'forward 143' TERM
trap 'forward 130' INT
trap 'forward 129' HUP
wait "$PID"
while kill -0 "$PID" 2>/dev/null; do  # a trapped signal ends `wait` early: wait until vnncert is gone
    wait "$PID"
done
if [ -n "$SIGNAL_EXIT" ]; then
    exit "$SIGNAL_EXIT"
fi
[ -s "$RESULT" ] || write_error
exit 0
