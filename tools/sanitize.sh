#!/usr/bin/env bash
# Build cmicrograd's compiled engine with AddressSanitizer + UndefinedBehaviorSanitizer
# and run the whole test suite, then the memory scenarios (tools/memcheck/scenarios.py,
# which tools/valgrind.sh runs too), under it.
#
#   tools/sanitize.sh [--mode chunks|malloc|both] [--no-tests] [--no-scenarios]
#                     [--scenario NAME]... [--keep] [-- PYTEST_ARGS...]
#
# Exit status: 0 when clean; 1 on any ASan error (anywhere: only our extension is
# instrumented, but its bad accesses can surface elsewhere), any UBSan error, any leak
# whose allocation stack goes through the engine, any failing test or scenario; 2 when
# the build or the setup fails.
#
# How it works:
# * The checkout (tracked and untracked, non-ignored files) is copied to a scratch
#   directory and built in place there with CMICROGRAD_EXTRA_CFLAGS/LDFLAGS (setup.py),
#   so the checkout's own build is left alone. The scratch copy comes first on
#   PYTHONPATH; the run checks that it is the engine being tested.
# * Python is not instrumented, so libasan is LD_PRELOADed; PYTHONMALLOC=malloc makes
#   every Python allocation a malloc() that ASan can see.
# * The engine keeps Values in its own 64 KiB chunks (src/value_alloc.h), where ASan
#   cannot see a dead Value. A header force-included into the build (no source change),
#   tools/memcheck/asan_value_alloc.h, fixes that, in one of two modes:
#     chunks  the engine's real allocator; a freed slot is poisoned until reused
#     malloc  every Value is its own malloc() block: ASan's quarantine catches any use
#             after free, LeakSanitizer sees a Value that lost its last reference
#   --mode both (the default) runs everything in both.
# * Leaks: CPython and numpy never free some of their own memory at exit, so a leak
#   report alone means nothing. Only leaks whose allocation stack has a frame in the
#   engine (cmicrograd/_engine*.so, _engine.c, value_alloc.h, *.pyx, *.pxi) count; the
#   others are counted and left in the logs (tools/memcheck/report.py, which also
#   parses tools/valgrind.sh's logs, sorts them). The test suite runs with ASan's fast
#   (frame-pointer) unwinder, which cannot walk through CPython's frames, so there
#   only allocations the engine makes itself are attributed; the scenarios run with
#   the full unwinder (fast_unwind_on_malloc=0), which attributes every leak but is
#   too slow for the whole suite.
# * Child processes the tests start (the CLI tests) run under ASan too, with leak
#   detection off (their exit status is part of what those tests check).
# * tests/test_memory.py's RSS checks skip themselves under ASan (shadow memory and
#   the quarantine make RSS meaningless).
#
# Needs gcc with libasan (Debian: gcc), the test dependencies in the Python used
# (pip install -e ".[test]"), and pip access to the build requirements (setuptools,
# Cython: installed into the scratch directory). PYTHON=... picks the interpreter; default: .venv/bin/python,
# venv/bin/python, then python3. Tested with gcc 12 (Debian 12) and CPython 3.11.
# The whole run takes about 30 minutes (both modes, 2-core machine: the suite about
# 7.5 minutes a mode, then the scenarios); `-- -m "not slow"` skips the suite's long
# tests, --mode picks one mode, --no-tests runs only the scenarios (13 minutes for
# both modes with the 32 scenarios, two of which wait for their 60 s hang watchdog in
# each mode), --scenario NAME (repeatable) only the scenarios named (with --no-tests:
# e.g. the one for the bug being fixed). One
# scenario pins a documented limitation (see tools/valgrind.sh --help).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
MODES=(chunks malloc)
RUN_TESTS=1
RUN_SCENARIOS=1
KEEP=0
PYTEST_ARGS=()
ONLY=()
while [ $# -gt 0 ]; do
    case "$1" in
        --mode) shift
                case "${1:-}" in
                    chunks|malloc) MODES=("$1") ;;
                    both) MODES=(chunks malloc) ;;
                    *) echo "sanitize.sh: --mode chunks|malloc|both" >&2; exit 2 ;;
                esac ;;
        --no-tests) RUN_TESTS=0 ;;
        --no-scenarios) RUN_SCENARIOS=0 ;;
        --scenario) shift; [ -n "${1:-}" ] || { echo "sanitize.sh: --scenario NAME" >&2; exit 2; }
                    ONLY+=("$1") ;;
        --keep) KEEP=1 ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "sanitize.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "sanitize.sh: $*" >&2; exit 2; }

# ---- the interpreter and the toolchain ---------------------------------------------
# shellcheck source=tools/memcheck_common.sh
. "$HERE/memcheck_common.sh"
find_python "$ROOT"
"$PY" -c "import pytest, hypothesis, numpy" 2>/dev/null \
    || die "$PY lacks the test dependencies: $PY -m pip install -e '$ROOT[test]'"
CC="${CC:-gcc}"
export CC
LIBASAN="$("$CC" -print-file-name=libasan.so)"
ASAN_LINK=""
[ -f "$LIBASAN" ] || die "no ASan runtime for $CC (Debian: apt-get install gcc)"
# C++ extensions the tests load (matplotlib's) throw exceptions: ASan's __cxa_throw
# interceptor needs libstdc++ loaded when ASan starts, so it is preloaded too
PRELOAD="$LIBASAN"
LIBSTDCXX="$("$CC" -print-file-name=libstdc++.so.6 2>/dev/null)"
case "$LIBSTDCXX" in /*) [ -f "$LIBSTDCXX" ] && PRELOAD="$PRELOAD:$LIBSTDCXX" ;; esac

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/cmicrograd-sanitize.XXXXXX")" || die "mktemp failed"
if [ "$KEEP" = 1 ]; then
    trap 'echo "sanitize.sh: kept $SCRATCH"' EXIT
else
    trap 'rm -rf "$SCRATCH"' EXIT
fi

# UBSan if the compiler can link it with ASan
SAN="address"
echo 'int main(void){return 0;}' > "$SCRATCH/ubsan.c"
if "$CC" -fsanitize=address,undefined $ASAN_LINK "$SCRATCH/ubsan.c" -o "$SCRATCH/ubsan" 2>/dev/null \
        && "$SCRATCH/ubsan"; then
    SAN="address,undefined"
fi
echo "sanitize.sh: $CC with -fsanitize=$SAN, runtime $LIBASAN; python $PY"

install_build_requirements "$PY" "$ROOT" "$SCRATCH/buildtools" sanitize.sh || exit 2
BUILD_PYTHONPATH="$SCRATCH/buildtools"

# the scenarios tools/valgrind.sh runs too
SCENARIOS="$MEMCHECK/scenarios.py"

# ---- build, run, report, per mode ----------------------------------------------------------
status=0
for mode in "${MODES[@]}"; do
    work="$SCRATCH/$mode"
    logs="$SCRATCH/logs-$mode"
    mkdir -p "$logs"
    copy_checkout "$ROOT" "$work"
    cflags="-fsanitize=$SAN -fno-omit-frame-pointer -g -O1"
    # the build's own copy of the header, taken with the sources it is built with
    header="$work/tools/memcheck/asan_value_alloc.h"
    [ -f "$header" ] || die "no $header in the copy of the checkout"
    cflags="$cflags -include $header"
    [ "$mode" = malloc ] && cflags="$cflags -DCM_ASAN_MALLOC"
    echo "sanitize.sh [$mode]: building in $work"
    start=$SECONDS
    if ! (cd "$work" && rm -f src/_engine.c \
            && PYTHONPATH="$BUILD_PYTHONPATH" CMICROGRAD_EXTRA_CFLAGS="$cflags" \
               CMICROGRAD_EXTRA_LDFLAGS="-fsanitize=$SAN $ASAN_LINK" \
               "$PY" setup.py build_ext --inplace >"$logs/build.log" 2>&1); then
        cat "$logs/build.log"; die "the sanitizer build failed"
    fi
    echo "sanitize.sh [$mode]: built in $((SECONDS - start)) s"

    common="halt_on_error=1:abort_on_error=0:detect_odr_violation=0:malloc_context_size=30"
    common="$common:check_initialization_order=1:strict_init_order=1:log_path=$logs/asan"
    export LD_PRELOAD="$PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}"
    export PYTHONMALLOC=malloc
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:log_path=$logs/ubsan"
    export PYTHONPATH="$work"
    export CMICROGRAD_REQUIRE_EXTENSION=1
    export PYTHONDONTWRITEBYTECODE=1

    where="$(cd "$SCRATCH" && ASAN_OPTIONS="detect_leaks=0:$common" "$PY" -c \
             'import cmicrograd, cmicrograd._engine as e; print(cmicrograd.IMPLEMENTATION, e.__file__)' 2>&1)"
    case "$where" in
        "cython $work/"*) echo "sanitize.sh [$mode]: testing $where" ;;
        *) echo "$where"; unset LD_PRELOAD PYTHONMALLOC
           "$PY" "$MEMCHECK/report.py" sanitizers "$logs" "$mode (import)"
           die "importing the instrumented engine failed (see above)" ;;
    esac

    if [ "$RUN_TESTS" = 1 ]; then
        start=$SECONDS
        # The test process checks for leaks; processes it starts run with leak checks
        # off, and pytest's exit status goes to a file (see tools/memcheck/run_pytest.py).
        # UBSan writes its reports to stderr whatever log_path says: pytest captures at
        # the sys level only (--capture=sys), so they reach stderr.log for the report.
        (cd "$work" && ASAN_OPTIONS="detect_leaks=1:$common" \
            CM_CHILD_ASAN_OPTIONS="detect_leaks=0:$common" "$PY" "$MEMCHECK/run_pytest.py" \
            "$logs/pytest.rc" -p no:cacheprovider --capture=sys "${PYTEST_ARGS[@]}" \
            2> >(tee "$logs/stderr.log" >&2))
        prc="$(cat "$logs/pytest.rc" 2>/dev/null || echo crashed)"
        echo "sanitize.sh [$mode]: test suite exit status $prc, $((SECONDS - start)) s"
        if [ "$prc" != 0 ]; then status=1; fi
    fi

    if [ "$RUN_SCENARIOS" = 1 ]; then
        start=$SECONDS
        known="$(ASAN_OPTIONS=detect_leaks=0 "$PY" "$SCENARIOS" --list | awk '/known/ {print $1}')"
        names="$(ASAN_OPTIONS=detect_leaks=0 "$PY" "$SCENARIOS" --list | awk '{print $1}')"
        if [ ${#ONLY[@]} -gt 0 ]; then
            for name in "${ONLY[@]}"; do
                grep -qxF "$name" <<< "$names" || die "no scenario $name (see tools/valgrind.sh --list)"
            done
            names="$(printf '%s\n' "${ONLY[@]}")"
        fi
        for name in $names; do
            # a scenario pinning a documented leak runs without LeakSanitizer (it would
            # report that leak); ASan still checks every access
            leaks=1; if grep -qxF "$name" <<< "$known"; then leaks=0; fi
            (cd "$SCRATCH" && ASAN_OPTIONS="detect_leaks=$leaks:fast_unwind_on_malloc=0:$common" \
                "$PY" "$SCENARIOS" "$name" >"$logs/scenario-$name.out" 2>&1)
            rc=$?
            # the scenario's verdict is its last line: LeakSanitizer replaces the exit
            # status whenever CPython or numpy leak (the report below sorts leaks out)
            if grep -q -E -x "scenario $name: (ok|leaks [0-9]+ bytes of Values, as documented .*)" \
                    "$logs/scenario-$name.out"; then
                echo "sanitize.sh [$mode]: scenario $name: ok"
            else
                echo "sanitize.sh [$mode]: scenario $name: FAILED (exit status $rc)"
                sed 's/^/    /' "$logs/scenario-$name.out" | tail -15
                status=1
            fi
        done
        echo "sanitize.sh [$mode]: scenarios took $((SECONDS - start)) s"
    fi
    unset LD_PRELOAD PYTHONMALLOC UBSAN_OPTIONS PYTHONPATH
    "$PY" "$MEMCHECK/report.py" sanitizers "$logs" "$mode" || status=1
    if [ "$KEEP" = 1 ]; then echo "sanitize.sh [$mode]: logs in $logs"; fi
done
if [ $status = 0 ]; then
    echo "sanitize.sh: clean"
else
    echo "sanitize.sh: FINDINGS (see above)"
fi
exit $status
