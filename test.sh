#!/usr/bin/env bash
# Install what is missing, then run the tests.
#   ./test.sh          fast, meaningful subset (CI): everything not marked slow
#   ./test.sh --all    the full set, including slow simulator and synthesis runs
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
marker=(-m "not slow")
if [ "${1:-}" = "--all" ]; then
    marker=()
    shift
fi
.venv/bin/ruff check hwgen models sim boards tests benchmarks scripts
.venv/bin/ruff format --check hwgen models sim boards tests benchmarks scripts
exec .venv/bin/pytest -q "${marker[@]}" "$@"
