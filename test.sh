#!/usr/bin/env bash
# Install what is missing, then run the tests.
#   ./test.sh          fast, meaningful subset (CI): everything not marked slow
#   ./test.sh --all    the full set, including slow simulator and synthesis runs
#   ./test.sh --mutation [module ...] [--write-docs]   mutation testing (slow, not CI)
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
marker=(-m "not slow")
if [ "${1:-}" = "--mutation" ]; then
    # Mutation testing of the core modules (slow, not CI): see docs/TESTING.md.
    shift
    .venv/bin/python -c "import importlib.metadata as m; assert m.version('mutmut') == '3.8.0'" 2>/dev/null || .venv/bin/pip install -q "mutmut==3.8.0"
    exec .venv/bin/python scripts/mutation.py run "$@"
fi
if [ "${1:-}" = "--all" ]; then
    marker=()
    shift
fi
.venv/bin/ruff check hwgen models sim boards tests benchmarks scripts
.venv/bin/ruff format --check hwgen models sim boards tests benchmarks scripts
exec .venv/bin/pytest -q "${marker[@]}" "$@"
