#!/usr/bin/env bash
# VNN-COMP: install_tool.sh v1 — installs vnncert once (a .venv from the package index, pinned by constraints.txt).
set -euo pipefail
if [ "${1:-}" != "v1" ]; then echo "install_tool.sh: expected version string v1 as first argument, got '${1:-}'" >&2; exit 1; fi
cd "$(dirname "$0")/.."
make install
.venv/bin/vnncert --version
