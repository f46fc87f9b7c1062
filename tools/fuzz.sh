#!/usr/bin/env bash
# The long differential fuzz run (tests/test_fuzz.py): compiled vs reference engine,
# eager and replayed, on many thousands of random graphs.
#   tools/fuzz.sh [EXAMPLES [SEED]]      e.g. tools/fuzz.sh 100000
set -euo pipefail
cd "$(dirname "$0")/.."
export CMICROGRAD_FUZZ_EXAMPLES="${1:-20000}"
if [ -n "${2:-}" ]; then export CMICROGRAD_FUZZ_SEED="$2"; fi
export CMICROGRAD_REQUIRE_EXTENSION=1
exec "${PYTHON:-python3}" -m pytest -q -m fuzz tests/test_fuzz.py -p no:cacheprovider
