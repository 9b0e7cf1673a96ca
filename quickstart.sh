#!/usr/bin/env bash
# Install what is missing, then run the whole flow on the embedded default model:
# checkpoint -> Q4 -> hardwired RTL -> cocotb bit-exact check -> compare -> Arty A7 synthesis.
# Extra arguments go to `hwgen flow` (e.g. --simulator verilator, --board arty-a7-100).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
exec .venv/bin/hwgen flow "$@"
